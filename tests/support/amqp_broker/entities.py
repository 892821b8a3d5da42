"""Service Bus semantics of the test broker's entities, with no AMQP in sight.

A ``Namespace`` holds queues and topics. A topic copies every message it accepts to each of its
subscriptions. Queues and subscriptions are *receivable*: each has a dead-letter sub-queue
(``<path>/$DeadLetterQueue``, itself receivable) and hands messages out either under a
peek-lock (a lock token valid for the entity's lock duration, renewable) or deleted on receipt.

Rules, as Service Bus applies them:

* Messages are handed out in sequence-number order; an abandoned or expired message goes back
  to its place, so it is usually the next one out again.
* A delivery count (the AMQP header's, 0 on the first delivery) grows by one each time a lock
  ends without settlement: abandon or lock expiry. Release (the receiver never looked at the
  message) does not count. When the count reaches the entity's max delivery count, the message
  moves to the dead-letter queue with reason ``MaxDeliveryCountExceeded``. A dead-lettered
  message keeps its sequence number and delivery count.
* Duplicate detection (per queue or topic, off unless a window is given) drops a message whose
  message id was accepted within the window; the sender still sees success.
* A settlement or renewal with an unknown or expired lock token raises ``LockLostError``.

Everything here is single-threaded; the broker calls it under its own lock, with ``now`` from
its clock (epoch seconds, because locked-until times travel to the SDK as UTC timestamps).
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

DEFAULT_LOCK_DURATION = 30.0  # seconds, Service Bus' default
DEFAULT_MAX_DELIVERY_COUNT = 10
DEAD_LETTER_SUFFIX = "/$DeadLetterQueue"
SUBSCRIPTIONS_INFIX = "/Subscriptions/"
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"


class LockLostError(Exception):
    """The lock token is unknown to the entity, or its lock has expired."""


class EntityNotFoundError(LookupError):
    """No queue, subscription or dead-letter queue has that path."""


@dataclass(frozen=True)
class StoredMessage:
    """A message as an entity holds it: the sender's encoding plus the broker's bookkeeping."""

    sequence_number: int
    message_id: str | None
    enqueued_time: float  # epoch seconds
    payload: bytes  # the complete AMQP message as the sender encoded it
    delivery_count: int = 0
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None


@dataclass(frozen=True)
class Acquired:
    """A message handed to a receiver; ``lock_token``/``locked_until`` are None when it was
    deleted on receipt (receive-and-delete)."""

    message: StoredMessage
    lock_token: uuid.UUID | None
    locked_until: float | None


@dataclass(frozen=True)
class MessageCounts:
    """How many messages a receivable entity holds, by state, and what became of the others."""

    active: int  # available to receivers
    locked: int  # handed out under a lock that has not ended yet
    dead_lettered: int  # in its dead-letter queue (available or locked there)
    completed: int  # settled as complete, or deleted on receipt


@dataclass
class _Lock:
    message: StoredMessage
    locked_until: float


class ReceivableEntity:
    """A queue, a subscription or a dead-letter queue."""

    def __init__(
        self,
        path: str,
        *,
        lock_duration: float,
        max_delivery_count: int | None,
        dead_letter_queue: ReceivableEntity | None,
    ) -> None:
        self.path = path
        self.lock_duration = lock_duration
        self.max_delivery_count = max_delivery_count  # None: never dead-letter (a DLQ itself)
        self.dead_letter_queue = dead_letter_queue
        self._available: list[tuple[int, StoredMessage]] = []  # heap by sequence number
        self._locks: dict[uuid.UUID, _Lock] = {}
        self._completed = 0

    def put(self, message: StoredMessage) -> None:
        heapq.heappush(self._available, (message.sequence_number, message))

    @property
    def has_available(self) -> bool:
        return bool(self._available)

    def acquire(self, now: float, *, peek_lock: bool = True) -> Acquired | None:
        """Hand out the next message: locked (peek-lock) or deleted; None when there is none."""
        self.expire_locks(now)
        if not self._available:
            return None
        _, message = heapq.heappop(self._available)
        if not peek_lock:
            self._completed += 1
            return Acquired(message, None, None)
        token = uuid.uuid4()
        locked_until = now + self.lock_duration
        self._locks[token] = _Lock(message, locked_until)
        return Acquired(message, token, locked_until)

    def complete(self, token: uuid.UUID, now: float) -> None:
        self._take_lock(token, now)
        self._completed += 1

    def abandon(self, token: uuid.UUID, now: float, *, count_attempt: bool = True) -> None:
        """End the lock; ``count_attempt=False`` for a release (the message was never seen)."""
        lock = self._take_lock(token, now)
        self._return(lock.message, count_attempt=count_attempt)

    def dead_letter(
        self, token: uuid.UUID, now: float, reason: str | None, description: str | None
    ) -> None:
        if self.dead_letter_queue is None:
            raise ValueError(f"{self.path} is a dead-letter queue: its messages cannot move on")
        lock = self._take_lock(token, now)
        self._move_to_dead_letters(lock.message, reason, description)

    def renew(self, token: uuid.UUID, now: float) -> float:
        """Extend a lock by the lock duration from now; returns the new locked-until time."""
        self.expire_locks(now)
        lock = self._locks.get(token)
        if lock is None:
            raise LockLostError(f"{self.path}: lock {token} is unknown or has expired")
        lock.locked_until = now + self.lock_duration
        return lock.locked_until

    def expire_locks(self, now: float) -> bool:
        """Return messages whose lock ran out to the entity; True when any did."""
        expired = [token for token, lock in self._locks.items() if lock.locked_until <= now]
        for token in expired:
            self._return(self._locks.pop(token).message, count_attempt=True)
        return bool(expired)

    def next_lock_expiry(self) -> float | None:
        return min((lock.locked_until for lock in self._locks.values()), default=None)

    def counts(self) -> MessageCounts:
        dlq = self.dead_letter_queue
        return MessageCounts(
            active=len(self._available),
            locked=len(self._locks),
            dead_lettered=0 if dlq is None else len(dlq._available) + len(dlq._locks),
            completed=self._completed,
        )

    def messages(self) -> list[StoredMessage]:
        """Every message the entity holds (available or locked), in sequence-number order."""
        held = [m for _, m in self._available] + [lock.message for lock in self._locks.values()]
        return sorted(held, key=lambda m: m.sequence_number)

    def _take_lock(self, token: uuid.UUID, now: float) -> _Lock:
        self.expire_locks(now)
        lock = self._locks.pop(token, None)
        if lock is None:
            raise LockLostError(f"{self.path}: lock {token} is unknown or has expired")
        return lock

    def _return(self, message: StoredMessage, *, count_attempt: bool) -> None:
        if not count_attempt:
            self.put(message)
            return
        message = replace(message, delivery_count=message.delivery_count + 1)
        limit = self.max_delivery_count
        if limit is not None and message.delivery_count >= limit:
            self._move_to_dead_letters(
                message,
                MAX_DELIVERY_COUNT_EXCEEDED,
                f"Message could not be consumed after {limit} delivery attempts.",
            )
        else:
            self.put(message)

    def _move_to_dead_letters(
        self, message: StoredMessage, reason: str | None, description: str | None
    ) -> None:
        assert self.dead_letter_queue is not None
        self.dead_letter_queue.put(
            replace(message, dead_letter_reason=reason, dead_letter_description=description)
        )


class _DuplicateDetector:
    def __init__(self, window: float) -> None:
        self._window = window
        self._seen: dict[str, float] = {}  # message id -> when accepted, oldest first

    def is_duplicate(self, message_id: str | None, now: float) -> bool:
        """Whether ``message_id`` was accepted within the window; records it when not."""
        for seen_id, accepted_at in list(self._seen.items()):
            if accepted_at > now - self._window:
                break
            del self._seen[seen_id]
        if message_id is None:
            return False
        if message_id in self._seen:
            return True
        self._seen[message_id] = now
        return False


def _receivable(path: str, lock_duration: float, max_delivery_count: int) -> ReceivableEntity:
    if lock_duration <= 0:
        raise ValueError(f"lock_duration must be positive, got {lock_duration!r}")
    if max_delivery_count < 1:
        raise ValueError(f"max_delivery_count must be at least 1, got {max_delivery_count!r}")
    dlq = ReceivableEntity(
        path + DEAD_LETTER_SUFFIX,
        lock_duration=lock_duration,
        max_delivery_count=None,
        dead_letter_queue=None,
    )
    return ReceivableEntity(
        path,
        lock_duration=lock_duration,
        max_delivery_count=max_delivery_count,
        dead_letter_queue=dlq,
    )


def _detector(window: float | None) -> _DuplicateDetector | None:
    if window is None:
        return None
    if window <= 0:
        raise ValueError(f"duplicate_detection_window must be positive, got {window!r}")
    return _DuplicateDetector(window)


def _check_name(name: str, what: str) -> None:
    if not name or name != name.strip() or name.startswith("/") or name.endswith("/"):
        raise ValueError(f"invalid {what} name {name!r}")
    if "$" in name or SUBSCRIPTIONS_INFIX.strip("/") in name.split("/"):
        raise ValueError(f"invalid {what} name {name!r}: '$' and 'Subscriptions' are reserved")


@dataclass
class _Sink:
    """Where messages sent to one address go: a queue, or a topic's subscriptions."""

    targets: dict[str, ReceivableEntity]
    duplicates: _DuplicateDetector | None
    last_sequence_number: int = 0


class Namespace:
    """The entities of one broker."""

    def __init__(self) -> None:
        self._queues: dict[str, _Sink] = {}
        self._topics: dict[str, _Sink] = {}

    def declare_queue(
        self,
        name: str,
        *,
        lock_duration: float = DEFAULT_LOCK_DURATION,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
        duplicate_detection_window: float | None = None,
    ) -> None:
        self._check_free(name, "queue")
        queue = _receivable(name, lock_duration, max_delivery_count)
        self._queues[name] = _Sink({name: queue}, _detector(duplicate_detection_window))

    def declare_topic(self, name: str, *, duplicate_detection_window: float | None = None) -> None:
        self._check_free(name, "topic")
        self._topics[name] = _Sink({}, _detector(duplicate_detection_window))

    def declare_subscription(
        self,
        topic: str,
        name: str,
        *,
        lock_duration: float = DEFAULT_LOCK_DURATION,
        max_delivery_count: int = DEFAULT_MAX_DELIVERY_COUNT,
    ) -> None:
        sink = self._topics.get(topic)
        if sink is None:
            raise EntityNotFoundError(f"no topic {topic!r} (declare it first)")
        if not name or "/" in name or "$" in name:
            raise ValueError(f"invalid subscription name {name!r}")
        path = f"{topic}{SUBSCRIPTIONS_INFIX}{name}"
        if path in sink.targets:
            raise ValueError(f"subscription {path!r} already exists")
        sink.targets[path] = _receivable(path, lock_duration, max_delivery_count)

    def is_declared(self, address: str) -> bool:
        return address in self._queues or address in self._topics

    def publish(self, address: str, message_id: str | None, payload: bytes, now: float) -> int:
        """Store a message sent to a queue or topic; returns how many entities got a copy (0 for
        a duplicate, an address with no entity, or a topic without subscriptions)."""
        sink = self._queues.get(address) or self._topics.get(address)
        if sink is None:
            return 0
        if sink.duplicates is not None and sink.duplicates.is_duplicate(message_id, now):
            return 0
        sink.last_sequence_number += 1
        stored = StoredMessage(sink.last_sequence_number, message_id, now, payload)
        for target in sink.targets.values():
            target.put(stored)
        return len(sink.targets)

    def receivable(self, path: str) -> ReceivableEntity:
        """The queue, subscription or dead-letter queue at ``path``
        (``q``, ``t/Subscriptions/s``, ``q/$DeadLetterQueue``, ...)."""
        base = path.removesuffix(DEAD_LETTER_SUFFIX)
        for entity in self._all_main():
            if entity.path == base:
                if base == path:
                    return entity
                assert entity.dead_letter_queue is not None
                return entity.dead_letter_queue
        raise EntityNotFoundError(f"no queue or subscription {path!r}")

    def all_receivable(self) -> Iterator[ReceivableEntity]:
        for entity in self._all_main():
            yield entity
            if entity.dead_letter_queue is not None:
                yield entity.dead_letter_queue

    def expire_locks(self, now: float) -> bool:
        expired = False
        for entity in self.all_receivable():
            expired = entity.expire_locks(now) or expired
        return expired

    def next_lock_expiry(self) -> float | None:
        expiries = [e.next_lock_expiry() for e in self.all_receivable()]
        return min((t for t in expiries if t is not None), default=None)

    def _all_main(self) -> Iterator[ReceivableEntity]:
        for sink in (*self._queues.values(), *self._topics.values()):
            yield from sink.targets.values()

    def _check_free(self, name: str, what: str) -> None:
        _check_name(name, what)
        if name in self._queues or name in self._topics:
            raise ValueError(f"an entity named {name!r} already exists")
