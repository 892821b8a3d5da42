"""The lease-based change-feed processor on the Cosmos DB adapters (``CosmosPartitionedFeed``,
``CosmosLeaseStore``), against the test server over the real SDK.

The ports' contract runs in tests/contract/test_partitioned_feed_contract.py; here: what is
particular to Cosmos DB (the recorded feed ranges, a range spanning several physical partitions,
lease documents beside the Functions trigger's and the checkpoints, metering) and two processor
instances sharing one container, one of them dying without releasing its leases.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey

from eventstore.adapters.cosmos import (
    EVENTS_INDEXING_POLICY,
    CosmosEventStore,
    CosmosLeaseStore,
    CosmosPartitionedFeed,
    RequestMeter,
    create_cosmos_client,
)
from eventstore.changefeed import ChangeFeedProcessor, LeaseEvent, ProcessorOptions
from eventstore.commit import Commit, JsonDict
from eventstore.errors import ConcurrencyError
from eventstore.ports import FeedRange
from tests.contract.conftest import make_commit, new_stream
from tests.cosmos.conftest import FAST_FAILING
from tests.e2e.localhost import poll
from tests.support.cosmos_server import CosmosServerInfo

pytestmark = [pytest.mark.cosmos, pytest.mark.timeout(90)]

PHYSICAL_PARTITIONS = 4
DEADLINE = 30.0
LEASE_SECONDS = 3.0
"""Short leases so that a takeover is seen within seconds (renewal every 0.85 s)."""


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    poll(condition, timeout, what, interval=0.02)


@dataclass
class Service:
    """One database of the test server: an events container of PHYSICAL_PARTITIONS physical
    partitions and a leases container."""

    database: DatabaseProxy
    events: ContainerProxy
    leases: ContainerProxy

    def reached_by(self, client: CosmosClient) -> tuple[ContainerProxy, ContainerProxy]:
        """The same containers through another client, as another process reaches them."""
        database = client.get_database_client(self.database.id)
        return (database.get_container_client(self.events.id),
                database.get_container_client(self.leases.id))


@pytest.fixture
def service(cosmos_client: CosmosClient) -> Iterator[Service]:
    name = f"processor-{uuid.uuid4().hex[:12]}"
    database = cosmos_client.create_database(name)
    try:
        events = database.create_container(
            "events", PartitionKey("/streamId"), indexing_policy=EVENTS_INDEXING_POLICY,
            offer_throughput=PHYSICAL_PARTITIONS * 10_000)
        leases = database.create_container("leases", PartitionKey("/id"))
        yield Service(database, events, leases)
    finally:
        cosmos_client.delete_database(name)


@pytest.fixture
def clients(cosmos_server: CosmosServerInfo) -> Iterator[Callable[[], CosmosClient]]:
    """New clients (one per simulated process), closed afterwards."""
    opened: list[CosmosClient] = []

    def new() -> CosmosClient:
        client = create_cosmos_client(cosmos_server.settings, FAST_FAILING)
        opened.append(client)
        return client

    yield new
    for client in opened:
        client.close()


def append_rounds(store: CosmosEventStore, streams: list[str], first: int, last: int
                  ) -> list[Commit]:
    """Versions first..last of every stream, interleaved across streams."""
    appended = []
    for version in range(first, last + 1):
        for stream in streams:
            commit = make_commit(stream, version)
            store.append(commit)
            appended.append(commit)
    return appended


def read_whole_range(feed: CosmosPartitionedFeed, feed_range: FeedRange, max_items: int
                     ) -> tuple[list[Commit], str | None]:
    commits: list[Commit] = []
    continuation: str | None = None
    for _ in range(200):
        page = feed.read_range(feed_range, continuation, max_items)
        if not page.documents:
            return commits, continuation
        commits.extend(page.commits)
        continuation = page.checkpoint
    raise AssertionError("the range did not end within 200 pages")


# -- the feed ranges -----------------------------------------------------------------------------


def test_the_feed_ranges_are_recorded_once_and_kept(
    service: Service, clients: Callable[[], CosmosClient],
) -> None:
    feed = CosmosPartitionedFeed(service.events, service.leases)
    ranges = feed.feed_ranges()

    assert len(ranges) == PHYSICAL_PARTITIONS
    assert all(len(r.id) == 12 for r in ranges) and len({r.id for r in ranges}) == len(ranges)
    layout = service.leases.read_item("py:ranges:events", partition_key="py:ranges:events")
    assert layout["kind"] == "py-feed-ranges" and len(layout["ranges"]) == PHYSICAL_PARTITIONS
    # Another process sees the same ranges, with the same ids and tokens.
    assert CosmosPartitionedFeed(*service.reached_by(clients())).feed_ranges() == ranges

    # What is recorded wins over the container's current partitions (as after a split): here
    # two ranges, each as wide as two of the four partitions.
    service.leases.replace_item(layout["id"], {**layout, "ranges": halves(service.events)})
    recorded = CosmosPartitionedFeed(*service.reached_by(clients())).feed_ranges()
    assert len(recorded) == 2 and not {r.id for r in recorded} & {r.id for r in ranges}


def halves(events: ContainerProxy) -> list[dict[str, Any]]:
    """Two feed ranges, each spanning two adjacent physical partitions of the container."""
    physical = list(events.read_feed_ranges())
    assert len(physical) == 4

    def spanning(low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
        return {"Range": {**low["Range"], "max": high["Range"]["max"]}}

    return [spanning(physical[0], physical[1]), spanning(physical[2], physical[3])]


def test_a_range_spanning_several_partitions_is_read_whole_and_resumes_between_them(
    service: Service,
) -> None:
    # A page taken before the SDK read every partition of the range has a null token for the
    # unread ones, which the SDK itself refuses as a continuation; the adapter's continuations
    # resume all the same (docs/cosmos-test-server.md, "An SDK limitation").
    service.leases.create_item({"id": "py:ranges:events", "kind": "py-feed-ranges",
                                "container": "events", "ranges": halves(service.events)})
    feed = CosmosPartitionedFeed(service.events, service.leases)
    store = CosmosEventStore(service.events, service.leases)
    streams = [new_stream() for _ in range(16)]
    appended = append_rounds(store, streams, 1, 2)

    by_range = {r.id: read_whole_range(feed, r, max_items=3) for r in feed.feed_ranges()}

    delivered = [c for commits, _ in by_range.values() for c in commits]
    assert sorted(c.id for c in delivered) == sorted(c.id for c in appended)  # each once
    for stream in streams:
        assert [c.version for c in delivered if c.stream_id == stream] == [1, 2]
    assert all(commits for commits, _ in by_range.values())  # both ranges have streams
    later = make_commit(streams[0], 3)
    store.append(later)
    # From each range's last continuation: only the new commit, in its stream's range.
    seen_later = [feed.read_range(r, by_range[r.id][1], 10).commits for r in feed.feed_ranges()]
    assert sorted(len(commits) for commits in seen_later) == [0, 1]
    assert [c for commits in seen_later for c in commits] == [later]


def test_a_feed_range_must_come_from_the_feed(service: Service) -> None:
    feed = CosmosPartitionedFeed(service.events, service.leases)
    with pytest.raises(ValueError, match="feed range JSON"):
        feed.read_range(FeedRange("made-up", "not json"), None, 10)


# -- the lease documents -------------------------------------------------------------------------


def test_lease_documents_keep_apart_from_the_trigger_checkpoints_and_other_containers(
    service: Service,
) -> None:
    leases = CosmosLeaseStore(service.leases, "events")
    lease = leases.create_lease("orders-projector-v1", "0a1b2c3d4e5f")
    assert lease is not None
    document = service.leases.read_item(
        "py:lease:events:orders-projector-v1:0a1b2c3d4e5f",
        partition_key="py:lease:events:orders-projector-v1:0a1b2c3d4e5f")
    assert (document["kind"], document["owner"], document["continuation"]) == (
        "py-lease", None, None)
    # What else lives in a leases container: the Functions trigger's own documents (ids as the
    # .NET change-feed processor makes them), a single reader's checkpoint, the same prefix of
    # another service's events container.
    trigger_prefix = "orders-projector-v1localhost_AAAAAA==_AAAAAAAAAAA="
    for trigger_id in (f"{trigger_prefix}..0", f"{trigger_prefix}.info"):
        service.leases.create_item({"id": trigger_id, "LeaseToken": "0", "Owner": "func-host",
                                    "ContinuationToken": "\"42\"", "version": 1})
    CosmosEventStore(service.events, service.leases).save_checkpoint("orders-projector-v1", "t")
    other = CosmosLeaseStore(service.leases, "other-events")
    assert other.create_lease("orders-projector-v1", "0a1b2c3d4e5f") is not None

    assert leases.list_leases("orders-projector-v1") == [lease]
    assert [d["id"] for d in service.leases.query_items(
        "SELECT c.id FROM c WHERE STARTSWITH(c.id, @prefix)",
        parameters=[{"name": "@prefix", "value": f"{trigger_prefix}.."}],
        enable_cross_partition_query=True)] == [f"{trigger_prefix}..0"]  # the trigger's own
    with pytest.raises(ValueError, match="document id"):
        leases.create_lease("orders/projector", "0a1b2c3d4e5f")


def test_lease_operations_are_metered_one_request_each(service: Service) -> None:
    meter = RequestMeter()
    leases = CosmosLeaseStore(service.leases, "events", meter=meter)
    with meter.measure() as created:
        lease = leases.create_lease("p", "r1")
    assert lease is not None
    with meter.measure() as replaced:
        owned = leases.replace_lease(replace(lease, owner="host-a", expires_at=5.0))
    with meter.measure() as refused, pytest.raises(ConcurrencyError):
        leases.replace_lease(replace(lease, owner="host-b"))  # stale ETag: 412
    with meter.measure() as read:
        assert leases.read_lease("p", "r1") == owned
    with meter.measure() as duplicate:
        assert leases.create_lease("p", "r1") is None  # 409
    assert [m.requests for m in (created, replaced, refused, read, duplicate)] == [1, 1, 1, 1, 1]
    with meter.measure() as listed:
        assert leases.list_leases("p") == [owned]
    assert listed.requests >= 1


# -- two processor instances on one container ----------------------------------------------------


@dataclass
class Handled:
    """What every instance's handler got, and every change of ownership, in order."""

    deliveries: list[tuple[str, str, str]] = field(default_factory=list)  # instance, range, id
    events: list[tuple[float, LeaseEvent]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self, instance: str) -> Callable[[FeedRange, list[JsonDict]], None]:
        def handle(feed_range: FeedRange, documents: list[JsonDict]) -> None:
            with self.lock:
                self.deliveries.extend((instance, feed_range.id, Commit.from_document(d).id)
                                       for d in documents)
        return handle

    def on_lease(self, event: LeaseEvent) -> None:
        with self.lock:
            self.events.append((time.time(), event))

    def ids(self) -> list[str]:
        with self.lock:
            return [commit_id for _, _, commit_id in self.deliveries]

    def snapshot(self) -> tuple[list[tuple[str, str, str]], list[tuple[float, LeaseEvent]]]:
        with self.lock:
            return list(self.deliveries), list(self.events)


def instance(name: str, service: Service, client: CosmosClient, handled: Handled
             ) -> ChangeFeedProcessor:
    events, leases = service.reached_by(client)
    return ChangeFeedProcessor(
        "projector-v1", CosmosPartitionedFeed(events, leases),
        CosmosLeaseStore(leases, events.id), handled.handler(name), instance_id=name,
        options=ProcessorOptions.scaled(LEASE_SECONDS, max_items=5), on_lease=handled.on_lease)


def test_two_instances_share_the_ranges_and_the_survivor_takes_over_a_dead_ones(
    service: Service, clients: Callable[[], CosmosClient],
) -> None:
    handled = Handled()
    store = CosmosEventStore(service.events, service.leases)
    a = instance("host-a", service, clients(), handled)
    b = instance("host-b", service, clients(), handled)
    running = [a, b]
    try:
        a.start()
        wait_until(lambda: len(a.owned_ranges()) == PHYSICAL_PARTITIONS, "host-a to own all")
        b.start()
        wait_until(lambda: (len(a.owned_ranges()), len(b.owned_ranges())) == (2, 2),
                   "the ranges to split 2 and 2")
        settled = len(handled.snapshot()[1])

        # Both run: every commit is handled once, by the owner of its range, in stream order.
        streams = [new_stream() for _ in range(16)]
        first = append_rounds(store, streams, 1, 3)
        wait_until(lambda: len(handled.ids()) >= len(first), "every commit to be handled")
        deliveries, events = handled.snapshot()
        assert len(events) == settled, "no lease changed hands while both ran"
        assert sorted(handled.ids()) == sorted(c.id for c in first)
        for stream in streams:
            assert [i for _, _, i in deliveries if i.startswith(stream)] == [
                f"{stream}:{v}" for v in (1, 2, 3)]
        owners = {range_id: {who for who, r, _ in deliveries if r == range_id}
                  for _, range_id, _ in deliveries}
        assert all(len(who) == 1 for who in owners.values()), owners
        assert {who for who, _, _ in deliveries} == {"host-a", "host-b"}  # the work is shared

        # host-a dies: its threads stop, its leases stay as they were until they expire.
        dead_ranges = a.owned_ranges()
        a.stop(release=False)
        running.remove(a)
        expiries = [lease.expires_at for lease in b.leases.list_leases("projector-v1")
                    if lease.owner == "host-a"]
        assert len(expiries) == 2
        second = append_rounds(store, streams, 4, 4) + append_rounds(
            store, [new_stream() for _ in range(8)], 1, 1)

        wait_until(lambda: len(b.owned_ranges()) == PHYSICAL_PARTITIONS,
                   "host-b to take over host-a's ranges")
        wait_until(lambda: len(handled.ids()) >= len(first) + len(second),
                   "every later commit to be handled")
    finally:
        for processor in running:
            processor.stop()

    deliveries, events = handled.snapshot()
    takeovers = [(at, e) for at, e in events[settled:] if e.kind == "taken over"]
    assert sorted(e.range_id for _, e in takeovers) == sorted(dead_ranges)
    assert all(e.instance == "host-b" and e.other == "host-a" for _, e in takeovers)
    assert all(at >= min(expiries) for at, _ in takeovers)  # only once the leases expired
    later = deliveries[len(first):]
    # None skipped, and nothing of the first round again: host-b resumed from host-a's
    # checkpoints, not from the beginning.
    assert sorted(i for _, _, i in later) == sorted(c.id for c in second)
    assert {who for who, _, _ in later} == {"host-b"}
    for stream in streams:
        assert [i for _, _, i in deliveries if i.startswith(stream)] == [
            f"{stream}:{v}" for v in (1, 2, 3, 4)]
