"""Publishing integration messages from the change feed.

One publish call per batch: the broker's duplicate detection (MessageId "{streamId}:{version}")
drops what a retried batch sends again. An event whose mapping fails for good is parked; a broker
outage raises, so the host retries the batch and the checkpoint does not move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from eventstore.commit import Commit, EventRecord
from eventstore.errors import UndeliverableMessageError
from eventstore.poison import park, park_message, raise_if_transient
from eventstore.ports import DeadLetterStore, MessagePublisher, OutboundMessage

EventMapper = Callable[[Commit, EventRecord], list[OutboundMessage]]


class Publisher:
    def __init__(
        self,
        map_event: EventMapper,
        publisher: MessagePublisher,
        dead_letters: DeadLetterStore,
        consumer: str,
    ) -> None:
        self._map_event = map_event
        self._publisher = publisher
        self._dead_letters = dead_letters
        self._consumer = consumer

    def handle(self, commits: Iterable[Commit]) -> list[OutboundMessage]:
        messages: list[OutboundMessage] = []
        for commit in commits:
            for record in commit.events:
                try:
                    messages.extend(self._map_event(commit, record))
                except Exception as error:
                    raise_if_transient(error)
                    park(self._dead_letters, self._consumer, commit.stream_id, record, commit,
                         error)
        pending = messages
        while pending:
            try:
                self._publisher.publish(pending)
                break
            except UndeliverableMessageError as error:
                # Messages sent before it go again: the broker drops them as duplicates.
                park_message(self._dead_letters, self._consumer, error.outbound, error)
                pending = [m for m in pending if m is not error.outbound]
        return messages
