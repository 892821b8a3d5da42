"""Publishing integration messages from the change feed.

One publish call per batch: the broker's duplicate detection (MessageId "{streamId}:{version}")
drops what a retried batch sends again. An event whose mapping fails for good is parked; a broker
outage raises, so the host retries the batch and the checkpoint does not move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from eventstore.poison import park, raise_if_transient
from eventstore.ports import Commit, DeadLetterStore, EventRecord, MessagePublisher, OutboundMessage

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
        if messages:
            self._publisher.publish(messages)
        return messages


def message_id(stream_id: str, version: int) -> str:
    return f"{stream_id}:{version}"
