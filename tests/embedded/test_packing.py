"""The embedded store's packed rows give back exactly the commit that was appended, whatever form
its ids, times and data take; schema-1 files keep working; concurrent appends share a
transaction and each is still conflict-checked on its own."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.clock import new_id, utc_now_iso
from eventstore.commit import Commit, EventRecord
from eventstore.embedded import packing
from eventstore.embedded.sqlite import SqliteFile
from eventstore.embedded.store import EmbeddedDatabase, close_all
from eventstore.errors import ConcurrencyError


@pytest.fixture(autouse=True)
def _close_shared_databases() -> Iterator[None]:
    yield
    close_all()


def commit_of(stream_id: str = "", *, first: int = 1, count: int = 1, ids: str = "",
              at: str = "", data: dict[str, Any] | None = None, fingerprint: str = "fp-" * 5
              ) -> Commit:
    now = at or utc_now_iso()
    return Commit(
        stream_id=stream_id or f"order-{new_id()}",
        stream_type="order",
        events=tuple(EventRecord(first + n, ids or new_id(), "ItemAddedToCart", 1, now,
                                 data if data is not None else {"cartItemId": f"item-{n}"})
                     for n in range(count)),
        correlation_id=ids or new_id(),
        causation_id=ids or new_id(),
        committed_at=now,
        fingerprint=fingerprint,
    )


def round_trip(commit: Commit) -> Commit:
    """The commit read back, checked against the document the change feed hands out."""
    key, body = packing.pack_stream_id(commit.stream_id), packing.pack_body(commit)
    read = packing.unpack_commit(packing.unpack_stream_id(key), commit.first_version, body)
    assert packing.document_from_row(key, commit.first_version, body) == read.to_document()
    return read


def test_the_usual_commit_is_packed_and_reads_back_the_same() -> None:
    commit = commit_of(count=3)
    assert isinstance(packing.pack_stream_id(commit.stream_id), bytes)
    assert isinstance(packing.pack_body(commit), bytes)
    assert round_trip(commit) == commit
    assert round_trip(commit).to_document() == commit.to_document()


@pytest.mark.parametrize("commit", [
    commit_of("order-not-a-uuid"),
    commit_of(f"order-{new_id().upper()}"),  # not the canonical (lowercase) form: kept as text
    commit_of(ids="key-from-a-client"),
    commit_of(ids=uuid.uuid4().hex),
    commit_of(at="2024-05-01T12:00:00.000000+00:00"),
    commit_of(at="2016-12-31T23:59:60.000000Z"),  # a leap second does not read back: text
    commit_of(at="not a time at all"),
    commit_of(fingerprint=""),
    commit_of(fingerprint="short"),
    commit_of(data={"nested": {"list": [1, 2.5, None, True, "é"]}, "big": 2**63 - 1}),
], ids=["plain-stream", "upper-uuid", "text-ids", "hex-ids", "offset-time", "leap-second",
        "odd-time", "no-fingerprint", "odd-fingerprint", "nested-data"])
def test_every_other_form_reads_back_the_same(commit: Commit) -> None:
    assert round_trip(commit) == commit


@pytest.mark.parametrize("data", [{"big": 2**64}, {"nested": {"n": -(2**70)}}],
                         ids=["big-int", "big-negative"])
def test_data_msgpack_cannot_hold_exactly_is_stored_as_the_json_document(
        data: dict[str, Any]) -> None:
    commit = commit_of(data=data)
    body = packing.pack_body(commit)
    assert isinstance(body, str) and json.loads(body) == commit.to_document()
    assert round_trip(commit) == commit


def test_a_row_that_is_no_commit_is_handed_on_wrapped_for_parking() -> None:
    document = packing.document_from_row(b"order-\x00" + bytes(16), 3, b"\xc1 not msgpack")
    assert set(document) == {"raw", "parseError", "id"}
    assert document["id"].endswith(":3")
    assert packing.document_from_row("s", 1, "{not json")["raw"] == "{not json"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
texts = st.one_of(st.text(min_size=1), st.builds(new_id), st.builds(utc_now_iso))


@settings(max_examples=150, deadline=None)
@given(stream=st.one_of(st.text(min_size=1), st.builds(lambda: f"order-{new_id()}")),
       ids=texts, at=texts, data=st.dictionaries(st.text(), json_values, max_size=5),
       fingerprint=st.text())
def test_any_commit_reads_back_the_same(stream: str, ids: str, at: str, data: dict[str, Any],
                                        fingerprint: str) -> None:
    commit = commit_of(stream, ids=ids, at=at, data=data, fingerprint=fingerprint)
    assert round_trip(commit).to_document() == commit.to_document()


def test_a_stored_commit_takes_fewer_bytes_than_its_json_document() -> None:
    commit = commit_of(data={"cartItemId": "item-1", "productId": "product-1", "quantity": 1,
                             "unitPrice": 250})
    packed = len(packing.pack_body(commit)) + len(packing.pack_stream_id(commit.stream_id))
    as_json = len(json.dumps(commit.to_document(), separators=(",", ":")))
    assert packed < as_json / 2


# -- schema 1 --------------------------------------------------------------------------------


def test_a_schema_1_file_is_read_and_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "orders.db"
    old = commit_of(count=2)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript("""
        CREATE TABLE commits (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL,
            first_version INTEGER NOT NULL, last_version INTEGER NOT NULL,
            document TEXT NOT NULL, UNIQUE (stream_id, first_version));
        CREATE TABLE checkpoints (consumer TEXT PRIMARY KEY, checkpoint TEXT NOT NULL);
        CREATE TABLE views (id TEXT PRIMARY KEY, document TEXT NOT NULL, etag TEXT NOT NULL);
        CREATE TABLE dead_letters (id TEXT PRIMARY KEY, consumer TEXT NOT NULL,
            stream_id TEXT NOT NULL, version INTEGER NOT NULL, event_type TEXT NOT NULL,
            error TEXT NOT NULL, payload TEXT NOT NULL, parked_at TEXT NOT NULL);
        PRAGMA user_version = 1;
    """)
    conn.execute("INSERT INTO commits (stream_id, first_version, last_version, document)"
                 " VALUES (?, 1, 2, ?)", (old.stream_id, json.dumps(old.to_document())))
    conn.close()

    database = EmbeddedDatabase(path)
    assert database.pragma("user_version") == 3
    assert database.events.read_stream(old.stream_id) == [old]
    with pytest.raises(ConcurrencyError):
        database.events.append(commit_of(old.stream_id, first=1))
    new = commit_of(old.stream_id, first=3)
    database.events.append(new)
    assert database.events.read_stream(old.stream_id) == [old, new]
    assert database.events.read_feed(None, 10).commits == [old, new]
    database.close()


def test_the_synchronous_level_is_applied_and_checked(tmp_path: Path) -> None:
    with EmbeddedDatabase(tmp_path / "full.db", synchronous="FULL") as database:
        assert database.pragma("synchronous") == 2
    with EmbeddedDatabase(tmp_path / "normal.db") as database:
        assert database.pragma("synchronous") == 1
    with pytest.raises(ValueError, match="synchronous"):
        EmbeddedDatabase(tmp_path / "off.db", synchronous="OFF")


# -- group commit ----------------------------------------------------------------------------


def test_writes_that_arrive_together_share_one_transaction(tmp_path: Path) -> None:
    file = SqliteFile(tmp_path / "group.db")
    try:
        with file.write() as conn:
            conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
        transactions: list[str] = []
        holding = threading.Event()
        release = threading.Event()

        def hold_the_writer() -> None:
            with file.write() as conn:
                conn.set_trace_callback(
                    lambda sql: transactions.append(sql) if sql.startswith("BEGIN") else None)
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold_the_writer)
        holder.start()
        assert holding.wait(30)
        keys = ["a", "b", "c", "a", "d"]  # the second "a" violates the key
        with ThreadPoolExecutor(len(keys)) as pool:
            futures = [pool.submit(file.execute_write, "INSERT INTO t (k) VALUES (?)", (k,))
                       for k in keys]
            deadline = time.monotonic() + 30
            while len(file._pending) < len(keys):  # every writer waits behind the holder
                assert time.monotonic() < deadline, "the writers never queued"
                time.sleep(0.005)
            release.set()
            holder.join(30)
            outcomes: list[int | str] = []
            for future in futures:
                try:
                    outcomes.append(future.result(30).rowcount)
                except sqlite3.IntegrityError:
                    outcomes.append("conflict")
        assert sorted(map(str, outcomes)) == ["1", "1", "1", "1", "conflict"]
        assert transactions == ["BEGIN IMMEDIATE"]  # one, for all five (each alone would be none)
        rows = file.read().execute("SELECT k FROM t ORDER BY k").fetchall()
        assert rows == [("a",), ("b",), ("c",), ("d",)]
    finally:
        file.close()


def test_concurrent_appends_are_each_conflict_checked(tmp_path: Path) -> None:
    database = EmbeddedDatabase(tmp_path / "orders.db")
    streams = [f"order-{new_id()}" for _ in range(4)]
    # Each stream gets 8 contenders for version 1: exactly one may win.
    contenders = [commit_of(stream) for stream in streams for _ in range(8)]

    def append(commit: Commit) -> bool:
        try:
            database.events.append(commit)
            return True
        except ConcurrencyError:
            return False

    with ThreadPoolExecutor(16) as pool:
        won = list(pool.map(append, contenders))
    assert sum(won) == len(streams)
    for stream in streams:
        [stored] = database.events.read_stream(stream)
        assert stored in [c for c, w in zip(contenders, won, strict=True) if w]
    database.close()


def test_a_damaged_packed_row_is_refused_on_read_and_wrapped_in_the_feed() -> None:
    import msgpack

    body = msgpack.packb(["order", "c", "k", 1, None, [[b"0" * 16, "ItemAddedToCart", 1, None,
                                                         ["not", "an", "object"]]]])
    with pytest.raises(ValueError, match="damaged"):
        packing.unpack_commit("order-x", 1, body)
    assert "parseError" in packing.document_from_row("order-x", 1, body)


def test_a_commit_with_trace_context_reads_back_with_it() -> None:
    traced = replace(commit_of("order-t", ids=new_id(), at=utc_now_iso(), data={"a": 1}),
                     trace_context={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    assert round_trip(traced).trace_context == traced.trace_context
    assert round_trip(traced).to_document() == traced.to_document()
    stream_key = packing.pack_stream_id(traced.stream_id)
    document = packing.document_from_row(stream_key, traced.first_version,
                                         packing.pack_body(traced))
    assert document == traced.to_document()
