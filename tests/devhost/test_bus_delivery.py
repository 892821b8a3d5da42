"""Bus functions as the Service Bus extension runs them: as many at once as host.json allows,
and the lock renewed while one runs, so a slow acquirer is never called twice for one message."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost import bus as devhost_bus
from devhost.bus import BusOptions, BusWorker
from devhost.indexing import BusSpec
from domain.payments import CompletePayment, FailPayment, acquirer_decision
from eventstore.embedded.bus import EmbeddedBus
from eventstore.ports import OutboundMessage
from functions import payments
from tests.e2e.localhost import poll
from tests.functions.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]


class SlowAcquirer:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def authorize(self, payment_id: str, amount: int, currency: str
                  ) -> CompletePayment | FailPayment:
        with self._lock:
            self.calls.append(payment_id)
        time.sleep(self.seconds)  # the acquirer's latency, longer than the message lock
        return acquirer_decision(payment_id, amount, 100_000)


@pytest.fixture(autouse=True)
def quick_receive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devhost_bus, "RECEIVE_WAIT_SECONDS", 0.05)


def run_slow_authorization(app: Harness, renewal: float) -> SlowAcquirer:
    acquirer = SlowAcquirer(seconds=1.5)
    app.start(acquirer=acquirer)
    queue = app.authorizations_queue()
    app.bus().declare_queue(queue, lock_duration=0.4)  # far shorter than the acquirer
    put = app.http(payments.put_payment, "PUT", "/payments/pay-s",
                   {"referenceId": "o-s", "amount": 100, "currency": "EUR"},
                   route_params={"paymentId": "pay-s"})
    assert put.status == 201
    app.http(payments.authorize_payment, "POST", "/payments/pay-s/authorize",
             route_params={"paymentId": "pay-s"})
    app.pump(payments.payments_publisher, "payments")  # the AuthorizePayment command
    stop = threading.Event()
    spec = BusSpec(name="payments_acquirer", call=payments.payments_acquirer, arg_name="message",
                   raw={}, entity_path=queue)
    options = BusOptions(max_concurrent_calls=2, max_auto_lock_renewal=renewal)
    workers = [BusWorker(spec, app.bus(), stop, i, options) for i in range(2)]
    for worker in workers:
        worker.start()
    try:
        def settled() -> bool:
            status = app.http(payments.get_payment, "GET", "/payments/pay-s",
                              route_params={"paymentId": "pay-s"}).json["status"]
            return status == "Completed" and not app.bus().receive(queue, timeout=0)

        poll(settled, 20, "the payment to be completed and the queue to be empty")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
    return acquirer


def test_a_slow_acquirer_is_called_once_while_its_lock_is_renewed(embedded_app: Harness) -> None:
    assert run_slow_authorization(embedded_app, renewal=300.0).calls == ["pay-s"]


def test_without_renewal_the_expired_lock_redelivers_and_the_acquirer_runs_twice(
        embedded_app: Harness) -> None:
    """The control: what renewal prevents does happen without it."""
    assert run_slow_authorization(embedded_app, renewal=0.0).calls == ["pay-s", "pay-s"]


def test_concurrency_per_function_comes_from_host_json() -> None:
    host_json = json.loads((ROOT / "host.json").read_text())
    options = BusOptions.from_host_json(host_json)
    assert options.max_concurrent_calls == host_json["extensions"]["serviceBus"][
        "maxConcurrentCalls"] == 16
    assert BusOptions.from_host_json({"extensions": {"serviceBus": {
        "maxConcurrentCalls": 3, "maxAutoLockRenewalDuration": "00:00:30"}}}) == BusOptions(3, 30)


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[EmbeddedBus]:
    bus = EmbeddedBus(tmp_path / "bus.db")
    bus.declare_queue("work", max_delivery_count=2)
    yield bus
    bus.close()


def test_messages_run_as_many_at_once_as_there_are_workers(queue: EmbeddedBus) -> None:
    # Each handler waits for all eight to be inside at once: workers that ran one at a time
    # would break the barrier (its timeout) instead of passing it, however slow the machine.
    together = threading.Barrier(8, timeout=10)
    passed: list[int] = []
    lock = threading.Lock()

    def handler(message: object) -> None:
        together.wait()
        with lock:
            passed.append(1)

    queue.send([OutboundMessage("work", f"m{n}", "Work", {}, "c") for n in range(8)])
    stop = threading.Event()
    spec = BusSpec(name="work", call=handler, arg_name="message", raw={}, entity_path="work")
    workers = [BusWorker(spec, queue, stop, i) for i in range(8)]
    for worker in workers:
        worker.start()
    # Counted, not probed with receive(): a probe would lock a message the workers then miss.
    poll(lambda: len(passed) == 8 or together.broken, 20, "all messages done")
    stop.set()
    for worker in workers:
        worker.join(timeout=5)
    assert not together.broken and len(passed) == 8


def test_a_message_dead_lettered_after_its_last_delivery_is_logged(
        queue: EmbeddedBus, caplog: pytest.LogCaptureFixture) -> None:
    def failing(message: object) -> None:
        raise ValueError("poison")

    queue.send([OutboundMessage("work", "bad-1", "Work", {}, "c")])
    stop = threading.Event()
    spec = BusSpec(name="work", call=failing, arg_name="message", raw={}, entity_path="work")
    worker = BusWorker(spec, queue, stop, 0)
    with caplog.at_level(logging.WARNING):
        worker.start()
        poll(lambda: queue.peek_dead_letters("work"), 10, "the message to be dead-lettered")
        stop.set()
        worker.join(timeout=5)
    warnings = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert warnings and "bad-1" in warnings[0] and "MaxDeliveryCountExceeded" in warnings[0]
