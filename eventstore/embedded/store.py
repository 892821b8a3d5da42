"""Embedded event store, views and dead letters on one SQLite file per service database.

Same semantics as the Cosmos DB adapters:

- ``commits`` holds one row per commit, the commit document as JSON, with
  UNIQUE (stream_id, first_version): the equivalent of the Cosmos id
  ``"{streamId}:{firstVersion}"``, so a writer that decided from a stale version collides and
  gets ``ConcurrencyError``.
- ``seq INTEGER PRIMARY KEY AUTOINCREMENT`` is the global commit order and serves as the change
  feed; a checkpoint is ``str(seq)`` of the last commit read. SQLite has one writer at a time, so
  a lower sequence never becomes visible after a higher one: a reader never skips a commit.
- ``checkpoints`` holds per-consumer durable checkpoints; ``views`` and ``dead_letters`` live in
  the same file.

Use ``open_embedded_database(path)``: it returns one shared ``EmbeddedDatabase`` per file per
process, so the function code that appends and the local host that pumps the feed share the
in-process wake-up of ``SqliteEventStore.wait_for_commits``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from eventstore.commit import Commit, JsonDict
from eventstore.embedded.sqlite import SqliteFile
from eventstore.errors import ConcurrencyError
from eventstore.ports import DeadLetter, FeedPage, StoredView

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS commits (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id     TEXT    NOT NULL,
    first_version INTEGER NOT NULL,
    last_version  INTEGER NOT NULL,
    document      TEXT    NOT NULL,
    UNIQUE (stream_id, first_version)
);
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
    "INSERT INTO commits (stream_id, first_version, last_version, document) VALUES (?, ?, ?, ?)"
)
_SELECT_STREAM = (
    "SELECT document FROM commits WHERE stream_id = ? AND last_version > ? ORDER BY first_version"
)
_SELECT_FEED = "SELECT seq, document FROM commits WHERE seq > ? ORDER BY seq LIMIT ?"
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

POLL_INTERVAL = 0.25
"""How often ``wait_for_commits`` re-checks the file, to see commits appended by other processes
(appends in this process wake it immediately)."""


# One encoder for every write: json.dumps() with non-default options builds a new one per call.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _loads_document(text: str) -> JsonDict:
    """A stored commit document; what is not even a JSON object is handed on wrapped, so the
    consumer parks it with its raw text instead of the read failing."""
    try:
        document = json.loads(text)
    except ValueError as error:
        return {"raw": text, "parseError": str(error)}
    return document if isinstance(document, dict) else {"raw": text}


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
    """``EventStore``, ``ChangeFeed`` and ``CheckpointStore`` on the ``commits`` and
    ``checkpoints`` tables, plus ``wait_for_commits`` for low-latency feed pumping."""

    def __init__(self, file: SqliteFile) -> None:
        self._file = file
        # Wake-up for wait_for_commits: appends in this process bump the generation and notify.
        self._appended = threading.Condition(threading.Lock())
        self._generation = 0
        self._head = 0  # highest sequence known to exist (appended here or seen in the file)

    # -- EventStore ---------------------------------------------------------------------------

    def append(self, commit: Commit) -> None:
        row = (commit.stream_id, commit.first_version, commit.version, _dumps(commit.to_document()))
        try:
            with self._file.write() as conn:
                cursor = conn.execute(_INSERT_COMMIT, row)
        except sqlite3.IntegrityError as exc:
            if getattr(exc, "sqlite_errorname", "SQLITE_CONSTRAINT_UNIQUE") != (
                "SQLITE_CONSTRAINT_UNIQUE"
            ):
                raise
            raise ConcurrencyError(
                f"commit {commit.id} already exists: stream {commit.stream_id!r} moved past "
                f"version {commit.first_version - 1}"
            ) from exc
        seq = cursor.lastrowid or 0
        with self._appended:
            self._head = max(self._head, seq)
            self._generation += 1
            self._appended.notify_all()

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        with self._file.translated():
            rows = self._file.read().execute(_SELECT_STREAM, (stream_id, after_version)).fetchall()
        return [Commit.from_document(json.loads(document)) for (document,) in rows]

    # -- ChangeFeed ---------------------------------------------------------------------------

    def read_feed(self, checkpoint: str | None, max_items: int) -> FeedPage:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        after = _parse_checkpoint(checkpoint)
        with self._file.translated():
            rows = self._file.read().execute(_SELECT_FEED, (after, max_items)).fetchall()
        if not rows:
            return FeedPage(documents=[], checkpoint=checkpoint)
        return FeedPage(documents=[_loads_document(document) for _, document in rows],
                        checkpoint=str(rows[-1][0]))

    def head_checkpoint(self) -> str | None:
        """The checkpoint after the newest commit (None when the feed is empty)."""
        head = self._read_head()
        return None if head == 0 else str(head)

    def wait_for_commits(self, checkpoint: str | None, timeout: float) -> bool:
        """Block until a commit after ``checkpoint`` exists; False when ``timeout`` seconds pass
        first. Appends through this object wake it at once; appends by other processes (or other
        handles of the same file) are seen by re-checking the file every ``POLL_INTERVAL``."""
        after = _parse_checkpoint(checkpoint)
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            with self._appended:
                if self._head > after:
                    return True
                generation = self._generation
            if self._read_head() > after:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._appended:
                # An append between the file check and here bumped the generation: re-check
                # instead of sleeping through it.
                if self._generation == generation:
                    self._appended.wait(min(remaining, POLL_INTERVAL))

    def _read_head(self) -> int:
        with self._file.translated():
            (head,) = self._file.read().execute(_SELECT_HEAD).fetchone()
        head = int(head or 0)
        with self._appended:
            self._head = max(self._head, head)
        return head

    # -- CheckpointStore ----------------------------------------------------------------------

    def load_checkpoint(self, consumer: str) -> str | None:
        with self._file.translated():
            row = self._file.read().execute(_SELECT_CHECKPOINT, (consumer,)).fetchone()
        return None if row is None else str(row[0])

    def save_checkpoint(self, consumer: str, checkpoint: str) -> None:
        _parse_checkpoint(checkpoint)
        with self._file.write() as conn:
            conn.execute(_UPSERT_CHECKPOINT, (consumer, checkpoint))


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
        new_etag = uuid.uuid4().hex
        body = _dumps(document)
        try:
            with self._file.write() as conn:
                if etag is None:
                    conn.execute(_INSERT_VIEW, (view_id, body, new_etag))
                    return new_etag
                changed = conn.execute(_REPLACE_VIEW, (body, new_etag, view_id, etag)).rowcount
        except sqlite3.IntegrityError as exc:
            raise ConcurrencyError(f"view {view_id!r} already exists") from exc
        if changed != 1:
            raise ConcurrencyError(
                f"view {view_id!r} does not exist or its ETag is no longer {etag!r}"
            )
        return new_etag


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
        return [
            DeadLetter(
                id=str(id_),
                consumer=str(consumer),
                stream_id=str(stream_id),
                version=int(version),
                event_type=str(event_type),
                error=str(error),
                payload=json.loads(payload),
                parked_at=str(parked_at),
            )
            for id_, consumer, stream_id, version, event_type, error, payload, parked_at in rows
        ]


def _create_schema(file: SqliteFile) -> None:
    with file.translated():
        (version,) = file.read().execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"embedded database schema {version} is newer than {SCHEMA_VERSION}")
    # The write transaction takes the lock up front, so two processes creating the same file
    # at once serialize on the busy timeout instead of failing half-way.
    with file.write() as conn:
        # One statement at a time: executescript() would COMMIT our transaction first.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class EmbeddedDatabase:
    """The embedded stores of one service database file: ``events``, ``views``,
    ``dead_letters``. Prefer ``open_embedded_database`` (shared per process); constructing one
    directly gives an independent handle (own connections, own wake-up), as another process
    would have."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path.resolve()
        self._file = SqliteFile(self.path)
        try:
            _create_schema(self._file)
        except BaseException:
            self._file.close()
            raise
        self.events = SqliteEventStore(self._file)
        self.views = SqliteViewStore(self._file)
        self.dead_letters = SqliteDeadLetterStore(self._file)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        """Close every connection; a shared instance is also dropped from the process cache."""
        with _cache_lock:
            if _cache.get(self.path) is self:
                del _cache[self.path]
        self._file.close()

    def __enter__(self) -> EmbeddedDatabase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddedDatabase({str(self.path)!r})"


_cache: dict[Path, EmbeddedDatabase] = {}
_cache_lock = threading.Lock()


def open_embedded_database(path: str | Path) -> EmbeddedDatabase:
    """The process-wide ``EmbeddedDatabase`` for ``path`` (one per resolved path; created, with
    its parent directories, on first use). Thread-safe."""
    resolved = Path(path).resolve()
    with _cache_lock:
        database = _cache.get(resolved)
        if database is None or database.closed:
            database = EmbeddedDatabase(resolved)
            _cache[resolved] = database
        return database


def close_all() -> None:
    """Close every shared database (tests, shutdown)."""
    with _cache_lock:
        databases = list(_cache.values())
        _cache.clear()
    for database in databases:
        database.close()
