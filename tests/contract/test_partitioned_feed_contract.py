"""Contract of PartitionedFeed and LeaseStore (what eventstore.changefeed runs on): every backend
that offers them must pass it unchanged.

To add a backend, add a factory to ``PARTITIONED_FACTORIES``: ``(tmp_path) -> ContextManager`` of
an object with ``events`` (EventStore), ``feed`` (PartitionedFeed), ``leases`` (LeaseStore) and
``reopen()`` over a fresh, empty data location, and its marks to ``PARTITIONED_MARKS``. The
Cosmos DB one runs on the test server (tests/support/cosmos_server.py) with an events container
of four physical partitions, so that it has four feed ranges.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import pytest
from azure.cosmos import CosmosClient, PartitionKey

from eventstore.adapters.cosmos import EVENTS_INDEXING_POLICY, CosmosDatabase, create_cosmos_client
from eventstore.commit import Commit
from eventstore.embedded.store import EmbeddedDatabase
from eventstore.errors import ConcurrencyError
from eventstore.ports import EventStore, FeedRange, LeaseStore, PartitionedFeed
from tests.contract.conftest import COSMOS_TEST_CLIENT_OPTIONS, make_commit, new_stream
from tests.support.cosmos_server import shared_cosmos_server

FEED_DEADLINE = 10.0
PREFIX = "projector-v1"


class PartitionedBackend(Protocol):
    @property
    def events(self) -> EventStore: ...

    @property
    def feed(self) -> PartitionedFeed: ...

    @property
    def leases(self) -> LeaseStore: ...

    def reopen(self) -> PartitionedBackend: ...


class EmbeddedPartitioned:
    def __init__(self, path: Path, opened: list[EmbeddedDatabase]) -> None:
        self._database = EmbeddedDatabase(path, feed_ranges=4)
        self._opened = opened
        opened.append(self._database)

    @property
    def events(self) -> EventStore:
        return self._database.events

    @property
    def feed(self) -> PartitionedFeed:
        return self._database.events

    @property
    def leases(self) -> LeaseStore:
        return self._database.leases

    def reopen(self) -> PartitionedBackend:
        self._database.close()
        return EmbeddedPartitioned(self._database.path, self._opened)


@contextmanager
def embedded_partitioned(tmp_path: Path) -> Iterator[PartitionedBackend]:
    opened: list[EmbeddedDatabase] = []
    try:
        yield EmbeddedPartitioned(tmp_path / "contract" / "store.db", opened)
    finally:
        for database in opened:
            database.close()


COSMOS_PHYSICAL_PARTITIONS = 4
"""The test server gives a container of N x 10,000 RU/s N partition key ranges."""


class CosmosPartitioned:
    """The Cosmos DB feed and leases over one database of the shared test server; ``reopen()``
    is a new client, as a restarted process has."""

    def __init__(self, settings: dict[str, str], name: str, clients: list[CosmosClient]) -> None:
        client = create_cosmos_client(settings, COSMOS_TEST_CLIENT_OPTIONS)
        clients.append(client)
        self._settings, self._name, self._clients = settings, name, clients
        self._database = CosmosDatabase(client, name)

    @property
    def events(self) -> EventStore:
        return self._database.events

    @property
    def feed(self) -> PartitionedFeed:
        return self._database.feed

    @property
    def leases(self) -> LeaseStore:
        return self._database.leases

    def reopen(self) -> PartitionedBackend:
        self._database.client.close()
        return CosmosPartitioned(self._settings, self._name, self._clients)


@contextmanager
def cosmos_partitioned(tmp_path: Path) -> Iterator[PartitionedBackend]:
    settings = shared_cosmos_server().settings
    name = f"partitioned-{uuid.uuid4().hex[:12]}"
    setup = create_cosmos_client(settings, COSMOS_TEST_CLIENT_OPTIONS)
    clients = [setup]
    database = setup.create_database(name)
    try:
        database.create_container("events", PartitionKey("/streamId"),
                                  indexing_policy=EVENTS_INDEXING_POLICY,
                                  offer_throughput=COSMOS_PHYSICAL_PARTITIONS * 10_000)
        database.create_container("leases", PartitionKey("/id"))
        yield CosmosPartitioned(settings, name, clients)
    finally:
        setup.delete_database(name)
        for client in clients:
            client.close()


PARTITIONED_FACTORIES: dict[str, Callable[[Path], AbstractContextManager[PartitionedBackend]]] = {
    "embedded": embedded_partitioned,
    "cosmos": cosmos_partitioned,
}
PARTITIONED_MARKS: dict[str, list[pytest.MarkDecorator]] = {"cosmos": [pytest.mark.cosmos]}


@pytest.fixture(params=[pytest.param(name, id=name, marks=PARTITIONED_MARKS.get(name, []))
                        for name in PARTITIONED_FACTORIES])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PartitionedBackend]:
    with PARTITIONED_FACTORIES[request.param](tmp_path) as opened:
        yield opened


def read_range_fully(feed: PartitionedFeed, feed_range: FeedRange, continuation: str | None,
                     max_items: int) -> tuple[list[Commit], str | None, int]:
    """Every commit of the range after ``continuation``, page by page: (commits, the final
    continuation, pages read). Each page must respect max_items."""
    commits: list[Commit] = []
    pages = 0
    while True:
        page = feed.read_range(feed_range, continuation, max_items)
        assert len(page.documents) <= max_items
        if not page.documents:
            assert page.checkpoint == continuation  # an empty page leaves it where it was
            return commits, continuation, pages
        pages += 1
        commits.extend(page.commits)
        continuation = page.checkpoint


def read_all_ranges(feed: PartitionedFeed, expected: int, max_items: int = 3
                    ) -> dict[str, list[Commit]]:
    """Each range's commits from the beginning, polling until ``expected`` arrived in all."""
    deadline = time.monotonic() + FEED_DEADLINE
    while True:
        found = {r.id: read_range_fully(feed, r, None, max_items)[0] for r in feed.feed_ranges()}
        if sum(len(c) for c in found.values()) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def append_interleaved(events: EventStore, streams: list[str], commits: int) -> list[Commit]:
    appended: list[Commit] = []
    versions = dict.fromkeys(streams, 0)
    for i in range(commits):
        stream = streams[i % len(streams)]
        commit = make_commit(stream, versions[stream] + 1, 1 + i % 2, tag=f"c{i}")
        versions[stream] = commit.version
        events.append(commit)
        appended.append(commit)
    return appended


# -- feed ranges ---------------------------------------------------------------------------------


def test_feed_ranges_are_several_distinct_and_stable(backend: PartitionedBackend) -> None:
    ranges = backend.feed.feed_ranges()
    assert len(ranges) >= 2  # one range would hide every cross-range ordering bug
    assert len({r.id for r in ranges}) == len(ranges)
    assert backend.reopen().feed.feed_ranges() == ranges


def test_every_commit_is_in_exactly_one_range_with_its_whole_stream_in_order(
    backend: PartitionedBackend,
) -> None:
    streams = [new_stream("order") for _ in range(12)]
    appended = append_interleaved(backend.events, streams, 60)

    by_range = read_all_ranges(backend.feed, len(appended))

    seen = [c for commits in by_range.values() for c in commits]
    assert sorted(c.id for c in seen) == sorted(c.id for c in appended)  # each exactly once
    homes = {s: {r for r, cs in by_range.items() if any(c.stream_id == s for c in cs)}
             for s in streams}
    assert all(len(home) == 1 for home in homes.values()), homes  # a stream never splits
    for stream in streams:
        (home,) = homes[stream]
        assert [c for c in by_range[home] if c.stream_id == stream] == [
            c for c in appended if c.stream_id == stream]
    assert sum(1 for commits in by_range.values() if commits) >= 2  # the streams spread out


def test_a_range_resumes_from_its_continuation_and_sees_later_appends(
    backend: PartitionedBackend,
) -> None:
    stream = new_stream()
    for version in range(1, 6):
        backend.events.append(make_commit(stream, version))
    home = next(r for r in backend.feed.feed_ranges()
                if read_range_fully(backend.feed, r, None, 10)[0])
    first = backend.feed.read_range(home, None, 2)
    rest, continuation, pages = read_range_fully(backend.feed, home, first.checkpoint, 2)

    assert [c.version for c in first.commits + rest] == [1, 2, 3, 4, 5]
    assert pages == 2  # 3 commits in pages of at most 2
    later = make_commit(stream, 6)
    backend.events.append(later)
    assert read_range_fully(backend.feed, home, continuation, 2)[0] == [later]


def test_an_empty_range_reads_nothing(backend: PartitionedBackend) -> None:
    for feed_range in backend.feed.feed_ranges():
        page = backend.feed.read_range(feed_range, None, 10)
        assert page.documents == []
        assert backend.feed.read_range(feed_range, page.checkpoint, 10).documents == []


# -- leases --------------------------------------------------------------------------------------


def test_a_lease_is_created_once_free_and_at_the_beginning(backend: PartitionedBackend) -> None:
    range_id = backend.feed.feed_ranges()[0].id

    created = backend.leases.create_lease(PREFIX, range_id)

    assert created is not None
    assert (created.prefix, created.range_id, created.owner, created.continuation) == (
        PREFIX, range_id, None, None)
    assert created.etag
    assert backend.leases.create_lease(PREFIX, range_id) is None  # exists: not overwritten
    assert backend.leases.read_lease(PREFIX, range_id) == created
    assert backend.leases.list_leases(PREFIX) == [created]
    assert backend.leases.list_leases("publisher-v1") == []  # prefixes are independent
    assert backend.leases.read_lease("publisher-v1", range_id) is None


def test_replacing_with_the_current_etag_stores_and_changes_the_etag(
    backend: PartitionedBackend,
) -> None:
    stream = new_stream()
    backend.events.append(make_commit(stream, 1))
    feed_range = next(r for r in backend.feed.feed_ranges()
                      if backend.feed.read_range(r, None, 1).documents)
    continuation = backend.feed.read_range(feed_range, None, 1).checkpoint
    lease = backend.leases.create_lease(PREFIX, feed_range.id)
    assert lease is not None

    owned = backend.leases.replace_lease(
        replace(lease, owner="host-a", continuation=continuation, expires_at=1234.5))

    assert owned.etag != lease.etag
    stored = backend.reopen().leases.read_lease(PREFIX, feed_range.id)
    assert stored == owned
    assert (stored.owner, stored.continuation, stored.expires_at) == ("host-a", continuation,
                                                                       1234.5)


def test_a_stale_etag_is_refused_and_changes_nothing(backend: PartitionedBackend) -> None:
    range_id = backend.feed.feed_ranges()[0].id
    lease = backend.leases.create_lease(PREFIX, range_id)
    assert lease is not None
    taken = backend.leases.replace_lease(replace(lease, owner="host-a", expires_at=10.0))

    with pytest.raises(ConcurrencyError):
        backend.leases.replace_lease(replace(lease, owner="host-b", expires_at=20.0))
    with pytest.raises(ConcurrencyError):
        backend.leases.replace_lease(replace(lease, range_id=backend.feed.feed_ranges()[1].id))

    assert backend.leases.read_lease(PREFIX, range_id) == taken


def test_of_instances_acquiring_one_lease_at_once_exactly_one_wins(
    backend: PartitionedBackend,
) -> None:
    range_id = backend.feed.feed_ranges()[0].id
    lease = backend.leases.create_lease(PREFIX, range_id)
    assert lease is not None
    start = threading.Barrier(8)

    def acquire(owner: str) -> str | None:
        start.wait()
        try:
            return backend.leases.replace_lease(replace(lease, owner=owner, expires_at=99.0)).owner
        except ConcurrencyError:
            return None

    with ThreadPoolExecutor(8) as pool:
        winners = [w for w in pool.map(acquire, [f"host-{i}" for i in range(8)]) if w]

    assert len(winners) == 1
    stored = backend.leases.read_lease(PREFIX, range_id)
    assert stored is not None and stored.owner == winners[0]


def test_a_continuation_kept_in_a_lease_resumes_the_range_after_reopen(
    backend: PartitionedBackend,
) -> None:
    stream = new_stream()
    appended = [make_commit(stream, v) for v in range(1, 5)]
    for commit in appended:
        backend.events.append(commit)
    feed_range = next(r for r in backend.feed.feed_ranges()
                      if backend.feed.read_range(r, None, 1).documents)
    page = backend.feed.read_range(feed_range, None, 2)
    lease = backend.leases.create_lease(PREFIX, feed_range.id)
    assert lease is not None
    backend.leases.replace_lease(replace(lease, owner="host-a", continuation=page.checkpoint))

    reopened = backend.reopen()
    stored = reopened.leases.read_lease(PREFIX, feed_range.id)
    assert stored is not None
    rest, _, _ = read_range_fully(reopened.feed, feed_range, stored.continuation, 10)
    assert page.commits + rest == appended
