"""The embedded store's feed ranges and leases beyond the shared contract: how streams are
assigned, the count fixed per file, the upgrade of a schema-1 file, the per-range wake-up and
the validation of continuations."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from eventstore.embedded.store import (
    EmbeddedDatabase,
    FeedRangesMismatch,
    close_all,
    feed_range_of,
    open_embedded_database,
)
from eventstore.ports import FeedRange
from tests.contract.conftest import make_commit, new_stream


@pytest.fixture(autouse=True)
def _close_shared_databases() -> Iterator[None]:
    yield
    close_all()


def stream_in_range(wanted: int, ranges: int, prefix: str = "order") -> str:
    while True:
        stream = new_stream(prefix)
        if feed_range_of(stream, ranges) == wanted:
            return stream


# -- assignment ----------------------------------------------------------------------------------


def test_a_stream_goes_to_its_slice_of_a_64_bit_blake2b_hash() -> None:
    for stream in ("order-1", "payment-3e42d659-250a-51b3-b4c7-b3c0f7d4a447", "örder-ü"):
        digest = int.from_bytes(hashlib.blake2b(stream.encode(), digest_size=8).digest(), "big")
        assert feed_range_of(stream, 4) == digest // 2 ** 62
        assert feed_range_of(stream, 1) == 0


def test_streams_spread_evenly_and_doubling_the_count_splits_each_range_in_two() -> None:
    streams = [new_stream() for _ in range(4000)]
    counts = Counter(feed_range_of(s, 4) for s in streams)
    assert sorted(counts) == [0, 1, 2, 3]
    assert all(800 < n < 1200 for n in counts.values()), counts
    # Contiguous slices, as Cosmos DB's ranges: range r of N becomes ranges 2r and 2r+1 of 2N.
    assert all(feed_range_of(s, 8) // 2 == feed_range_of(s, 4) for s in streams)


def test_appends_land_in_the_range_of_their_stream(tmp_path: Path) -> None:
    database = EmbeddedDatabase(tmp_path / "orders.db", feed_ranges=4)
    try:
        streams = {r: stream_in_range(r, 4) for r in range(4)}
        for stream in streams.values():
            database.events.append(make_commit(stream, 1))
        for feed_range in database.events.feed_ranges():
            page = database.events.read_range(feed_range, None, 10)
            assert [c.stream_id for c in page.commits] == [streams[int(feed_range.id)]]
            assert database.events.feed_range_of(streams[int(feed_range.id)]) == feed_range
    finally:
        database.close()


# -- the count is fixed per file -----------------------------------------------------------------


def test_the_range_count_is_fixed_when_the_file_is_created(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    EmbeddedDatabase(path, feed_ranges=4).close()

    with pytest.raises(FeedRangesMismatch, match=r"created with 4 feed ranges, not 8.*"
                       r"EMBEDDED_FEED_RANGES=4"):
        EmbeddedDatabase(path, feed_ranges=8)
    reopened = EmbeddedDatabase(path)  # no count asked: the file's
    try:
        assert len(reopened.events.feed_ranges()) == 4
    finally:
        reopened.close()
    shared = open_embedded_database(path, 4)
    assert open_embedded_database(path) is shared
    with pytest.raises(FeedRangesMismatch):
        open_embedded_database(path, 2)


def test_a_file_created_without_a_count_has_one_range(tmp_path: Path) -> None:
    database = EmbeddedDatabase(tmp_path / "orders.db")
    try:
        assert database.events.feed_ranges() == [FeedRange("0")]
    finally:
        database.close()


@pytest.mark.parametrize("count", [0, -1, 257])
def test_an_impossible_count_is_refused(tmp_path: Path, count: int) -> None:
    with pytest.raises(ValueError, match=r"feed ranges must be 1\.\.256"):
        EmbeddedDatabase(tmp_path / "orders.db", feed_ranges=count)


# -- upgrading a schema-1 file -------------------------------------------------------------------

SCHEMA_1 = """
CREATE TABLE commits (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL,
    first_version INTEGER NOT NULL, last_version INTEGER NOT NULL, document TEXT NOT NULL,
    UNIQUE (stream_id, first_version));
CREATE TABLE checkpoints (consumer TEXT PRIMARY KEY, checkpoint TEXT NOT NULL);
CREATE TABLE views (id TEXT PRIMARY KEY, document TEXT NOT NULL, etag TEXT NOT NULL);
CREATE TABLE dead_letters (id TEXT PRIMARY KEY, consumer TEXT NOT NULL, stream_id TEXT NOT NULL,
    version INTEGER NOT NULL, event_type TEXT NOT NULL, error TEXT NOT NULL,
    payload TEXT NOT NULL, parked_at TEXT NOT NULL);
PRAGMA user_version = 1;
"""


def test_a_schema_1_file_gets_its_ranges_and_its_consumers_resume_where_they_were(
    tmp_path: Path,
) -> None:
    path = tmp_path / "orders.db"
    streams = [stream_in_range(r, 4) for r in (0, 1, 2, 3, 1)]
    commits = [make_commit(stream, 1) for stream in streams]
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1)
    for commit in commits:
        conn.execute("INSERT INTO commits (stream_id, first_version, last_version, document) "
                     "VALUES (?, ?, ?, ?)", (commit.stream_id, 1, 1,
                                             json.dumps(commit.to_document())))
    conn.execute("INSERT INTO checkpoints VALUES ('projector-v1', '3')")  # read up to seq 3
    conn.commit()
    conn.close()

    database = EmbeddedDatabase(path, feed_ranges=4)
    try:
        events, leases = database.events, database.leases
        by_range = {r.id: events.read_range(r, None, 10).commits for r in events.feed_ranges()}
        assert by_range == {"0": [commits[0]], "1": [commits[1], commits[4]],
                            "2": [commits[2]], "3": [commits[3]]}
        resumed = {}
        for feed_range in events.feed_ranges():
            lease = leases.create_lease("projector-v1", feed_range.id)
            assert lease is not None
            resumed[feed_range.id] = events.read_range(feed_range, lease.continuation, 10).commits
        # Seqs 1..3 were read already; only 4 (range 3) and 5 (range 1) come again... once.
        assert resumed == {"0": [], "1": [commits[4]], "2": [], "3": [commits[3]]}
        fresh = leases.create_lease("publisher-v1", "0")
        assert fresh is not None and fresh.continuation is None  # no old checkpoint: beginning
        later = make_commit(streams[0], 2)
        events.append(later)
        assert events.read_range(FeedRange("0"), None, 10).commits == [commits[0], later]
    finally:
        database.close()
    with EmbeddedDatabase(path) as reopened:
        assert reopened.events.feed_range_count == 4  # the upgrade sticks


# -- waiting for a range -------------------------------------------------------------------------


def test_waiting_on_a_range_wakes_for_its_appends_only(tmp_path: Path) -> None:
    database = EmbeddedDatabase(tmp_path / "orders.db", feed_ranges=4)
    try:
        events = database.events
        mine, other = stream_in_range(2, 4), stream_in_range(3, 4)
        woke: dict[str, float] = {}

        def wait() -> None:
            started = time.monotonic()
            if events.wait_for_range(FeedRange("2"), None, timeout=20):
                woke["after"] = time.monotonic() - started

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        events.append(make_commit(other, 1))
        assert not events.wait_for_range(FeedRange("2"), None, timeout=0.3)  # not its range
        assert waiter.is_alive()
        events.append(make_commit(mine, 1))
        waiter.join(timeout=10)
        assert not waiter.is_alive() and woke["after"] < 10
        continuation = events.read_range(FeedRange("2"), None, 10).checkpoint
        assert not events.wait_for_range(FeedRange("2"), continuation, timeout=0)
    finally:
        database.close()


def test_an_append_wakes_the_waiters_of_its_range_and_of_the_whole_feed_only(
        tmp_path: Path) -> None:
    # White-box: a wake-up costs a thread switch and the GIL, so counting notifications is the
    # point; waiting threads could not tell a spurious wake-up from none.
    database = EmbeddedDatabase(tmp_path / "orders.db", feed_ranges=4)
    try:
        events = database.events
        notified: Counter[str] = Counter()

        class Counting(threading.Condition):
            def __init__(self, name: str) -> None:
                super().__init__(events._appended_lock)
                self.name = name

            def notify_all(self) -> None:
                notified[self.name] += 1
                super().notify_all()

        events._range_appended = [Counting(str(r)) for r in range(4)]
        events._appended = Counting("feed")
        events.append(make_commit(stream_in_range(2, 4), 1))
        assert notified == {"2": 1, "feed": 1}
    finally:
        database.close()


def test_waiting_on_a_range_sees_appends_through_another_handle(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    waiting, writing = EmbeddedDatabase(path, 4), EmbeddedDatabase(path, 4)
    try:
        stream = stream_in_range(1, 4)
        result: list[bool] = []
        waiter = threading.Thread(
            target=lambda: result.append(
                waiting.events.wait_for_range(FeedRange("1"), None, timeout=20)), daemon=True)
        waiter.start()
        writing.events.append(make_commit(stream, 1))
        waiter.join(timeout=10)  # the other handle's append is seen by polling the file
        assert result == [True]
    finally:
        waiting.close()
        writing.close()


def test_a_wait_that_starts_right_after_the_head_was_read_makes_no_query_of_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "orders.db"
    waiting, writing = EmbeddedDatabase(path, 4), EmbeddedDatabase(path, 4)
    try:
        events = waiting.events
        assert not events.wait_for_range(FeedRange("1"), None, timeout=0)  # reads the head
        reads: list[int] = []
        read_head = events._read_range_head

        def counted(index: int) -> int:
            reads.append(index)
            return read_head(index)

        monkeypatch.setattr(events, "_read_range_head", counted)
        assert not events.wait_for_range(FeedRange("1"), None, timeout=0.05)
        assert reads == []  # within POLL_INTERVAL of the last read: no query
        # Another process's append is still seen, at the next read of the file.
        result: list[bool] = []
        waiter = threading.Thread(
            target=lambda: result.append(
                events.wait_for_range(FeedRange("1"), None, timeout=20)), daemon=True)
        waiter.start()
        writing.events.append(make_commit(stream_in_range(1, 4), 1))
        waiter.join(timeout=10)
        assert result == [True] and reads
    finally:
        waiting.close()
        writing.close()


# -- continuations -------------------------------------------------------------------------------


def test_continuations_belong_to_their_range(tmp_path: Path) -> None:
    database = EmbeddedDatabase(tmp_path / "orders.db", feed_ranges=4)
    try:
        events, leases = database.events, database.leases
        events.append(make_commit(stream_in_range(1, 4), 1))
        continuation = events.read_range(FeedRange("1"), None, 10).checkpoint
        assert continuation is not None
        with pytest.raises(ValueError, match="not a continuation of feed range 2"):
            events.read_range(FeedRange("2"), continuation, 10)
        for garbage in ("", "7", "1:", "1:x", "a:1", "-1:3"):
            with pytest.raises(ValueError):
                events.read_range(FeedRange("1"), garbage, 10)
        with pytest.raises(ValueError, match="no feed range '4'"):
            events.read_range(FeedRange("4"), None, 10)
        with pytest.raises(ValueError, match="max_items"):
            events.read_range(FeedRange("1"), None, 0)
        with pytest.raises(ValueError, match="no feed range"):
            leases.create_lease("projector-v1", "9")
        lease = leases.create_lease("projector-v1", "2")
        assert lease is not None
        with pytest.raises(ValueError, match="not a continuation of feed range 2"):
            leases.replace_lease(replace(lease, continuation=continuation))
    finally:
        database.close()
