"""The embedded message bus behaves like Azure Service Bus where the app depends on it."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventstore.embedded.bus import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    BusClosedError,
    EmbeddedBus,
    EmbeddedBusPublisher,
    EntityNotFoundError,
    MessageLockLostError,
    ReceivedMessage,
    close_all,
    open_embedded_bus,
    subscription_path,
)
from eventstore.ports import MessagePublisher, OutboundMessage

START = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def msg(
    destination: str, message_id: str, body: dict[str, object] | None = None, subject: str = "Test"
) -> OutboundMessage:
    return OutboundMessage(
        destination=destination,
        message_id=message_id,
        subject=subject,
        body=body if body is not None else {"id": message_id},
        correlation_id=f"corr-{message_id}",
    )


def ids(messages: list[ReceivedMessage]) -> list[str]:
    return [m.message_id for m in messages]


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.001)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bus.db"


@pytest.fixture
def bus(db: Path, clock: FakeClock) -> Iterator[EmbeddedBus]:
    with EmbeddedBus(db, clock=clock) as b:
        yield b


def test_message_fields_round_trip(bus: EmbeddedBus) -> None:
    bus.declare_queue("q")
    sent = OutboundMessage(
        destination="q",
        message_id="s-1:3",
        subject="PaymentCompleted",
        body={"paymentId": "p-1", "amount": "12.50", "nested": {"ü": [1, 2]}},
        correlation_id="c-9",
        application_properties={"contractVersion": 1, "source": "payments"},
    )
    bus.send([sent])

    [got] = bus.receive("q")

    assert got.message_id == "s-1:3"
    assert got.subject == "PaymentCompleted"
    assert got.body == sent.body
    assert got.correlation_id == "c-9"
    assert got.application_properties == {"contractVersion": 1, "source": "payments"}
    assert got.delivery_count == 1
    assert got.enqueued_time == datetime.fromtimestamp(START, tz=UTC)
    assert got.locked_until == datetime.fromtimestamp(START + 30.0, tz=UTC)
    assert got.entity_path == "q"
    assert got.sequence_number > 0
    assert got.lock_token
    assert got.dead_letter_reason is None


def test_duplicate_message_id_dropped_within_window_and_accepted_after(
    bus: EmbeddedBus, clock: FakeClock
) -> None:
    bus.declare_queue("q", duplicate_window=60.0)
    bus.send([msg("q", "m-1", {"n": 1})])
    first = bus.receive("q")
    bus.complete(first[0])

    clock.advance(59.0)
    bus.send([msg("q", "m-1", {"n": 2})])
    assert bus.receive("q") == []

    clock.advance(1.0)
    bus.send([msg("q", "m-1", {"n": 3})])
    [again] = bus.receive("q")
    assert again.body == {"n": 3}


def test_duplicates_dropped_inside_one_call_and_detected_per_destination(bus: EmbeddedBus) -> None:
    bus.declare_queue("a")
    bus.declare_queue("b")
    bus.send([msg("a", "m-1", {"n": 1}), msg("a", "m-1", {"n": 2}), msg("b", "m-1", {"n": 3})])

    assert [m.body for m in bus.receive("a", max_messages=10)] == [{"n": 1}]
    assert [m.body for m in bus.receive("b", max_messages=10)] == [{"n": 3}]


def test_topic_fans_out_to_every_subscription(bus: EmbeddedBus) -> None:
    bus.declare_topic("payments")
    bus.declare_subscription("payments", "orders")
    bus.declare_subscription("payments", "audit")
    bus.send([msg("payments", "p-1:2"), msg("payments", "p-1:2"), msg("payments", "p-2:2")])

    orders = bus.receive(subscription_path("payments", "orders"), max_messages=10)
    audit = bus.receive("payments/Subscriptions/audit", max_messages=10)

    assert ids(orders) == ["p-1:2", "p-2:2"]
    assert ids(audit) == ["p-1:2", "p-2:2"]
    assert orders[0].entity_path == "payments/Subscriptions/orders"
    # Settling one subscription's copy leaves the other's alone.
    for m in orders:
        bus.complete(m)
    for m in audit:
        bus.abandon(m)
    assert ids(bus.receive("payments/Subscriptions/audit", max_messages=10)) == ["p-1:2", "p-2:2"]
    assert bus.receive("payments/Subscriptions/orders") == []


def test_subscription_gets_only_messages_sent_after_it_exists(bus: EmbeddedBus) -> None:
    bus.declare_topic("t")
    bus.send([msg("t", "before")])
    bus.declare_subscription("t", "s")
    bus.send([msg("t", "after")])

    assert ids(bus.receive("t/Subscriptions/s", max_messages=10)) == ["after"]


def test_abandon_redelivers_at_once_with_a_higher_delivery_count(bus: EmbeddedBus) -> None:
    bus.declare_queue("q")
    bus.send([msg("q", "m-1"), msg("q", "m-2")])

    [first] = bus.receive("q")
    bus.abandon(first)
    [again] = bus.receive("q")

    assert again.message_id == "m-1"
    assert again.delivery_count == 2
    assert again.lock_token != first.lock_token
    with pytest.raises(MessageLockLostError):
        bus.complete(first)  # the old lock token is gone
    bus.complete(again)
    [second] = bus.receive("q")
    assert (second.message_id, second.delivery_count) == ("m-2", 1)


def test_dead_letter_after_max_delivery_count(bus: EmbeddedBus) -> None:
    bus.declare_queue("q", max_delivery_count=3)
    bus.send([msg("q", "poison"), msg("q", "fine")])

    counts = []
    for _ in range(3):
        [m] = bus.receive("q")
        assert m.message_id == "poison"
        counts.append(m.delivery_count)
        bus.abandon(m)

    assert counts == [1, 2, 3]
    # The last abandon moved it at once: the dead-letter queue itself can deliver it.
    [from_dlq] = bus.receive("q/$DeadLetterQueue")
    assert (from_dlq.message_id, from_dlq.dead_letter_reason) == (
        "poison",
        MAX_DELIVERY_COUNT_EXCEEDED,
    )
    bus.abandon(from_dlq)  # no max delivery count in the dead-letter queue
    [dead] = bus.peek_dead_letters("q")
    assert dead.message_id == "poison"
    assert dead.reason == MAX_DELIVERY_COUNT_EXCEEDED
    assert dead.description == "Message could not be consumed after 3 delivery attempts."
    assert dead.delivery_count == 4  # 3 from the queue + 1 from the dead-letter queue
    assert dead.entity_path == "q"
    assert ids(bus.receive("q", max_messages=10)) == ["fine"]


def test_lock_expiry_on_last_delivery_dead_letters(bus: EmbeddedBus, clock: FakeClock) -> None:
    bus.declare_topic("t")
    bus.declare_subscription("t", "s", max_delivery_count=2, lock_duration=10.0)
    bus.send([msg("t", "poison"), msg("t", "fine")])
    path = "t/Subscriptions/s"

    assert ids(bus.receive(path)) == ["poison"]
    clock.advance(10.0)
    [m] = bus.receive(path)
    assert (m.message_id, m.delivery_count) == ("poison", 2)
    clock.advance(10.0)

    # Visible in the dead-letter queue without another receive, as the broker does it.
    assert [(d.message_id, d.reason) for d in bus.peek_dead_letters(path)] == [
        ("poison", MAX_DELIVERY_COUNT_EXCEEDED)
    ]
    assert ids(bus.receive(path, max_messages=10)) == ["fine"]


def test_receive_skips_exhausted_messages_and_still_fills_the_batch(
    bus: EmbeddedBus, clock: FakeClock
) -> None:
    bus.declare_queue("q", max_delivery_count=1, lock_duration=5.0)
    bus.send([msg("q", f"m-{i}") for i in range(4)])
    assert ids(bus.receive("q", max_messages=2)) == ["m-0", "m-1"]
    clock.advance(5.0)  # both locks expire on their only allowed delivery

    assert ids(bus.receive("q", max_messages=2)) == ["m-2", "m-3"]
    assert [d.message_id for d in bus.peek_dead_letters("q")] == ["m-0", "m-1"]


def test_lock_expiry_redelivers(bus: EmbeddedBus, clock: FakeClock) -> None:
    bus.declare_queue("q", lock_duration=30.0)
    bus.send([msg("q", "m-1")])

    [first] = bus.receive("q")
    clock.advance(29.9)
    assert bus.receive("q") == []
    clock.advance(0.1)
    [again] = bus.receive("q")

    assert again.message_id == "m-1"
    assert again.delivery_count == 2
    with pytest.raises(MessageLockLostError):
        bus.complete(first)
    bus.complete(again)
    assert bus.receive("q") == []


def test_complete_with_an_expired_lock_raises(bus: EmbeddedBus, clock: FakeClock) -> None:
    bus.declare_queue("q", lock_duration=5.0)
    bus.send([msg("q", "m-1")])
    [m] = bus.receive("q")

    clock.advance(5.0)
    with pytest.raises(MessageLockLostError, match="m-1"):
        bus.complete(m)
    with pytest.raises(MessageLockLostError):
        bus.abandon(m)
    with pytest.raises(MessageLockLostError):
        bus.dead_letter(m, "r", "d")
    # The message was not removed: it is delivered again.
    assert ids(bus.receive("q")) == ["m-1"]


def test_settling_twice_raises(bus: EmbeddedBus) -> None:
    bus.declare_queue("q")
    bus.send([msg("q", "m-1")])
    [m] = bus.receive("q")
    bus.complete(m)

    with pytest.raises(MessageLockLostError):
        bus.complete(m)


def test_renew_lock_extends_it(bus: EmbeddedBus, clock: FakeClock) -> None:
    bus.declare_queue("q", lock_duration=10.0)
    bus.send([msg("q", "m-1")])
    [m] = bus.receive("q")

    clock.advance(8.0)
    assert bus.renew_lock(m) == datetime.fromtimestamp(START + 18.0, tz=UTC)
    clock.advance(8.0)
    assert bus.receive("q") == []
    bus.complete(m)

    clock.advance(100.0)
    with pytest.raises(MessageLockLostError):
        bus.renew_lock(m)


def test_dead_letter_with_reason_and_receive_from_the_dead_letter_queue(bus: EmbeddedBus) -> None:
    bus.declare_topic("t")
    bus.declare_subscription("t", "s")
    bus.send([msg("t", "bad"), msg("t", "good")])
    [bad] = bus.receive("t/Subscriptions/s")

    bus.dead_letter(bad, "ContractViolation", "missing field amount")

    [dead] = bus.peek_dead_letters("t/Subscriptions/s")
    assert (dead.message_id, dead.reason, dead.description) == (
        "bad",
        "ContractViolation",
        "missing field amount",
    )
    assert ids(bus.receive("t/Subscriptions/s", max_messages=10)) == ["good"]
    [from_dlq] = bus.receive("t/Subscriptions/s/$deadletterqueue")
    assert from_dlq.message_id == "bad"
    assert from_dlq.dead_letter_reason == "ContractViolation"
    assert from_dlq.entity_path == "t/Subscriptions/s/$DeadLetterQueue"
    bus.complete(from_dlq)
    assert bus.peek_dead_letters("t/Subscriptions/s") == []


def test_messages_and_dead_letters_survive_closing_and_reopening(
    db: Path, clock: FakeClock
) -> None:
    with EmbeddedBus(db, clock=clock) as first:
        first.declare_queue("q", duplicate_window=600.0)
        first.send([msg("q", "m-1"), msg("q", "m-2"), msg("q", "m-3")])
        [m1] = first.receive("q")
        first.dead_letter(m1, "Broken", "on purpose")

    assert first.closed
    with pytest.raises(BusClosedError):
        first.receive("q")

    with EmbeddedBus(db, clock=clock) as second:
        second.declare_queue("q")  # idempotent on an existing file
        second.send([msg("q", "m-2")])  # still a duplicate after the restart
        assert ids(second.receive("q", max_messages=10)) == ["m-2", "m-3"]
        assert [(d.message_id, d.reason) for d in second.peek_dead_letters("q")] == [
            ("m-1", "Broken")
        ]


def test_refuses_a_file_with_another_schema_version(db: Path) -> None:
    EmbeddedBus(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE bus_meta SET value = 99 WHERE name = 'schema_version'")
    conn.close()

    with pytest.raises(RuntimeError, match="schema version 99"):
        EmbeddedBus(db)


def test_fifo_order_across_sends_and_batches(bus: EmbeddedBus) -> None:
    bus.declare_queue("q")
    expected = [f"m-{i:03}" for i in range(25)]
    for start in range(0, 25, 4):
        bus.send([msg("q", mid) for mid in expected[start : start + 4]])

    got: list[ReceivedMessage] = []
    while batch := bus.receive("q", max_messages=7):
        got.extend(batch)

    assert ids(got) == expected
    seqs = [m.sequence_number for m in got]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


def test_undeclared_entities_raise_errors_naming_them(bus: EmbeddedBus) -> None:
    bus.declare_queue("known")

    with pytest.raises(EntityNotFoundError, match="'nowhere'"):
        bus.send([msg("known", "m-1"), msg("nowhere", "m-2")])
    with pytest.raises(EntityNotFoundError, match="'missing'"):
        bus.receive("missing")
    with pytest.raises(EntityNotFoundError, match="'ghost'"):
        bus.declare_subscription("ghost", "s")
    with pytest.raises(EntityNotFoundError, match="'known/Subscriptions/s'"):
        bus.receive("known/Subscriptions/s")
    # The failed call stored nothing, not even the message for the known queue.
    assert bus.receive("known") == []


def test_declarations_are_idempotent_and_validated(bus: EmbeddedBus) -> None:
    bus.declare_topic("t")
    bus.declare_topic("t")
    bus.declare_subscription("t", "s")
    bus.declare_subscription("t", "s", max_delivery_count=2)
    bus.declare_queue("q")
    bus.declare_queue("q")

    with pytest.raises(ValueError, match="already exists as a topic"):
        bus.declare_queue("t")
    with pytest.raises(ValueError, match="invalid queue name"):
        bus.declare_queue("a/b")
    with pytest.raises(ValueError, match="is a topic"):
        bus.receive("t")
    with pytest.raises(ValueError, match="invalid entity path"):
        bus.receive("t/s")
    # The redeclared max_delivery_count applies.
    bus.send([msg("t", "m-1")])
    for _ in range(2):
        [m] = bus.receive("t/Subscriptions/s")
        bus.abandon(m)
    assert [d.message_id for d in bus.peek_dead_letters("t/Subscriptions/s")] == ["m-1"]


def test_blocking_receive_is_woken_by_a_send_from_another_thread(db: Path) -> None:
    # A poll interval far beyond the assertion: only the in-process wake-up can be in time.
    with EmbeddedBus(db, poll_interval=60.0) as bus:
        bus.declare_queue("q")
        result: list[ReceivedMessage] = []
        returned_at: list[float] = []

        def receiver() -> None:
            result.extend(bus.receive("q", timeout=30.0))
            returned_at.append(time.monotonic())

        thread = threading.Thread(target=receiver)
        thread.start()
        wait_until(lambda: bus._waiting_receivers == 1)
        sent_at = time.monotonic()
        bus.send([msg("q", "wake-up")])
        thread.join(timeout=10.0)

        assert not thread.is_alive()
        assert ids(result) == ["wake-up"]
        assert returned_at[0] - sent_at < 2.0


def test_blocking_receive_polls_for_sends_from_another_connection(db: Path) -> None:
    # Two instances share nothing but the file, like two processes.
    with EmbeddedBus(db) as receiving, EmbeddedBus(db) as sending:
        receiving.declare_queue("q")
        result: list[ReceivedMessage] = []
        thread = threading.Thread(target=lambda: result.extend(receiving.receive("q", timeout=30)))
        thread.start()
        wait_until(lambda: receiving._waiting_receivers == 1)
        sent_at = time.monotonic()
        sending.send([msg("q", "from-elsewhere")])
        thread.join(timeout=10.0)

        assert ids(result) == ["from-elsewhere"]
        assert time.monotonic() - sent_at < 2.0


def test_blocking_receive_returns_empty_after_its_timeout(bus: EmbeddedBus) -> None:
    bus.declare_queue("q")
    started = time.monotonic()

    assert bus.receive("q", timeout=0.3) == []
    assert time.monotonic() - started >= 0.3


def test_close_releases_a_blocked_receiver(db: Path) -> None:
    bus = EmbeddedBus(db, poll_interval=60.0)
    bus.declare_queue("q")
    result: list[list[ReceivedMessage]] = []
    thread = threading.Thread(target=lambda: result.append(bus.receive("q", timeout=30.0)))
    thread.start()
    wait_until(lambda: bus._waiting_receivers == 1)

    bus.close()
    thread.join(timeout=10.0)

    assert not thread.is_alive()
    assert result == [[]]


def _drain(buses: list[EmbeddedBus], threads_per_bus: int) -> tuple[list[str], list[BaseException]]:
    completed: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(bus: EmbeddedBus) -> None:
        try:
            while batch := bus.receive("q", max_messages=5, timeout=0.2):
                for m in batch:
                    assert m.delivery_count == 1  # never handed out twice
                    bus.complete(m)
                    with lock:
                        completed.append(m.message_id)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(bus,))
        for bus in buses
        for _ in range(threads_per_bus)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60.0)
    assert not any(t.is_alive() for t in threads)
    return completed, errors


def test_concurrent_receivers_never_get_the_same_locked_message(bus: EmbeddedBus) -> None:
    bus.declare_queue("q")
    expected = [f"m-{i:03}" for i in range(200)]
    bus.send([msg("q", mid) for mid in expected])

    completed, errors = _drain([bus], threads_per_bus=4)

    assert errors == []
    assert sorted(completed) == expected  # each exactly once


def test_concurrent_receivers_on_separate_connections(db: Path) -> None:
    with EmbeddedBus(db) as a, EmbeddedBus(db) as b:
        a.declare_queue("q")
        expected = [f"m-{i:03}" for i in range(200)]
        a.send([msg("q", mid) for mid in expected[:100]])
        b.send([msg("q", mid) for mid in expected[100:]])

        completed, errors = _drain([a, b], threads_per_bus=2)

        assert errors == []
        assert sorted(completed) == expected


def _drain_in_child(path: str, results: multiprocessing.Queue[list[tuple[str, int]]]) -> None:
    with EmbeddedBus(path) as bus:
        done: list[tuple[str, int]] = []
        while batch := bus.receive("q", max_messages=3, timeout=0.5):
            for m in batch:
                bus.complete(m)
                done.append((m.message_id, m.delivery_count))
        results.put(done)


def test_receivers_in_several_processes_share_the_file(db: Path) -> None:
    with EmbeddedBus(db) as bus:
        bus.declare_queue("q")
        expected = [f"m-{i:03}" for i in range(150)]
        bus.send([msg("q", mid) for mid in expected])

    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[list[tuple[str, int]]] = ctx.Queue()
    children = [ctx.Process(target=_drain_in_child, args=(str(db), results)) for _ in range(3)]
    for child in children:
        child.start()
    per_child = [results.get(timeout=60.0) for _ in children]
    for child in children:
        child.join(timeout=30.0)
        assert child.exitcode == 0

    completed = [entry for done in per_child for entry in done]
    assert sorted(completed) == [(mid, 1) for mid in expected]  # each once, never redelivered


def test_publisher_implements_the_port_over_a_shared_bus(tmp_path: Path) -> None:
    try:
        shared = open_embedded_bus(tmp_path / "data" / "bus.db")
        assert open_embedded_bus(tmp_path / "data" / ".." / "data" / "bus.db") is shared
        shared.declare_topic("orders")
        shared.declare_subscription("orders", "downstream")

        publisher: MessagePublisher = EmbeddedBusPublisher(shared)
        publisher.publish([msg("orders", "o-1:4", subject="OrderPaid")])
        publisher.publish([msg("orders", "o-1:4", subject="OrderPaid")])  # a retried batch
        publisher.close()

        assert not shared.closed  # the shared bus outlives its publishers
        received = shared.receive("orders/Subscriptions/downstream", max_messages=10)
        assert [(m.message_id, m.subject) for m in received] == [("o-1:4", "OrderPaid")]
    finally:
        close_all()

    assert shared.closed
    reopened = open_embedded_bus(tmp_path / "data" / "bus.db")
    try:
        assert reopened is not shared
    finally:
        close_all()


def test_publisher_can_own_its_bus(db: Path) -> None:
    bus = EmbeddedBus(db)
    publisher = EmbeddedBusPublisher(bus, close_bus=True)
    publisher.close()

    assert bus.closed
