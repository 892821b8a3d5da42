"""Ports of the kernel: what the application needs from storage and messaging.

Every adapter (embedded SQLite, Cosmos DB, Service Bus) implements these with the same semantics;
one contract test suite runs against each of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class EventRecord:
    """One stored event inside a commit."""

    version: int
    event_id: str
    type: str
    schema_version: int
    occurred_at: str
    data: JsonDict

    def to_document(self) -> JsonDict:
        return {
            "version": self.version,
            "eventId": self.event_id,
            "type": self.type,
            "schemaVersion": self.schema_version,
            "occurredAt": self.occurred_at,
            "data": self.data,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> EventRecord:
        return cls(
            version=int(doc["version"]),
            event_id=str(doc["eventId"]),
            type=str(doc["type"]),
            schema_version=int(doc["schemaVersion"]),
            occurred_at=str(doc["occurredAt"]),
            data=dict(doc["data"]),
        )


@dataclass(frozen=True)
class Commit:
    """The 1..n events that one command produced for one stream: one document, one write.

    Its id ``"{streamId}:{firstVersion}"`` is the optimistic-concurrency check: a second writer
    that decided from the same version collides on it.
    """

    stream_id: str
    stream_type: str
    events: tuple[EventRecord, ...]
    correlation_id: str
    causation_id: str
    committed_at: str

    def __post_init__(self) -> None:
        if not self.events:
            raise ValueError("a commit holds at least one event")
        versions = [e.version for e in self.events]
        if versions != list(range(versions[0], versions[0] + len(versions))) or versions[0] < 1:
            raise ValueError(f"commit versions must be contiguous from >= 1, got {versions}")

    @property
    def first_version(self) -> int:
        return self.events[0].version

    @property
    def version(self) -> int:
        """The stream version after this commit (its last event's version)."""
        return self.events[-1].version

    @property
    def id(self) -> str:
        return commit_id(self.stream_id, self.first_version)

    def to_document(self) -> JsonDict:
        return {
            "id": self.id,
            "streamId": self.stream_id,
            "streamType": self.stream_type,
            "version": self.version,
            "events": [e.to_document() for e in self.events],
            "correlationId": self.correlation_id,
            "causationId": self.causation_id,
            "committedAt": self.committed_at,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Commit:
        """Parse a commit document; extra keys (Cosmos system properties) are ignored."""
        return cls(
            stream_id=str(doc["streamId"]),
            stream_type=str(doc["streamType"]),
            events=tuple(EventRecord.from_document(e) for e in doc["events"]),
            correlation_id=str(doc["correlationId"]),
            causation_id=str(doc["causationId"]),
            committed_at=str(doc["committedAt"]),
        )


def commit_id(stream_id: str, first_version: int) -> str:
    return f"{stream_id}:{first_version}"


class EventStore(Protocol):
    def append(self, commit: Commit) -> None:
        """Store the commit atomically.

        Raises ConcurrencyError when a commit with the same (streamId, firstVersion) exists,
        i.e. the writer decided from a stale version. Raises TransientError for retryable
        backend failures.
        """
        ...

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        """The stream's commits whose last version is > after_version, in version order."""
        ...


@dataclass(frozen=True)
class FeedPage:
    commits: list[Commit]
    checkpoint: str | None
    """Opaque position after these commits; pass it to the next read. None only when the feed is
    empty and nothing was ever read."""


class ChangeFeed(Protocol):
    def read_feed(self, checkpoint: str | None, max_items: int) -> FeedPage:
        """Up to max_items commits after the checkpoint (None = from the beginning).

        Order is guaranteed per stream only (Cosmos DB orders its change feed per partition),
        and a page may hold fewer than max_items commits even when more exist."""
        ...


class CheckpointStore(Protocol):
    def load_checkpoint(self, consumer: str) -> str | None: ...

    def save_checkpoint(self, consumer: str, checkpoint: str) -> None: ...


@dataclass(frozen=True)
class StoredView:
    document: JsonDict
    etag: str


class ViewStore(Protocol):
    def get(self, view_id: str) -> StoredView | None: ...

    def put(self, view_id: str, document: JsonDict, etag: str | None) -> str:
        """Create (etag None: must not exist yet) or replace (etag must match).

        Returns the new ETag. Raises ConcurrencyError when the precondition fails.
        """
        ...


@dataclass(frozen=True)
class DeadLetter:
    """An event (or message) that can never be processed, parked with its error."""

    id: str  # "{consumer}:{streamId}:{version}": parking twice is idempotent
    consumer: str
    stream_id: str
    version: int
    event_type: str
    error: str
    payload: JsonDict
    parked_at: str


class DeadLetterStore(Protocol):
    def park(self, letter: DeadLetter) -> None:
        """Store the letter; parking the same id again overwrites it (idempotent)."""
        ...

    def list_letters(self, limit: int = 100) -> list[DeadLetter]: ...


@dataclass(frozen=True)
class OutboundMessage:
    """A message for a Service Bus topic or queue (or the embedded bus)."""

    destination: str  # topic or queue name
    message_id: str  # "{streamId}:{version}" so broker duplicate detection drops redeliveries
    subject: str  # the integration event or command name
    body: JsonDict
    correlation_id: str
    application_properties: Mapping[str, str | int] = field(default_factory=dict)


class Cost(Protocol):
    @property
    def requests(self) -> int: ...

    @property
    def request_charge(self) -> float: ...


class CostMeter(Protocol):
    """Counts a backend's requests and their charge (Cosmos DB RU) within a scope."""

    def measure(self) -> AbstractContextManager[Cost]: ...


class MessagePublisher(Protocol):
    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Send all messages (grouped per destination, in order). Raises TransientError when the
        broker is unavailable; the caller retries the whole batch (duplicates are dropped by
        MessageId)."""
        ...

    def close(self) -> None: ...
