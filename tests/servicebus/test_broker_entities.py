"""The test broker's Service Bus rules (tests/support/amqp_broker/entities.py) on their own, with
an explicit clock: the edges that are slow or impossible to reach through the SDK."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.support.amqp_broker.entities import (
    MAX_DELIVERY_COUNT_EXCEEDED,
    EntityNotFoundError,
    LockLostError,
    MessageCounts,
    Namespace,
    ReceivableEntity,
    StoredMessage,
)

pytestmark = pytest.mark.servicebus


def queue(
    *,
    lock_duration: float = 30,
    max_delivery_count: int = 10,
    duplicate_detection_window: float | None = None,
) -> tuple[Namespace, ReceivableEntity]:
    namespace = Namespace()
    namespace.declare_queue(
        "q",
        lock_duration=lock_duration,
        max_delivery_count=max_delivery_count,
        duplicate_detection_window=duplicate_detection_window,
    )
    return namespace, namespace.receivable("q")


def take(entity: ReceivableEntity, now: float) -> tuple[StoredMessage, uuid.UUID, float]:
    """The next message under a peek-lock: the message, its lock token and locked-until."""
    acquired = entity.acquire(now)
    assert acquired is not None
    assert acquired.lock_token is not None and acquired.locked_until is not None
    return acquired.message, acquired.lock_token, acquired.locked_until


def test_messages_come_out_in_sequence_order_and_an_abandoned_one_goes_back_to_its_place() -> None:
    namespace, q = queue()
    for message_id in ("a", "b", "c"):
        namespace.publish("q", message_id, b"", now=0)

    (_, a_token, _), (b, _, _) = take(q, 1), take(q, 1)
    q.abandon(a_token, now=2)
    again, _, _ = take(q, 3)
    assert (again.message_id, again.sequence_number, again.delivery_count) == ("a", 1, 1)
    assert b.sequence_number == 2
    assert take(q, 3)[0].message_id == "c"
    assert q.acquire(3) is None


def test_a_release_does_not_count_as_a_delivery_attempt() -> None:
    namespace, q = queue(max_delivery_count=1)
    namespace.publish("q", "a", b"", now=0)
    for _ in range(3):
        q.abandon(take(q, 1)[1], now=1, count_attempt=False)
    assert take(q, 1)[0].delivery_count == 0
    assert q.counts().dead_lettered == 0


def test_an_expired_lock_returns_the_message_and_its_token_is_lost() -> None:
    namespace, q = queue(lock_duration=5, max_delivery_count=2)
    namespace.publish("q", "a", b"", now=0)
    _, token, locked_until = take(q, 10)
    assert locked_until == 15
    assert q.next_lock_expiry() == 15
    assert q.renew(token, now=14) == 19

    assert q.expire_locks(now=18.9) is False
    assert q.expire_locks(now=19) is True
    with pytest.raises(LockLostError):
        q.complete(token, now=19)
    with pytest.raises(LockLostError):
        q.renew(token, now=19)
    assert take(q, 20)[0].delivery_count == 1

    # Its lock expiring too reaches the max delivery count (2): dead-lettered.
    q.expire_locks(now=25)
    assert q.counts() == MessageCounts(active=0, locked=0, dead_lettered=1, completed=0)
    [dead] = namespace.receivable("q/$DeadLetterQueue").messages()
    assert (dead.message_id, dead.delivery_count) == ("a", 2)
    assert dead.dead_letter_reason == MAX_DELIVERY_COUNT_EXCEEDED


def test_settling_checks_expiry_at_the_time_of_settlement() -> None:
    namespace, q = queue(lock_duration=5)
    namespace.publish("q", "a", b"", now=0)
    _, token, _ = take(q, 0)
    with pytest.raises(LockLostError):
        q.complete(token, now=5)  # nobody ran expire_locks in between
    assert q.counts() == MessageCounts(active=1, locked=0, dead_lettered=0, completed=0)
    with pytest.raises(LockLostError):
        q.complete(uuid.uuid4(), now=5)


def test_a_dead_letter_queue_is_receivable_but_cannot_dead_letter_further() -> None:
    namespace, q = queue()
    namespace.publish("q", "a", b"", now=0)
    q.dead_letter(take(q, 0)[1], now=0, reason="r", description=None)
    dlq = namespace.receivable("q/$DeadLetterQueue")
    parked, token, _ = take(dlq, 1)
    assert (parked.dead_letter_reason, parked.dead_letter_description) == ("r", None)
    with pytest.raises(ValueError, match="dead-letter queue"):
        dlq.dead_letter(token, now=1, reason="again", description=None)
    dlq.abandon(token, now=1)
    for _ in range(20):  # no max delivery count in a dead-letter queue
        dlq.abandon(take(dlq, 1)[1], now=1)
    assert dlq.counts().active == 1
    assert take(dlq, 1)[0].delivery_count == 21


def test_duplicate_detection_forgets_a_message_id_once_the_window_has_passed() -> None:
    namespace, q = queue(duplicate_detection_window=10)
    assert namespace.publish("q", "a", b"", now=0) == 1
    assert namespace.publish("q", "a", b"", now=9.9) == 0
    assert namespace.publish("q", "b", b"", now=9.9) == 1
    assert namespace.publish("q", "a", b"", now=10) == 1  # the window counts from acceptance
    assert namespace.publish("q", "a", b"", now=15) == 0
    assert namespace.publish("q", None, b"", now=15) == 1  # no id: nothing to compare
    assert namespace.publish("q", None, b"", now=15) == 1
    assert [m.message_id for m in q.messages()] == ["a", "b", "a", None, None]


def test_a_subscription_gets_what_the_topic_accepts_after_it_was_declared() -> None:
    namespace = Namespace()
    namespace.declare_topic("t", duplicate_detection_window=60)
    assert namespace.publish("t", "early", b"", now=0) == 0  # no subscription yet: dropped
    namespace.declare_subscription("t", "s1")
    namespace.declare_subscription("t", "s2", max_delivery_count=1)
    assert namespace.publish("t", "m", b"", now=1) == 2
    assert namespace.publish("t", "m", b"", now=2) == 0  # detected at the topic
    s1, s2 = namespace.receivable("t/Subscriptions/s1"), namespace.receivable("t/Subscriptions/s2")
    assert [m.message_id for m in s1.messages()] == ["m"]
    copy, token, _ = take(s2, 3)
    s2.abandon(token, now=3)
    assert (s1.counts().dead_lettered, s2.counts().dead_lettered) == (0, 1)
    assert copy.sequence_number == s1.messages()[0].sequence_number == 2


def test_receive_and_delete_counts_as_completed() -> None:
    namespace, q = queue()
    namespace.publish("q", "a", b"", now=0)
    acquired = q.acquire(0, peek_lock=False)
    assert acquired is not None
    assert (acquired.lock_token, acquired.locked_until) == (None, None)
    assert q.counts() == MessageCounts(active=0, locked=0, dead_lettered=0, completed=1)


def test_publishing_to_an_address_without_entity_stores_nothing() -> None:
    namespace = Namespace()
    assert namespace.publish("nowhere", "a", b"", now=0) == 0
    assert namespace.is_declared("nowhere") is False
    with pytest.raises(EntityNotFoundError):
        namespace.receivable("nowhere")


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda n: n.declare_queue(""), "invalid queue name"),
        (lambda n: n.declare_queue("a/$DeadLetterQueue"), "reserved"),
        (lambda n: n.declare_queue("t/Subscriptions/s"), "reserved"),
        (lambda n: n.declare_queue("q", lock_duration=0), "lock_duration"),
        (lambda n: n.declare_queue("q", max_delivery_count=0), "max_delivery_count"),
        (lambda n: n.declare_queue("q", duplicate_detection_window=-1), "window"),
        (lambda n: n.declare_topic("existing"), "already exists"),
        (lambda n: n.declare_queue("existing"), "already exists"),
        (lambda n: n.declare_subscription("topic", "a/b"), "invalid subscription"),
    ],
)
def test_bad_declarations_are_refused_with_a_clear_error(
    declare: Callable[[Namespace], None], message: str
) -> None:
    namespace = Namespace()
    namespace.declare_queue("existing")
    namespace.declare_topic("topic")
    with pytest.raises(ValueError, match=message):
        declare(namespace)


def test_a_subscription_needs_its_topic_and_a_unique_name() -> None:
    namespace = Namespace()
    with pytest.raises(EntityNotFoundError, match="declare it first"):
        namespace.declare_subscription("t", "s")
    namespace.declare_topic("t")
    namespace.declare_subscription("t", "s")
    with pytest.raises(ValueError, match="already exists"):
        namespace.declare_subscription("t", "s")
