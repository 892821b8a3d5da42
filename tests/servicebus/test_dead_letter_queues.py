"""The DeadLetterQueues port on both brokers the app uses: the embedded bus and Service Bus (the
real SDK against the test broker). Listing takes nothing away; settling removes a message only
when the handler returned, and leaves it (and every other) when the handler raised."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient

from eventstore.adapters.servicebus import ServiceBusConnection, ServiceBusPublisher
from eventstore.adapters.servicebus.deadletters import ServiceBusDeadLetterQueues
from eventstore.embedded.bus import EmbeddedBus, EmbeddedBusPublisher, EmbeddedDeadLetterQueues
from eventstore.ports import DeadLetterQueues, OutboundMessage, QueuedDeadLetter
from tests.support.amqp_broker import AmqpTestBroker

DeadLetterOne = Callable[[str, str], None]  # (queue, reason): dead-letter the oldest message


class Broker:
    def __init__(self, queues: DeadLetterQueues, declare: Callable[[str], None],
                 send: Callable[[str, str], None], dead_letter: DeadLetterOne) -> None:
        self.queues, self.declare, self.send, self.dead_letter = queues, declare, send, dead_letter


def outbound(queue: str, message_id: str) -> OutboundMessage:
    return OutboundMessage(queue, message_id, "AuthorizePayment", {"paymentId": message_id},
                           f"corr-{message_id}", {"contractVersion": 1})


@contextmanager
def embedded(tmp_path: Path) -> Iterator[Broker]:
    bus = EmbeddedBus(tmp_path / "bus.db")

    def dead_letter(queue: str, reason: str) -> None:
        (message,) = bus.receive(queue)
        bus.dead_letter(message, reason, f"{reason} (details)")

    try:
        yield Broker(EmbeddedDeadLetterQueues(bus), bus.declare_queue,
                     lambda q, m: EmbeddedBusPublisher(bus).publish([outbound(q, m)]),
                     dead_letter)
    finally:
        bus.close()


@contextmanager
def servicebus(tmp_path: Path) -> Iterator[Broker]:
    with AmqpTestBroker() as broker:
        connection = ServiceBusConnection.from_settings(
            {"SERVICEBUS": broker.connection_string})
        publisher = ServiceBusPublisher.from_settings(connection)
        client = ServiceBusClient.from_connection_string(broker.connection_string)

        def dead_letter(queue: str, reason: str) -> None:
            with client.get_queue_receiver(queue, prefetch_count=0) as receiver:
                (message,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
                receiver.dead_letter_message(message, reason=reason,
                                             error_description=f"{reason} (details)")

        queues = ServiceBusDeadLetterQueues(connection)
        try:
            yield Broker(queues, broker.declare_queue,
                         lambda q, m: publisher.publish([outbound(q, m)]), dead_letter)
        finally:
            queues.close()
            client.close()
            publisher.close()


@pytest.fixture(params=[pytest.param(embedded, id="embedded"),
                        pytest.param(servicebus, id="servicebus",
                                     marks=pytest.mark.servicebus)])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    with request.param(tmp_path) as opened:
        yield opened


def filled(broker: Broker, *ids: str) -> str:
    queue = f"q-{uuid.uuid4().hex[:6]}"
    broker.declare(queue)
    for message_id in ids:
        broker.send(queue, message_id)
        broker.dead_letter(queue, f"poison {message_id}")
    return queue


def test_dead_letters_are_listed_with_their_reason_and_stay(broker: Broker) -> None:
    queue = filled(broker, "payment-a:2", "payment-b:2")
    for _ in range(2):  # listing twice: nothing was taken
        listed = broker.queues.peek_dead_letters(queue)
        assert [(m.message_id, m.subject, m.reason) for m in listed] == [
            ("payment-a:2", "AuthorizePayment", "poison payment-a:2"),
            ("payment-b:2", "AuthorizePayment", "poison payment-b:2")]
    first = listed[0]
    assert first.description == "poison payment-a:2 (details)"
    assert first.correlation_id == "corr-payment-a:2"
    assert first.application_properties["contractVersion"] == 1
    assert b"payment-a:2" in first.body


def test_settling_removes_only_what_the_handler_took(broker: Broker) -> None:
    queue = filled(broker, "payment-a:2", "payment-b:2")
    first, second = broker.queues.peek_dead_letters(queue)
    seen: list[QueuedDeadLetter] = []
    assert broker.queues.settle_dead_letter(queue, second.sequence_number, seen.append)
    assert [m.message_id for m in seen] == ["payment-b:2"]
    assert [m.message_id for m in broker.queues.peek_dead_letters(queue)] == ["payment-a:2"]

    def refuse(_message: QueuedDeadLetter) -> None:
        raise RuntimeError("still poison")

    with pytest.raises(RuntimeError, match="still poison"):
        broker.queues.settle_dead_letter(queue, first.sequence_number, refuse)
    assert [m.message_id for m in broker.queues.peek_dead_letters(queue)] == ["payment-a:2"]
    assert broker.queues.settle_dead_letter(queue, 10**9, seen.append) is False
    assert [m.message_id for m in broker.queues.peek_dead_letters(queue)] == ["payment-a:2"]
