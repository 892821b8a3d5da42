"""The lease-based change-feed processor: fair shares, delivery per range with checkpoints only
after success and only by the owner, retries, takeover of a dead instance's ranges, a lost lease
stopping its range, release on shutdown, and nothing skipped when the lease store misbehaves.

It runs on the embedded store's partitioned feed and lease table (the contract suite checks those
separately), with leases of about a second so that takeovers happen within the tests' deadlines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from eventstore.changefeed import (
    ChangeFeedProcessor,
    LeaseEvent,
    ProcessorOptions,
    plan_acquisitions,
)
from eventstore.commit import Commit, JsonDict
from eventstore.embedded.store import EmbeddedDatabase
from eventstore.errors import ConcurrencyError, TransientError
from eventstore.ports import FeedRange, Lease, LeaseStore
from tests.contract.conftest import make_commit, new_stream
from tests.e2e.localhost import poll

PREFIX = "projector-v1"
DEADLINE = 15.0
FAST = ProcessorOptions(max_items=5, lease_duration=1.0, renew_interval=0.25,
                        acquire_interval=0.1, poll_interval=0.05)


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    poll(condition, timeout, what, interval=0.01)


@dataclass
class Recorder:
    """A batch handler that records what it got, and what the lease said while it ran."""

    leases: LeaseStore
    fail_first: int = 0
    batches: list[tuple[str, list[str], str | None]] = field(default_factory=list)
    calls: int = 0
    gate: threading.Event | None = None  # when set, handlers wait for it
    entered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, feed_range: FeedRange, documents: list[JsonDict]) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(DEADLINE)
        with self.lock:
            self.calls += 1
            if self.calls <= self.fail_first:
                raise TransientError("the handler failed")
            lease = self.leases.read_lease(PREFIX, feed_range.id)
            self.batches.append((feed_range.id, [str(d["id"]) for d in documents],
                                 lease.continuation if lease else None))

    def delivered(self) -> list[str]:
        with self.lock:
            return [doc_id for _, ids, _ in self.batches for doc_id in ids]


@dataclass
class Events:
    seen: list[LeaseEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: LeaseEvent) -> None:
        with self.lock:
            self.seen.append(event)

    def kinds(self, instance: str) -> list[tuple[str, str, str | None]]:
        with self.lock:
            return [(e.kind, e.range_id, e.other) for e in self.seen if e.instance == instance]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[EmbeddedDatabase]:
    db = EmbeddedDatabase(tmp_path / "orders.db", feed_ranges=4)
    yield db
    db.close()


@pytest.fixture
def running() -> Iterator[list[ChangeFeedProcessor]]:
    """Processors a test started; stopped at the end whatever happened."""
    started: list[ChangeFeedProcessor] = []
    yield started
    for processor in started:
        processor.stop(timeout=5)


def processor(database: EmbeddedDatabase, handler: Callable[[FeedRange, list[JsonDict]], None],
              instance: str, running: list[ChangeFeedProcessor], *,
              leases: LeaseStore | None = None, events: Events | None = None,
              retry: object = None, options: ProcessorOptions = FAST) -> ChangeFeedProcessor:
    started = ChangeFeedProcessor(PREFIX, database.events, leases or database.leases, handler,
                                  instance_id=instance, options=options,
                                  retry=retry,  # type: ignore[arg-type]
                                  on_lease=events)
    started.start()
    running.append(started)
    return started


def append_streams(database: EmbeddedDatabase, streams: int, versions: int) -> list[Commit]:
    appended = []
    names = [new_stream() for _ in range(streams)]
    for version in range(1, versions + 1):
        for name in names:
            commit = make_commit(name, version)
            database.events.append(commit)
            appended.append(commit)
    return appended


def append_stream_in_range(database: EmbeddedDatabase, range_id: str) -> list[Commit]:
    """One commit on a new stream that the store places in ``range_id``."""
    while database.events.feed_range_of(name := new_stream()).id != range_id:
        pass
    commit = make_commit(name, 1)
    database.events.append(commit)
    return [commit]


def per_stream(ids: list[str]) -> dict[str, list[int]]:
    streams: dict[str, list[int]] = {}
    for doc_id in ids:
        stream, _, version = doc_id.rpartition(":")
        streams.setdefault(stream, []).append(int(version))
    return streams


@dataclass(frozen=True)
class Policy:
    retries: int
    delay: float = 0.01

    def allows(self, retry: int) -> bool:
        return self.retries < 0 or retry <= self.retries

    def delay_before(self, retry: int) -> float:
        return self.delay


# -- fair shares (pure) --------------------------------------------------------------------------


def lease(range_id: str, owner: str | None = None, expires_at: float = 0.0) -> Lease:
    return Lease(PREFIX, range_id, owner=owner, expires_at=expires_at, etag=f"e{range_id}")


NOW = 1000.0
LIVE = NOW + 60


def test_a_lone_instance_takes_every_free_lease() -> None:
    leases = [lease(str(i)) for i in range(4)]
    assert [x.range_id for x in plan_acquisitions(leases, "a", set(), NOW)] == ["0", "1", "2", "3"]


def test_a_newcomer_takes_one_lease_per_cycle_from_the_busiest_until_shares_are_equal() -> None:
    leases = [lease(str(i), "a", LIVE) for i in range(4)]

    first = plan_acquisitions(leases, "b", set(), NOW)
    assert len(first) == 1 and first[0].owner == "a"
    leases = [replace(x, owner="b") if x.range_id == first[0].range_id else x for x in leases]
    second = plan_acquisitions(leases, "b", {first[0].range_id}, NOW)
    assert len(second) == 1 and second[0].owner == "a"
    leases = [replace(x, owner="b") if x.range_id == second[0].range_id else x for x in leases]
    assert plan_acquisitions(leases, "b", {first[0].range_id, second[0].range_id}, NOW) == []
    assert plan_acquisitions(leases, "a", {x.range_id for x in leases if x.owner == "a"},
                             NOW) == []


def test_an_odd_split_settles_without_flapping() -> None:
    # 5 ranges, 2 instances: 3 and 2. Neither takes from the other any more.
    leases = [lease(str(i), "a" if i < 3 else "b", LIVE) for i in range(5)]
    assert plan_acquisitions(leases, "b", {"3", "4"}, NOW) == []
    assert plan_acquisitions(leases, "a", {"0", "1", "2"}, NOW) == []
    # 4 ranges, 3 instances: 2, 1, 1 is fair (a share is rounded up).
    leases = [lease("0", "a", LIVE), lease("1", "a", LIVE), lease("2", "b", LIVE),
              lease("3", "c", LIVE)]
    assert plan_acquisitions(leases, "c", {"3"}, NOW) == []


def test_expired_and_free_leases_come_before_taking_from_anyone() -> None:
    leases = [lease("0", "a", LIVE), lease("1", "a", LIVE), lease("2", "dead", NOW - 1),
              lease("3")]
    # a's two live leases and the two available ones: b's share is 2, the free one first.
    assert [x.range_id for x in plan_acquisitions(leases, "b", set(), NOW)] == ["3", "2"]


def test_a_lease_that_still_names_this_instance_is_taken_back_first() -> None:
    leases = [lease("0", "a", LIVE), lease("1", "a", LIVE)]
    assert [x.range_id for x in plan_acquisitions(leases, "a", {"0"}, NOW)] == ["1"]


def test_timings_that_would_let_leases_expire_are_refused() -> None:
    with pytest.raises(ValueError, match="renew_interval"):
        ProcessorOptions(lease_duration=10, renew_interval=10)
    with pytest.raises(ValueError, match="max_items"):
        ProcessorOptions(max_items=0)
    scaled = ProcessorOptions.scaled(60)
    assert (scaled.renew_interval, scaled.acquire_interval) == (17.0, 13.0)


# -- one instance --------------------------------------------------------------------------------


def test_every_commit_is_delivered_once_in_stream_order_and_checkpointed_after_its_batch(
    database: EmbeddedDatabase, running: list[ChangeFeedProcessor],
) -> None:
    appended = append_streams(database, streams=6, versions=4)
    recorder = Recorder(database.leases)
    processor(database, recorder, "a", running)

    wait_until(lambda: len(recorder.delivered()) == len(appended), "every commit")
    assert sorted(recorder.delivered()) == sorted(c.id for c in appended)
    assert all(versions == [1, 2, 3, 4] for versions in per_stream(recorder.delivered()).values())
    # While a batch ran, its range's lease still held the position before it.
    positions: dict[str, str | None] = {}
    for range_id, _, continuation_during in recorder.batches:
        assert continuation_during == positions.get(range_id)
        positions[range_id] = database.events.read_range(
            FeedRange(range_id), continuation_during, FAST.max_items).checkpoint
    def checkpointed() -> bool:
        stored = {x.range_id: x.continuation for x in database.leases.list_leases(PREFIX)}
        return all(stored.get(r.id) == positions.get(r.id) for r in database.events.feed_ranges())

    wait_until(checkpointed, "every range's checkpoint after its last batch")


def test_a_failing_batch_is_retried_per_policy_and_the_checkpoint_waits(
    database: EmbeddedDatabase, running: list[ChangeFeedProcessor],
) -> None:
    stream = new_stream()
    database.events.append(make_commit(stream, 1))
    recorder = Recorder(database.leases, fail_first=3)
    processor(database, recorder, "a", running, retry=Policy(retries=5))

    wait_until(lambda: recorder.delivered() == [f"{stream}:1"], "the retried batch")
    assert recorder.calls == 4
    assert recorder.batches[0][2] is None  # not checkpointed before it succeeded


def test_when_retries_are_exhausted_the_range_moves_on(
    database: EmbeddedDatabase, running: list[ChangeFeedProcessor],
) -> None:
    stream = new_stream()
    database.events.append(make_commit(stream, 1))
    recorder = Recorder(database.leases, fail_first=3)
    processor(database, recorder, "a", running, retry=Policy(retries=2))
    wait_until(lambda: recorder.calls == 3, "the first attempt and its two retries")
    database.events.append(make_commit(stream, 2))

    wait_until(lambda: recorder.delivered() == [f"{stream}:2"], "the next batch")
    assert recorder.calls == 4  # 1 + 2 retries for the first, then the second


def test_a_clean_stop_releases_the_leases_and_the_next_instance_resumes_there(
    database: EmbeddedDatabase, running: list[ChangeFeedProcessor],
) -> None:
    first_batch = append_streams(database, streams=4, versions=2)
    recorder = Recorder(database.leases)
    events = Events()
    first = processor(database, recorder, "a", running, events=events)
    wait_until(lambda: len(first.owned_ranges()) == 4, "a to own every range")
    wait_until(lambda: len(recorder.delivered()) == len(first_batch), "the first commits")
    wait_until(lambda: all(x.continuation for x in database.leases.list_leases(PREFIX)
                           if database.events.read_range(FeedRange(x.range_id), None, 1).documents),
               "the checkpoints")

    first.stop()

    stored = database.leases.list_leases(PREFIX)
    assert len(stored) == 4 and all(x.owner is None for x in stored)
    assert sorted(k for k, _, _ in events.kinds("a")) == ["acquired"] * 4 + ["released"] * 4
    later = append_streams(database, streams=2, versions=1)
    second = Recorder(database.leases)
    processor(database, second, "b", running)
    wait_until(lambda: len(second.delivered()) == len(later), "the later commits")
    assert sorted(second.delivered()) == sorted(c.id for c in later)  # nothing again


# -- several instances ---------------------------------------------------------------------------


def test_two_instances_split_the_ranges_evenly_and_share_the_work(
    database: EmbeddedDatabase, running: list[ChangeFeedProcessor],
) -> None:
    recorder = Recorder(database.leases)
    events = Events()
    a = processor(database, recorder, "a", running, events=events)
    wait_until(lambda: len(a.owned_ranges()) == 4, "a to own every range")
    b = processor(database, recorder, "b", running, events=events)

    wait_until(lambda: len(a.owned_ranges()) == 2 and len(b.owned_ranges()) == 2, "2 and 2")
    assert set(a.owned_ranges()).isdisjoint(b.owned_ranges())
    assert [k for k, _, _ in events.kinds("b")] == ["rebalanced", "rebalanced"]
    assert sorted(k for k, _, _ in events.kinds("a")) == ["acquired"] * 4 + ["lost"] * 2
    appended = append_streams(database, streams=16, versions=3)
    # Random ids can miss a range (about 4 % of runs with 16): give each range one of its own.
    for feed_range in ("0", "1", "2", "3"):
        appended += append_stream_in_range(database, feed_range)
    wait_until(lambda: set(recorder.delivered()) == {c.id for c in appended}, "every commit")
    delivered_by_range = {range_id for range_id, _, _ in recorder.batches}
    assert delivered_by_range == {"0", "1", "2", "3"}
    assert all(v == sorted(v) for v in per_stream(recorder.delivered()).values())


def test_a_dead_instances_ranges_are_taken_over_once_its_leases_expire(
    database: EmbeddedDatabase, running: list[ChangeFeedProcessor],
) -> None:
    recorder = Recorder(database.leases)
    events = Events()
    a = processor(database, recorder, "a", running, events=events)
    wait_until(lambda: len(a.owned_ranges()) == 4, "a to own every range")
    b = processor(database, recorder, "b", running, events=events)
    wait_until(lambda: len(b.owned_ranges()) == 2, "b to own its share")

    a.stop(release=False)  # as if killed: its leases stay until they expire
    killed_at = time.monotonic()
    appended = append_streams(database, streams=12, versions=2)

    wait_until(lambda: len(b.owned_ranges()) == 4, "b to take over a's ranges")
    took_over_after = time.monotonic() - killed_at
    assert FAST.lease_duration * 0.5 < took_over_after < FAST.lease_duration + 5
    assert sorted(other or "" for kind, _, other in events.kinds("b") if kind == "taken over"
                  ) == ["a", "a"]
    wait_until(lambda: set(recorder.delivered()) >= {c.id for c in appended}, "every commit")


def test_a_lost_lease_stops_its_range_and_the_old_owner_never_checkpoints_it(
    database: EmbeddedDatabase, running: list[ChangeFeedProcessor],
) -> None:
    stream = new_stream()
    home = database.events.feed_range_of(stream)
    database.events.append(make_commit(stream, 1))
    gate = threading.Event()
    recorder = Recorder(database.leases, gate=gate)
    events = Events()
    a = processor(database, recorder, "a", running, events=events)
    wait_until(lambda: home.id in a.owned_ranges(), "a to own the stream's range")
    assert recorder.entered.wait(DEADLINE), "a never ran its handler"

    # Another instance takes the lease while a's batch runs.
    current = database.leases.read_lease(PREFIX, home.id)
    assert current is not None
    database.leases.replace_lease(replace(current, owner="intruder",
                                          expires_at=time.time() + 3600))
    gate.set()

    wait_until(lambda: ("lost", home.id, "intruder") in events.kinds("a"), "a to notice")
    assert home.id not in a.owned_ranges()
    stored = database.leases.read_lease(PREFIX, home.id)
    assert stored is not None and stored.owner == "intruder"
    assert stored.continuation is None  # a's checkpoint was refused
    database.events.append(make_commit(stream, 2))
    later = new_stream()
    database.events.append(make_commit(later, 1))
    if database.events.feed_range_of(later) != home:
        wait_until(lambda: f"{later}:1" in recorder.delivered(), "a's other ranges go on")
    assert f"{stream}:2" not in recorder.delivered()  # a stopped reading the lost range


class FlakyLeases:
    """A lease store whose every third write fails, half of them after landing."""

    def __init__(self, inner: LeaseStore) -> None:
        self._inner = inner
        self._writes = 0
        self._lock = threading.Lock()
        self.failures = 0

    def _fails(self) -> tuple[bool, bool]:
        with self._lock:
            self._writes += 1
            fail = self._writes % 3 == 0
            self.failures += fail
            return fail, self._writes % 2 == 0

    def list_leases(self, prefix: str) -> list[Lease]:
        return self._inner.list_leases(prefix)

    def read_lease(self, prefix: str, range_id: str) -> Lease | None:
        return self._inner.read_lease(prefix, range_id)

    def create_lease(self, prefix: str, range_id: str) -> Lease | None:
        return self._inner.create_lease(prefix, range_id)

    def replace_lease(self, lease: Lease) -> Lease:
        fail, landed = self._fails()
        if fail and not landed:
            raise TransientError("lease write timed out")
        stored = self._inner.replace_lease(lease)
        if fail:
            raise TransientError("lease write timed out after landing")
        return stored


def test_failing_lease_writes_redeliver_but_never_skip(
    database: EmbeddedDatabase, running: list[ChangeFeedProcessor],
) -> None:
    flaky = FlakyLeases(database.leases)
    recorder = Recorder(database.leases)
    processor(database, recorder, "a", running, leases=flaky)
    appended = append_streams(database, streams=10, versions=5)

    wait_until(lambda: set(recorder.delivered()) == {c.id for c in appended}, "every commit")
    wait_until(lambda: sum(1 for x in database.leases.list_leases(PREFIX)
                           if not database.events.read_range(FeedRange(x.range_id),
                                                             x.continuation, 1).documents) == 4,
               "every range checkpointed at its end")
    assert flaky.failures > 0
    for versions in per_stream(recorder.delivered()).values():
        # At least once: a version may come again, but never before an earlier one.
        assert list(dict.fromkeys(versions)) == [1, 2, 3, 4, 5]


def test_stopping_mid_retry_leaves_the_batch_for_the_next_owner(
    database: EmbeddedDatabase, running: list[ChangeFeedProcessor],
) -> None:
    stream = new_stream()
    database.events.append(make_commit(stream, 1))
    failing = Recorder(database.leases, fail_first=1_000_000)
    a = processor(database, failing, "a", running, retry=Policy(retries=-1, delay=0.05))
    wait_until(lambda: failing.calls >= 3, "a few retries")
    a.stop()

    recorder = Recorder(database.leases)
    processor(database, recorder, "b", running)
    wait_until(lambda: recorder.delivered() == [f"{stream}:1"], "the batch at the next owner")


def test_a_write_that_conflicts_for_another_reason_is_not_taken_for_ownership(
    database: EmbeddedDatabase,
) -> None:
    """The lease store's contract: a stale ETag always raises, so the processor's conflict
    handling (re-read; still ours? adopt: lost) has a reliable signal."""
    created = database.leases.create_lease(PREFIX, "0")
    assert created is not None
    database.leases.replace_lease(replace(created, owner="a", expires_at=1.0))
    with pytest.raises(ConcurrencyError):
        database.leases.replace_lease(replace(created, owner="a", expires_at=2.0))
