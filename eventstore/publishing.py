"""Publishing integration messages from the change feed.

One publish call per batch: the broker's duplicate detection (MessageId "{streamId}:{version}")
drops what a retried batch sends again. An event whose mapping fails for good is parked; a broker
outage raises, so the host retries the batch and the checkpoint does not move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from eventstore.commit import Commit, EventRecord
from eventstore.errors import UndeliverableMessageError
from eventstore.poison import park, park_message, raise_if_transient
from eventstore.ports import DeadLetterStore, MessagePublisher, OutboundMessage
from eventstore.tracing import SpanKind, span

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
        """Map every event of the batch, then send the messages in one call. The batch is a span
        linked to each commit's trace; each commit's messages are made in a span of the commit's
        own trace, whose context they carry to their consumer."""
        batch = list(commits)
        with span(f"{self._consumer} batch", kind=SpanKind.CONSUMER,
                  links=[c.trace_context or {} for c in batch],
                  attributes={"es.consumer": self._consumer, "es.commits": len(batch)}):
            messages: list[OutboundMessage] = []
            for commit in batch:
                with span(f"publish {commit.stream_type}", kind=SpanKind.PRODUCER,
                          parent=commit.trace_context,
                          attributes={"es.stream_id": commit.stream_id}):
                    messages.extend(self._map_commit(commit))
            self._send(messages)
            return messages

    def replay(self, commit: Commit, version: int) -> list[OutboundMessage]:
        """Map and send the messages of one event of the commit again (a replayed dead letter):
        mapped as the first time, parked again with its new error if it still fails. The broker
        drops what it already had within its duplicate window."""
        record = next((r for r in commit.events if r.version == version), None)
        if record is None:
            raise ValueError(f"commit {commit.id} has no event at version {version}")
        return self.handle([replace(commit, events=(record,))])

    @property
    def consumer(self) -> str:
        return self._consumer

    def _map_commit(self, commit: Commit) -> list[OutboundMessage]:
        messages: list[OutboundMessage] = []
        for record in commit.events:
            try:
                messages.extend(self._map_event(commit, record))
            except Exception as error:
                raise_if_transient(error)
                park(self._dead_letters, self._consumer, commit.stream_id, record, commit, error)
        return messages

    def _send(self, messages: list[OutboundMessage]) -> None:
        pending = messages
        while pending:
            try:
                with span("send", kind=SpanKind.PRODUCER,
                          links=[m.application_properties for m in pending],
                          attributes={"messaging.batch.message_count": len(pending)}):
                    self._publisher.publish(pending)
                break
            except UndeliverableMessageError as error:
                # Messages sent before it go again: the broker drops them as duplicates.
                park_message(self._dead_letters, self._consumer, error.outbound, error)
                pending = [m for m in pending if m is not error.outbound]
