"""Embedded event store, views and dead letters on one SQLite file per service database.

Same semantics as the Cosmos DB adapters:

- ``commits`` holds one row per commit, the commit in the compact form of
  ``eventstore.embedded.packing`` (every field of the commit document, packed), with
  UNIQUE (stream_id, first_version): the equivalent of the Cosmos id
  ``"{streamId}:{firstVersion}"``, so a writer that decided from a stale version collides and
  gets ``ConcurrencyError``. Appends that arrive together share one transaction (group commit,
  see ``SqliteFile.execute_write``), each still its own conflict-checked insert.
- ``seq INTEGER PRIMARY KEY`` (the rowid) is the global commit order. Commits are never deleted,
  so a new row always gets a higher sequence; SQLite has one writer at a time, so a lower
  sequence never becomes visible after a higher one: a reader never skips a commit.
- The change feed is split into ``feed_ranges`` ranges, fixed when the file is created (the app
  passes ``EMBEDDED_FEED_RANGES``): a stream belongs to range ``hash(streamId) * N >> 64`` (a
  stable 64-bit BLAKE2b hash, so contiguous slices of the hash space as Cosmos DB's feed ranges
  are), stored per commit in ``feed_range``. A range is read in ``seq`` order from a
  continuation ``"{range}:{seq}"``; order holds within a range (so within a stream), and nothing
  orders two ranges. ``leases`` holds one lease per (lease prefix, range) for
  ``eventstore.changefeed``.
- The unpartitioned ``read_feed`` (a checkpoint is ``str(seq)``) and ``checkpoints`` (one per
  consumer) remain for single readers: tests, tools and benchmarks.
- ``views`` and ``dead_letters`` live in the same file.

Use ``open_embedded_database(path)``: it returns one shared ``EmbeddedDatabase`` per file per
process, so the function code that appends and the local host that pumps the feed share the
in-process wake-up of ``SqliteEventStore.wait_for_commits``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from eventstore.clock import new_etag
from eventstore.commit import Commit, JsonDict
from eventstore.embedded.doorbell import Doorbell
from eventstore.embedded.packing import (
    document_from_row,
    pack_body,
    pack_stream_id,
    unpack_commit,
    unpack_stream_id,
)
from eventstore.embedded.sqlite import SqliteFile
from eventstore.errors import ConcurrencyError
from eventstore.ports import (
    DeadLetter,
    FeedPage,
    FeedRange,
    Lease,
    RangeLag,
    StoredView,
    StreamInfo,
)

SCHEMA_VERSION = 3  # 2: feed ranges; 3: packed rows (stream ids and bodies, see packing.py)

UNPARTITIONED = 1
"""Feed ranges of a file created without a count: one range, the global commit order."""
MAX_FEED_RANGES = 256

# stream_id and document have no declared type: each holds TEXT or BLOB (see packing.py).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS commits (
    seq           INTEGER PRIMARY KEY,
    stream_id     NOT NULL,
    first_version INTEGER NOT NULL,
    last_version  INTEGER NOT NULL,
    document      NOT NULL,
    feed_range    INTEGER NOT NULL,
    UNIQUE (stream_id, first_version)
);
CREATE INDEX IF NOT EXISTS commits_by_range ON commits (feed_range, seq);
CREATE TABLE IF NOT EXISTS store_meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    prefix       TEXT NOT NULL,
    range_id     TEXT NOT NULL,
    owner        TEXT,
    continuation TEXT,
    expires_at   REAL NOT NULL,
    etag         TEXT NOT NULL,
    PRIMARY KEY (prefix, range_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer   TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS views (
    id       TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    etag     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id         TEXT PRIMARY KEY,
    consumer   TEXT    NOT NULL,
    stream_id  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    error      TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    parked_at  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_time ON dead_letters (parked_at, id);
"""

# Constant SQL strings: the sqlite3 statement cache prepares each once per connection.
_INSERT_COMMIT = (
    "INSERT INTO commits (stream_id, first_version, last_version, document, feed_range)"
    " VALUES (?, ?, ?, ?, ?)"
)
_SELECT_RANGE = (
    "SELECT seq, stream_id, first_version, document FROM commits WHERE feed_range = ? AND seq > ?"
    " ORDER BY seq LIMIT ?"
)
_SELECT_RANGE_HEAD = "SELECT max(seq) FROM commits WHERE feed_range = ?"
_LEASE_COLUMNS = "prefix, range_id, owner, continuation, expires_at, etag"
_SELECT_LEASES = f"SELECT {_LEASE_COLUMNS} FROM leases WHERE prefix = ? ORDER BY range_id"
_SELECT_LEASE = f"SELECT {_LEASE_COLUMNS} FROM leases WHERE prefix = ? AND range_id = ?"
_INSERT_LEASE = (
    "INSERT INTO leases (prefix, range_id, owner, continuation, expires_at, etag)"
    " VALUES (?, ?, NULL, ?, 0, ?) ON CONFLICT (prefix, range_id) DO NOTHING"
)
_REPLACE_LEASE = (
    "UPDATE leases SET owner = ?, continuation = ?, expires_at = ?, etag = ?"
    " WHERE prefix = ? AND range_id = ? AND etag = ?"
)
_SELECT_STREAM = (
    "SELECT first_version, document FROM commits WHERE stream_id = ? AND last_version > ?"
    " ORDER BY first_version"
)
_SELECT_FEED = (
    "SELECT seq, stream_id, first_version, document FROM commits WHERE seq > ? ORDER BY seq"
    " LIMIT ?"
)
_SELECT_HEAD = "SELECT max(seq) FROM commits"
_SELECT_CHECKPOINT = "SELECT checkpoint FROM checkpoints WHERE consumer = ?"
_UPSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (consumer, checkpoint) VALUES (?, ?) "
    "ON CONFLICT (consumer) DO UPDATE SET checkpoint = excluded.checkpoint"
)
_SELECT_VIEW = "SELECT document, etag FROM views WHERE id = ?"
_INSERT_VIEW = "INSERT INTO views (id, document, etag) VALUES (?, ?, ?)"
_REPLACE_VIEW = "UPDATE views SET document = ?, etag = ? WHERE id = ? AND etag = ?"
_UPSERT_LETTER = (
    "INSERT INTO dead_letters (id, consumer, stream_id, version, event_type, error, payload,"
    " parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
    " consumer = excluded.consumer, stream_id = excluded.stream_id, version = excluded.version,"
    " event_type = excluded.event_type, error = excluded.error, payload = excluded.payload,"
    " parked_at = excluded.parked_at"
)
_SELECT_LETTERS = (
    "SELECT id, consumer, stream_id, version, event_type, error, payload, parked_at"
    " FROM dead_letters ORDER BY parked_at, id LIMIT ?"
)

_LIST_STREAMS = (
    "SELECT stream_id, max(last_version), count(*) FROM commits WHERE stream_id > ?"
    " GROUP BY stream_id ORDER BY stream_id LIMIT ?"
)
_COUNT_AFTER_IN_RANGE = (
    "SELECT count(*), coalesce(sum(last_version - first_version + 1), 0) FROM commits"
    " WHERE feed_range = ? AND seq > ?"
)
_SELECT_LETTER = (
    "SELECT id, consumer, stream_id, version, event_type, error, payload, parked_at"
    " FROM dead_letters WHERE id = ?"
)
_DELETE_LETTER = "DELETE FROM dead_letters WHERE id = ?"

POLL_INTERVAL = 0.25
"""How often ``wait_for_commits`` re-checks the file, to see commits appended by other processes
(appends in this process wake it immediately)."""


# One encoder for every write: json.dumps() with non-default options builds a new one per call.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _documents(rows: list[tuple[Any, ...]]) -> list[JsonDict]:
    """Feed rows ``(seq, stream key, first version, body)`` as commit documents; a row that is
    not even a commit is handed on wrapped, so the consumer parks it instead of the read
    failing."""
    return [document_from_row(key, first, body) for _, key, first, body in rows]


def feed_range_of(stream_id: str, ranges: int) -> int:
    """The range of a stream among ``ranges``: its slice of a stable 64-bit hash space."""
    digest = hashlib.blake2b(stream_id.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") * ranges) >> 64


_CONTINUATION = re.compile(r"(\d+):(\d+)")


class FeedRangesMismatch(ValueError):
    """The file was created with another number of feed ranges than the one asked for."""


def _parse_checkpoint(checkpoint: str | None) -> int:
    if checkpoint is None:
        return 0
    try:
        position = int(checkpoint)
    except ValueError:
        raise ValueError(f"not a checkpoint of the embedded change feed: {checkpoint!r}") from None
    if position < 0:
        raise ValueError(f"not a checkpoint of the embedded change feed: {checkpoint!r}")
    return position


class SqliteEventStore:
    """``EventStore``, ``PartitionedFeed`` (with ``wait_for_range``), and the unpartitioned
    ``ChangeFeed`` and ``CheckpointStore``, on the ``commits`` and ``checkpoints`` tables."""

    def __init__(self, file: SqliteFile, feed_ranges: int) -> None:
        self._file = file
        self.feed_range_count = feed_ranges
        self._ranges = [FeedRange(id=str(index)) for index in range(feed_ranges)]
        # Wake-ups for the waits: an append in this process bumps its range's generation and the
        # feed's, and wakes only the waiters of that range (and of the whole feed): a wake-up
        # costs a thread switch and the GIL, so the other ranges' pumps are left asleep.
        self._appended_lock = threading.Lock()
        self._appended = threading.Condition(self._appended_lock)
        self._range_appended = [threading.Condition(self._appended_lock)
                                for _ in range(feed_ranges)]
        self._generation = 0
        self._range_generations = [0] * feed_ranges
        # When each head was last read from the file (monotonic; key -1: the whole feed): a
        # wait that starts soon after needs no query of its own to see other processes' appends.
        self._file_checked_at: dict[int, float] = {}
        self._head = 0  # highest sequence known to exist (appended here or seen in the file)
        self._range_heads = [0] * feed_ranges  # the same, per range
        # Rings from the file's other handles (other processes): per key, how many came. A ring
        # makes the next wait read the file instead of trusting the last read.
        self._rings: dict[int, int] = {}
        self._bell = Doorbell(file.path, self._rung)

    # -- EventStore ---------------------------------------------------------------------------

    def append(self, commit: Commit) -> None:
        feed_range = feed_range_of(commit.stream_id, self.feed_range_count)
        row = (pack_stream_id(commit.stream_id), commit.first_version, commit.version,
               pack_body(commit), feed_range)
        try:
            written = self._file.execute_write(_INSERT_COMMIT, row)
        except sqlite3.IntegrityError as exc:
            if getattr(exc, "sqlite_errorname", "SQLITE_CONSTRAINT_UNIQUE") != (
                "SQLITE_CONSTRAINT_UNIQUE"
            ):
                raise
            raise ConcurrencyError(
                f"commit {commit.id} already exists: stream {commit.stream_id!r} moved past "
                f"version {commit.first_version - 1}"
            ) from exc
        seq = written.lastrowid
        self._bell.ring((str(feed_range),))
        with self._appended_lock:
            self._head = max(self._head, seq)
            self._range_heads[feed_range] = max(self._range_heads[feed_range], seq)
            self._generation += 1
            self._range_generations[feed_range] += 1
            self._appended.notify_all()
            self._range_appended[feed_range].notify_all()

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        key = pack_stream_id(stream_id)
        with self._file.translated():
            rows = self._file.read().execute(_SELECT_STREAM, (key, after_version)).fetchall()
        return [unpack_commit(stream_id, first, body) for first, body in rows]

    # -- PartitionedFeed ----------------------------------------------------------------------

    def feed_ranges(self) -> list[FeedRange]:
        return list(self._ranges)

    def feed_range_of(self, stream_id: str) -> FeedRange:
        return self._ranges[feed_range_of(stream_id, self.feed_range_count)]

    def read_range(self, feed_range: FeedRange, continuation: str | None,
                   max_items: int) -> FeedPage:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        index = self._range_index(feed_range)
        after = self._parse_continuation(index, continuation)
        with self._file.translated():
            rows = self._file.read().execute(_SELECT_RANGE, (index, after, max_items)).fetchall()
        if not rows:
            return FeedPage(documents=[], checkpoint=continuation)
        return FeedPage(documents=_documents(rows), checkpoint=f"{index}:{rows[-1][0]}")

    def wait_for_range(self, feed_range: FeedRange, continuation: str | None,
                       timeout: float) -> bool:
        """Block until the range has a commit after ``continuation``; False when ``timeout``
        seconds pass first. Appends through this object wake it at once; appends by other
        processes are seen by re-checking the file every ``POLL_INTERVAL``."""
        index = self._range_index(feed_range)
        after = self._parse_continuation(index, continuation)
        return self._wait(lambda: self._range_heads[index] > after,
                          lambda: self._read_range_head(index) > after, timeout,
                          self._range_appended[index],
                          lambda: self._range_generations[index], index)

    def _range_index(self, feed_range: FeedRange) -> int:
        index = int(feed_range.id) if feed_range.id.isdigit() else -1
        if not 0 <= index < self.feed_range_count:
            raise ValueError(f"no feed range {feed_range.id!r}: this store has ranges 0.."
                             f"{self.feed_range_count - 1}")
        return index

    @staticmethod
    def _parse_continuation(index: int, continuation: str | None) -> int:
        if continuation is None:
            return 0
        match = _CONTINUATION.fullmatch(continuation)
        if match is None or int(match.group(1)) != index:
            raise ValueError(f"not a continuation of feed range {index}: {continuation!r}")
        return int(match.group(2))

    def _read_range_head(self, index: int) -> int:
        rings = self._rings.get(index, 0)
        with self._file.translated():
            (head,) = self._file.read().execute(_SELECT_RANGE_HEAD, (index,)).fetchone()
        head = int(head or 0)
        with self._appended_lock:
            self._range_heads[index] = max(self._range_heads[index], head)
            self._checked(index, rings)
        return head

    def _checked(self, key: int, rings: int) -> None:
        """Record a read of the file for ``key``'s waiters, unless a ring came during it (the
        read may have missed what the ring announced). Under ``_appended_lock``."""
        if self._rings.get(key, 0) == rings:
            self._file_checked_at[key] = time.monotonic()

    def _rung(self, topics: set[str]) -> None:
        """Another handle appended to these ranges: wake their waiters to read the file."""
        ranges = [int(t) for t in topics if t.isdigit() and int(t) < self.feed_range_count]
        if not ranges:
            return
        with self._appended_lock:
            for key in (*ranges, -1):
                self._rings[key] = self._rings.get(key, 0) + 1
                self._file_checked_at.pop(key, None)
            for index in ranges:
                self._range_generations[index] += 1
                self._range_appended[index].notify_all()
            self._generation += 1
            self._appended.notify_all()

    def close(self) -> None:
        """Stop the wake-ups from the file's other handles."""
        self._bell.close()

    # -- ChangeFeed (unpartitioned) -----------------------------------------------------------

    def read_feed(self, checkpoint: str | None, max_items: int) -> FeedPage:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        after = _parse_checkpoint(checkpoint)
        with self._file.translated():
            rows = self._file.read().execute(_SELECT_FEED, (after, max_items)).fetchall()
        if not rows:
            return FeedPage(documents=[], checkpoint=checkpoint)
        return FeedPage(documents=_documents(rows),
                        checkpoint=str(rows[-1][0]))

    def head_checkpoint(self) -> str | None:
        """The checkpoint after the newest commit (None when the feed is empty)."""
        head = self._read_head()
        return None if head == 0 else str(head)

    def wait_for_commits(self, checkpoint: str | None, timeout: float) -> bool:
        """Block until a commit after ``checkpoint`` exists (in any range); False when
        ``timeout`` seconds pass first. Wakes as ``wait_for_range`` does."""
        after = _parse_checkpoint(checkpoint)
        return self._wait(lambda: self._head > after, lambda: self._read_head() > after, timeout,
                          self._appended, lambda: self._generation, -1)

    def _wait(self, known: Callable[[], bool], in_file: Callable[[], bool], timeout: float,
              woken: threading.Condition, generation_of: Callable[[], int], key: int) -> bool:
        """Wait until ``known`` (what this object's appends record, checked on every wake-up)
        or ``in_file`` (a query, for other processes' appends: once per ``POLL_INTERVAL``, and
        at the start unless that head was read from the file less than that ago; a zero
        ``timeout`` always reads it). ``woken`` is notified by the appends that concern the
        waiter, and ``generation_of`` counts them; a wake-up costs no query."""
        now = time.monotonic()
        deadline = now + max(timeout, 0.0)
        read_now = timeout <= 0
        while True:
            with woken:
                if known():
                    return True
                generation = generation_of()
                # None until read, and again after a ring (another process appended).
                file_checked_at = self._file_checked_at.get(key)
            now = time.monotonic()
            if read_now or file_checked_at is None or now - file_checked_at >= POLL_INTERVAL:
                read_now = False
                if in_file():
                    return True
                file_checked_at = now
            remaining = deadline - now
            if remaining <= 0:
                return False
            with woken:
                # An append between the check and here bumped the generation: re-check
                # instead of sleeping through it.
                if generation_of() == generation:
                    woken.wait(min(remaining, file_checked_at + POLL_INTERVAL - now))

    def _read_head(self) -> int:
        rings = self._rings.get(-1, 0)
        with self._file.translated():
            (head,) = self._file.read().execute(_SELECT_HEAD).fetchone()
        head = int(head or 0)
        with self._appended_lock:
            self._head = max(self._head, head)
            self._checked(-1, rings)
        return head

    # -- StreamCatalog, FeedMonitor -----------------------------------------------------------

    def list_streams(self, after: str | None = None, limit: int = 100) -> list[StreamInfo]:
        with self._file.translated():
            start = pack_stream_id(after) if after else ""
            rows = self._file.read().execute(_LIST_STREAMS, (start, limit)).fetchall()
        # Packed ids order after text ones (SQLite sorts TEXT before BLOB), consistently, so
        # paging by the last id shown still visits every stream once.
        return [StreamInfo(unpack_stream_id(stream), int(version), int(commits))
                for stream, version, commits in rows]

    def consumer_lag(self, consumer: str) -> list[RangeLag]:
        """Per feed range: the consumer's lease (by its lease prefix), or, before it took one,
        the unpartitioned checkpoint its leases will start from, and what comes after it."""
        lags = []
        with self._file.translated():
            conn = self._file.read()
            legacy = conn.execute(_SELECT_CHECKPOINT, (consumer,)).fetchone()
            for index, feed_range in enumerate(self._ranges):
                lease = conn.execute(_SELECT_LEASE, (consumer, feed_range.id)).fetchone()
                if lease is not None:
                    continuation, owner = lease[3], lease[2]
                    after = self._parse_continuation(index, continuation)
                else:
                    continuation = f"{index}:{int(legacy[0])}" if legacy else None
                    owner, after = None, int(legacy[0]) if legacy else 0
                commits, events = conn.execute(_COUNT_AFTER_IN_RANGE, (index, after)).fetchone()
                lags.append(RangeLag(feed_range.id, continuation, int(commits), int(events),
                                     None if owner is None else str(owner)))
        return lags

    # -- CheckpointStore ----------------------------------------------------------------------

    def load_checkpoint(self, consumer: str) -> str | None:
        with self._file.translated():
            row = self._file.read().execute(_SELECT_CHECKPOINT, (consumer,)).fetchone()
        return None if row is None else str(row[0])

    def save_checkpoint(self, consumer: str, checkpoint: str) -> None:
        _parse_checkpoint(checkpoint)
        with self._file.write() as conn:
            conn.execute(_UPSERT_CHECKPOINT, (consumer, checkpoint))


class SqliteLeaseStore:
    """``LeaseStore`` on the ``leases`` table; every write gets a new random ETag.

    A consumer that kept an unpartitioned checkpoint before (``checkpoints``, under its lease
    prefix) starts its new leases there rather than at the beginning, so that upgrading a data
    folder replays nothing."""

    def __init__(self, file: SqliteFile, events: SqliteEventStore) -> None:
        self._file = file
        self._events = events

    def list_leases(self, prefix: str) -> list[Lease]:
        with self._file.translated():
            rows = self._file.read().execute(_SELECT_LEASES, (prefix,)).fetchall()
        return [_lease(row) for row in rows]

    def read_lease(self, prefix: str, range_id: str) -> Lease | None:
        with self._file.translated():
            row = self._file.read().execute(_SELECT_LEASE, (prefix, range_id)).fetchone()
        return None if row is None else _lease(row)

    def create_lease(self, prefix: str, range_id: str) -> Lease | None:
        index = self._events._range_index(FeedRange(range_id))
        etag = new_etag()
        with self._file.write() as conn:
            legacy = conn.execute(_SELECT_CHECKPOINT, (prefix,)).fetchone()
            continuation = f"{index}:{int(legacy[0])}" if legacy else None
            created = conn.execute(_INSERT_LEASE, (prefix, range_id, continuation, etag)).rowcount
        if not created:
            return None
        return Lease(prefix=prefix, range_id=range_id, continuation=continuation, etag=etag)

    def replace_lease(self, lease: Lease) -> Lease:
        index = self._events._range_index(FeedRange(lease.range_id))
        self._events._parse_continuation(index, lease.continuation)
        etag = new_etag()
        # One statement, its ETag check in the WHERE: atomic on its own, so it joins the group
        # commit of whatever else is being written (a checkpoint per batch, per consumer).
        changed = self._file.execute_write(_REPLACE_LEASE, (
            lease.owner, lease.continuation, lease.expires_at, etag, lease.prefix,
            lease.range_id, lease.etag)).rowcount
        if changed != 1:
            raise ConcurrencyError(f"lease {lease.prefix}:{lease.range_id} does not exist or its "
                                   f"ETag is no longer {lease.etag!r}")
        return replace(lease, etag=etag)


def _lease(row: tuple[Any, ...]) -> Lease:
    prefix, range_id, owner, continuation, expires_at, etag = row
    return Lease(prefix=str(prefix), range_id=str(range_id),
                 owner=None if owner is None else str(owner),
                 continuation=None if continuation is None else str(continuation),
                 expires_at=float(expires_at),
                 etag=str(etag))


class SqliteViewStore:
    """``ViewStore`` on the ``views`` table; every write gets a new random ETag."""

    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    def get(self, view_id: str) -> StoredView | None:
        with self._file.translated():
            row = self._file.read().execute(_SELECT_VIEW, (view_id,)).fetchone()
        if row is None:
            return None
        document, etag = row
        return StoredView(document=json.loads(document), etag=str(etag))

    def put(self, view_id: str, document: JsonDict, etag: str | None) -> str:
        etag_after = new_etag()
        body = _dumps(document)
        try:
            if etag is None:
                self._file.execute_write(_INSERT_VIEW, (view_id, body, etag_after))
                return etag_after
            changed = self._file.execute_write(_REPLACE_VIEW,
                                               (body, etag_after, view_id, etag)).rowcount
        except sqlite3.IntegrityError as exc:
            raise ConcurrencyError(f"view {view_id!r} already exists") from exc
        if changed != 1:
            raise ConcurrencyError(
                f"view {view_id!r} does not exist or its ETag is no longer {etag!r}"
            )
        return etag_after


class SqliteDeadLetterStore:
    """``DeadLetterStore`` on the ``dead_letters`` table; parking is an upsert by id."""

    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    def park(self, letter: DeadLetter) -> None:
        row = (
            letter.id,
            letter.consumer,
            letter.stream_id,
            letter.version,
            letter.event_type,
            letter.error,
            _dumps(letter.payload),
            letter.parked_at,
        )
        with self._file.write() as conn:
            conn.execute(_UPSERT_LETTER, row)

    def list_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` letters, by parked_at then id."""
        with self._file.translated():
            rows = self._file.read().execute(_SELECT_LETTERS, (limit,)).fetchall()
        return [_letter(row) for row in rows]

    def get_letter(self, letter_id: str) -> DeadLetter | None:
        with self._file.translated():
            row = self._file.read().execute(_SELECT_LETTER, (letter_id,)).fetchone()
        return None if row is None else _letter(row)

    def remove(self, letter_id: str) -> bool:
        with self._file.write() as conn:
            return conn.execute(_DELETE_LETTER, (letter_id,)).rowcount > 0


def _letter(row: tuple[object, ...]) -> DeadLetter:
    id_, consumer, stream_id, version, event_type, error, payload, parked_at = row
    return DeadLetter(id=str(id_), consumer=str(consumer), stream_id=str(stream_id),
                      version=int(str(version)), event_type=str(event_type), error=str(error),
                      payload=json.loads(str(payload)), parked_at=str(parked_at))


def _open_schema(file: SqliteFile, feed_ranges: int | None) -> int:
    """Create the schema, or upgrade an older one; returns the file's number of feed ranges
    (``feed_ranges`` for a new file, else what it was created with, which must match)."""
    if feed_ranges is not None and not 1 <= feed_ranges <= MAX_FEED_RANGES:
        raise ValueError(f"feed ranges must be 1..{MAX_FEED_RANGES}, got {feed_ranges}")
    with file.translated():
        (version,) = file.read().execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"embedded database schema {version} is newer than {SCHEMA_VERSION}")
    if version < SCHEMA_VERSION:
        # The write transaction takes the lock up front, so two processes opening the same file
        # at once serialize on the busy timeout; the second sees the first one's work.
        with file.write() as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version < SCHEMA_VERSION:
                _upgrade(conn, version, feed_ranges or UNPARTITIONED)
    with file.translated():
        row = file.read().execute(
            "SELECT value FROM store_meta WHERE name = 'feed_ranges'").fetchone()
    stored = int(row[0])
    if feed_ranges is not None and feed_ranges != stored:
        raise FeedRangesMismatch(
            f"{file.path} was created with {stored} feed ranges, not {feed_ranges}: leases and "
            f"continuations name its ranges. Set EMBEDDED_FEED_RANGES={stored}, or reset the "
            "local data (make reset)")
    return stored


def _upgrade(conn: sqlite3.Connection, version: int, feed_ranges: int) -> None:
    if version == 1:
        # Schema 1 had one global feed: give every commit its range, as append would have.
        conn.execute("ALTER TABLE commits ADD COLUMN feed_range INTEGER NOT NULL DEFAULT 0")
        conn.create_function("feed_range_of", 1,
                             lambda stream_id: feed_range_of(stream_id, feed_ranges),
                             deterministic=True)
        conn.execute("UPDATE commits SET feed_range = feed_range_of(stream_id)")
    if 1 <= version <= 2:
        # Older rows stay JSON documents (still read as such); their stream ids are packed, so
        # appends and reads find them under the same keys as new rows.
        conn.create_function("pack_stream_id", 1, pack_stream_id, deterministic=True)
        conn.execute("UPDATE commits SET stream_id = pack_stream_id(stream_id)"
                     " WHERE typeof(stream_id) = 'text'")
    # One statement at a time: executescript() would COMMIT our transaction first.
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT OR IGNORE INTO store_meta (name, value) VALUES ('feed_ranges', ?)",
                 (str(feed_ranges),))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class EmbeddedDatabase:
    """The embedded stores of one service database file: ``events``, ``leases``, ``views``,
    ``dead_letters``. Prefer ``open_embedded_database`` (shared per process); constructing one
    directly gives an independent handle (own connections, own wake-up), as another process
    would have.

    ``feed_ranges`` splits a new file's change feed (None: one range); an existing file keeps
    the count it was created with, and asking for another raises ``FeedRangesMismatch``.
    ``synchronous`` is SQLite's durability level of this process's connections (NORMAL, or FULL
    to measure against stores that default to it)."""

    def __init__(self, path: str | Path, feed_ranges: int | None = None, *,
                 synchronous: str = "NORMAL") -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path.resolve()
        self._file = SqliteFile(self.path, synchronous=synchronous)
        try:
            ranges = _open_schema(self._file, feed_ranges)
        except BaseException:
            self._file.close()
            raise
        self.events = SqliteEventStore(self._file, ranges)
        self.leases = SqliteLeaseStore(self._file, self.events)
        self.views = SqliteViewStore(self._file)
        self.dead_letters = SqliteDeadLetterStore(self._file)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def pragma(self, name: str) -> object:
        """A setting as this process's connections see it (e.g. ``synchronous``)."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._file.translated():
            row = self._file.read().execute(f"PRAGMA {name}").fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        """Close every connection; a shared instance is also dropped from the process cache."""
        with _cache_lock:
            if _cache.get(self.path) is self:
                del _cache[self.path]
        self.events.close()
        self._file.close()

    def __enter__(self) -> EmbeddedDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddedDatabase({str(self.path)!r})"


_cache: dict[Path, EmbeddedDatabase] = {}
_cache_lock = threading.Lock()


def open_embedded_database(path: str | Path, feed_ranges: int | None = None
                           ) -> EmbeddedDatabase:
    """The process-wide ``EmbeddedDatabase`` for ``path`` (one per resolved path; created, with
    its parent directories, on first use). Thread-safe."""
    resolved = Path(path).resolve()
    with _cache_lock:
        database = _cache.get(resolved)
        if database is None or database.closed:
            database = EmbeddedDatabase(resolved, feed_ranges)
            _cache[resolved] = database
        elif feed_ranges is not None and database.events.feed_range_count != feed_ranges:
            raise FeedRangesMismatch(
                f"{resolved} is open with {database.events.feed_range_count} feed ranges, not "
                f"{feed_ranges}")
        return database


def close_all() -> None:
    """Close every shared database (tests, shutdown)."""
    with _cache_lock:
        databases = list(_cache.values())
        _cache.clear()
    for database in databases:
        database.close()
