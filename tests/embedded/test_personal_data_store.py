"""The embedded personal-data store really deletes: after an erasure no byte of the data is left
in its files (the database, its write-ahead log, the shared-memory index)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore.embedded import personaldata as module
from eventstore.embedded import sqlite as embedded_sqlite
from eventstore.embedded.personaldata import SqlitePersonalDataStore
from eventstore.errors import TransientError

NAME = "Zelda Quintero-Marsh"
EMAIL = "zelda.qm@example.org"
SECRETS = (NAME.encode(), EMAIL.encode())


def hits(folder: Path) -> dict[str, int]:
    """How often the name or e-mail occurs in each file of the folder (raw bytes)."""
    return {path.name: sum(path.read_bytes().count(secret) for secret in SECRETS)
            for path in sorted(folder.iterdir())}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlitePersonalDataStore]:
    opened = SqlitePersonalDataStore(tmp_path / "pd" / "personaldata.db")
    yield opened
    opened.close()


def fill(store: SqlitePersonalDataStore) -> None:
    """Many customers; the one to erase written, updated (an older copy to forget) and written
    again, with an address long enough to spill onto overflow pages."""
    for n in range(200):
        store.put(f"c-{n}", {"name": f"Person {n}", "email": f"p{n}@example.org",
                             "shippingAddress": "Street " * n})
    store.put("c-erase", {"name": NAME.upper(), "email": "old-" + EMAIL, "shippingAddress": "a"})
    store.put("c-erase", {"name": NAME, "email": EMAIL, "shippingAddress": "Long road " * 600})
    store.put("c-erase", {"name": NAME, "email": EMAIL, "shippingAddress": "Short road 1"})


def test_erasure_leaves_no_byte_of_the_data_in_any_file(store: SqlitePersonalDataStore) -> None:
    fill(store)
    folder = store.path.parent
    assert sum(hits(folder).values()) > 0, "the search must find the data before the erasure"
    assert (folder / "personaldata.db-wal").exists()

    store.erase("c-erase")

    assert hits(folder) == {name: 0 for name in hits(folder)}
    assert (folder / "personaldata.db-wal").stat().st_size == 0
    kept = store.get("c-7")
    assert kept is not None and kept.data == {"name": "Person 7", "email": "p7@example.org",
                                              "shippingAddress": "Street " * 7}
    gone = store.get("c-erase")
    assert gone is not None and gone.data is None and gone.erased_at is not None


def test_also_once_the_data_was_checkpointed_into_the_database_file(
        store: SqlitePersonalDataStore) -> None:
    fill(store)
    store._truncate_write_ahead_log()  # the data now lives in the database file itself
    assert hits(store.path.parent)["personaldata.db"] > 0
    store.erase("c-erase")
    assert sum(hits(store.path.parent).values()) == 0


def test_without_secure_delete_the_bytes_would_stay(store: SqlitePersonalDataStore,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    # The control: SQLite builds differ in their default, so the store must set it itself.
    monkeypatch.setattr(module, "_secure",
                        lambda conn: conn.execute("PRAGMA secure_delete = OFF"))
    insecure = SqlitePersonalDataStore(tmp_path / "insecure" / "personaldata.db")
    try:
        fill(insecure)
        insecure._truncate_write_ahead_log()
        insecure.erase("c-erase")
        assert hits(insecure.path.parent)["personaldata.db"] > 0
    finally:
        insecure.close()


def test_every_connection_has_secure_delete_on(store: SqlitePersonalDataStore) -> None:
    store.put("c-1", {"name": "x"})
    with store._file.write() as writer:
        assert writer.execute("PRAGMA secure_delete").fetchone() == (1,)

    def read_in_thread(result: list[tuple[int]]) -> None:
        result.append(store._file.read().execute("PRAGMA secure_delete").fetchone())

    result: list[tuple[int]] = []
    thread = threading.Thread(target=read_in_thread, args=(result,))
    thread.start()
    thread.join(timeout=10)
    assert result == [(1,)]


def test_an_erasure_a_reader_keeps_from_truncating_says_so_and_a_retry_finishes(
        store: SqlitePersonalDataStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_sqlite, "BUSY_TIMEOUT_MS", 100)
    fill(store)
    reader = sqlite3.connect(store.path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM personal_data").fetchone()  # holds a snapshot
        with pytest.raises(TransientError, match="retry the erasure"):
            store.erase("c-erase")
        recorded = store.get("c-erase")
        assert recorded is not None and recorded.data is None  # the erasure itself is done
        reader.execute("COMMIT")
    finally:
        reader.close()
    store.erase("c-erase")
    assert sum(hits(store.path.parent).values()) == 0
