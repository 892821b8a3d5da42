"""A lease-based change-feed processor on the pull model, for any backend with a partitioned feed
(``PartitionedFeed``) and ETag-guarded leases (``LeaseStore``).

It does what the Cosmos DB trigger (and the .NET/Java change-feed processor) does for its
instances, so that several processes can share one consumer's work:

- one lease per (lease prefix, feed range), created for every range the feed has;
- each instance acquires free or expired leases up to its fair share, ``ceil(ranges / live
  instances)``, and when none is free takes one lease from the busiest instance that holds more
  than that share (one per cycle, so shares settle without flapping);
- each owned range is pumped by its own thread: a batch of raw documents, the handler with the
  function's retry policy, and only after it succeeded the checkpoint, written by the owner with
  the lease's ETag; a lease taken by another instance fails that write, and the range stops here;
- leases are renewed while the instance lives, so a killed instance's ranges are taken over once
  its leases expire; a clean shutdown releases them at once.

Delivery is at least once: a batch whose checkpoint is lost (a failed write, a takeover mid-batch)
is delivered again, to this instance or the next owner. Order holds within a range, never across
ranges, as in Cosmos DB. The kernel knows no backend: the embedded store implements the ports over
SQLite, and a Cosmos DB lease store keeps the same leases as documents in the ``leases`` container.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from eventstore.commit import JsonDict
from eventstore.errors import ConcurrencyError
from eventstore.ports import (
    FeedRange,
    Lease,
    LeaseStore,
    PartitionedFeed,
    RangeLag,
    WaitableFeed,
)

log = logging.getLogger(__name__)

BatchHandler = Callable[[FeedRange, list[JsonDict]], None]
"""Gets one range's batch of raw documents; raising means the batch failed."""


class RetryPolicy(Protocol):
    """A function's retry policy (the Functions host's ``exponential_backoff``/``fixed_delay``)."""

    def allows(self, retry: int) -> bool: ...

    def delay_before(self, retry: int) -> float: ...


class LeaseLostError(Exception):
    """Another instance owns the lease now: this one must stop processing its range."""


@dataclass(frozen=True)
class ProcessorOptions:
    """Timings of the lease protocol. The defaults are the Cosmos DB processor's (lease
    expiration 60 s, renewal every 17 s, acquisition every 13 s, feed poll delay 5 s); the local
    host uses shorter ones so that takeovers are seen within seconds."""

    max_items: int = 100
    lease_duration: float = 60.0
    renew_interval: float = 17.0
    acquire_interval: float = 13.0
    poll_interval: float = 5.0
    checkpoint_attempts: int = 3
    """Tries of one checkpoint write before the batch is given up for redelivery."""

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {self.max_items}")
        if not 0 < self.renew_interval < self.lease_duration:
            raise ValueError(f"renew_interval ({self.renew_interval}) must be > 0 and shorter "
                             f"than lease_duration ({self.lease_duration}), or leases expire "
                             "while their owner lives")
        if self.acquire_interval <= 0 or self.poll_interval <= 0:
            raise ValueError("acquire_interval and poll_interval must be > 0")
        if self.checkpoint_attempts < 1:
            raise ValueError("checkpoint_attempts must be >= 1")

    @classmethod
    def scaled(cls, lease_duration: float, max_items: int = 100) -> ProcessorOptions:
        """The Cosmos DB ratios for a lease of ``lease_duration`` seconds: renewal at 17/60 and
        acquisition at 13/60 of it, and polling an idle range at most every second."""
        return cls(max_items=max_items, lease_duration=lease_duration,
                   renew_interval=lease_duration * 17 / 60,
                   acquire_interval=lease_duration * 13 / 60,
                   poll_interval=min(1.0, lease_duration * 5 / 60))


LeaseEventKind = Literal["acquired", "taken over", "rebalanced", "lost", "released"]


@dataclass(frozen=True)
class LeaseEvent:
    """A change of ownership, as this instance saw it."""

    kind: LeaseEventKind
    processor: str  # the lease prefix
    range_id: str
    instance: str  # this instance
    other: str | None = None  # the previous owner (acquisitions) or the new one (lost)
    owned: tuple[str, ...] = ()  # the ranges this instance owns after the change


def plan_acquisitions(leases: Sequence[Lease], me: str, owned: Collection[str],
                      now: float) -> list[Lease]:
    """The leases this instance should try to take now, for an equal share of the ranges.

    Free and expired leases come first (a lease still naming this instance, from an earlier run
    with the same id, counts as free). Only when none is left does it take one lease from the
    instance with the most, and only if that instance holds more than the fair share."""
    if not leases:
        return []
    live = {lease.owner for lease in leases if lease.owner and not lease.is_available(now)}
    workers = live | {me}
    share = math.ceil(len(leases) / len(workers))
    need = share - len(owned)
    if need <= 0:
        return []
    available = [lease for lease in leases if lease.range_id not in owned
                 and (lease.is_available(now) or lease.owner == me)]
    if available:
        available.sort(key=lambda lease: (lease.owner is not None, lease.range_id))
        return available[:need]
    others = Counter(lease.owner for lease in leases
                     if lease.owner and lease.owner != me and not lease.is_available(now))
    if not others:
        return []
    busiest, count = max(others.items(), key=lambda item: (item[1], item[0]))
    if count <= share:
        return []
    # Instances balancing at once spread over the busiest one's leases instead of all racing
    # for the same one.
    candidates = sorted((lease for lease in leases if lease.owner == busiest),
                        key=lambda lease: zlib.crc32(f"{me}|{lease.range_id}".encode()))
    return candidates[:1]


class _OwnedRange:
    """A range this instance holds: its latest stored lease (every write goes through here, one
    at a time, so renewals and checkpoints of one instance never race each other)."""

    def __init__(self, processor: ChangeFeedProcessor, feed_range: FeedRange,
                 lease: Lease) -> None:
        self.processor = processor
        self.feed_range = feed_range
        self._lease = lease
        self._lock = threading.Lock()
        self.halt = threading.Event()  # set on shutdown and when the lease is lost
        self.lost_to: str | None = None
        self.thread: threading.Thread | None = None

    @property
    def lease(self) -> Lease:
        with self._lock:
            return self._lease

    @property
    def lost(self) -> bool:
        return self.lost_to is not None

    def write(self, change: Callable[[Lease], Lease]) -> Lease:
        """Apply ``change`` to the stored lease with its ETag. A conflict after which the store
        still names this instance was our own write landing unseen (a timeout after the fact):
        adopt what is stored and apply the change again. Otherwise the lease is lost."""
        store, me = self.processor.leases, self.processor.instance_id
        with self._lock:
            if self.lost:
                raise LeaseLostError(f"range {self.feed_range.id} is owned by {self.lost_to}")
            for _ in range(3):
                try:
                    self._lease = store.replace_lease(change(self._lease))
                    return self._lease
                except ConcurrencyError:
                    stored = store.read_lease(self._lease.prefix, self._lease.range_id)
                    if stored is None or stored.owner != me:
                        self.lost_to = (stored.owner if stored else None) or "(nobody)"
                        self.halt.set()
                        raise LeaseLostError(
                            f"range {self.feed_range.id} of {self._lease.prefix} is owned by "
                            f"{self.lost_to} now") from None
                    self._lease = stored
            raise ConcurrencyError(f"the lease of range {self.feed_range.id} kept changing")


class ChangeFeedProcessor:
    """One consumer (lease prefix) of a partitioned feed in this instance. ``start`` it, and
    ``stop`` it on shutdown (which releases its leases)."""

    def __init__(
        self,
        name: str,
        feed: PartitionedFeed,
        leases: LeaseStore,
        handler: BatchHandler,
        *,
        instance_id: str,
        options: ProcessorOptions | None = None,
        retry: RetryPolicy | None = None,
        on_lease: Callable[[LeaseEvent], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not name or not instance_id:
            raise ValueError("a processor needs a name (its lease prefix) and an instance id")
        self.name = name
        self.feed = feed
        # Checked once: a runtime Protocol check costs about 10 µs, once per idle wait otherwise.
        self._waitable = feed if isinstance(feed, WaitableFeed) else None
        self.leases = leases
        self.instance_id = instance_id
        self.options = options or ProcessorOptions()
        self._handler = handler
        self._retry = retry
        self._on_lease = on_lease
        self._clock = clock
        self._owned: dict[str, _OwnedRange] = {}
        self._owned_lock = threading.Lock()
        self._stopping = threading.Event()
        self._coordinator: threading.Thread | None = None
        self._ranges: dict[str, FeedRange] = {}

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._coordinator is not None:
            raise RuntimeError(f"processor {self.name} was started already")
        self._coordinator = threading.Thread(target=self._coordinate, daemon=True,
                                             name=f"leases:{self.name}")
        self._coordinator.start()

    def request_stop(self) -> None:
        """Stop acquiring and pumping, without waiting (``stop`` waits and releases)."""
        self._stopping.set()
        with self._owned_lock:
            owned = list(self._owned.values())
        for entry in owned:
            entry.halt.set()

    def stop(self, timeout: float = 30.0, *, release: bool = True) -> None:
        """Stop pumping (a batch in its handler finishes and is checkpointed), then release every
        lease so that other instances take the ranges over without waiting for expiry.
        ``release=False`` leaves the leases to expire, as a killed process would."""
        self.request_stop()
        with self._owned_lock:
            owned = list(self._owned.values())
        if self._coordinator is not None:
            self._coordinator.join(timeout)
        deadline = time.monotonic() + timeout
        for entry in owned:
            if entry.thread is not None:
                entry.thread.join(max(0.0, deadline - time.monotonic()))
        if release:
            for entry in owned:
                self._release(entry)

    def owned_ranges(self) -> list[str]:
        with self._owned_lock:
            return sorted(range_id for range_id, entry in self._owned.items() if not entry.lost)

    # -- the lease protocol ---------------------------------------------------------------------

    def _coordinate(self) -> None:
        next_renewal = next_balance = 0.0
        tick = min(self.options.renew_interval, self.options.acquire_interval) / 4
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_renewal:
                self.renew_all()
                next_renewal = now + self.options.renew_interval
            if now >= next_balance and not self._stopping.is_set():
                try:
                    self.balance()
                except Exception as error:  # the lease store failed: try again next cycle
                    log.warning("%s: acquiring leases failed: %r", self.name, error)
                next_balance = now + self.options.acquire_interval
            self._stopping.wait(tick)

    def renew_all(self) -> None:
        with self._owned_lock:
            owned = [entry for entry in self._owned.values() if not entry.lost]
        for entry in owned:
            try:
                entry.write(self._extended)
            except LeaseLostError:
                self._forget(entry)
            except Exception as error:  # transient: the next renewal may succeed in time
                log.warning("%s: renewing the lease of range %s failed: %r", self.name,
                            entry.feed_range.id, error)

    def balance(self) -> None:
        """One acquisition cycle: leases for every range, then this instance's fair share."""
        ranges = {feed_range.id: feed_range for feed_range in self.feed.feed_ranges()}
        self._ranges = ranges
        leases = {lease.range_id: lease for lease in self.leases.list_leases(self.name)}
        for range_id in ranges.keys() - leases.keys():
            created = self.leases.create_lease(self.name, range_id)
            if created is None:  # another instance created it first
                created = self.leases.read_lease(self.name, range_id)
            if created is not None:
                leases[range_id] = created
        known = [lease for range_id, lease in sorted(leases.items()) if range_id in ranges]
        with self._owned_lock:
            owned = {range_id for range_id, entry in self._owned.items() if not entry.lost}
        for lease in plan_acquisitions(known, self.instance_id, owned, self._clock()):
            if self._stopping.is_set():
                return
            self._acquire(lease, ranges[lease.range_id])

    def _acquire(self, lease: Lease, feed_range: FeedRange) -> None:
        now = self._clock()
        previous = lease.owner
        try:
            acquired = self.leases.replace_lease(
                replace(lease, owner=self.instance_id,
                        expires_at=now + self.options.lease_duration))
        except ConcurrencyError:
            return  # another instance was quicker
        except Exception as error:
            log.warning("%s: acquiring the lease of range %s failed: %r", self.name,
                        lease.range_id, error)
            return
        entry = _OwnedRange(self, feed_range, acquired)
        with self._owned_lock:
            if self._stopping.is_set():
                stopping = True
            else:
                stopping = False
                self._owned[feed_range.id] = entry
        if stopping:
            self._release(entry, announce=False)  # never announced as acquired either
            return
        if previous is None or previous == self.instance_id:
            kind: LeaseEventKind = "acquired"
        elif lease.is_available(now):
            kind = "taken over"
        else:
            kind = "rebalanced"
        self._emit(kind, feed_range.id,
                   previous if previous and previous != self.instance_id else None)
        entry.thread = threading.Thread(target=self._pump, args=(entry,), daemon=True,
                                        name=f"feed:{self.name}:{feed_range.id}")
        entry.thread.start()

    def _extended(self, lease: Lease) -> Lease:
        return replace(lease, owner=self.instance_id,
                       expires_at=self._clock() + self.options.lease_duration)

    def _forget(self, entry: _OwnedRange) -> None:
        with self._owned_lock:
            if self._owned.get(entry.feed_range.id) is not entry:
                return  # the renewal and the pump both noticed; say it once
            del self._owned[entry.feed_range.id]
        self._emit("lost", entry.feed_range.id, entry.lost_to)

    def _release(self, entry: _OwnedRange, *, announce: bool = True) -> None:
        if entry.lost:
            return
        try:
            entry.write(lambda lease: replace(lease, owner=None, expires_at=0.0))
        except LeaseLostError:
            return
        except Exception as error:  # it expires by itself
            log.warning("%s: releasing range %s failed (%r); it is free once it expires",
                        self.name, entry.feed_range.id, error)
            return
        with self._owned_lock:
            if self._owned.get(entry.feed_range.id) is entry:
                del self._owned[entry.feed_range.id]
        if announce:
            self._emit("released", entry.feed_range.id)

    def _emit(self, kind: LeaseEventKind, range_id: str, other: str | None = None) -> None:
        event = LeaseEvent(kind, self.name, range_id, self.instance_id, other,
                           tuple(self.owned_ranges()))
        if self._on_lease is not None:
            self._on_lease(event)
        else:
            log.info("%s: range %s %s by %s%s", self.name, range_id, kind, self.instance_id,
                     f" ({other})" if other else "")

    # -- pumping one range ----------------------------------------------------------------------

    def _pump(self, entry: _OwnedRange) -> None:
        continuation = entry.lease.continuation
        failures = 0
        while not entry.halt.is_set():
            try:
                page = self.feed.read_range(entry.feed_range, continuation,
                                            self.options.max_items)
                failures = 0
            except Exception as error:  # the feed failed: back off, the range stays ours
                failures += 1
                log.warning("%s: reading range %s failed (%r); retrying", self.name,
                            entry.feed_range.id, error)
                entry.halt.wait(min(10.0, 0.1 * 2 ** min(failures, 7)))
                continue
            if not page.documents:
                self._idle(entry, continuation)
                continue
            if not self._deliver(entry, page.documents):
                return  # stopped or lost mid-retry: the batch goes to the next owner
            try:
                self._checkpoint(entry, page.checkpoint)
                continuation = page.checkpoint
            except LeaseLostError:
                self._forget(entry)
                return
            except Exception as error:
                # The batch succeeded but its checkpoint did not stick: read it again from the
                # stored position (at least once; the handlers skip what they applied).
                log.warning("%s: checkpoint of range %s failed (%r); the batch will be "
                            "delivered again", self.name, entry.feed_range.id, error)
                continuation = entry.lease.continuation
        if entry.lost:
            self._forget(entry)

    def _checkpoint(self, entry: _OwnedRange, continuation: str | None) -> None:
        if continuation is None:
            return
        for attempt in range(1, self.options.checkpoint_attempts + 1):
            try:
                entry.write(lambda lease: replace(self._extended(lease),
                                                  continuation=continuation))
                return
            except LeaseLostError:
                raise
            except Exception:
                if attempt == self.options.checkpoint_attempts:
                    raise
                if entry.halt.wait(0.05 * attempt):
                    raise

    def _deliver(self, entry: _OwnedRange, documents: list[JsonDict]) -> bool:
        """Run the handler, retrying per the policy. False when stopped or lost meanwhile."""
        retry = 0
        while True:
            if entry.halt.is_set():
                return False
            try:
                self._handler(entry.feed_range, documents)
                return True
            except Exception as error:
                retry += 1
                if self._retry is None or not self._retry.allows(retry):
                    # The Cosmos DB trigger moves on when retries are exhausted; so do we, loudly.
                    log.error("%s: batch of range %s failed and its retries are exhausted; "
                              "moving on: %r", self.name, entry.feed_range.id, error)
                    return True
                delay = self._retry.delay_before(retry)
                log.warning("%s: batch of range %s failed (%r); retry %d in %.1fs", self.name,
                            entry.feed_range.id, error, retry, delay)
                if entry.halt.wait(delay):
                    return False

    def _idle(self, entry: _OwnedRange, continuation: str | None) -> None:
        if self._waitable is not None:
            try:
                # Bounded, so that a stop or a lost lease is noticed within half a second.
                self._waitable.wait_for_range(entry.feed_range, continuation,
                                              min(self.options.poll_interval, 0.5))
                return
            except Exception as error:
                log.warning("%s: waiting on range %s failed: %r", self.name,
                            entry.feed_range.id, error)
        entry.halt.wait(self.options.poll_interval)


def lag_from_leases(feed: PartitionedFeed, leases: LeaseStore, prefix: str,
                    page_size: int = 1000) -> list[RangeLag]:
    """How far the consumer with lease prefix ``prefix`` is behind, per feed range: counted by
    reading each range from its lease's continuation to the end. Exact, and it costs reads in
    proportion to the lag: an operator's tool, not a health probe to run every second."""
    by_range = {lease.range_id: lease for lease in leases.list_leases(prefix)}
    lags = []
    for feed_range in feed.feed_ranges():
        lease = by_range.get(feed_range.id)
        start = position = lease.continuation if lease else None
        commits = events = 0
        while True:
            page = feed.read_range(feed_range, position, page_size)
            if not page.documents:
                break
            commits += len(page.documents)
            events += sum(len(d["events"]) if isinstance(d.get("events"), list) else 1
                          for d in page.documents)
            position = page.checkpoint
        lags.append(RangeLag(feed_range.id, start, commits, events,
                             lease.owner if lease else None))
    return lags
