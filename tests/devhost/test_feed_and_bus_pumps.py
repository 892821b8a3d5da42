"""The local host's pumps: the change-feed pump (batches, checkpoints after success, retry
policy, wake-up on append) and the bus worker (peek-lock, abandon, dead-letter)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage

from devhost import bus as devhost_bus
from devhost import feed as devhost_feed
from devhost.bus import BusWorker
from devhost.feed import FeedPump
from devhost.indexing import BusSpec, FeedSpec, RetryPolicy
from eventstore.commit import Commit, EventRecord
from eventstore.embedded.bus import MAX_DELIVERY_COUNT_EXCEEDED, EmbeddedBus
from eventstore.embedded.store import EmbeddedDatabase, SqliteEventStore
from eventstore.ports import OutboundMessage

CONSUMER = "test-projector-v1"
DEADLINE = 5.0


def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.005)


def delivered_exactly(recorder: Recorder, expected: list[str]) -> bool:
    return recorder.delivered() == expected


def commit(stream: str, version: int) -> Commit:
    return Commit(stream_id=stream, stream_type="order",
                  events=(EventRecord(version, f"e-{stream}-{version}", "Happened", 1,
                                      "2024-01-01T00:00:00.000000Z", {"n": version}),),
                  correlation_id="corr", causation_id="cause",
                  committed_at="2024-01-01T00:00:00.000000Z")


@dataclass
class Recorder:
    """A change-feed function that records what it got (and the checkpoint while it ran)."""

    store: SqliteEventStore
    failures: int = 0  # fail this many invocations first
    batches: list[list[str]] = field(default_factory=list)
    checkpoints_seen: list[str | None] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, documents: func.DocumentList) -> None:
        assert isinstance(documents, func.DocumentList)
        assert all(isinstance(d, func.Document) for d in documents)
        with self.lock:
            self.calls.append(time.monotonic())
            self.checkpoints_seen.append(self.store.load_checkpoint(CONSUMER))
            if len(self.calls) <= self.failures:
                raise RuntimeError("the function failed")
            self.batches.append([d.to_dict()["id"] for d in documents])

    def delivered(self) -> list[str]:
        with self.lock:
            return [doc_id for batch in self.batches for doc_id in batch]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[EmbeddedDatabase]:
    db = EmbeddedDatabase(tmp_path / "orders.db")
    yield db
    db.close()


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def feed_spec(call: Callable[..., Any], *, max_items: int = 2,
              retry: RetryPolicy | None = None) -> FeedSpec:
    return FeedSpec(name="test_projector", call=call, arg_name="documents", raw={},
                    database="orders", container="events", lease_container="leases",
                    lease_prefix=CONSUMER, max_items=max_items, retry=retry)


def start(thread: threading.Thread) -> threading.Thread:
    thread.start()
    return thread


def halt(thread: threading.Thread, stop: threading.Event,
         wake: SqliteEventStore | None = None) -> None:
    """Stop the thread and join it. A pump idling in the store's wait only sees the stop when
    it wakes: ``wake`` appends a commit to make it do so at once."""
    stop.set()
    if wake is not None:
        wake.append(commit("wake-up", 1))
    thread.join(timeout=DEADLINE)
    assert not thread.is_alive()


@pytest.fixture(autouse=True)
def quick_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle pumps look again every 50 ms, so that stopping them is quick."""
    monkeypatch.setattr(devhost_feed, "IDLE_POLL_SECONDS", 0.05)


# -- feed pump ------------------------------------------------------------------------------------


def test_feed_pump_delivers_batches_and_checkpoints_after_success(
    database: EmbeddedDatabase, stop: threading.Event
) -> None:
    store = database.events
    for version in (1, 2, 3):
        store.append(commit("order-a", version))
    recorder = Recorder(store)
    pump = start(FeedPump(feed_spec(recorder, max_items=2), store, stop))

    wait_until(lambda: store.load_checkpoint(CONSUMER) == store.head_checkpoint())
    halt(pump, stop)
    assert recorder.batches == [["order-a:1", "order-a:2"], ["order-a:3"]]
    first_page = store.read_feed(None, 2).checkpoint
    # While a batch runs, the checkpoint is still the one before it.
    assert recorder.checkpoints_seen == [None, first_page]


def test_documents_are_the_commit_documents(
    database: EmbeddedDatabase, stop: threading.Event
) -> None:
    store = database.events
    store.append(commit("order-a", 1))
    got: list[dict[str, Any]] = []
    pump = start(FeedPump(feed_spec(lambda documents: got.extend(d.to_dict() for d in documents)),
                          store, stop))
    wait_until(lambda: store.load_checkpoint(CONSUMER) is not None)
    halt(pump, stop)
    assert got == [commit("order-a", 1).to_document()]


def test_a_failing_batch_is_retried_per_policy_without_moving_the_checkpoint(
    database: EmbeddedDatabase, stop: threading.Event
) -> None:
    store = database.events
    store.append(commit("order-a", 1))
    store.append(commit("order-a", 2))
    recorder = Recorder(store, failures=3)
    policy = RetryPolicy("fixed_delay", 5, delay=0.05)
    pump = start(FeedPump(feed_spec(recorder, retry=policy), store, stop))

    wait_until(lambda: store.load_checkpoint(CONSUMER) is not None)
    halt(pump, stop)
    assert len(recorder.calls) == 4
    assert recorder.checkpoints_seen == [None, None, None, None]
    assert recorder.batches == [["order-a:1", "order-a:2"]]
    gaps = [later - earlier for earlier, later in zip(recorder.calls, recorder.calls[1:],
                                                       strict=False)]
    assert all(gap >= 0.04 for gap in gaps), gaps
    assert store.load_checkpoint(CONSUMER) == store.head_checkpoint()


def test_when_retries_are_exhausted_the_pump_moves_on(
    database: EmbeddedDatabase, stop: threading.Event
) -> None:
    """As the Cosmos DB trigger does: the batch is given up (loudly) after its retries."""
    store = database.events
    store.append(commit("order-a", 1))
    recorder = Recorder(store, failures=1_000)
    pump = start(FeedPump(feed_spec(recorder, retry=RetryPolicy("fixed_delay", 2, delay=0.01)),
                          store, stop))
    wait_until(lambda: store.load_checkpoint(CONSUMER) is not None)
    halt(pump, stop)
    assert len(recorder.calls) == 3  # the first attempt and two retries


def test_a_policy_of_minus_one_retries_until_the_host_stops(
    database: EmbeddedDatabase, stop: threading.Event
) -> None:
    store = database.events
    store.append(commit("order-a", 1))
    recorder = Recorder(store, failures=1_000)
    policy = RetryPolicy("exponential_backoff", -1, minimum=0.001, maximum=0.005)
    pump = start(FeedPump(feed_spec(recorder, retry=policy), store, stop))
    wait_until(lambda: len(recorder.calls) >= 20)
    halt(pump, stop)  # stopping interrupts the retries; the batch is not checkpointed
    assert store.load_checkpoint(CONSUMER) is None


def test_a_new_pump_resumes_from_the_saved_checkpoint(
    database: EmbeddedDatabase, stop: threading.Event
) -> None:
    store = database.events
    store.append(commit("order-a", 1))
    store.append(commit("order-b", 1))
    first = Recorder(store)
    pump = start(FeedPump(feed_spec(first, max_items=10), store, stop))
    wait_until(lambda: store.load_checkpoint(CONSUMER) == store.head_checkpoint())
    halt(pump, stop)
    assert first.delivered() == ["order-a:1", "order-b:1"]

    store.append(commit("order-a", 2))
    store.append(commit("order-c", 1))
    restarted = threading.Event()
    second = Recorder(store)
    pump = start(FeedPump(feed_spec(second, max_items=10), store, restarted))
    try:
        wait_until(lambda: second.delivered() == ["order-a:2", "order-c:1"])
        assert store.load_checkpoint(CONSUMER) is not None
        wait_until(lambda: store.load_checkpoint(CONSUMER) == store.head_checkpoint())
    finally:
        halt(pump, restarted)
    assert second.delivered() == ["order-a:2", "order-c:1"]


def test_the_pump_wakes_promptly_on_append(
    database: EmbeddedDatabase, stop: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the wake-up the pump would only look again after this idle poll.
    monkeypatch.setattr(devhost_feed, "IDLE_POLL_SECONDS", 30.0)
    store = database.events
    recorder = Recorder(store)
    pump = start(FeedPump(feed_spec(recorder), store, stop))
    try:
        for version in (1, 2, 3):
            time.sleep(0.05)  # not a wait for the work: lets the pump go idle before appending
            store.append(commit("order-a", version))
            expected = [f"order-a:{v}" for v in range(1, version + 1)]
            # Far sooner than the 30 s idle poll: the append woke the pump.
            wait_until(partial(delivered_exactly, recorder, expected), timeout=2.0)
    finally:
        halt(pump, stop, wake=store)


def test_the_pump_sees_appends_by_another_process(
    database: EmbeddedDatabase, stop: threading.Event, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another handle of the same file (as another process has) cannot wake the pump; it must
    still see the commit within the store's poll interval, not the idle poll."""
    monkeypatch.setattr(devhost_feed, "IDLE_POLL_SECONDS", 30.0)
    store = database.events
    recorder = Recorder(store)
    pump = start(FeedPump(feed_spec(recorder), store, stop))
    other = EmbeddedDatabase(tmp_path / "orders.db")
    try:
        time.sleep(0.05)  # not a wait for the work: lets the pump go idle before appending
        other.events.append(commit("order-x", 1))
        wait_until(lambda: recorder.delivered() == ["order-x:1"], timeout=3.0)
    finally:
        other.close()
        halt(pump, stop, wake=store)


# -- bus worker -----------------------------------------------------------------------------------


class FakeClock:
    """The bus's lock clock: locks expire only when a test moves it on."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


LOCK_SECONDS = 30.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def bus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
        ) -> Iterator[EmbeddedBus]:
    monkeypatch.setattr(devhost_bus, "RECEIVE_WAIT_SECONDS", 0.05)  # quick to stop
    embedded = EmbeddedBus(tmp_path / "bus.db", clock=clock)
    embedded.declare_queue("work", max_delivery_count=3, lock_duration=LOCK_SECONDS)
    yield embedded
    embedded.close()


def assert_settled(bus: EmbeddedBus, clock: FakeClock) -> None:
    """Nothing is left on the queue: not even a message whose lock was merely left to expire."""
    clock.now += LOCK_SECONDS + 1
    assert bus.receive("work", max_messages=10, timeout=0) == []


def send(bus: EmbeddedBus, message_id: str, body: dict[str, Any]) -> None:
    bus.send([OutboundMessage(destination="work", message_id=message_id, subject="DoIt",
                              body=body, correlation_id=f"corr-{message_id}",
                              application_properties={"contractVersion": 1})])


@dataclass
class Handler:
    failures: int = 0
    received: list[ServiceBusMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, message: ServiceBusMessage) -> None:
        with self.lock:
            self.received.append(message)
            if len(self.received) <= self.failures:
                raise RuntimeError("handler failed")

    def counts(self) -> list[int | None]:
        with self.lock:
            return [m.delivery_count for m in self.received]


def bus_spec(handler: Callable[..., Any]) -> BusSpec:
    return BusSpec(name="worker", call=handler, arg_name="message", raw={}, entity_path="work")


def test_bus_worker_completes_on_success(bus: EmbeddedBus, stop: threading.Event,
                                         clock: FakeClock) -> None:
    send(bus, "m-1", {"n": 1})
    handler = Handler()
    worker = start(BusWorker(bus_spec(handler), bus, stop, 0))
    wait_until(lambda: len(handler.received) == 1)
    halt(worker, stop)

    message = handler.received[0]
    assert isinstance(message, ServiceBusMessage)
    assert message.message_id == "m-1" and message.subject == "DoIt"
    assert json.loads(message.get_body()) == {"n": 1}
    assert message.correlation_id == "corr-m-1" and message.delivery_count == 1
    assert message.application_properties == {"contractVersion": 1}
    assert_settled(bus, clock)  # completed, not just locked
    assert bus.peek_dead_letters("work") == []


def test_a_failing_message_is_abandoned_and_redelivered(
    bus: EmbeddedBus, stop: threading.Event, clock: FakeClock
) -> None:
    send(bus, "m-1", {"n": 1})
    handler = Handler(failures=1)
    worker = start(BusWorker(bus_spec(handler), bus, stop, 0))
    wait_until(lambda: len(handler.received) == 2)
    halt(worker, stop)
    assert handler.counts() == [1, 2]
    assert_settled(bus, clock)  # abandoned at once (no lock expiry), completed the 2nd time
    assert bus.peek_dead_letters("work") == []


def test_a_message_that_always_fails_is_dead_lettered_after_max_delivery_count(
    bus: EmbeddedBus, stop: threading.Event, clock: FakeClock
) -> None:
    send(bus, "m-1", {"n": 1})
    handler = Handler(failures=1_000)
    worker = start(BusWorker(bus_spec(handler), bus, stop, 0))
    wait_until(lambda: len(bus.peek_dead_letters("work")) == 1)
    halt(worker, stop)
    assert handler.counts() == [1, 2, 3]
    [letter] = bus.peek_dead_letters("work")
    assert letter.message_id == "m-1" and letter.reason == MAX_DELIVERY_COUNT_EXCEEDED
    assert_settled(bus, clock)


def test_bus_workers_share_a_queue_without_double_delivery(
    bus: EmbeddedBus, stop: threading.Event, clock: FakeClock
) -> None:
    for n in range(20):
        send(bus, f"m-{n}", {"n": n})
    handler = Handler()
    workers = [start(BusWorker(bus_spec(handler), bus, stop, i)) for i in range(4)]
    wait_until(lambda: len(handler.received) == 20)
    for worker in workers:
        halt(worker, stop)
    assert sorted(m.message_id for m in handler.received) == sorted(f"m-{n}" for n in range(20))
    assert set(handler.counts()) == {1}
    assert_settled(bus, clock)
