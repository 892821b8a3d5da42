"""Embedded personal-data store: a SQLite file of its own, from which erasure really deletes.

Deleting a row is not enough for SQLite to forget it, so:

- **Its own file.** The event store's file keeps its log for good; nothing that must be erasable
  shares a file (or a write-ahead log) with it.
- **``secure_delete`` on every connection.** SQLite then overwrites deleted content (the row's
  cell, and pages it frees) with zeros, instead of leaving it in free space and on the free
  list.
- **The write-ahead log is checkpointed and truncated after an erasure.** Until then the WAL
  still holds the earlier images of the page (the row as inserted, as updated), even after the
  zeroed page is written; ``wal_checkpoint(TRUNCATE)`` copies the zeroed page into the file and
  cuts the WAL to zero bytes. When another connection keeps the checkpoint from finishing,
  ``erase`` raises ``TransientError``: the erasure is recorded, and a retry (it is idempotent)
  finishes the truncation.

One row per subject: ``data`` is the JSON document, NULL once erased (``erased_at`` says when).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from eventstore.clock import utc_now_iso
from eventstore.commit import JsonDict
from eventstore.embedded.sqlite import SqliteFile, connect, raise_translated
from eventstore.errors import TransientError
from eventstore.ports import PersonalData

SCHEMA_VERSION = 1

_CREATE = """
CREATE TABLE IF NOT EXISTS personal_data (
    subject_id TEXT PRIMARY KEY,
    data       TEXT,
    updated_at TEXT NOT NULL,
    erased_at  TEXT
) WITHOUT ROWID
"""
_SELECT = "SELECT data, updated_at, erased_at FROM personal_data WHERE subject_id = ?"
_UPSERT = (
    "INSERT INTO personal_data (subject_id, data, updated_at, erased_at) VALUES (?, ?, ?, NULL)"
    " ON CONFLICT (subject_id) DO UPDATE SET data = excluded.data,"
    " updated_at = excluded.updated_at, erased_at = NULL"
)
# Delete, then write the tombstone as a new row: the old cell is freed (and zeroed) as a whole.
_DELETE = "DELETE FROM personal_data WHERE subject_id = ?"
_INSERT_TOMBSTONE = (
    "INSERT INTO personal_data (subject_id, data, updated_at, erased_at) VALUES (?, NULL, ?, ?)"
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _secure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA secure_delete = ON")


class SqlitePersonalDataStore:
    """``PersonalDataStore`` on its own SQLite file (see the module docstring)."""

    def __init__(self, path: str | Path, clock: Callable[[], str] = utc_now_iso) -> None:
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._file = SqliteFile(self.path, on_connect=_secure)
        try:
            self._create_schema()
        except BaseException:
            self._file.close()
            raise

    def _create_schema(self) -> None:
        with self._file.translated():
            (version,) = self._file.read().execute("PRAGMA user_version").fetchone()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"personal-data schema {version} is newer than {SCHEMA_VERSION}")
        with self._file.write() as conn:
            conn.execute(_CREATE)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def put(self, subject_id: str, data: JsonDict) -> None:
        with self._file.write() as conn:
            conn.execute(_UPSERT, (subject_id, _dumps(data), self._clock()))

    def get(self, subject_id: str) -> PersonalData | None:
        with self._file.translated():
            row = self._file.read().execute(_SELECT, (subject_id,)).fetchone()
        if row is None:
            return None
        data, updated_at, erased_at = row
        return PersonalData(subject_id=subject_id,
                            data=None if data is None else json.loads(data),
                            updated_at=str(updated_at),
                            erased_at=None if erased_at is None else str(erased_at))

    def erase(self, subject_id: str) -> None:
        with self._file.write() as conn:
            row = conn.execute(_SELECT, (subject_id,)).fetchone()
            if row is None or row[0] is not None:  # not a tombstone yet
                now = self._clock()
                conn.execute(_DELETE, (subject_id,))
                conn.execute(_INSERT_TOMBSTONE, (subject_id, now, now))
        # Also when it was erased already: an earlier attempt may have stopped before this.
        self._truncate_write_ahead_log()

    def _truncate_write_ahead_log(self) -> None:
        try:
            conn = connect(self.path)
            try:
                (busy, _, _) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as error:
            raise_translated(error, self.path)
        if busy:
            raise TransientError(
                f"personal data erased in {self.path}, but its write-ahead log could not be "
                "truncated yet (another connection is reading); retry the erasure")

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        self._file.close()

    def __repr__(self) -> str:
        return f"SqlitePersonalDataStore({str(self.path)!r})"
