"""Behaviour specific to the embedded SQLite store (the shared contract is in tests/contract/)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from eventstore.embedded import sqlite
from eventstore.embedded import store as embedded_store
from eventstore.embedded.store import (
    EmbeddedDatabase,
    close_all,
    open_embedded_database,
)
from eventstore.errors import ConcurrencyError, TransientError
from tests.contract.conftest import make_commit, new_stream

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _close_shared_databases() -> Iterator[None]:
    yield
    close_all()


class _SignallingCondition(threading.Condition):
    """A Condition that reports when a thread blocks in wait(), so a test can append only once
    the waiter is really waiting (otherwise it could find the commit without any wake-up)."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)  # the store's: its appends notify under that lock
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return super().wait(timeout)


def wait_in_thread(
    database: EmbeddedDatabase,
    checkpoint: str | None,
    timeout: float,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Thread, dict[str, float | bool]]:
    """Start a thread blocked in wait_for_commits; returns once it is blocked, with the thread and
    a dict that receives its result and the monotonic time it returned."""
    condition = _SignallingCondition(database.events._appended_lock)
    monkeypatch.setattr(database.events, "_appended", condition)  # white-box: see the class
    result: dict[str, float | bool] = {}

    def run() -> None:
        result["woke"] = database.events.wait_for_commits(checkpoint, timeout)
        result["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert condition.waiting.wait(30), "the waiter never blocked"
    return thread, result


# -- wake-up -------------------------------------------------------------------------------------


def test_wait_for_commits_wakes_on_append_in_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the file re-checked only every 60 s, returning promptly proves the in-process wake-up.
    monkeypatch.setattr(embedded_store, "POLL_INTERVAL", 60.0)
    database = open_embedded_database(tmp_path / "orders.db")
    stream = new_stream()
    database.events.append(make_commit(stream, 1))
    checkpoint = database.events.head_checkpoint()
    thread, result = wait_in_thread(database, checkpoint, 120, monkeypatch)

    appended_at = time.monotonic()
    database.events.append(make_commit(stream, 2))
    thread.join(30)
    assert not thread.is_alive(), "wait_for_commits did not return"

    assert result["woke"] is True
    assert result["at"] - appended_at < 5.0  # promptly, i.e. nowhere near the 60 s poll
    page = database.events.read_feed(checkpoint, 10)
    assert [c.version for c in page.commits] == [2]


def test_wait_for_commits_sees_appends_through_another_handle_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "orders.db"
    waiter = EmbeddedDatabase(path)
    writer = EmbeddedDatabase(path)  # as another process would: own connections, own wake-up
    try:
        thread, result = wait_in_thread(waiter, None, 60, monkeypatch)
        appended_at = time.monotonic()
        writer.events.append(make_commit(new_stream(), 1))
        thread.join(30)
        assert not thread.is_alive(), "wait_for_commits did not return"

        assert result["woke"] is True
        assert result["at"] - appended_at < 10.0  # found by re-checking the file (0.25 s)
    finally:
        waiter.close()
        writer.close()


def test_wait_for_commits_returns_at_once_when_commits_exist(tmp_path: Path) -> None:
    database = open_embedded_database(tmp_path / "orders.db")
    database.events.append(make_commit(new_stream(), 1))

    began = time.monotonic()
    assert database.events.wait_for_commits(None, timeout=30) is True
    assert database.events.wait_for_commits("0", timeout=30) is True
    assert time.monotonic() - began < 5.0


def test_wait_for_commits_times_out_without_new_commits(tmp_path: Path) -> None:
    database = open_embedded_database(tmp_path / "orders.db")
    database.events.append(make_commit(new_stream(), 1))
    head = database.events.head_checkpoint()

    began = time.monotonic()
    assert database.events.wait_for_commits(head, timeout=0.3) is False
    assert time.monotonic() - began >= 0.3
    assert database.events.wait_for_commits(head, timeout=0) is False


# -- shared instance per path --------------------------------------------------------------------


def test_same_path_gives_the_same_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = open_embedded_database(tmp_path / "orders.db")

    assert open_embedded_database(str(tmp_path / "orders.db")) is first
    assert open_embedded_database("orders.db") is first
    assert open_embedded_database(tmp_path / "sub" / ".." / "orders.db") is first
    assert open_embedded_database(tmp_path / "payments.db") is not first


def test_concurrent_first_opens_share_one_instance(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    start = threading.Barrier(8)

    def open_it(_: int) -> EmbeddedDatabase:
        start.wait()
        return open_embedded_database(path)

    with ThreadPoolExecutor(max_workers=8) as pool:
        opened = list(pool.map(open_it, range(8)))

    assert all(database is opened[0] for database in opened)


def test_closing_drops_the_shared_instance(tmp_path: Path) -> None:
    first = open_embedded_database(tmp_path / "orders.db")
    first.close()

    second = open_embedded_database(tmp_path / "orders.db")

    assert second is not first
    assert first.closed
    assert not second.closed


def test_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / ".data" / "nested" / "orders.db"

    database = open_embedded_database(path)
    database.events.append(make_commit(new_stream(), 1))

    assert path.is_file()


def test_file_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    stream = new_stream()
    commits = [make_commit(stream, 1, 2), make_commit(stream, 3)]
    database = open_embedded_database(path)
    for commit in commits:
        database.events.append(commit)
    database.events.save_checkpoint("projector-v1", "1")
    close_all()

    reopened = open_embedded_database(path)

    assert reopened is not database
    assert reopened.events.read_stream(stream) == commits
    assert reopened.events.load_checkpoint("projector-v1") == "1"
    with pytest.raises(ConcurrencyError):
        reopened.events.append(make_commit(stream, 3))


def test_uses_wal_and_normal_sync(tmp_path: Path) -> None:
    database = open_embedded_database(tmp_path / "orders.db")
    database.events.append(make_commit(new_stream(), 1))
    conn = sqlite3.connect(tmp_path / "orders.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
    our_conn = sqlite.connect(tmp_path / "orders.db")
    try:
        assert our_conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    finally:
        our_conn.close()


# -- change feed order, checkpoints --------------------------------------------------------------


def test_feed_is_in_global_commit_order(tmp_path: Path) -> None:
    database = open_embedded_database(tmp_path / "orders.db")
    streams = [new_stream("order"), new_stream("payment")]
    appended = []
    for i in range(9):
        stream = streams[i % 2]
        commit = make_commit(stream, i // 2 + 1)
        database.events.append(commit)
        appended.append(commit)

    pages = []
    checkpoint = None
    while True:
        page = database.events.read_feed(checkpoint, 2)
        if not page.commits:
            break
        pages.append(page.commits)
        checkpoint = page.checkpoint

    assert [c for page_commits in pages for c in page_commits] == appended
    assert [len(p) for p in pages] == [2, 2, 2, 2, 1]
    assert database.events.head_checkpoint() == checkpoint


def test_checkpoints_must_come_from_the_feed(tmp_path: Path) -> None:
    database = open_embedded_database(tmp_path / "orders.db")

    assert database.events.read_feed(None, 10).checkpoint is None
    with pytest.raises(ValueError):
        database.events.read_feed("not-a-checkpoint", 10)
    with pytest.raises(ValueError):
        database.events.save_checkpoint("projector-v1", "lease-xyz")
    with pytest.raises(ValueError):
        database.events.read_feed(None, 0)


# -- failures ------------------------------------------------------------------------------------


def test_busy_database_raises_transient_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "orders.db"
    database = EmbeddedDatabase(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        with pytest.raises(TransientError):
            database.events.append(make_commit(new_stream(), 1))
        with pytest.raises(TransientError):
            database.views.put("order-1", {"id": "order-1"}, None)
        blocker.execute("ROLLBACK")

        database.events.append(make_commit(new_stream(), 1))  # fine once the lock is gone
    finally:
        blocker.close()
        database.close()


# -- several processes on one file ---------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from eventstore.embedded.store import open_embedded_database
    from eventstore.errors import ConcurrencyError
    from tests.contract.conftest import make_commit

    path, stream, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    events = open_embedded_database(path).events
    won = version = 0
    while won < count:
        try:
            events.append(make_commit(stream, version + 1, tag="child"))
            won += 1
            version += 1
        except ConcurrencyError:
            version = events.read_stream(stream, version)[-1].version
    print(won)
    """
)


def test_several_processes_append_to_one_file(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    database = open_embedded_database(path)
    shared, own = new_stream(), new_stream()
    per_process = 150
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), shared, str(per_process)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for version in range(1, per_process + 1):  # meanwhile, this process writes its own stream
        database.events.append(make_commit(own, version))
    outputs = [child.communicate(timeout=120)[0] for child in children]

    assert [child.returncode for child in children] == [0, 0]
    assert [int(out) for out in outputs] == [per_process, per_process]
    shared_commits = database.events.read_stream(shared)
    assert [c.version for c in shared_commits] == list(range(1, 2 * per_process + 1))
    assert len(database.events.read_stream(own)) == per_process
    page = database.events.read_feed(None, 10_000)
    assert len(page.commits) == 3 * per_process
