"""The local host's Service Bus inbox over the real SDK against the test broker: peek-lock
receiving, complete, abandon (redelivered, delivery count up), and the lock kept while a slow
function runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from eventstore.adapters.servicebus import ServiceBusConnection, ServiceBusPublisher
from eventstore.adapters.servicebus.receiver import ServiceBusInbox
from eventstore.ports import InboundMessage, OutboundMessage
from tests.support.amqp_broker import AmqpTestBroker

pytestmark = pytest.mark.servicebus


@pytest.fixture(scope="module")
def broker() -> Iterator[AmqpTestBroker]:
    with AmqpTestBroker() as running:
        yield running


@pytest.fixture
def connection(broker: AmqpTestBroker) -> ServiceBusConnection:
    return ServiceBusConnection.from_settings({"SERVICEBUS": broker.connection_string})


def publish(connection: ServiceBusConnection, destination: str, message_id: str) -> None:
    publisher = ServiceBusPublisher.from_settings(connection)
    try:
        publisher.publish([OutboundMessage(destination, message_id, "PaymentCompleted",
                                           {"paymentId": "p"}, "corr-1",
                                           {"contractVersion": 1})])
    finally:
        publisher.close()


def receive_one(inbox: ServiceBusInbox, path: str, timeout: float = 10.0) -> InboundMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = inbox.receive(path, max_messages=1, timeout=1.0)
        if received:
            return received[0]
    raise AssertionError(f"nothing received from {path} within {timeout}s")


def test_a_message_arrives_as_the_function_host_would_hand_it_over(
        broker: AmqpTestBroker, connection: ServiceBusConnection) -> None:
    queue = f"q-{uuid.uuid4().hex[:6]}"
    broker.declare_queue(queue)
    publish(connection, queue, "payment-p:3")
    inbox = ServiceBusInbox(connection, queue)
    try:
        message = receive_one(inbox, queue)
        assert (message.message_id, message.subject, message.correlation_id) == (
            "payment-p:3", "PaymentCompleted", "corr-1")
        assert message.body == b'{"paymentId":"p"}'
        assert message.application_properties["contractVersion"] == 1
        assert message.delivery_count == 1
        inbox.complete(message)
        broker.wait_for_counts(queue, lambda c: c.active == 0 and c.locked == 0)
    finally:
        inbox.close()


def test_an_abandoned_message_comes_again_with_a_higher_delivery_count(
        broker: AmqpTestBroker, connection: ServiceBusConnection) -> None:
    topic = f"t-{uuid.uuid4().hex[:6]}"
    broker.declare_topic(topic)
    subscription = broker.declare_subscription(topic, "orders")
    publish(connection, topic, "m-1")
    inbox = ServiceBusInbox(connection, subscription)
    try:
        first = receive_one(inbox, subscription)
        inbox.abandon(first)
        again = receive_one(inbox, subscription)
        assert again.message_id == "m-1" and again.delivery_count == 2
        inbox.complete(again)
    finally:
        inbox.close()


def test_the_lock_is_renewed_while_a_slow_function_runs(
        broker: AmqpTestBroker, connection: ServiceBusConnection) -> None:
    queue = f"slow-{uuid.uuid4().hex[:6]}"
    broker.declare_queue(queue, lock_duration=1.0)
    publish(connection, queue, "slow-1")
    inbox = ServiceBusInbox(connection, queue, max_lock_renewal=30)
    try:
        message = receive_one(inbox, queue)
        time.sleep(3.0)  # the function's own work, three lock durations long
        assert broker.counts(queue).locked == 1  # still ours: never redelivered meanwhile
        inbox.complete(message)
        broker.wait_for_counts(queue, lambda c: c.active == 0 and c.locked == 0)
    finally:
        inbox.close()
