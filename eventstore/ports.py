"""Ports of the kernel: what the application needs from storage and messaging.

Every adapter (embedded SQLite, Cosmos DB, Service Bus) implements these with the same semantics;
one contract test suite runs against each of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from eventstore.commit import Commit, JsonDict


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
class StreamInfo:
    """One stream, as an operator lists them."""

    stream_id: str
    version: int  # its latest event's version
    commits: int


class StreamCatalog(Protocol):
    def list_streams(self, after: str | None = None, limit: int = 100) -> list[StreamInfo]:
        """Up to ``limit`` streams in stream-id order, those after ``after`` (exclusive): page
        through all of them by passing the last id of a page as the next ``after``."""
        ...


@dataclass(frozen=True)
class RangeLag:
    """How far a consumer is behind in one feed range of the change feed."""

    feed_range: str  # the range id (as its lease names it)
    checkpoint: str | None  # the consumer's position in this range (None: never read)
    commits_behind: int
    events_behind: int
    owner: str | None = None  # the instance that holds the range's lease, if any


class FeedMonitor(Protocol):
    def consumer_lag(self, consumer: str) -> list[RangeLag]:
        """For each feed range: the consumer's checkpoint and how many commits (and events)
        after it it has yet to read."""
        ...


@dataclass(frozen=True)
class FeedPage:
    """Change-feed documents as stored, unparsed: a consumer parses each one at its own edge
    (``eventstore.poison.parse_commits``), so a document that is not a valid commit is parked
    there instead of failing the read for every consumer."""

    documents: list[JsonDict]
    checkpoint: str | None
    """Opaque position after these documents; pass it to the next read. None only when the feed
    is empty and nothing was ever read."""

    @property
    def commits(self) -> list[Commit]:
        """The documents parsed; raises on the first that is not a valid commit."""
        return [Commit.from_document(document) for document in self.documents]


class ChangeFeed(Protocol):
    def read_feed(self, checkpoint: str | None, max_items: int) -> FeedPage:
        """Up to max_items commits after the checkpoint (None = from the beginning).

        Order is guaranteed per stream only (Cosmos DB orders its change feed per partition),
        and a page may hold fewer than max_items commits even when more exist."""
        ...


class CheckpointStore(Protocol):
    def load_checkpoint(self, consumer: str) -> str | None: ...

    def save_checkpoint(self, consumer: str, checkpoint: str) -> None: ...


# -- the partitioned change feed and its leases (eventstore.changefeed runs them) ----------------


@dataclass(frozen=True)
class FeedRange:
    """One slice of a container's change feed, as Cosmos DB splits it by partition-key hash.

    Every stream lives in exactly one range; order holds within a range (so within a stream),
    never across ranges."""

    id: str
    """Stable and short: it names the range's lease. It must not change while leases exist."""
    token: str = ""
    """How the adapter addresses the range (Cosmos DB: the feed range's JSON); opaque to the
    kernel."""


class PartitionedFeed(Protocol):
    def feed_ranges(self) -> list[FeedRange]:
        """Every range of the feed; together they cover every stream exactly once."""
        ...

    def read_range(self, feed_range: FeedRange, continuation: str | None,
                   max_items: int) -> FeedPage:
        """Up to max_items documents of the range after the continuation (None: from the
        beginning), in the order they were committed, raw (parse them at the consumer's edge).

        The page's checkpoint is the continuation after them; it belongs to this range only.
        An empty page leaves the continuation as it was."""
        ...


@runtime_checkable
class WaitableFeed(Protocol):
    """A feed that can say promptly when a range has something new (instead of being polled)."""

    def wait_for_range(self, feed_range: FeedRange, continuation: str | None,
                       timeout: float) -> bool:
        """Block until the range has documents after the continuation; False after timeout."""
        ...


@dataclass(frozen=True)
class Lease:
    """Who processes one feed range for one consumer (lease prefix), and how far it got.

    Leases live in the backend (the ``leases`` container in Cosmos DB, a table in the embedded
    store) so that every instance of a consumer sees the same ones. Every write is guarded by the
    lease's ETag: of two instances writing the same lease, the second fails and learns that it
    is no longer the owner."""

    prefix: str
    range_id: str
    owner: str | None = None
    """The instance processing the range; None when it is free."""
    continuation: str | None = None
    """Where the range's next read starts (None: from the beginning)."""
    expires_at: float = 0.0
    """Seconds since the epoch: the owner renews before this, or any instance may take it over.
    Wall-clock time, because instances on different machines (or processes) compare it."""
    etag: str = ""

    def is_available(self, now: float) -> bool:
        return self.owner is None or self.expires_at <= now


class LeaseStore(Protocol):
    """Lease documents with ETag-guarded writes; ``eventstore.changefeed`` builds acquisition,
    renewal, checkpointing and release on these three operations."""

    def list_leases(self, prefix: str) -> list[Lease]:
        """Every lease of the consumer, in range-id order."""
        ...

    def read_lease(self, prefix: str, range_id: str) -> Lease | None: ...

    def create_lease(self, prefix: str, range_id: str) -> Lease | None:
        """Create the range's lease, free and at the beginning; None when it exists already
        (another instance created it first)."""
        ...

    def replace_lease(self, lease: Lease) -> Lease:
        """Store owner, continuation and expiry if the stored lease still has ``lease.etag``;
        returns it with its new ETag. Raises ConcurrencyError when another write came first
        (or the lease is gone)."""
        ...


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

    def get_letter(self, letter_id: str) -> DeadLetter | None: ...

    def remove(self, letter_id: str) -> bool:
        """Delete the letter (after a successful replay, or to discard it); False when there
        was none."""
        ...


@dataclass(frozen=True)
class QueuedDeadLetter:
    """A message in a broker entity's dead-letter sub-queue (the broker's own dead letters)."""

    entity_path: str  # the queue or subscription it was dead-lettered from
    sequence_number: int
    message_id: str
    subject: str
    body: bytes
    correlation_id: str
    application_properties: Mapping[str, str | int]
    delivery_count: int
    reason: str | None
    description: str | None


class DeadLetterQueues(Protocol):
    """The dead-letter sub-queues of the entities a service consumes (operator use)."""

    def peek_dead_letters(self, entity_path: str, max_messages: int = 100
                          ) -> list[QueuedDeadLetter]:
        """The oldest messages of the entity's dead-letter queue; none is removed."""
        ...

    def settle_dead_letter(self, entity_path: str, sequence_number: int,
                           handle: Callable[[QueuedDeadLetter], None]) -> bool:
        """Lock the dead-lettered message with this sequence number and call ``handle``: when
        it returns the message is removed, when it raises the message stays (the error
        propagates). False when there is no such message."""
        ...

    def close(self) -> None: ...


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


@dataclass(frozen=True)
class PersonalData:
    """What the personal-data store holds for one data subject (a customer): the data, or,
    once erased, a tombstone that says when, so reads tell "erased" from "never given"."""

    subject_id: str
    data: JsonDict | None  # None once erased
    updated_at: str
    erased_at: str | None = None


class PersonalDataStore(Protocol):
    """Personal data kept outside the event log, keyed by an opaque subject id that the events
    carry instead. Subject ids are document ids: no '/', '\\', '?' or '#'."""

    def put(self, subject_id: str, data: JsonDict) -> None:
        """Store or replace the subject's data (also after an erasure: given anew)."""
        ...

    def get(self, subject_id: str) -> PersonalData | None: ...

    def erase(self, subject_id: str) -> None:
        """Delete the data for good, leaving a tombstone. Idempotent: erasing again, or what was
        never stored, succeeds and keeps the first erasure's time. Returns only once no stored
        byte of the data is left where the adapter can reach it (for SQLite: the page and the
        write-ahead log); raises TransientError when that cannot be done now (retry)."""
        ...


class FeedStore(EventStore, ChangeFeed, CheckpointStore, StreamCatalog, FeedMonitor, Protocol):
    """An event store that also serves its change feed and keeps feed checkpoints."""


@dataclass(frozen=True)
class InboundMessage:
    """A message received with peek-lock from a broker, for the host that delivers it to a
    Service Bus-triggered function (settled through the inbox that received it)."""

    message_id: str
    subject: str
    body: bytes
    correlation_id: str
    application_properties: Mapping[str, str | int]
    delivery_count: int  # 1 on the first delivery, as the Functions host reports it
    enqueued_time: datetime
    lock_token: str
    locked_until: datetime
    entity_path: str
    sequence_number: int
