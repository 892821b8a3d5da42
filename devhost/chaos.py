"""Chaos mode (``--chaos SEED``): the local host as unkind as Azure is allowed to be.

Fault-injecting wrappers around the embedded backend's stores, views, leases, dead letters,
publisher and bus. The host builds the process's ``Services`` over ``ChaosBackend`` (through
``app.bootstrap.bootstrap(settings, backend=...)``), so the function code runs exactly as always;
only what the backends do to it changes:

- transient failures (``TransientError``, as the adapters raise for throttling and timeouts) on a
  fraction of store, view, lease, dead-letter and bus calls; for writes, some of them *after* the
  write landed, as a timeout after the fact does;
- change-feed batches delivered again after they succeeded (a lost checkpoint), and bus messages
  delivered again after they were handled (a lost completion);
- deliveries held back for a moment, so ranges and messages overtake each other;
- bus message locks that end early while the function still runs (another receiver gets the
  message meanwhile).

Each fault is printed as ``chaos fault #N <kind> (<what>)`` and counted; ``summary`` gives
``faults injected: N (kind count, ...)``. Whether an operation gets a fault is a function of the
seed, the fault kind, the operation (a commit id, a view id, a message id and delivery count, a
feed continuation) and how often that operation was tried, never of thread timing: the same seed
and the same workload inject the same faults into the same operations. Development only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from app.bootstrap import EmbeddedBackend, ServiceStores
from devhost.invocations import print_line
from eventstore.commit import Commit, JsonDict
from eventstore.embedded.bus import EmbeddedBus, ReceivedMessage
from eventstore.embedded.store import SqliteEventStore
from eventstore.errors import TransientError
from eventstore.ports import (
    DeadLetter,
    DeadLetterQueues,
    DeadLetterStore,
    FeedPage,
    FeedRange,
    Lease,
    LeaseStore,
    MessagePublisher,
    OutboundMessage,
    PersonalDataStore,
    RangeLag,
    StoredView,
    StreamInfo,
    ViewStore,
)

T = TypeVar("T")

_MAX_TRACKED = 200_000  # operations whose attempts are counted; beyond, counting starts over


@dataclass(frozen=True)
class ChaosRates:
    """How often each fault happens (a probability per operation)."""

    transient: float = 0.02  # a store, view, lease, dead-letter or bus call fails transiently
    landed: float = 0.5  # of failing writes, the share that failed after the write landed
    feed_redelivery: float = 0.1  # a succeeded batch is delivered again
    bus_redelivery: float = 0.1  # a handled message is delivered again
    lock_expiry: float = 0.05  # a message's lock ends while its function runs
    delay: float = 0.15  # a batch or message is held back ...
    max_delay: float = 0.2  # ... for up to this many seconds

    def __post_init__(self) -> None:
        for name in ("transient", "landed", "feed_redelivery", "bus_redelivery", "lock_expiry",
                     "delay"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"chaos rate {name} must be within 0..1")
        if self.max_delay < 0:
            raise ValueError("max_delay must be >= 0")


class Chaos:
    """The seeded dice, the fault counter and the fault log of one process."""

    def __init__(self, seed: int, rates: ChaosRates | None = None,
                 report: Callable[[str], None] = print_line) -> None:
        self.seed = seed
        self.rates = rates or ChaosRates()
        self._report = report
        self._lock = threading.Lock()
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._faults: Counter[str] = Counter()

    def roll(self, kind: str, key: str) -> float:
        """A number in [0, 1) fixed by (seed, kind, key, how often this was rolled before)."""
        with self._lock:
            if len(self._attempts) > _MAX_TRACKED:
                self._attempts.clear()
            attempt = self._attempts[kind, key]
            self._attempts[kind, key] = attempt + 1
        digest = hashlib.blake2b(f"{self.seed}|{kind}|{key}|{attempt}".encode(),
                                 digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2.0 ** 64

    def strikes(self, kind: str, key: str, rate: float) -> bool:
        """Whether the fault ``kind`` hits this operation (counted and printed when it does)."""
        if rate <= 0.0 or self.roll(kind, key) >= rate:
            return False
        self.record(kind, key)
        return True

    def record(self, kind: str, what: str) -> None:
        with self._lock:
            self._faults[kind] += 1
            number = sum(self._faults.values())
        self._report(f"chaos fault #{number} {kind} ({what})")

    def transient(self, kind: str, key: str) -> None:
        """Raise TransientError for a fraction of calls (before the call happened)."""
        if self.strikes(kind, key, self.rates.transient):
            raise TransientError(f"chaos: {kind} timed out (injected, {key})")

    def write(self, kind: str, key: str, perform: Callable[[], T]) -> T:
        """A write that fails transiently for a fraction of calls: before it happened, or (the
        ``landed`` share) after, as a timeout after the fact does."""
        if self.roll(kind, key) >= self.rates.transient:
            return perform()
        if self.roll(f"{kind}-landed", key) < self.rates.landed:
            perform()
            self.record(f"{kind}-landed", key)
            raise TransientError(f"chaos: {kind} timed out after it landed (injected, {key})")
        self.record(kind, key)
        raise TransientError(f"chaos: {kind} timed out (injected, {key})")

    def delay(self, kind: str, key: str) -> None:
        """Hold a delivery back for a fraction of calls (what overtakes what changes)."""
        if self.rates.max_delay <= 0 or not self.strikes(kind, key, self.rates.delay):
            return
        time.sleep(self.roll(f"{kind}-length", key) * self.rates.max_delay)

    @property
    def faults(self) -> dict[str, int]:
        with self._lock:
            return dict(self._faults)

    def summary(self) -> str:
        faults = self.faults
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(faults.items()))
        return f"faults injected: {sum(faults.values())}" + (f" ({kinds})" if kinds else "")


# -- the stores ----------------------------------------------------------------------------------


class ChaosEventStore:
    """The event store and its partitioned feed, with faults."""

    def __init__(self, inner: SqliteEventStore, chaos: Chaos) -> None:
        self._inner = inner
        self._chaos = chaos
        self._lock = threading.Lock()
        # Per range: the continuation last read from, and the one that read returned. Asked
        # for the latter next means that batch was checkpointed: a redelivery reads from the
        # former again, as if the checkpoint had been lost.
        self._last_read: dict[str, tuple[str | None, str | None]] = {}

    def append(self, commit: Commit) -> None:
        self._chaos.write("store.append", commit.id, lambda: self._inner.append(commit))

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        self._chaos.transient("store.read", f"{stream_id}@{after_version}")
        return self._inner.read_stream(stream_id, after_version)

    def feed_ranges(self) -> list[FeedRange]:
        return self._inner.feed_ranges()

    def read_range(self, feed_range: FeedRange, continuation: str | None,
                   max_items: int) -> FeedPage:
        key = f"range {feed_range.id}@{continuation}"
        start = continuation
        with self._lock:
            previous = self._last_read.get(feed_range.id)
        if (previous is not None and previous[1] == continuation and previous[0] != continuation
                and self._chaos.strikes("feed.redeliver", key, self._chaos.rates.feed_redelivery)):
            start = previous[0]
        page = self._inner.read_range(feed_range, start, max_items)
        if not page.documents:
            return page
        # Faults only on reads that deliver something: an idle range is read twice a second.
        self._chaos.transient("feed.read", key)
        with self._lock:
            self._last_read[feed_range.id] = (continuation, page.checkpoint)
        self._chaos.delay("feed.delay", key)
        return page

    def wait_for_range(self, feed_range: FeedRange, continuation: str | None,
                       timeout: float) -> bool:
        return self._inner.wait_for_range(feed_range, continuation, timeout)

    # The unpartitioned feed and its checkpoints: only single readers use them.
    def read_feed(self, checkpoint: str | None, max_items: int) -> FeedPage:
        return self._inner.read_feed(checkpoint, max_items)

    def load_checkpoint(self, consumer: str) -> str | None:
        return self._inner.load_checkpoint(consumer)

    def save_checkpoint(self, consumer: str, checkpoint: str) -> None:
        self._inner.save_checkpoint(consumer, checkpoint)

    def wait_for_commits(self, checkpoint: str | None, timeout: float) -> bool:
        return self._inner.wait_for_commits(checkpoint, timeout)

    # The operator's reads (the ops CLI): not faulted.
    def list_streams(self, after: str | None = None, limit: int = 100) -> list[StreamInfo]:
        return self._inner.list_streams(after, limit)

    def consumer_lag(self, consumer: str) -> list[RangeLag]:
        return self._inner.consumer_lag(consumer)


class ChaosLeaseStore:
    def __init__(self, inner: LeaseStore, chaos: Chaos) -> None:
        self._inner = inner
        self._chaos = chaos

    def list_leases(self, prefix: str) -> list[Lease]:
        self._chaos.transient("lease.read", prefix)
        return self._inner.list_leases(prefix)

    def read_lease(self, prefix: str, range_id: str) -> Lease | None:
        self._chaos.transient("lease.read", f"{prefix}:{range_id}")
        return self._inner.read_lease(prefix, range_id)

    def create_lease(self, prefix: str, range_id: str) -> Lease | None:
        return self._chaos.write("lease.write", f"{prefix}:{range_id}:create",
                                 lambda: self._inner.create_lease(prefix, range_id))

    def replace_lease(self, lease: Lease) -> Lease:
        return self._chaos.write("lease.write", f"{lease.prefix}:{lease.range_id}:{lease.etag}",
                                 lambda: self._inner.replace_lease(lease))


class ChaosViewStore:
    def __init__(self, inner: ViewStore, chaos: Chaos) -> None:
        self._inner = inner
        self._chaos = chaos

    def get(self, view_id: str) -> StoredView | None:
        self._chaos.transient("view.read", view_id)
        return self._inner.get(view_id)

    def put(self, view_id: str, document: JsonDict, etag: str | None) -> str:
        return self._chaos.write("view.write", f"{view_id}:{etag}",
                                 lambda: self._inner.put(view_id, document, etag))


class ChaosDeadLetterStore:
    def __init__(self, inner: DeadLetterStore, chaos: Chaos) -> None:
        self._inner = inner
        self._chaos = chaos

    def park(self, letter: DeadLetter) -> None:
        self._chaos.write("deadletter.write", letter.id, lambda: self._inner.park(letter))

    def list_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self._inner.list_letters(limit)

    def get_letter(self, letter_id: str) -> DeadLetter | None:
        return self._inner.get_letter(letter_id)

    def remove(self, letter_id: str) -> bool:
        return self._chaos.write("deadletter.write", letter_id,
                                 lambda: self._inner.remove(letter_id))


# -- messaging -----------------------------------------------------------------------------------


class ChaosPublisher:
    def __init__(self, inner: MessagePublisher, chaos: Chaos) -> None:
        self._inner = inner
        self._chaos = chaos

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        key = ",".join(m.message_id for m in messages[:3])
        self._chaos.write("bus.publish", key, lambda: self._inner.publish(messages))

    def close(self) -> None:
        self._inner.close()


class ChaosBus:
    """What the bus workers receive from and settle on, with faults."""

    def __init__(self, inner: EmbeddedBus, chaos: Chaos) -> None:
        self._inner = inner
        self._chaos = chaos

    def receive(self, entity_path: str, max_messages: int = 1,
                timeout: float = 0.0) -> list[ReceivedMessage]:
        received = self._inner.receive(entity_path, max_messages=max_messages, timeout=timeout)
        for message in received:
            key = _delivery(message)
            self._chaos.delay("bus.delay", key)
            if self._chaos.strikes("bus.lock-expiry", key, self._chaos.rates.lock_expiry):
                self._inner.expire_lock(message)
        return received

    def complete(self, message: ReceivedMessage) -> None:
        key = _delivery(message)
        self._chaos.transient("bus.settle", key)
        if self._chaos.strikes("bus.redeliver", key, self._chaos.rates.bus_redelivery):
            # The completion is lost: the message comes back, with a higher delivery count.
            self._inner.abandon(message)
            return
        self._inner.complete(message)

    def abandon(self, message: ReceivedMessage) -> None:
        self._chaos.transient("bus.settle", _delivery(message))
        self._inner.abandon(message)

    def renew_lock(self, message: ReceivedMessage) -> datetime:
        self._chaos.transient("bus.renew", _delivery(message))
        return self._inner.renew_lock(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)  # declarations, peeking: no faults


def _delivery(message: ReceivedMessage) -> str:
    return f"{message.message_id}#{message.delivery_count}"


# -- the backend ---------------------------------------------------------------------------------


class ChaosBackend:
    """The embedded backend with every store, the publisher and the bus wrapped."""

    def __init__(self, inner: EmbeddedBackend, chaos: Chaos) -> None:
        self.inner = inner
        self.chaos = chaos
        self._bus: ChaosBus | None = None
        self._lock = threading.Lock()

    def stores(self, database: str) -> ServiceStores:
        stores = self.inner.stores(database)
        if not isinstance(stores.events, SqliteEventStore) or stores.leases is None:
            raise TypeError("chaos mode wraps the embedded stores only")
        events = ChaosEventStore(stores.events, self.chaos)
        return replace(stores, events=events, feed=events,
                       views=ChaosViewStore(stores.views, self.chaos),
                       dead_letters=ChaosDeadLetterStore(stores.dead_letters, self.chaos),
                       leases=ChaosLeaseStore(stores.leases, self.chaos))

    def personal_data(self, database: str, container: str) -> PersonalDataStore:
        # Not faulted: nothing asynchronous depends on it, and its erasure has tests of its own.
        return self.inner.personal_data(database, container)

    def publisher(self) -> MessagePublisher:
        return ChaosPublisher(self.inner.publisher(), self.chaos)

    @property
    def bus(self) -> ChaosBus:
        with self._lock:
            if self._bus is None:
                self._bus = ChaosBus(self.inner.bus, self.chaos)
            return self._bus

    def inbox(self, entity_path: str, max_lock_renewal: float) -> ChaosBus:
        return self.bus  # the embedded bus is shared by every worker

    def dead_letter_queues(self) -> DeadLetterQueues:
        return self.inner.dead_letter_queues()  # the operator's: not faulted

    def close(self) -> None:
        self.inner.close()
