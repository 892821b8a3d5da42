"""Receiving with the real azure-servicebus SDK from the in-process test broker
(tests/support/amqp_broker/): peek-lock settlement, lock expiry and renewal, max delivery count,
dead-letter queues, duplicate detection, topic fan-out and competing receivers.

Only the SDK's public API talks to the broker; the broker's own state (``counts``,
``dead_lettered``) is read to check what the SDK cannot show. Lock durations are 1-2 s so
expiry tests stay short; every wait polls against a deadline."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusReceiver,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import MessageLockLostError, MessagingEntityNotFoundError

from tests.support.amqp_broker import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    AmqpTestBroker,
    MessageCounts,
)

pytestmark = pytest.mark.servicebus

SHORT_LOCK = 1.0  # seconds: long enough for a settle round trip, short enough to wait out
RENEWED_LOCK = 2.0  # for renewal tests: several renewal round trips fit in one lock


@pytest.fixture(scope="module")
def broker() -> Iterator[AmqpTestBroker]:
    with AmqpTestBroker() as running:
        yield running


@pytest.fixture(autouse=True)
def _broker_stays_healthy(broker: AmqpTestBroker) -> Iterator[None]:
    yield
    assert broker.errors == []
    broker.clear()  # drops entities and any injected failure a test did not consume


@pytest.fixture
def client(broker: AmqpTestBroker) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(broker.connection_string) as created:
        yield created


@pytest.fixture
def other_client(broker: AmqpTestBroker) -> Iterator[ServiceBusClient]:
    """A second, independent connection (a competing consumer elsewhere)."""
    with ServiceBusClient.from_connection_string(broker.connection_string) as created:
        yield created


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def send(client: ServiceBusClient, queue: str, *message_ids: str) -> None:
    with client.get_queue_sender(queue) as sender:
        sender.send_messages([ServiceBusMessage(f"body of {i}", message_id=i) for i in message_ids])


def receive(
    receiver: ServiceBusReceiver, count: int, timeout: float = 10.0
) -> list[ServiceBusReceivedMessage]:
    """Receive until ``count`` messages arrived (the SDK may return a batch early)."""
    deadline = time.monotonic() + timeout
    got: list[ServiceBusReceivedMessage] = []
    while (missing := count - len(got)) > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"received {len(got)} of {count} messages in {timeout}s")
        got += receiver.receive_messages(max_message_count=missing, max_wait_time=remaining)
    return got


def ids(messages: list[ServiceBusReceivedMessage]) -> list[str | None]:
    return [m.message_id for m in messages]


def test_receive_honours_max_message_count_and_complete_removes_the_messages(
    broker: AmqpTestBroker, client: ServiceBusClient
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue)
    send(client, queue, "m1", "m2", "m3", "m4", "m5")

    with client.get_queue_receiver(queue) as receiver:
        first = receiver.receive_messages(max_message_count=3, max_wait_time=5)
        assert ids(first) == ["m1", "m2", "m3"]
        counts = broker.counts(queue)
        # The SDK may have credited (and so locked) one more than it returned: it tops up its
        # link credit without counting a delivery still in flight from its first flow.
        assert counts.active + counts.locked == 5
        assert counts.locked >= 3
        now = datetime.now(UTC)
        for position, message in enumerate(first, start=1):
            assert str(message) == f"body of m{position}"
            assert message.sequence_number == position
            assert message.delivery_count == 0
            assert message.enqueued_time_utc is not None
            assert now - timedelta(seconds=10) < message.enqueued_time_utc <= now
            assert message.locked_until_utc is not None
            # The default lock: 30 s from when the broker handed the message out.
            assert timedelta(seconds=25) < message.locked_until_utc - now <= timedelta(seconds=30)
        assert len({m.lock_token for m in first}) == 3
        for message in first:
            receiver.complete_message(message)

        rest = receive(receiver, 2)
        assert ids(rest) == ["m4", "m5"]
        for message in rest:
            receiver.complete_message(message)
        assert receiver.receive_messages(max_message_count=5, max_wait_time=1) == []

    assert broker.counts(queue) == MessageCounts(active=0, locked=0, dead_lettered=0, completed=5)


def test_an_abandoned_message_is_redelivered_with_its_delivery_count_raised(
    broker: AmqpTestBroker, client: ServiceBusClient
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue)
    send(client, queue, "m1", "m2")

    with client.get_queue_receiver(queue) as receiver:
        [first] = receive(receiver, 1)
        receiver.abandon_message(first)
        # Abandoned, it goes back to its place in the queue: ahead of m2.
        [again] = receive(receiver, 1)
        assert (again.message_id, again.sequence_number) == ("m1", first.sequence_number)
        assert (first.delivery_count, again.delivery_count) == (0, 1)
        assert again.lock_token != first.lock_token
        receiver.complete_message(again)
        [second] = receive(receiver, 1)
        assert (second.message_id, second.delivery_count) == ("m2", 0)
        receiver.complete_message(second)

    assert broker.counts(queue).completed == 2


def test_a_dead_lettered_message_lands_in_the_dead_letter_queue_with_its_reason(
    broker: AmqpTestBroker, client: ServiceBusClient
) -> None:
    queue = unique("payments")
    broker.declare_queue(queue)
    send(client, queue, "poison")

    with client.get_queue_receiver(queue) as receiver:
        [message] = receive(receiver, 1)
        receiver.dead_letter_message(
            message, reason="ContractViolation", error_description="amount is missing"
        )
        assert receiver.receive_messages(max_wait_time=1) == []
    assert broker.counts(queue) == MessageCounts(active=0, locked=0, dead_lettered=1, completed=0)
    [parked] = broker.dead_lettered(queue)
    assert (parked.message.message_id, parked.reason, parked.description) == (
        "poison",
        "ContractViolation",
        "amount is missing",
    )

    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = receive(dlq, 1)
        assert dead.message_id == "poison"
        assert str(dead) == "body of poison"
        assert dead.dead_letter_reason == "ContractViolation"
        assert dead.dead_letter_error_description == "amount is missing"
        assert dead.sequence_number == message.sequence_number
        dlq.complete_message(dead)
    assert broker.counts(queue).dead_lettered == 0


def test_an_expired_lock_makes_the_message_receivable_again_and_the_old_lock_lost(
    broker: AmqpTestBroker, client: ServiceBusClient
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue, lock_duration=SHORT_LOCK)
    send(client, queue, "m1")

    with client.get_queue_receiver(queue) as receiver:
        [first] = receive(receiver, 1)
        started = time.monotonic()
        [again] = receive(receiver, 1)  # only once the lock has run out
        assert time.monotonic() - started > SHORT_LOCK / 2
        assert (again.message_id, again.delivery_count) == ("m1", 1)
        # The first copy's lock is gone: the SDK refuses to settle it, the broker to renew it.
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(first)
        with pytest.raises(MessageLockLostError):
            receiver.renew_message_lock(first)
        receiver.complete_message(again)

    assert broker.counts(queue) == MessageCounts(active=0, locked=0, dead_lettered=0, completed=1)


@pytest.mark.parametrize("failure", ["abandon", "lock expiry"])
def test_after_max_delivery_count_failures_the_message_is_dead_lettered(
    broker: AmqpTestBroker, client: ServiceBusClient, failure: str
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue, lock_duration=SHORT_LOCK, max_delivery_count=3)
    send(client, queue, "m1")

    with client.get_queue_receiver(queue) as receiver:
        for attempt in range(3):
            [message] = receive(receiver, 1)
            assert message.delivery_count == attempt
            if failure == "abandon":
                receiver.abandon_message(message)
        broker.wait_for_counts(queue, lambda c: c.dead_lettered == 1)
        assert receiver.receive_messages(max_wait_time=1) == []

    assert broker.counts(queue) == MessageCounts(active=0, locked=0, dead_lettered=1, completed=0)
    with client.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        [dead] = receive(dlq, 1)
        assert dead.message_id == "m1"
        assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED
        assert dead.dead_letter_error_description == (
            "Message could not be consumed after 3 delivery attempts."
        )
        dlq.complete_message(dead)


def test_renewing_the_lock_keeps_the_message_past_its_lock_duration(
    broker: AmqpTestBroker, client: ServiceBusClient, other_client: ServiceBusClient
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue, lock_duration=RENEWED_LOCK)

    with (
        client.get_queue_receiver(queue) as holder,
        other_client.get_queue_receiver(queue) as competitor,
    ):
        send(client, queue, "m1")
        [message] = receive(holder, 1)
        first_lock = message.locked_until_utc
        assert first_lock is not None
        assert holder.renew_message_lock(message) > first_lock
        # The competitor's first call also opens its link, out of the same wait.
        assert competitor.receive_messages(max_wait_time=1) == []
        held_until = time.monotonic() + 2 * RENEWED_LOCK
        while time.monotonic() < held_until:
            renewed = holder.renew_message_lock(message)
            assert renewed > first_lock
            assert message.locked_until_utc == renewed
            assert competitor.receive_messages(max_wait_time=RENEWED_LOCK / 4) == []
        holder.complete_message(message)
        assert competitor.receive_messages(max_wait_time=1) == []

    assert broker.counts(queue) == MessageCounts(active=0, locked=0, dead_lettered=0, completed=1)


def test_auto_lock_renewer_keeps_the_message_locked_while_it_is_processed(
    broker: AmqpTestBroker, client: ServiceBusClient, other_client: ServiceBusClient
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue, lock_duration=RENEWED_LOCK)
    failures: list[BaseException | None] = []

    with (
        AutoLockRenewer(
            max_lock_renewal_duration=30, on_lock_renew_failure=lambda _, e: failures.append(e)
        ) as renewer,
        client.get_queue_receiver(queue, auto_lock_renewer=renewer) as holder,
        other_client.get_queue_receiver(queue) as competitor,
    ):
        send(client, queue, "m1")
        [message] = receive(holder, 1)  # registered with the renewer by the receiver
        first_lock = message.locked_until_utc
        assert first_lock is not None
        held_until = time.monotonic() + 2 * RENEWED_LOCK
        while time.monotonic() < held_until:  # the competitor polls while the renewer works
            assert competitor.receive_messages(max_wait_time=RENEWED_LOCK / 4) == []
        assert message.locked_until_utc is not None
        assert message.locked_until_utc > first_lock + timedelta(seconds=RENEWED_LOCK)
        holder.complete_message(message)

    assert failures == []
    assert broker.counts(queue) == MessageCounts(active=0, locked=0, dead_lettered=0, completed=1)


def test_duplicate_detection_drops_a_message_id_resent_within_the_window(
    broker: AmqpTestBroker, client: ServiceBusClient
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue, duplicate_detection_window=60)
    send(client, queue, "m1")
    send(client, queue, "m1", "m2")  # a retried send, with one new message

    with client.get_queue_receiver(queue) as receiver:
        got = receive(receiver, 2)
        assert ids(got) == ["m1", "m2"]
        for message in got:
            receiver.complete_message(message)
        assert receiver.receive_messages(max_message_count=5, max_wait_time=1) == []

    assert [m.message_id for m in broker.received(queue)] == ["m1", "m1", "m2"]  # all sent
    assert broker.counts(queue).completed == 2


def test_without_duplicate_detection_a_resent_message_id_is_delivered_twice(
    broker: AmqpTestBroker, client: ServiceBusClient
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue)
    send(client, queue, "m1")
    send(client, queue, "m1")

    with client.get_queue_receiver(queue) as receiver:
        got = receive(receiver, 2)
        assert ids(got) == ["m1", "m1"]
        for message in got:
            receiver.complete_message(message)


def test_a_topic_gives_each_subscription_its_own_copy(
    broker: AmqpTestBroker, client: ServiceBusClient
) -> None:
    topic = unique("orders")
    broker.declare_topic(topic)
    billing = broker.declare_subscription(topic, "billing")
    shipping = broker.declare_subscription(topic, "shipping")
    with client.get_topic_sender(topic) as sender:
        sender.send_messages([ServiceBusMessage("one", message_id="e1")])
        sender.send_messages([ServiceBusMessage("two", message_id="e2")])

    with client.get_subscription_receiver(topic, "billing") as receiver:
        got = receive(receiver, 2)
        assert ids(got) == ["e1", "e2"]
        receiver.complete_message(got[0])
        receiver.dead_letter_message(got[1], reason="NotForUs")
    with client.get_subscription_receiver(topic, "shipping") as receiver:
        # Untouched by what billing did with its copies.
        got_too = receive(receiver, 2)
        assert ids(got_too) == ["e1", "e2"]
        assert [m.sequence_number for m in got_too] == [m.sequence_number for m in got]
        assert [m.delivery_count for m in got_too] == [0, 0]
        for message in got_too:
            receiver.complete_message(message)
    with client.get_subscription_receiver(
        topic, "billing", sub_queue=ServiceBusSubQueue.DEAD_LETTER
    ) as dlq:
        [dead] = receive(dlq, 1)
        assert (dead.message_id, dead.dead_letter_reason) == ("e2", "NotForUs")
        dlq.complete_message(dead)

    assert broker.counts(billing) == MessageCounts(0, locked=0, dead_lettered=0, completed=1)
    assert broker.counts(shipping) == MessageCounts(0, locked=0, dead_lettered=0, completed=2)


def test_competing_receivers_never_hold_the_same_message(
    broker: AmqpTestBroker, client: ServiceBusClient, other_client: ServiceBusClient
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue)  # 30 s locks: nothing is redelivered during the test
    sent = [f"m{i:02}" for i in range(40)]
    send(client, queue, *sent)
    held: dict[str, list[ServiceBusReceivedMessage]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def consume(name: str, sb: ServiceBusClient) -> None:
        try:
            with sb.get_queue_receiver(queue) as receiver:
                deadline = time.monotonic() + 20
                # Hold every lock until all messages are held by one or the other, then settle.
                # Each stops at half, so the other must take the rest, however late it starts.
                while (time.monotonic() < deadline and len(held[name]) < 20
                       and len(held["a"]) + len(held["b"]) < 40):
                    held[name] += receiver.receive_messages(max_message_count=3, max_wait_time=1)
                for message in held[name]:
                    receiver.complete_message(message)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=consume, args=("a", client)),
        threading.Thread(target=consume, args=("b", other_client)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert held["a"] and held["b"]  # both took part
    # Each message went to exactly one of them.
    assert Counter(ids(held["a"]) + ids(held["b"])) == Counter(sent)
    assert broker.counts(queue) == MessageCounts(active=0, locked=0, dead_lettered=0, completed=40)


def test_receive_and_delete_removes_messages_as_they_are_delivered(
    broker: AmqpTestBroker, client: ServiceBusClient
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue)
    send(client, queue, "m1", "m2")

    with client.get_queue_receiver(
        queue, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
    ) as receiver:
        got = receive(receiver, 2)
        assert ids(got) == ["m1", "m2"]
        assert got[0].lock_token is None
        with pytest.raises(ValueError, match="RECEIVE_AND_DELETE"):
            receiver.complete_message(got[0])
    assert broker.counts(queue) == MessageCounts(active=0, locked=0, dead_lettered=0, completed=2)


@pytest.mark.parametrize("settlement", ["complete", "dead-letter"])
def test_a_settlement_lost_with_its_link_is_redone_through_management(
    broker: AmqpTestBroker, client: ServiceBusClient, settlement: str
) -> None:
    queue = unique("orders")
    broker.declare_queue(queue)
    send(client, queue, "m1")

    with client.get_queue_receiver(queue) as receiver:
        [message] = receive(receiver, 1)
        broker.drop_next_settlements(1)
        if settlement == "complete":
            receiver.complete_message(message)
        else:
            receiver.dead_letter_message(message, reason="Unparseable", error_description="bad")

    counts = broker.counts(queue)
    assert (counts.active, counts.locked) == (0, 0)
    if settlement == "complete":
        assert counts.completed == 1
    else:
        [parked] = broker.dead_lettered(queue)
        assert (parked.reason, parked.description) == ("Unparseable", "bad")


def test_receiving_from_an_undeclared_entity_fails_as_not_found(client: ServiceBusClient) -> None:
    with (
        client.get_queue_receiver(unique("nowhere")) as receiver,
        pytest.raises(MessagingEntityNotFoundError),
    ):
        receiver.receive_messages(max_wait_time=5)
