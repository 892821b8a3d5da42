"""Embedded message bus on one SQLite file, with the Azure Service Bus semantics the app relies on.

It stands in for Service Bus on a developer's machine: the local host delivers its messages to the
Service Bus-triggered functions, so what those functions (and the publisher) depend on behaves as
the broker does: duplicate detection by MessageId within a window, topic fan-out to
subscriptions, peek-lock with lock tokens and lock expiry, delivery counts, the dead-letter
sub-queue and MaxDeliveryCountExceeded. Not modelled: sessions, scheduled messages, TTL,
subscription filters (every subscription gets every message, the default TrueFilter).

Standard library only. All state lives in the file (WAL), so several processes can share it; it
uses SQLite as every embedded backend does (``eventstore.embedded.sqlite``), and is safe to share
between threads.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from eventstore.clock import new_id
from eventstore.commit import JsonDict
from eventstore.embedded.doorbell import Doorbell
from eventstore.embedded.sqlite import EmbeddedClosedError, SqliteFile
from eventstore.ports import OutboundMessage, QueuedDeadLetter

log = logging.getLogger(__name__)

__all__ = [
    "DEAD_LETTER_QUEUE_SUFFIX",
    "MAX_DELIVERY_COUNT_EXCEEDED",
    "BusClosedError",
    "DeadLetteredMessage",
    "EmbeddedBus",
    "EmbeddedBusPublisher",
    "EmbeddedDeadLetterQueues",
    "EntityNotFoundError",
    "MessageLockLostError",
    "ReceivedMessage",
    "close_all",
    "open_embedded_bus",
    "subscription_path",
]

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch. Lock expiry and duplicate windows are compared across
processes sharing the file, so a per-process clock such as time.monotonic would be wrong."""

DEAD_LETTER_QUEUE_SUFFIX: Final = "/$DeadLetterQueue"
MAX_DELIVERY_COUNT_EXCEEDED: Final = "MaxDeliveryCountExceeded"
_SUBSCRIPTIONS: Final = "Subscriptions"
_SCHEMA_VERSION: Final = 1
# A waiting receiver is woken at once by sends through the same EmbeddedBus (Condition); sends
# from other processes (or other instances) are only visible in the file, hence the poll.
_DEFAULT_POLL_INTERVAL: Final = 0.25
_EVERY_PATH: Final = "*"  # a ring for every entity: messages made receivable again
_DUPLICATE_PURGE_INTERVAL: Final = 60.0

EntityKind = Literal["queue", "topic", "subscription"]


class EntityNotFoundError(LookupError):
    """The queue, topic or subscription was never declared (Service Bus: entity not found)."""


class MessageLockLostError(Exception):
    """The message's lock expired, or it was settled already or relocked by another receiver."""


BusClosedError = EmbeddedClosedError
"""The EmbeddedBus was closed."""


@dataclass(frozen=True)
class ReceivedMessage:
    """A message delivered under a peek-lock; settle it with complete/abandon/dead_letter."""

    message_id: str
    subject: str
    body: JsonDict
    correlation_id: str
    application_properties: dict[str, str | int]
    delivery_count: int
    enqueued_time: datetime
    lock_token: str
    locked_until: datetime
    entity_path: str  # the path it was received from (a DLQ path for a dead-lettered message)
    sequence_number: int
    dead_letter_reason: str | None = None
    dead_letter_error_description: str | None = None


@dataclass(frozen=True)
class DeadLetteredMessage:
    """A message in an entity's dead-letter sub-queue, as peek_dead_letters returns it."""

    message_id: str
    subject: str
    body: JsonDict
    correlation_id: str
    application_properties: dict[str, str | int]
    delivery_count: int
    enqueued_time: datetime
    sequence_number: int
    entity_path: str  # the entity it was dead-lettered from
    reason: str | None
    description: str | None
    dead_lettered_time: datetime


@dataclass(frozen=True)
class _Entity:
    path: str
    kind: EntityKind
    topic: str | None
    max_delivery_count: int
    lock_duration: float
    duplicate_window: float


def subscription_path(topic: str, subscription: str) -> str:
    """The Service Bus path of a subscription: ``"{topic}/Subscriptions/{subscription}"``."""
    return f"{topic}/{_SUBSCRIPTIONS}/{subscription}"


# The schema is created statement by statement inside one BEGIN IMMEDIATE (executescript would
# commit first), so processes opening a fresh file at the same time do not race.
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS bus_entities (
        path TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('queue', 'topic', 'subscription')),
        topic TEXT,
        max_delivery_count INTEGER NOT NULL,
        lock_duration REAL NOT NULL,
        duplicate_window REAL NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS bus_duplicates (
        entity TEXT NOT NULL,
        message_id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (entity, message_id)
    ) WITHOUT ROWID""",
    # No index on expires_at: it would cost every send a page write, for a purge that scans the
    # table once a minute.
    # Row 'sequence' hands out sequence numbers that are never reused (a plain rowid would reuse
    # the number of a completed newest message), as on Service Bus; FIFO order is seq order.
    # One update per send call, where AUTOINCREMENT would update sqlite_sequence per row.
    # Row 'schema_version' stands in for PRAGMA user_version, which belongs to the whole file
    # and the bus may share the file with other embedded stores.
    """CREATE TABLE IF NOT EXISTS bus_meta (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID""",
    "INSERT OR IGNORE INTO bus_meta (name, value) VALUES ('sequence', 0)",
    # `entity` is the receivable path: a queue, a subscription, or either's DLQ path, so moving a
    # message to the dead-letter sub-queue is one UPDATE and the DLQ is receivable like any queue.
    # locked_until = 0 means never locked or released; an expired lock needs no cleanup.
    """CREATE TABLE IF NOT EXISTS bus_messages (
        seq INTEGER PRIMARY KEY,
        entity TEXT NOT NULL,
        message_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        body TEXT NOT NULL,
        correlation_id TEXT NOT NULL,
        properties TEXT NOT NULL,
        enqueued_at REAL NOT NULL,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        lock_token TEXT,
        locked_until REAL NOT NULL DEFAULT 0,
        dead_letter_reason TEXT,
        dead_letter_description TEXT,
        dead_lettered_at REAL
    )""",
    # Receive walks an entity's messages in seq order and skips the locked ones.
    "CREATE INDEX IF NOT EXISTS bus_messages_entity ON bus_messages (entity, seq)",
)

# Constant SQL strings throughout: the sqlite3 module caches prepared statements by their text.
_SELECT_ENTITY: Final = (
    "SELECT path, kind, topic, max_delivery_count, lock_duration, duplicate_window "
    "FROM bus_entities WHERE path = ?"
)
_UPSERT_ENTITY: Final = (
    "INSERT INTO bus_entities "
    "(path, kind, topic, max_delivery_count, lock_duration, duplicate_window) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET "
    "max_delivery_count = excluded.max_delivery_count, lock_duration = excluded.lock_duration, "
    "duplicate_window = excluded.duplicate_window"
)
_SELECT_SUBSCRIPTIONS: Final = (
    "SELECT path FROM bus_entities WHERE topic = ? AND kind = 'subscription' ORDER BY path"
)
# Inserts, or revives an id whose window has passed; a live duplicate changes no row (rowcount 0).
_CLAIM_MESSAGE_ID: Final = (
    "INSERT INTO bus_duplicates (entity, message_id, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (entity, message_id) DO UPDATE SET expires_at = excluded.expires_at "
    "WHERE bus_duplicates.expires_at <= ?"
)
_PURGE_DUPLICATES: Final = "DELETE FROM bus_duplicates WHERE expires_at <= ?"
_INSERT_MESSAGE: Final = (
    "INSERT INTO bus_messages "
    "(seq, entity, message_id, subject, body, correlation_id, properties, enqueued_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_RESERVE_SEQUENCE: Final = (
    "UPDATE bus_meta SET value = value + ? WHERE name = 'sequence' RETURNING value"
)
_MESSAGE_COLUMNS: Final = (
    "seq, message_id, subject, body, correlation_id, properties, enqueued_at, delivery_count, "
    "dead_letter_reason, dead_letter_description, dead_lettered_at"
)
_SELECT_AVAILABLE: Final = (
    f"SELECT {_MESSAGE_COLUMNS} FROM bus_messages "
    "WHERE entity = ? AND locked_until <= ? ORDER BY seq LIMIT ?"
)
_LOCK: Final = (
    "UPDATE bus_messages SET delivery_count = delivery_count + 1, lock_token = ?, "
    "locked_until = ? WHERE seq = ?"
)
_MOVE_TO_DLQ: Final = (
    "UPDATE bus_messages SET entity = ?, lock_token = NULL, locked_until = 0, "
    "dead_letter_reason = ?, dead_letter_description = ?, dead_lettered_at = ? WHERE seq = ?"
)
_DEAD_LETTER_LOCKED: Final = (
    "UPDATE bus_messages SET entity = ?, lock_token = NULL, locked_until = 0, "
    "dead_letter_reason = ?, dead_letter_description = ?, dead_lettered_at = ? "
    "WHERE seq = ? AND lock_token = ? AND locked_until > ?"
)
# Service Bus dead-letters a message whose lock expires on its last allowed delivery without
# waiting for a receiver; peek_dead_letters catches up on those so a DLQ peek sees them.
_DEAD_LETTER_EXHAUSTED: Final = (
    "UPDATE bus_messages SET entity = ?, lock_token = NULL, locked_until = 0, "
    "dead_letter_reason = ?, dead_letter_description = ?, dead_lettered_at = ? "
    "WHERE entity = ? AND locked_until <= ? AND delivery_count >= ?"
)
_COMPLETE: Final = "DELETE FROM bus_messages WHERE seq = ? AND lock_token = ? AND locked_until > ?"
_ABANDON: Final = (
    "UPDATE bus_messages SET lock_token = NULL, locked_until = 0 "
    "WHERE seq = ? AND lock_token = ? AND locked_until > ?"
)
_RENEW: Final = (
    "UPDATE bus_messages SET locked_until = ? WHERE seq = ? AND lock_token = ? AND locked_until > ?"
)
_PEEK_DEAD_LETTERS: Final = (
    f"SELECT {_MESSAGE_COLUMNS} FROM bus_messages WHERE entity = ? ORDER BY seq LIMIT ?"
)

_Row = tuple[Any, ...]


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _max_delivery_description(max_delivery_count: int) -> str:
    # The broker's own wording, so logs read the same locally and in Azure.
    return f"Message could not be consumed after {max_delivery_count} delivery attempts."


def _log_dead_lettered(message_id: str, entity: str, reason: str, description: str) -> None:
    log.warning("message %s dead-lettered on %s: %s (%s)", message_id, entity, reason,
                description)


def _check_name(what: str, name: str) -> None:
    # "/" is reserved: it separates a topic from its subscriptions and an entity from its DLQ.
    if not name or "/" in name or name != name.strip():
        raise ValueError(f"invalid {what} name {name!r}: non-empty, no '/', no outer spaces")


def _parse_path(entity_path: str) -> tuple[str, bool]:
    """(base entity path in canonical form, whether the dead-letter sub-queue is meant)."""
    path = entity_path
    dead_letter = path.lower().endswith(DEAD_LETTER_QUEUE_SUFFIX.lower())
    if dead_letter:
        path = path[: -len(DEAD_LETTER_QUEUE_SUFFIX)]
    parts = path.split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], dead_letter
    if len(parts) == 3 and parts[1].lower() == _SUBSCRIPTIONS.lower() and parts[0] and parts[2]:
        return subscription_path(parts[0], parts[2]), dead_letter
    raise ValueError(
        f"invalid entity path {entity_path!r}: expected a queue name or "
        f"'{{topic}}/{_SUBSCRIPTIONS}/{{subscription}}', optionally + '{DEAD_LETTER_QUEUE_SUFFIX}'"
    )


class EmbeddedBus:
    """A Service Bus namespace in one SQLite file. Thread-safe; several processes may share it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock = time.time,
        poll_interval: float = _DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._poll_interval = poll_interval
        # Receivers wait per entity path, so a send wakes as many receivers of its paths as it
        # stored messages there, not every receiver of every entity (each of which would run a
        # write transaction to find nothing).
        self._lock = threading.Lock()
        self._waits: dict[str, threading.Condition] = {}
        self._generation = 0  # bumped on every local change that can make a message receivable
        self._path_generations: dict[str, int] = {}  # likewise, per entity path
        self._waiting_receivers = 0
        self._closed = False
        self._last_purge = float("-inf")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Every operation writes (locks, delivery counts), so all of them use the one writer.
        self._file = SqliteFile(self.path)
        try:
            self._create_schema()
        except BaseException:
            self._file.close()
            raise
        self._bell = Doorbell(self.path, self._rung)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; receivers blocked in receive() return an empty list."""
        if self._closed:
            return
        self._closed = True
        self._bell.close()
        self._file.close()
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> EmbeddedBus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _create_schema(self) -> None:
        with self._tx() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(
                "INSERT OR IGNORE INTO bus_meta (name, value) VALUES ('schema_version', ?)",
                (_SCHEMA_VERSION,),
            )
            row = conn.execute("SELECT value FROM bus_meta WHERE name = 'schema_version'")
            version = int(row.fetchone()[0])
            if version != _SCHEMA_VERSION:
                # Raising rolls back the CREATE statements above: the file is left as it was.
                raise RuntimeError(
                    f"{self.path} has bus schema version {version}; this code knows "
                    f"{_SCHEMA_VERSION}. Use a matching version or delete the file."
                )

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.write()

    def _execute_alone(self, sql: str, params: Sequence[object]) -> int:
        """One statement in its own transaction; returns the changed row count."""
        with self._file.write() as conn:
            return conn.execute(sql, params).rowcount

    def _notify(self, stored: Mapping[str, int] | None = None) -> None:
        """Wake receivers, here and in the file's other handles: of every path, or
        (``stored``) as many of each path as it got messages."""
        # Topics "{count} {path}", or "*" for every path.
        self._bell.ring([f"{count} {path}" for path, count in stored.items()] if stored
                        else (_EVERY_PATH,))
        self._wake(stored)

    def _rung(self, topics: set[str]) -> None:
        """Another handle (process) stored messages for some paths, or made messages of any
        path receivable again."""
        if _EVERY_PATH in topics:
            self._wake()
            return
        stored: dict[str, int] = {}
        for topic in topics:
            count, _, path = topic.partition(" ")
            if count.isdigit() and path:
                stored[path] = stored.get(path, 0) + int(count)
        self._wake(stored)

    def _wake(self, stored: Mapping[str, int] | None = None) -> None:
        with self._lock:
            if stored is None:
                self._generation += 1
                for every in self._waits.values():
                    every.notify_all()
                return
            for path, count in stored.items():
                self._path_generations[path] = self._path_generations.get(path, 0) + 1
                wait = self._waits.get(path)
                if wait is not None:
                    wait.notify(count)

    def _changes(self, stored_path: str) -> tuple[int, int]:
        return self._generation, self._path_generations.get(stored_path, 0)

    # -- entities ---------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        max_delivery_count: int = 10,
        lock_duration: float = 30.0,
        duplicate_window: float = 600.0,
    ) -> None:
        """Create the queue, or update its settings (idempotent)."""
        _check_name("queue", name)
        self._declare(
            name,
            "queue",
            topic=None,
            max_delivery_count=max_delivery_count,
            lock_duration=lock_duration,
            duplicate_window=duplicate_window,
        )

    def declare_topic(self, name: str, duplicate_window: float = 600.0) -> None:
        """Create the topic, or update its duplicate window (idempotent)."""
        _check_name("topic", name)
        # Delivery settings belong to a topic's subscriptions; these are placeholders.
        self._declare(
            name,
            "topic",
            topic=None,
            max_delivery_count=1,
            lock_duration=1.0,
            duplicate_window=duplicate_window,
        )

    def declare_subscription(
        self,
        topic: str,
        name: str,
        max_delivery_count: int = 10,
        lock_duration: float = 30.0,
    ) -> None:
        """Create the subscription on a declared topic, or update its settings (idempotent).

        As on Service Bus, it receives only messages sent after it exists."""
        _check_name("topic", topic)
        _check_name("subscription", name)
        path = subscription_path(topic, name)
        self._declare(
            path,
            "subscription",
            topic=topic,
            max_delivery_count=max_delivery_count,
            lock_duration=lock_duration,
            duplicate_window=0.0,  # duplicate detection happens on the topic
        )

    def _declare(
        self,
        path: str,
        kind: EntityKind,
        *,
        topic: str | None,
        max_delivery_count: int,
        lock_duration: float,
        duplicate_window: float,
    ) -> None:
        if max_delivery_count < 1:
            raise ValueError(f"max_delivery_count must be >= 1, got {max_delivery_count}")
        if lock_duration <= 0:
            raise ValueError(f"lock_duration must be > 0 seconds, got {lock_duration}")
        if duplicate_window < 0:
            raise ValueError(f"duplicate_window must be >= 0 seconds, got {duplicate_window}")
        with self._tx() as conn:
            if topic is not None:
                owner = self._find_entity(conn, topic)
                if owner is None or owner.kind != "topic":
                    raise EntityNotFoundError(
                        f"cannot declare subscription {path!r}: no topic named {topic!r} "
                        f"is declared on the embedded bus {self.path}"
                    )
            existing = self._find_entity(conn, path)
            if existing is not None and existing.kind != kind:
                # Queues and topics share one namespace, as on Service Bus.
                raise ValueError(f"{path!r} already exists as a {existing.kind}, not a {kind}")
            conn.execute(
                _UPSERT_ENTITY,
                (path, kind, topic, max_delivery_count, lock_duration, duplicate_window),
            )

    @staticmethod
    def _find_entity(conn: sqlite3.Connection, path: str) -> _Entity | None:
        row = conn.execute(_SELECT_ENTITY, (path,)).fetchone()
        if row is None:
            return None
        return _Entity(
            path=row[0],
            kind=row[1],
            topic=row[2],
            max_delivery_count=int(row[3]),
            lock_duration=float(row[4]),
            duplicate_window=float(row[5]),
        )

    def _receivable_entity(self, conn: sqlite3.Connection, base_path: str) -> _Entity:
        entity = self._find_entity(conn, base_path)
        if entity is None:
            raise EntityNotFoundError(
                f"no queue or subscription {base_path!r} is declared on the embedded bus "
                f"{self.path}"
            )
        if entity.kind == "topic":
            raise ValueError(
                f"{base_path!r} is a topic; receive from "
                f"'{subscription_path(base_path, '<subscription>')}'"
            )
        return entity

    # -- sending ----------------------------------------------------------------------------

    def send(self, messages: Sequence[OutboundMessage]) -> None:
        """Enqueue all messages in one transaction, in order.

        A topic message is copied to every subscription of the topic (none: it is dropped, as on
        Service Bus). A MessageId already sent to the same destination within its duplicate
        window is silently dropped. An undeclared destination raises EntityNotFoundError and
        nothing of the call is stored.
        """
        if not messages:
            return
        # Serialize before taking the write lock: the transaction should only do I/O.
        prepared = [
            (
                m.destination,
                m.message_id,
                m.subject,
                _dumps(m.body),
                m.correlation_id,
                _dumps(dict(m.application_properties)),
            )
            for m in messages
        ]
        with self._tx() as conn:
            now = self._clock()
            targets: dict[str, tuple[float, list[str]]] = {}
            rows: list[tuple[str, str, str, str, str, str, float]] = []
            for destination, message_id, subject, body, correlation_id, properties in prepared:
                target = targets.get(destination)
                if target is None:
                    target = targets[destination] = self._send_targets(conn, destination)
                window, paths = target
                claimed = conn.execute(
                    _CLAIM_MESSAGE_ID, (destination, message_id, now + window, now)
                ).rowcount
                if claimed == 0:
                    continue  # duplicate within the window: dropped without error
                rows.extend(
                    (path, message_id, subject, body, correlation_id, properties, now)
                    for path in paths
                )
            if rows:
                last = int(conn.execute(_RESERVE_SEQUENCE, (len(rows),)).fetchone()[0])
                first = last - len(rows) + 1
                conn.executemany(_INSERT_MESSAGE, [(first + i, *row) for i, row in enumerate(rows)])
            if now - self._last_purge >= _DUPLICATE_PURGE_INTERVAL:
                conn.execute(_PURGE_DUPLICATES, (now,))
                self._last_purge = now
        if rows:
            stored: dict[str, int] = {}
            for row in rows:
                stored[row[0]] = stored.get(row[0], 0) + 1
            self._notify(stored)

    def _send_targets(self, conn: sqlite3.Connection, destination: str) -> tuple[float, list[str]]:
        entity = self._find_entity(conn, destination)
        if entity is None:
            raise EntityNotFoundError(
                f"cannot send to {destination!r}: no queue or topic of that name is declared "
                f"on the embedded bus {self.path}"
            )
        if entity.kind == "subscription":
            raise ValueError(f"cannot send to subscription {destination!r}; send to its topic")
        if entity.kind == "queue":
            return entity.duplicate_window, [entity.path]
        subscriptions = [row[0] for row in conn.execute(_SELECT_SUBSCRIPTIONS, (entity.path,))]
        return entity.duplicate_window, subscriptions

    # -- receiving --------------------------------------------------------------------------

    def receive(
        self, entity_path: str, max_messages: int = 1, timeout: float = 0.0
    ) -> list[ReceivedMessage]:
        """Lock and return up to max_messages messages in FIFO order (peek-lock).

        entity_path is a queue name or ``"{topic}/Subscriptions/{name}"``, optionally followed
        by ``"/$DeadLetterQueue"``. With timeout > 0, waits up to that many seconds for at least
        one message. A message past its max delivery count goes to the dead-letter sub-queue
        instead of being returned.
        """
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        base_path, dead_letter = _parse_path(entity_path)
        # Real elapsed time, not the injected clock: this is how long the caller is blocked.
        deadline = time.monotonic() + max(timeout, 0.0)
        first_attempt = True
        stored_path = base_path + DEAD_LETTER_QUEUE_SUFFIX if dead_letter else base_path
        while True:
            with self._lock:
                generation = self._changes(stored_path)
            if self._closed and not first_attempt:
                return []  # closed while this receiver was waiting
            first_attempt = False
            received = self._receive_once(base_path, dead_letter, max_messages)
            remaining = deadline - time.monotonic()
            if received or remaining <= 0:
                return received
            with self._lock:
                if self._closed:
                    return []
                # Only wait if nothing changed locally since the attempt started; otherwise a
                # send that landed in between would be missed until the next poll.
                if self._changes(stored_path) == generation:
                    wait = self._waits.setdefault(stored_path, threading.Condition(self._lock))
                    self._waiting_receivers += 1
                    try:
                        wait.wait(min(remaining, self._poll_interval))
                    finally:
                        self._waiting_receivers -= 1

    def _receive_once(
        self, base_path: str, dead_letter: bool, max_messages: int
    ) -> list[ReceivedMessage]:
        stored_path = base_path + DEAD_LETTER_QUEUE_SUFFIX if dead_letter else base_path
        received: list[ReceivedMessage] = []
        with self._tx() as conn:
            entity = self._receivable_entity(conn, base_path)
            # The dead-letter sub-queue has no max delivery count, as on Service Bus.
            max_count = None if dead_letter else entity.max_delivery_count
            now = self._clock()
            locked_until = now + entity.lock_duration
            while len(received) < max_messages:
                wanted = max_messages - len(received)
                rows = conn.execute(_SELECT_AVAILABLE, (stored_path, now, wanted)).fetchall()
                exhausted = [row for row in rows if max_count is not None and row[7] >= max_count]
                if exhausted:
                    assert max_count is not None
                    conn.executemany(
                        _MOVE_TO_DLQ,
                        [
                            (
                                base_path + DEAD_LETTER_QUEUE_SUFFIX,
                                MAX_DELIVERY_COUNT_EXCEEDED,
                                _max_delivery_description(max_count),
                                now,
                                row[0],
                            )
                            for row in exhausted
                        ],
                    )
                    for row in exhausted:
                        _log_dead_lettered(row[1], base_path, MAX_DELIVERY_COUNT_EXCEEDED,
                                           _max_delivery_description(max_count))
                locks: list[tuple[str, float, int]] = []
                for row in rows:
                    if max_count is not None and row[7] >= max_count:
                        continue
                    token = new_id()
                    locks.append((token, locked_until, row[0]))
                    received.append(self._received(row, token, locked_until, stored_path))
                conn.executemany(_LOCK, locks)
                # Fewer rows than asked: nothing more available. Only dead-lettered rows can
                # leave us short with more waiting, which the next iteration picks up.
                if len(rows) < wanted or not exhausted:
                    break
        return received

    @staticmethod
    def _received(row: _Row, token: str, locked_until: float, path: str) -> ReceivedMessage:
        return ReceivedMessage(
            message_id=row[1],
            subject=row[2],
            body=json.loads(row[3]),
            correlation_id=row[4],
            application_properties=json.loads(row[5]),
            delivery_count=int(row[7]) + 1,
            enqueued_time=_utc(row[6]),
            lock_token=token,
            locked_until=_utc(locked_until),
            entity_path=path,
            sequence_number=int(row[0]),
            dead_letter_reason=row[8],
            dead_letter_error_description=row[9],
        )

    # -- settlement -------------------------------------------------------------------------

    def complete(self, message: ReceivedMessage) -> None:
        """Remove the message. Raises MessageLockLostError unless its lock is still held."""
        changed = self._execute_alone(
            _COMPLETE, (message.sequence_number, message.lock_token, self._clock())
        )
        if changed == 0:
            raise self._lock_lost("complete", message)

    def abandon(self, message: ReceivedMessage) -> None:
        """Release the lock so the message is redelivered at once (with a higher delivery
        count); on its last allowed delivery it goes to the dead-letter sub-queue instead."""
        base_path, dead_letter = _parse_path(message.entity_path)
        with self._tx() as conn:
            entity = self._receivable_entity(conn, base_path)
            now = self._clock()
            exhausted = not dead_letter and message.delivery_count >= entity.max_delivery_count
            if exhausted:
                changed = conn.execute(
                    _DEAD_LETTER_LOCKED,
                    (
                        base_path + DEAD_LETTER_QUEUE_SUFFIX,
                        MAX_DELIVERY_COUNT_EXCEEDED,
                        _max_delivery_description(entity.max_delivery_count),
                        now,
                        message.sequence_number,
                        message.lock_token,
                        now,
                    ),
                ).rowcount
            else:
                changed = conn.execute(
                    _ABANDON, (message.sequence_number, message.lock_token, now)
                ).rowcount
            if changed == 0:
                raise self._lock_lost("abandon", message)
        if exhausted:
            _log_dead_lettered(message.message_id, base_path, MAX_DELIVERY_COUNT_EXCEEDED,
                               _max_delivery_description(entity.max_delivery_count))
        self._notify()

    def dead_letter(
        self,
        message: ReceivedMessage,
        reason: str | None = None,
        description: str | None = None,
    ) -> None:
        """Move the message to its entity's dead-letter sub-queue with a reason."""
        base_path, dead_letter = _parse_path(message.entity_path)
        if dead_letter:
            raise ValueError("a message in a dead-letter queue cannot be dead-lettered again")
        now = self._clock()
        changed = self._execute_alone(
            _DEAD_LETTER_LOCKED,
            (
                base_path + DEAD_LETTER_QUEUE_SUFFIX,
                reason,
                description,
                now,
                message.sequence_number,
                message.lock_token,
                now,
            ),
        )
        if changed == 0:
            raise self._lock_lost("dead-letter", message)
        _log_dead_lettered(message.message_id, base_path, reason or "", description or "")

    def renew_lock(self, message: ReceivedMessage) -> datetime:
        """Extend the lock by the entity's lock duration from now; returns the new expiry."""
        base_path, _ = _parse_path(message.entity_path)
        with self._tx() as conn:
            entity = self._receivable_entity(conn, base_path)
            now = self._clock()
            locked_until = now + entity.lock_duration
            changed = conn.execute(
                _RENEW, (locked_until, message.sequence_number, message.lock_token, now)
            ).rowcount
            if changed == 0:
                raise self._lock_lost("renew the lock of", message)
        return _utc(locked_until)

    def expire_lock(self, message: ReceivedMessage) -> bool:
        """End the message's lock now, as the broker does when it loses a lock early (a
        failover, an entity moved): the message can be received again at once, while the
        receiver holding the old lock may still be running it. False when the lock had ended."""
        now = self._clock()
        # A renewal to "now": the lock ends, and only if it was still held.
        changed = self._execute_alone(
            _RENEW, (now, message.sequence_number, message.lock_token, now))
        if changed:
            self._notify()
        return changed == 1

    def _lock_lost(self, action: str, message: ReceivedMessage) -> MessageLockLostError:
        return MessageLockLostError(
            f"cannot {action} message {message.message_id!r} (sequence number "
            f"{message.sequence_number}) on {message.entity_path!r}: its lock expired, or it "
            "was settled already or received again by another receiver"
        )

    # -- dead letters -----------------------------------------------------------------------

    def peek_dead_letters(
        self, entity_path: str, max_messages: int = 100
    ) -> list[DeadLetteredMessage]:
        """The entity's dead-letter sub-queue, oldest first, without locking anything."""
        base_path, _ = _parse_path(entity_path)
        dlq_path = base_path + DEAD_LETTER_QUEUE_SUFFIX
        with self._tx() as conn:
            entity = self._receivable_entity(conn, base_path)
            now = self._clock()
            conn.execute(
                _DEAD_LETTER_EXHAUSTED,
                (
                    dlq_path,
                    MAX_DELIVERY_COUNT_EXCEEDED,
                    _max_delivery_description(entity.max_delivery_count),
                    now,
                    base_path,
                    now,
                    entity.max_delivery_count,
                ),
            )
            rows = conn.execute(_PEEK_DEAD_LETTERS, (dlq_path, max_messages)).fetchall()
        return [
            DeadLetteredMessage(
                message_id=row[1],
                subject=row[2],
                body=json.loads(row[3]),
                correlation_id=row[4],
                application_properties=json.loads(row[5]),
                delivery_count=int(row[7]),
                enqueued_time=_utc(row[6]),
                sequence_number=int(row[0]),
                entity_path=base_path,
                reason=row[8],
                description=row[9],
                dead_lettered_time=_utc(row[10]),
            )
            for row in rows
        ]


class EmbeddedDeadLetterQueues:
    """The ``DeadLetterQueues`` port over an EmbeddedBus: what an operator sees of the broker's
    dead-letter sub-queues, and how one is settled (replayed or discarded)."""

    RECEIVE_BATCH = 50

    def __init__(self, bus: EmbeddedBus) -> None:
        self._bus = bus

    def peek_dead_letters(self, entity_path: str, max_messages: int = 100
                          ) -> list[QueuedDeadLetter]:
        return [QueuedDeadLetter(
            entity_path=entity_path, sequence_number=m.sequence_number, message_id=m.message_id,
            subject=m.subject, body=_dumps(m.body).encode(), correlation_id=m.correlation_id,
            application_properties=m.application_properties, delivery_count=m.delivery_count,
            reason=m.reason, description=m.description)
            for m in self._bus.peek_dead_letters(entity_path, max_messages)]

    def settle_dead_letter(self, entity_path: str, sequence_number: int,
                           handle: Callable[[QueuedDeadLetter], None]) -> bool:
        base_path, _ = _parse_path(entity_path)
        dlq = base_path + DEAD_LETTER_QUEUE_SUFFIX
        passed: list[ReceivedMessage] = []
        try:
            while True:
                batch = self._bus.receive(dlq, max_messages=self.RECEIVE_BATCH)
                if not batch:
                    return False
                found = next((m for m in batch if m.sequence_number == sequence_number), None)
                passed.extend(m for m in batch if m is not found)
                if found is None:
                    continue
                try:
                    handle(QueuedDeadLetter(
                        entity_path=entity_path, sequence_number=found.sequence_number,
                        message_id=found.message_id, subject=found.subject,
                        body=_dumps(found.body).encode(), correlation_id=found.correlation_id,
                        application_properties=found.application_properties,
                        delivery_count=found.delivery_count - 1,
                        reason=found.dead_letter_reason,
                        description=found.dead_letter_error_description))
                except BaseException:
                    self._bus.abandon(found)
                    raise
                self._bus.complete(found)
                return True
        finally:
            for other in passed:  # released at once, not left until their locks expire
                self._bus.abandon(other)

    def close(self) -> None:
        """The bus is shared (open_embedded_bus): its owner closes it."""


class EmbeddedBusPublisher:
    """The MessagePublisher port over an EmbeddedBus (what the Service Bus adapter is in Azure)."""

    def __init__(self, bus: EmbeddedBus, *, close_bus: bool = False) -> None:
        self._bus = bus
        self._close_bus = close_bus  # False for a shared bus from open_embedded_bus

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        # One transaction for the whole batch: all-or-nothing, so a retry after a TransientError
        # resends everything and duplicate detection drops what had been stored.
        self._bus.send(messages)

    def close(self) -> None:
        if self._close_bus:
            self._bus.close()


_instances: dict[Path, EmbeddedBus] = {}
_instances_lock = threading.Lock()


def open_embedded_bus(path: str | os.PathLike[str]) -> EmbeddedBus:
    """The process's shared EmbeddedBus for this file (one per resolved path), opened if needed.

    Sharing matters beyond saving connections: receivers blocked in receive() are woken at once
    only by sends through the same instance."""
    resolved = Path(path).resolve()
    with _instances_lock:
        bus = _instances.get(resolved)
        if bus is None or bus.closed:
            bus = _instances[resolved] = EmbeddedBus(resolved)
        return bus


def close_all() -> None:
    """Close every bus open_embedded_bus opened in this process (for tests and shutdown)."""
    with _instances_lock:
        buses = list(_instances.values())
        _instances.clear()
    for bus in buses:
        bus.close()
