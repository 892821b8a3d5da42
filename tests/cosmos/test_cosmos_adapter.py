"""The Cosmos DB adapters over the real azure-cosmos SDK, against @vercel/cosmosdb-server.

Run on their own with ``pytest -k cosmos``. What the test server cannot do is listed once, in
tests/support/cosmos_server.py (COSMOS_KNOWN_GAPS) and docs/cosmos-test-server.md.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import pytest
from azure.cosmos import ContainerProxy, CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosHttpResponseError

from eventstore.adapters.cosmos import (
    CosmosConfigurationError,
    CosmosDatabase,
    CosmosEventStore,
    CosmosViewStore,
    RequestMeter,
    cosmos_client_from_settings,
    create_cosmos_client,
    is_loopback_endpoint,
    is_transient_status,
    open_cosmos_database,
)
from eventstore.commit import Commit, EventRecord
from eventstore.errors import ConcurrencyError, TransientError
from eventstore.ports import DeadLetter
from tests.cosmos.conftest import FAST_FAILING
from tests.support.cosmos_server import EMULATOR_KEY, CosmosServerInfo, running_cosmos_server

pytestmark = pytest.mark.cosmos


def new_stream(prefix: str = "order") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def make_commit(stream_id: str, first_version: int, count: int = 1, tag: str = "t") -> Commit:
    return Commit(
        stream_id=stream_id,
        stream_type=stream_id.split("-", 1)[0],
        events=tuple(
            EventRecord(
                version=v,
                event_id=uuid.uuid4().hex,
                type="ItemAddedToCart",
                schema_version=1,
                occurred_at="2024-05-01T12:00:00+00:00",
                data={"n": v, "tag": tag},
            )
            for v in range(first_version, first_version + count)
        ),
        correlation_id=f"corr-{tag}",
        causation_id=f"cmd-{uuid.uuid4().hex}",
        committed_at="2024-05-01T12:00:00.000001+00:00",
    )


def letter(id_: str, parked_at: str, error: str = "boom") -> DeadLetter:
    return DeadLetter(
        id=id_,
        consumer="projector-v1",
        stream_id="order-1",
        version=3,
        event_type="OrderPaid",
        error=error,
        payload={"paymentId": "p-1", "nested": {"k": [1, 2]}},
        parked_at=parked_at,
    )


def is_pull_model_token(token: str | None) -> bool:
    """The SDK's change-feed continuation: base64 JSON naming the container."""
    if token is None:
        return False
    decoded = json.loads(base64.b64decode(token))
    return isinstance(decoded, dict) and "containerRid" in decoded


def emulator_settings(endpoint: str, *, accept_cert: bool = True) -> dict[str, str]:
    settings = {"COSMOS": f"AccountEndpoint={endpoint};AccountKey={EMULATOR_KEY};"}
    if accept_cert:
        settings["COSMOS_ACCEPT_EMULATOR_CERT"] = "true"
    return settings


# -- client from settings ------------------------------------------------------------------------


def test_cosmos_settings_missing_names_both_settings() -> None:
    with pytest.raises(CosmosConfigurationError) as raised:
        create_cosmos_client({"OTHER": "x"})
    assert "COSMOS" in str(raised.value)
    assert "COSMOS__accountEndpoint" in str(raised.value)


@pytest.mark.parametrize(
    "value",
    [
        "AccountEndpoint=https://127.0.0.1:1/;",  # no key
        f"AccountKey={EMULATOR_KEY};",  # no endpoint
        "AccountEndpoint=https://127.0.0.1:1/;AccountKey=not base64!;",
        "just-a-url",
    ],
)
def test_cosmos_settings_malformed_connection_string(value: str) -> None:
    with pytest.raises(CosmosConfigurationError):
        create_cosmos_client({"COSMOS": value})


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://myaccount.documents.azure.com:443/",
        "https://10.0.0.4:8081/",
        "https://localhost.evil.example:8081/",
    ],
)
def test_cosmos_emulator_cert_flag_refused_for_non_loopback_host(endpoint: str) -> None:
    with pytest.raises(CosmosConfigurationError, match="COSMOS_ACCEPT_EMULATOR_CERT"):
        create_cosmos_client(emulator_settings(endpoint))
    with pytest.raises(CosmosConfigurationError, match="COSMOS_ACCEPT_EMULATOR_CERT"):
        create_cosmos_client(
            {
                "COSMOS__accountEndpoint": endpoint,
                "COSMOS_ACCEPT_EMULATOR_CERT": "true",
            }
        )


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("https://localhost:8081/", True),
        ("https://LOCALHOST:8081/", True),
        ("https://127.0.0.1:8081/", True),
        ("https://127.3.4.5:8081/", True),
        ("https://[::1]:8081/", True),
        ("https://myaccount.documents.azure.com:443/", False),
        ("https://10.0.0.4:8081/", False),
        ("https://[::2]:8081/", False),
    ],
)
def test_cosmos_loopback_endpoints(endpoint: str, loopback: bool) -> None:
    assert is_loopback_endpoint(endpoint) is loopback


def test_cosmos_emulator_cert_needs_the_flag() -> None:
    # The SDK itself skips verification for the literal hosts "localhost" and "127.0.0.1", so this
    # uses another loopback address to show the flag is what accepts the self-signed certificate.
    with running_cosmos_server(host="127.0.0.2") as server:
        with pytest.raises(CosmosConfigurationError, match="not trusted"):
            create_cosmos_client(
                emulator_settings(server.info.endpoint, accept_cert=False), FAST_FAILING
            )
        client = create_cosmos_client(emulator_settings(server.info.endpoint), FAST_FAILING)
        assert list(client.list_databases()) == []


def test_cosmos_client_is_cached_per_settings(cosmos_server: CosmosServerInfo) -> None:
    clients: list[CosmosClient] = []
    settings = {**cosmos_server.settings, "UNRELATED_SETTING": uuid.uuid4().hex}

    def get() -> None:
        clients.append(cosmos_client_from_settings(settings, FAST_FAILING))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(clients) == 8
    assert all(client is clients[0] for client in clients)
    assert cosmos_client_from_settings(cosmos_server.settings, FAST_FAILING) is clients[0]
    assert create_cosmos_client(cosmos_server.settings, FAST_FAILING) is not clients[0]


def test_cosmos_identity_settings_use_default_azure_credential(
    cosmos_server: CosmosServerInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import azure.identity
    from azure.core.credentials import AccessToken

    created: list[dict[str, Any]] = []

    class FakeCredential:
        def __init__(self, **kwargs: Any) -> None:
            created.append(kwargs)

        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            return AccessToken("test-token", int(time.time()) + 3600)

        def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
            from azure.core.credentials import AccessTokenInfo

            return AccessTokenInfo("test-token", int(time.time()) + 3600)

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", FakeCredential)
    base = {
        "COSMOS__accountEndpoint": cosmos_server.endpoint,
        "COSMOS_ACCEPT_EMULATOR_CERT": "true",
    }

    client = create_cosmos_client({**base, "COSMOS__clientId": "cosmos-id"}, FAST_FAILING)
    assert isinstance(list(client.list_databases()), list)  # the server ignores the token
    create_cosmos_client({**base, "AZURE_CLIENT_ID": "app-id"}, FAST_FAILING)
    create_cosmos_client(base, FAST_FAILING)
    assert created == [
        {"managed_identity_client_id": "cosmos-id"},
        {"managed_identity_client_id": "app-id"},
        {},
    ]


def test_cosmos_open_database_creates_containers_on_loopback(
    cosmos_server: CosmosServerInfo, cosmos_client: CosmosClient
) -> None:
    name = f"test-{uuid.uuid4().hex[:12]}"
    try:
        cosmos = open_cosmos_database(
            database=name,
            events_container="orders-events",
            settings=cosmos_server.settings,
            options=FAST_FAILING,
        )
        assert cosmos.client is cosmos_client  # the process-wide client for these settings
        stream = new_stream()
        cosmos.events.append(make_commit(stream, 1))
        assert len(cosmos.events.read_stream(stream)) == 1
        containers = {c["id"] for c in cosmos_client.get_database_client(name).list_containers()}
        assert containers == {"orders-events", "views", "deadletters", "leases"}
    finally:
        cosmos_client.delete_database(name)


# -- event store ---------------------------------------------------------------------------------


def test_cosmos_append_and_read_stream(cosmos_db: CosmosDatabase) -> None:
    store = cosmos_db.events
    stream = new_stream()
    commits = [make_commit(stream, 1, 2), make_commit(stream, 3), make_commit(stream, 4, 3)]
    for commit in commits:
        store.append(commit)
    store.append(make_commit(new_stream(), 1))  # another stream, same container

    assert store.read_stream(stream) == commits
    assert store.read_stream(stream, after_version=2) == commits[1:]
    assert store.read_stream(stream, after_version=3) == commits[2:]
    assert store.read_stream(stream, after_version=6) == []
    assert store.read_stream(new_stream()) == []


def test_cosmos_commit_is_one_document_per_commit(
    cosmos_db: CosmosDatabase, cosmos_client: CosmosClient
) -> None:
    stream = new_stream()
    commit = make_commit(stream, 1, 3)
    cosmos_db.events.append(commit)
    container = cosmos_client.get_database_client(cosmos_db.database_name).get_container_client(
        "events"
    )
    document = container.read_item(f"{stream}:1", partition_key=stream)
    assert {k: v for k, v in document.items() if not k.startswith("_")} == commit.to_document()


def test_cosmos_read_stream_orders_by_version_not_by_insertion(cosmos_db: CosmosDatabase) -> None:
    stream = new_stream()
    late, early = make_commit(stream, 5, 2), make_commit(stream, 1, 4)
    cosmos_db.events.append(late)
    cosmos_db.events.append(early)
    assert cosmos_db.events.read_stream(stream) == [early, late]


def test_cosmos_append_conflict_is_concurrency_error(cosmos_db: CosmosDatabase) -> None:
    store = cosmos_db.events
    stream = new_stream()
    first = make_commit(stream, 1, tag="first")
    store.append(first)
    with pytest.raises(ConcurrencyError):
        store.append(make_commit(stream, 1, 2, tag="second"))
    assert store.read_stream(stream) == [first]


# -- request metering ----------------------------------------------------------------------------


def test_cosmos_meter_counts_one_request_per_append_and_read(
    cosmos_db: CosmosDatabase, meter: RequestMeter
) -> None:
    store = cosmos_db.events
    stream = new_stream()
    with meter.measure() as append:
        store.append(make_commit(stream, 1, 2))
    assert (append.requests, append.request_charge) == (1, 1.0)  # the server charges 1 RU

    for version in (3, 4, 5):
        store.append(make_commit(stream, version))
    with meter.measure() as read:
        assert len(store.read_stream(stream)) == 4
    assert (read.requests, read.request_charge) == (1, 1.0)

    with meter.measure() as conflict, pytest.raises(ConcurrencyError):
        store.append(make_commit(stream, 3))
    assert conflict.requests == 1  # a refused write is a request (and costs RUs) too


def test_cosmos_meter_cold_command_two_requests_warm_one(
    cosmos_server: CosmosServerInfo, cosmos_db: CosmosDatabase
) -> None:
    # A new client and new stores, as in a fresh process: the SDK's one-off metadata reads
    # (account, container properties) are not attributed to the command.
    meter = RequestMeter()
    fresh = CosmosDatabase(
        create_cosmos_client(cosmos_server.settings, FAST_FAILING),
        cosmos_db.database_name,
        meter=meter,
    )
    stream = new_stream()
    with meter.measure() as cold:  # load (cache miss), decide, append
        assert fresh.events.read_stream(stream) == []
        fresh.events.append(make_commit(stream, 1))
    with meter.measure() as warm:  # state cached: decide, append
        fresh.events.append(make_commit(stream, 2))
    assert (cold.requests, warm.requests) == (2, 1)
    assert meter.total.requests == 3


def test_cosmos_meter_scopes_nest_and_stay_in_their_thread(
    cosmos_db: CosmosDatabase, meter: RequestMeter
) -> None:
    stream = new_stream()
    inner_requests: list[int] = []
    other_thread_requests: list[int] = []

    def other_thread() -> None:
        with meter.measure() as other:
            cosmos_db.events.append(make_commit(new_stream(), 1))
            cosmos_db.events.append(make_commit(new_stream(), 1))
        other_thread_requests.append(other.requests)

    with meter.measure() as outer:
        cosmos_db.events.append(make_commit(stream, 1))
        with meter.measure() as inner:
            cosmos_db.events.read_stream(stream)
        inner_requests.append(inner.requests)
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert (outer.requests, inner_requests, other_thread_requests) == (2, [1], [2])

    other_meter = RequestMeter()
    with other_meter.measure() as unrelated:
        cosmos_db.events.read_stream(stream)  # the stores report to `meter`, not `other_meter`
    assert unrelated.requests == 0


# -- change feed and checkpoints -----------------------------------------------------------------


def test_cosmos_feed_from_beginning(cosmos_db: CosmosDatabase) -> None:
    store = cosmos_db.events
    empty = store.read_feed(None, 10)
    assert (empty.commits, empty.checkpoint) == ([], None)

    stream = new_stream()
    commits = [make_commit(stream, 1, 2), make_commit(stream, 3), make_commit(new_stream(), 1)]
    for commit in commits:
        store.append(commit)
    page = store.read_feed(None, 10)
    assert page.commits == commits
    assert is_pull_model_token(page.checkpoint)

    with pytest.raises(ValueError):
        store.read_feed(None, 0)


def test_cosmos_feed_checkpoint_is_its_own_response_token_under_concurrency(
    cosmos_db: CosmosDatabase,
) -> None:
    # The SDK's pager reads its token from the client's shared last_response_headers; the adapter
    # takes it from the page's own response headers instead, so requests on other threads of the
    # same client cannot leak into a checkpoint. (The race window is too small to hit on
    # purpose; this checks the token under concurrent use of the client.)
    cosmos_db.events.append(make_commit(new_stream(), 1))
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            cosmos_db.views.get("some-view")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        checkpoints = [cosmos_db.events.read_feed(None, 10).checkpoint for _ in range(40)]
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert all(is_pull_model_token(checkpoint) for checkpoint in checkpoints)


def test_cosmos_feed_resumes_after_checkpoint(cosmos_db: CosmosDatabase) -> None:
    """A checkpoint resumes after the commits it covers, also once more commits arrive."""
    store = cosmos_db.events
    stream = new_stream()
    commits = [make_commit(stream, v) for v in (1, 2, 3)]
    for commit in commits:
        store.append(commit)
    first = store.read_feed(None, 2)
    assert first.commits == commits[:2]
    second = store.read_feed(first.checkpoint, 2)
    assert second.commits == commits[2:]
    later = make_commit(stream, 4)
    store.append(later)
    assert store.read_feed(second.checkpoint, 2).commits == [later]


def test_cosmos_feed_checkpoints_on_a_container_with_several_physical_partitions(
    cosmos_db: CosmosDatabase, cosmos_client: CosmosClient
) -> None:
    # 40,000 RU/s: four physical partitions (feed ranges). The first pages come from one range
    # while the others are still unread; their checkpoints must resume all the same.
    database = cosmos_client.get_database_client(cosmos_db.database_name)
    events = database.create_container(
        "big-events", PartitionKey("/streamId"), offer_throughput=40_000
    )
    assert len(list(events.read_feed_ranges())) == 4
    store = CosmosEventStore(events, database.get_container_client("leases"))
    streams = [new_stream() for _ in range(12)]
    commits = [make_commit(stream, version) for version in (1, 2) for stream in streams]
    for commit in commits:
        store.append(commit)

    delivered: list[Commit] = []
    checkpoint: str | None = None
    for _ in range(len(commits) + 4 * 2):  # at most one empty page per range in between
        page = store.read_feed(checkpoint, 3)
        delivered.extend(page.commits)
        checkpoint = page.checkpoint
        if len(delivered) == len(commits):
            break
    assert sorted(c.id for c in delivered) == sorted(c.id for c in commits)
    for stream in streams:
        assert [c.first_version for c in delivered if c.stream_id == stream] == [1, 2]

    assert store.read_feed(checkpoint, 3).commits == []
    later = make_commit(streams[0], 3)
    store.append(later)
    assert store.read_feed(checkpoint, 3).commits == [later]


def test_cosmos_checkpoints(cosmos_db: CosmosDatabase, cosmos_client: CosmosClient) -> None:
    store = cosmos_db.events
    assert store.load_checkpoint("projector-v1") is None
    store.save_checkpoint("projector-v1", "token-1")
    store.save_checkpoint("publisher-v1", "token-a")
    store.save_checkpoint("projector-v1", "token-2")
    assert store.load_checkpoint("projector-v1") == "token-2"
    assert store.load_checkpoint("publisher-v1") == "token-a"

    # Another service's events container sharing the leases container keeps its own.
    database = cosmos_client.get_database_client(cosmos_db.database_name)
    database.create_container_if_not_exists("payments-events", PartitionKey("/streamId"))
    other = CosmosEventStore(
        database.get_container_client("payments-events"), database.get_container_client("leases")
    )
    assert other.load_checkpoint("projector-v1") is None

    with pytest.raises(ValueError):
        store.save_checkpoint("projector-v1", "")


# -- views and dead letters ----------------------------------------------------------------------


def test_cosmos_view_store_etags(cosmos_db: CosmosDatabase) -> None:
    views = cosmos_db.views
    view_id = f"order-{uuid.uuid4().hex}"
    assert views.get(view_id) is None

    document = {"orderId": view_id, "id": "not-the-view-id", "_private": 1, "items": [{"q": 2}]}
    etag1 = views.put(view_id, document, None)
    stored = views.get(view_id)
    assert stored is not None
    assert (stored.document, stored.etag) == (document, etag1)

    with pytest.raises(ConcurrencyError):
        views.put(view_id, {"again": True}, None)  # create, but it exists

    etag2 = views.put(view_id, {"v": 2}, etag1)
    assert etag2 != etag1
    with pytest.raises(ConcurrencyError):
        views.put(view_id, {"v": 3}, etag1)  # stale ETag
    with pytest.raises(ConcurrencyError):
        views.put(f"order-{uuid.uuid4().hex}", {"v": 1}, etag2)  # replace, but missing
    stored = views.get(view_id)
    assert stored is not None
    assert (stored.document, stored.etag) == ({"v": 2}, etag2)


def test_cosmos_view_store_meters_requests(cosmos_db: CosmosDatabase, meter: RequestMeter) -> None:
    with meter.measure() as m:
        assert cosmos_db.views.get("missing") is None
        etag = cosmos_db.views.put("v-1", {"a": 1}, None)
        cosmos_db.views.put("v-1", {"a": 2}, etag)
    assert m.requests == 3


def test_cosmos_dead_letters(cosmos_db: CosmosDatabase) -> None:
    letters = cosmos_db.dead_letters
    assert letters.list_letters() == []
    b = letter("projector-v1:order-1:3", "2024-05-01T12:00:02+00:00")
    a = letter("projector-v1:order-2:1", "2024-05-01T12:00:01+00:00")
    c = letter("publisher-v1:order-1:3", "2024-05-01T12:00:02+00:00")
    for item in (c, b, a):
        letters.park(item)
    assert letters.list_letters() == [a, b, c]
    assert letters.list_letters(limit=2) == [a, b]

    again = letter(b.id, b.parked_at, error="boom again")
    letters.park(again)  # same id: overwritten, not duplicated
    assert letters.list_letters() == [a, again, c]


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (408, True),
        (429, True),
        (449, True),
        (500, True),
        (503, True),
        (400, False),
        (404, False),
        (409, False),
        (412, False),
        (413, False),
    ],
)
def test_cosmos_transient_statuses(status: int, transient: bool) -> None:
    assert is_transient_status(status) is transient


class _FailingContainer:
    """Stands in for a ContainerProxy whose calls fail with a given status, e.g. a 429 that is
    still throttled after the SDK's own retries (the test server never throttles)."""

    id = "events"

    def __init__(self, status: int) -> None:
        self.status = status

    def _fail(self, *args: object, **kwargs: object) -> Any:
        raise CosmosHttpResponseError(  # type: ignore[no-untyped-call]
            status_code=self.status, message="failing on purpose"
        )

    create_item = read_item = replace_item = upsert_item = query_items = _fail
    query_items_change_feed = _fail


@pytest.mark.parametrize("status", [408, 429, 449, 500, 503])
def test_cosmos_transient_status_raises_transient_error(status: int) -> None:
    container = cast(ContainerProxy, _FailingContainer(status))
    store = CosmosEventStore(container, container)
    views = CosmosViewStore(container)
    calls: list[Callable[[], object]] = [
        lambda: store.append(make_commit(new_stream(), 1)),
        lambda: store.read_stream("s"),
        lambda: store.read_feed(None, 1),
        lambda: store.load_checkpoint("c"),
        lambda: store.save_checkpoint("c", "t"),
        lambda: views.get("v"),
        lambda: views.put("v", {}, None),
        lambda: views.put("v", {}, "etag"),
    ]
    for call in calls:
        with pytest.raises(TransientError) as raised:
            call()
        assert isinstance(raised.value.__cause__, CosmosHttpResponseError)


def test_cosmos_other_statuses_are_not_transient() -> None:
    container = cast(ContainerProxy, _FailingContainer(400))
    with pytest.raises(CosmosHttpResponseError):
        CosmosEventStore(container, container).append(make_commit(new_stream(), 1))


def test_cosmos_unreachable_account_is_transient_error() -> None:
    with running_cosmos_server() as server:
        client = create_cosmos_client(emulator_settings(server.info.endpoint), FAST_FAILING)
        database = CosmosDatabase(client, "gone")
        database.ensure_containers()
        stream = new_stream()
        database.events.append(make_commit(stream, 1))
        settings = emulator_settings(server.info.endpoint)
        server.stop()  # Cosmos DB goes away under a live client

        started = time.monotonic()
        for call in (
            lambda: database.events.append(make_commit(stream, 2)),
            lambda: database.events.read_stream(stream),
            lambda: database.events.read_feed(None, 10),
            lambda: database.views.get("v"),
            lambda: database.views.put("v", {}, None),
            lambda: database.dead_letters.park(letter("x", "2024-05-01T00:00:00+00:00")),
            database.dead_letters.list_letters,
        ):
            with pytest.raises(TransientError):
                call()
        with pytest.raises(TransientError):
            create_cosmos_client(settings, FAST_FAILING)  # the client reads the account eagerly
        assert time.monotonic() - started < 30


def test_a_query_the_sdk_fails_with_its_own_header_race_is_asked_again() -> None:
    from eventstore.adapters.cosmos.errors import retried_on_header_race

    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("OrderedDict mutated during iteration")
        return "rows"

    assert retried_on_header_race(flaky) == "rows" and len(calls) == 3

    def broken() -> str:
        raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="something else"):
        retried_on_header_race(broken)
