"""The one way the embedded backends use SQLite (standard library ``sqlite3``): how a
connection is configured, how writes and reads share a file, and how SQLite's failures are
translated.

Every file is in WAL mode, so readers never block the writer and the writer never blocks
readers, across threads and processes. ``SqliteFile`` gives

- one **writer** connection per file and process, behind a lock: in-process writers queue on a
  cheap Python lock instead of SQLite's sleep-and-retry busy handler, and a write is an explicit
  ``BEGIN IMMEDIATE`` transaction (a deferred read-then-write transaction can fail at once with
  SQLITE_BUSY under WAL when another process committed in between);
- one **reader** connection per thread: SQLite runs statements with the GIL released, so reads
  proceed in parallel with each other and with the writer;
- **group commit** for single-statement writes (``execute_write``): the statements that arrive
  while a transaction is being written wait, and the next writer runs all of them in one
  transaction with one sync. Each statement is still atomic on its own: a constraint violation
  (e.g. a commit id that exists) undoes that statement only, and is reported to its caller
  alone.

Busy/locked failures (another process holding the write lock past the busy timeout) become the
kernel's ``TransientError``; a full disk, a read-only file or I/O errors become
``StorageUnavailableError`` (also transient: the operator can fix them); everything else is raised
unchanged.
"""

from __future__ import annotations

import _thread
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from eventstore.errors import StorageUnavailableError, TransientError

BUSY_TIMEOUT_MS = 10_000
"""How long a statement waits for another process's write lock before SQLite gives up with
SQLITE_BUSY (surfaced as ``TransientError``)."""

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
# The storage itself failed: nothing the request did wrong, and nothing retrying at once fixes,
# but an operator can (free disk space, fix permissions, restore the file).
_STORAGE_FAILURES = {
    8: "read-only",  # SQLITE_READONLY
    10: "disk I/O error",  # SQLITE_IOERR
    11: "corrupt",  # SQLITE_CORRUPT
    13: "disk full",  # SQLITE_FULL
    14: "cannot open",  # SQLITE_CANTOPEN
    26: "not a database",  # SQLITE_NOTADB
}


class EmbeddedClosedError(RuntimeError):
    """The embedded database (or bus) was closed."""


SYNCHRONOUS_LEVELS = ("NORMAL", "FULL")


def connect(path: Path) -> sqlite3.Connection:
    """One connection to ``path`` with the embedded backends' settings.

    - ``isolation_level=None``: autocommit; writes open their transaction explicitly.
    - ``check_same_thread=False``: a dead thread's reader is closed from another thread (the
      SQLite library is built serialized, ``sqlite3.threadsafety == 3``).
    - The statement cache prepares each constant SQL string once per connection.
    """
    conn = sqlite3.connect(
        str(path),
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # The mode is persistent in the file; setting it again is a no-op.
        conn.execute("PRAGMA journal_mode = WAL")
        # synchronous=NORMAL in WAL mode: a commit is an append to the WAL without an fsync; the
        # WAL is fsynced at each checkpoint. A committed transaction survives a crash of the
        # process (the data is in the OS page cache) and the file is never corrupted; only an OS
        # crash or power loss may roll back the last commits. The right trade for a development
        # store, and what makes appends cheap (FULL costs one fsync per commit).
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
    except sqlite3.Error as exc:
        conn.close()
        raise_translated(exc, path)
    return conn


def is_busy(exc: sqlite3.Error) -> bool:
    """True for SQLITE_BUSY / SQLITE_LOCKED (and their extended codes)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)
    message = str(exc).lower()
    return "database is locked" in message or "database is busy" in message


def translate_error(exc: sqlite3.Error, path: Path | None = None) -> Exception:
    """The exception the embedded backends raise for a sqlite3 error."""
    where = f" ({path})" if path is not None else ""
    if is_busy(exc):
        return TransientError(f"SQLite database busy{where}: {exc}")
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _STORAGE_FAILURES:
        return StorageUnavailableError(
            f"embedded storage unavailable ({_STORAGE_FAILURES[code & 0xFF]}){where}: {exc}")
    return exc


def raise_translated(exc: sqlite3.Error, path: Path | None = None) -> NoReturn:
    translated = translate_error(exc, path)
    if translated is exc:
        raise exc
    raise translated from exc


@dataclass(eq=False, slots=True)
class WriteResult:
    """The outcome of one statement of a group commit."""

    sql: str
    params: Sequence[object]
    signal: _thread.LockType  # held until the statement is written (or its writer is to lead)
    lastrowid: int = 0
    rowcount: int = 0
    conflict: sqlite3.IntegrityError | None = None  # this statement alone was undone
    failure: BaseException | None = None  # the whole transaction failed
    done: bool = False


class SqliteFile:
    """A SQLite file shared by the threads of one process: one writer behind a lock, one reader
    per thread (see the module docstring)."""

    def __init__(self, path: Path, on_connect: Callable[[sqlite3.Connection], None] | None = None,
                 synchronous: str = "NORMAL") -> None:
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise ValueError(
                f"synchronous must be one of {SYNCHRONOUS_LEVELS}, got {synchronous!r}")
        self.path = path
        self._synchronous = synchronous
        self._on_connect = on_connect
        self._write_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[WriteResult] = []
        self._leading = False  # a writer is writing the queue (see execute_write)
        self._writer: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers_lock = threading.Lock()
        self._readers: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``); rolled back when the body
        raises. SQLite errors are translated."""
        with self._write_lock:
            conn = self._writer_connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise  # the caller's business (e.g. a commit id that already exists)
                raise_translated(exc, self.path)

    def execute_write(self, sql: str, params: Sequence[object]) -> WriteResult:
        """Run one write statement, in one transaction with the statements other threads submit
        meanwhile (group commit). Raises ``sqlite3.IntegrityError`` when this statement violates
        a constraint (nothing of it is written; the others are unaffected), and the translated
        error when the transaction fails.

        One writer at a time leads: it writes everything queued so far, wakes each writer it
        wrote for, and hands the lead to the first of those queued meanwhile. A writer that
        waits is woken once, when its statement is written or it is to lead."""
        request = WriteResult(sql, params, _thread.allocate_lock())
        request.signal.acquire()
        with self._pending_lock:
            self._pending.append(request)
            lead = not self._leading
            self._leading = True
        if not lead:
            request.signal.acquire()  # released by the leader: written, or our turn to lead
        if not request.done:
            self._lead()
        if request.failure is not None:
            raise request.failure
        if request.conflict is not None:
            raise request.conflict
        return request

    def _lead(self) -> None:
        batch: list[WriteResult] = []
        try:
            with self._write_lock:  # also excludes the transactions of write()
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._write_batch(batch)
        finally:
            for request in batch:
                request.done = True
                request.signal.release()
            with self._pending_lock:
                if self._pending:
                    self._pending[0].signal.release()  # not done: it leads next
                else:
                    self._leading = False

    def _write_batch(self, batch: list[WriteResult]) -> None:
        try:
            conn = self._writer_connection()
            if len(batch) == 1:
                # Alone: an autocommit statement is its own write transaction (SQLite takes the
                # write lock when the statement starts, as BEGIN IMMEDIATE would).
                self._write_one(conn, batch[0])
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                for request in batch:
                    try:
                        cursor = conn.execute(request.sql, request.params)
                    except sqlite3.IntegrityError as exc:
                        request.conflict = exc
                        continue
                    request.lastrowid, request.rowcount = cursor.lastrowid or 0, cursor.rowcount
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                for request in batch:
                    request.failure = translate_error(exc, self.path)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except BaseException as exc:
            for request in batch:
                if request.failure is None:
                    request.failure = exc

    def _write_one(self, conn: sqlite3.Connection, request: WriteResult) -> None:
        try:
            cursor = conn.execute(request.sql, request.params)
        except sqlite3.IntegrityError as exc:
            request.conflict = exc
        except sqlite3.Error as exc:
            request.failure = translate_error(exc, self.path)
        else:
            request.lastrowid, request.rowcount = cursor.lastrowid or 0, cursor.rowcount

    def read(self) -> sqlite3.Connection:
        """This thread's reader connection (opened on first use). Wrap the statements in
        ``translated()`` so failures surface as the kernel's errors."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not self._closed:
            return conn
        return self._open_reader()

    @contextmanager
    def translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise_translated(exc, self.path)

    def _writer_connection(self) -> sqlite3.Connection:
        if self._closed:
            raise EmbeddedClosedError(f"embedded database {self.path} is closed")
        if self._writer is None:
            self._writer = self._connect()
        return self._writer

    def _open_reader(self) -> sqlite3.Connection:
        with self._readers_lock:
            if self._closed:
                raise EmbeddedClosedError(f"embedded database {self.path} is closed")
            self._close_readers_of_dead_threads()
            conn = self._connect()
            self._readers.append((weakref.ref(threading.current_thread()), conn))
            self._local.conn = conn
            return conn

    def _connect(self) -> sqlite3.Connection:
        conn = connect(self.path)
        try:
            if self._synchronous != "NORMAL":
                # FULL (an fsync per commit): to measure against stores that default to it.
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            if self._on_connect is not None:
                self._on_connect(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_readers_of_dead_threads(self) -> None:
        alive: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
        for thread_ref, conn in self._readers:
            thread = thread_ref()
            if thread is not None and thread.is_alive():
                alive.append((thread_ref, conn))
            else:
                conn.close()
        self._readers = alive

    def close(self) -> None:
        with self._write_lock, self._readers_lock:
            self._closed = True
            readers, self._readers = self._readers, []
            writer, self._writer = self._writer, None
        for _, conn in readers:
            conn.close()
        if writer is not None:
            writer.close()
