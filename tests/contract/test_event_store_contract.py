"""Contract of EventStore, ChangeFeed and CheckpointStore: every adapter must pass it unchanged.

Only what the ports promise is asserted. In particular the feed is ordered per stream (Cosmos DB
orders its change feed per partition key only); the embedded store's global order is tested in
tests/embedded/test_store.py.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from eventstore.commit import Commit
from eventstore.errors import ConcurrencyError
from eventstore.ports import ChangeFeed, FeedPage
from tests.contract.conftest import Backend, make_commit, new_stream

FEED_DEADLINE = 10.0  # seconds a feed may take to show committed items
FEED_POLL_INTERVAL = 0.05  # pause between empty reads, so polling does not spin


def read_commits(
    feed: ChangeFeed, checkpoint: str | None, max_items: int, expected: int
) -> tuple[list[Commit], str | None, list[FeedPage]]:
    """Read pages from ``checkpoint`` until ``expected`` commits arrived (polling, with a
    deadline); each page must respect max_items. Returns the commits, the final checkpoint and
    the pages."""
    deadline = time.monotonic() + FEED_DEADLINE
    commits: list[Commit] = []
    pages: list[FeedPage] = []
    while len(commits) < expected:
        assert time.monotonic() < deadline, f"feed gave {len(commits)} of {expected} commits"
        page = feed.read_feed(checkpoint, max_items)
        assert len(page.commits) <= max_items
        if page.commits:
            assert page.checkpoint is not None
            pages.append(page)
        else:
            time.sleep(FEED_POLL_INTERVAL)
        commits.extend(page.commits)
        checkpoint = page.checkpoint
    return commits, checkpoint, pages


def ours(commits: list[Commit], streams: set[str]) -> list[Commit]:
    return [c for c in commits if c.stream_id in streams]


# -- streams -------------------------------------------------------------------------------------


def test_append_then_read_stream_round_trips_the_commit(backend: Backend) -> None:
    stream = new_stream()
    data = {
        "sku": "ABC-1",
        "quantity": 3,
        "unitPrice": "12.50",
        "nested": {"list": [1, "two", None, True, {"x": 1.5}], "empty": {}},
        "text": 'Grüße \u2603 "quoted" \\ back',
    }
    commit = make_commit(stream, 1, 2, data=data)

    backend.events.append(commit)

    assert backend.events.read_stream(stream) == [commit]
    assert backend.events.read_stream(stream)[0].to_document() == commit.to_document()


def test_read_stream_after_version_returns_commits_ending_later(backend: Backend) -> None:
    stream = new_stream()
    first, second, third = make_commit(stream, 1), make_commit(stream, 2, 2), make_commit(stream, 4)
    for commit in (first, second, third):
        backend.events.append(commit)

    assert backend.events.read_stream(stream) == [first, second, third]
    assert backend.events.read_stream(stream, after_version=0) == [first, second, third]
    assert backend.events.read_stream(stream, after_version=1) == [second, third]
    # The commit holding versions 2..3 still has events after version 2.
    assert backend.events.read_stream(stream, after_version=2) == [second, third]
    assert backend.events.read_stream(stream, after_version=3) == [third]
    assert backend.events.read_stream(stream, after_version=4) == []


def test_unknown_stream_reads_empty(backend: Backend) -> None:
    backend.events.append(make_commit(new_stream(), 1))

    assert backend.events.read_stream(new_stream()) == []
    assert backend.events.read_stream(new_stream(), after_version=5) == []


def test_streams_are_independent(backend: Backend) -> None:
    a, b = new_stream(), new_stream()
    commit_a, commit_b = make_commit(a, 1, tag="a"), make_commit(b, 1, tag="b")

    backend.events.append(commit_a)
    backend.events.append(commit_b)  # same version, other stream: no conflict

    assert backend.events.read_stream(a) == [commit_a]
    assert backend.events.read_stream(b) == [commit_b]


def test_stale_first_version_conflicts_and_leaves_stream_unchanged(backend: Backend) -> None:
    stream = new_stream()
    winner_1, winner_2 = make_commit(stream, 1, tag="winner"), make_commit(stream, 2, tag="winner")
    backend.events.append(winner_1)
    backend.events.append(winner_2)

    with pytest.raises(ConcurrencyError):
        backend.events.append(make_commit(stream, 2, tag="loser"))
    with pytest.raises(ConcurrencyError):
        backend.events.append(make_commit(stream, 1, 3, tag="loser"))

    assert backend.events.read_stream(stream) == [winner_1, winner_2]


def test_multi_event_commit_is_all_or_nothing(backend: Backend) -> None:
    stream = new_stream()
    existing = make_commit(stream, 1, tag="first")
    backend.events.append(existing)
    stale = make_commit(stream, 1, 3, tag="stale")  # decided from version 0: versions 1..3

    with pytest.raises(ConcurrencyError):
        backend.events.append(stale)

    assert backend.events.read_stream(stream) == [existing]
    stale_ids = {e.event_id for e in stale.events}
    seen, checkpoint, _ = read_commits(backend.events, None, 100, expected=1)
    assert ours(seen, {stream}) == [existing]
    assert not stale_ids & {e.event_id for c in seen for e in c.events}

    retried = make_commit(stream, 2, 3, tag="retried")  # re-decided from version 1: 2..4
    backend.events.append(retried)

    stored = backend.events.read_stream(stream)
    assert stored == [existing, retried]
    assert [e.version for e in stored[1].events] == [2, 3, 4]
    seen, _, _ = read_commits(backend.events, checkpoint, 100, expected=1)
    assert ours(seen, {stream}) == [retried]  # delivered as one commit with all its events


# -- change feed ---------------------------------------------------------------------------------


def test_feed_pages_deliver_every_commit_exactly_once_in_stream_order(backend: Backend) -> None:
    streams = [new_stream("order"), new_stream("payment"), new_stream("order")]
    appended: list[Commit] = []
    versions = dict.fromkeys(streams, 0)
    for i in range(17):  # interleaved across the streams, some multi-event commits
        stream = streams[i % len(streams)]
        commit = make_commit(stream, versions[stream] + 1, 1 + i % 2, tag=f"c{i}")
        versions[stream] = commit.version
        backend.events.append(commit)
        appended.append(commit)

    seen, checkpoint, pages = read_commits(backend.events, None, 4, expected=len(appended))
    seen = ours(seen, set(streams))

    assert len(pages) >= 5  # 17 commits in pages of at most 4
    assert sorted(c.id for c in seen) == sorted(c.id for c in appended)  # each exactly once
    for stream in streams:
        assert [c for c in seen if c.stream_id == stream] == [
            c for c in appended if c.stream_id == stream
        ]
    # Nothing more after the last checkpoint...
    assert backend.events.read_feed(checkpoint, 4).commits == []
    # ...until something is appended, which that checkpoint then sees.
    later = make_commit(streams[0], versions[streams[0]] + 1, tag="later")
    backend.events.append(later)
    seen_later, _, _ = read_commits(backend.events, checkpoint, 4, expected=1)
    assert seen_later == [later]


def test_empty_feed_reads_nothing(backend: Backend) -> None:
    page = backend.events.read_feed(None, 10)

    assert page.commits == []
    assert backend.events.read_feed(page.checkpoint, 10).commits == []


def test_checkpoint_resumes_after_reopen(backend: Backend) -> None:
    stream = new_stream()
    appended = [make_commit(stream, v, tag=f"c{v}") for v in range(1, 6)]
    for commit in appended:
        backend.events.append(commit)
    first, checkpoint, _ = read_commits(backend.events, None, 2, expected=2)
    assert first == appended[: len(first)]
    assert checkpoint is not None
    backend.events.save_checkpoint("projector-v1", checkpoint)

    reopened = backend.reopen()
    loaded = reopened.events.load_checkpoint("projector-v1")
    assert loaded == checkpoint
    assert reopened.events.load_checkpoint("publisher-v1") is None  # consumers are independent

    rest, _, _ = read_commits(reopened.events, loaded, 2, expected=len(appended) - len(first))
    assert first + rest == appended


def test_saving_a_checkpoint_again_moves_it(backend: Backend) -> None:
    stream = new_stream()
    for v in (1, 2, 3):
        backend.events.append(make_commit(stream, v))
    _, after_one, _ = read_commits(backend.events, None, 1, expected=1)
    rest, after_all, _ = read_commits(backend.events, after_one, 10, expected=2)
    assert after_one is not None
    assert after_all is not None

    backend.events.save_checkpoint("projector-v1", after_one)
    backend.events.save_checkpoint("projector-v1", after_all)

    assert backend.events.load_checkpoint("projector-v1") == after_all
    assert backend.events.read_feed(after_all, 10).commits == []
    assert [c.version for c in rest] == [2, 3]


def test_unsaved_progress_is_delivered_again_after_reopen(backend: Backend) -> None:
    stream = new_stream()
    appended = [make_commit(stream, v) for v in range(1, 5)]
    for commit in appended:
        backend.events.append(commit)
    saved_checkpoint = backend.events.load_checkpoint("publisher-v1")
    read_once, _, _ = read_commits(backend.events, saved_checkpoint, 3, expected=3)
    # ...crash before save_checkpoint...

    reopened = backend.reopen()
    resumed_from = reopened.events.load_checkpoint("publisher-v1")
    assert resumed_from is None
    read_again, _, _ = read_commits(reopened.events, resumed_from, 3, expected=len(read_once))

    assert read_again[: len(read_once)] == read_once  # at least once: the same commits again


# -- optimistic concurrency under contention -----------------------------------------------------

WRITERS = 8
WINS_PER_WRITER = 12


def test_concurrent_writers_get_contiguous_versions_each_won_once(backend: Backend) -> None:
    stream = new_stream()
    events = backend.events
    start = threading.Barrier(WRITERS)
    give_up_at = time.monotonic() + 120

    def writer(name: str) -> tuple[list[int], int]:
        won: list[int] = []
        conflicts = 0
        known = 0  # every writer decides from the same starting version
        start.wait()
        while len(won) < WINS_PER_WRITER:
            assert time.monotonic() < give_up_at, f"{name} starved"
            try:
                events.append(make_commit(stream, known + 1, tag=name))
            except ConcurrencyError:
                conflicts += 1
                newer = events.read_stream(stream, after_version=known)  # re-read, re-decide
                assert newer, "a conflict means someone else committed that version"
                known = newer[-1].version
                continue
            known += 1
            won.append(known)
        return won, conflicts

    names = [f"writer-{i}" for i in range(WRITERS)]
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        results = dict(zip(names, pool.map(writer, names), strict=True))

    total = WRITERS * WINS_PER_WRITER
    stored = events.read_stream(stream)
    assert [c.first_version for c in stored] == list(range(1, total + 1))
    assert all(len(c.events) == 1 for c in stored)
    winner_by_version: dict[int, list[str]] = defaultdict(list)
    for name, (won, _) in results.items():
        for version in won:
            winner_by_version[version].append(name)
    assert all(len(winners) == 1 for winners in winner_by_version.values())  # no duplicates
    assert {v: w[0] for v, w in winner_by_version.items()} == {
        c.version: c.correlation_id for c in stored
    }
    assert sum(conflicts for _, conflicts in results.values()) > 0  # there really was contention
    assert len({e.event_id for c in stored for e in c.events}) == total
    # Losing attempts never reach the change feed either.
    feed, _, _ = read_commits(events, None, 500, expected=total)
    assert ours(feed, {stream}) == stored
