"""The local host's triggers: a change-feed function run through the lease-based processor
(its spec's batch size and retry policy, DocumentList batches, lease lines) and the bus worker
(peek-lock, abandon, dead-letter). The processor itself is tested in
tests/kernel/test_change_feed_processor.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage

from devhost import bus as devhost_bus
from devhost.bus import BusWorker
from devhost.feed import feed_processor
from devhost.indexing import BusSpec, FeedSpec, RetryPolicy
from devhost.invocations import flush_lines
from eventstore.changefeed import ProcessorOptions
from eventstore.commit import Commit, EventRecord
from eventstore.embedded.bus import MAX_DELIVERY_COUNT_EXCEEDED, EmbeddedBus
from eventstore.embedded.store import EmbeddedDatabase
from eventstore.ports import OutboundMessage

CONSUMER = "test-projector-v1"
DEADLINE = 5.0


def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.005)


def commit(stream: str, version: int) -> Commit:
    return Commit(stream_id=stream, stream_type="order",
                  events=(EventRecord(version, f"e-{stream}-{version}", "Happened", 1,
                                      "2024-01-01T00:00:00.000000Z", {"n": version}),),
                  correlation_id="corr", causation_id="cause",
                  committed_at="2024-01-01T00:00:00.000000Z")


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


def halt(thread: threading.Thread, stop: threading.Event) -> None:
    stop.set()
    thread.join(timeout=DEADLINE)
    assert not thread.is_alive()


# -- the change-feed function through the processor --------------------------------------------


@dataclass
class FeedFunction:
    """A change-feed function that records its batches, failing the first ``failures`` calls."""

    failures: int = 0
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, documents: func.DocumentList) -> None:
        assert isinstance(documents, func.DocumentList)
        assert all(isinstance(d, func.Document) for d in documents)
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                raise RuntimeError("the function failed")
            self.batches.append([d.to_dict() for d in documents])

    def delivered(self) -> int:
        with self.lock:
            return sum(len(batch) for batch in self.batches)


def test_the_function_gets_document_lists_of_its_spec_and_its_retry_policy(
    database: EmbeddedDatabase, capsys: pytest.CaptureFixture[str],
) -> None:
    store = database.events
    commits = [commit("order-a", version) for version in (1, 2, 3)]
    for appended in commits:
        store.append(appended)
    function = FeedFunction(failures=2)
    processor = feed_processor(feed_spec(function, max_items=2,
                                         retry=RetryPolicy("fixed_delay", 5, delay=0.01)),
                               store, database.leases, instance_id="host-a",
                               options=ProcessorOptions.scaled(2.0))
    processor.start()
    try:
        wait_until(lambda: function.delivered() == 3)
    finally:
        processor.stop()

    assert function.calls == 4  # two failures, retried per the policy, then two batches
    assert [len(batch) for batch in function.batches] == [2, 1]  # maxItemsPerInvocation
    assert [d for batch in function.batches for d in batch] == [c.to_document() for c in commits]
    home = store.feed_range_of("order-a")
    lease = database.leases.read_lease(CONSUMER, home.id)
    assert lease is not None and lease.owner is None  # released on stop
    assert lease.continuation == store.read_range(home, None, 10).checkpoint
    flush_lines()  # the lines are written by their own thread
    printed = capsys.readouterr().out
    assert f"Lease 'test_projector' range {home.id}/4 acquired by host-a" in printed
    assert f"Lease 'test_projector' range {home.id}/4 released by host-a (stopping)" in printed


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
