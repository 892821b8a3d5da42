# contract-suite-ready
"""The ``backend`` fixture the store contract suite runs against, once per backend.

To add a backend: write a factory ``(tmp_path: Path) -> ContextManager[Backend]`` that yields an
object with ``events``, ``views``, ``dead_letters``, ``personal_data`` and ``reopen()`` over a
fresh, empty data
location (unique database/container names), and cleans everything up on exit; then add it to
``BACKEND_FACTORIES`` under a name, and any pytest marks (e.g. ``pytest.mark.cosmos``) to
``BACKEND_MARKS`` under the same name. The tests themselves do not change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

import pytest
from azure.cosmos import CosmosClient

from eventstore.adapters.cosmos import (
    CosmosClientOptions,
    CosmosDatabase,
    CosmosPersonalDataStore,
    create_cosmos_client,
    ensure_personal_data_container,
)
from eventstore.commit import Commit, EventRecord
from eventstore.embedded.personaldata import SqlitePersonalDataStore
from eventstore.embedded.store import EmbeddedDatabase
from eventstore.ports import (
    ChangeFeed,
    CheckpointStore,
    DeadLetterStore,
    EventStore,
    FeedMonitor,
    LeaseStore,
    PartitionedFeed,
    PersonalDataStore,
    StreamCatalog,
    ViewStore,
)
from tests.support.cosmos_server import shared_cosmos_server


class BackendEvents(EventStore, ChangeFeed, CheckpointStore, StreamCatalog, FeedMonitor, Protocol):
    """What the suite needs from ``backend.events``."""


class Backend(Protocol):
    @property
    def events(self) -> BackendEvents: ...

    @property
    def feed(self) -> PartitionedFeed: ...

    @property
    def leases(self) -> LeaseStore: ...

    @property
    def views(self) -> ViewStore: ...

    @property
    def dead_letters(self) -> DeadLetterStore: ...

    @property
    def personal_data(self) -> PersonalDataStore: ...

    def reopen(self) -> Backend:
        """A fresh object over the same data (new connections / new client), as a restarted
        process would see it. The old object must not be used afterwards."""
        ...


# -- helpers shared by the suite (and tests/embedded/test_store.py) -------------------------------


def new_stream(prefix: str = "order") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def make_commit(
    stream_id: str,
    first_version: int,
    count: int = 1,
    *,
    tag: str = "t",
    data: dict[str, object] | None = None,
) -> Commit:
    events = tuple(
        EventRecord(
            version=version,
            event_id=uuid.uuid4().hex,
            type="ItemAddedToCart",
            schema_version=1,
            occurred_at="2024-05-01T12:00:00.000000+00:00",
            data=dict(data) if data is not None else {"n": version, "tag": tag},
        )
        for version in range(first_version, first_version + count)
    )
    return Commit(
        stream_id=stream_id,
        stream_type=stream_id.split("-", 1)[0],
        events=events,
        correlation_id=tag,
        causation_id=f"cmd-{uuid.uuid4().hex}",
        committed_at="2024-05-01T12:00:00.000001+00:00",
    )


# -- embedded (SQLite) ---------------------------------------------------------------------------


class _StoresBackend:
    """The stores of one opened database, as the contract tests use them."""

    _database: EmbeddedDatabase | CosmosDatabase
    _personal_data: PersonalDataStore

    @property
    def events(self) -> BackendEvents:
        return self._database.events

    @property
    def feed(self) -> PartitionedFeed:
        feed: PartitionedFeed = (self._database.events if isinstance(self._database,
                                                                     EmbeddedDatabase)
                                 else self._database.feed)
        return feed

    @property
    def leases(self) -> LeaseStore:
        return self._database.leases

    @property
    def views(self) -> ViewStore:
        return self._database.views

    @property
    def dead_letters(self) -> DeadLetterStore:
        return self._database.dead_letters

    @property
    def personal_data(self) -> PersonalDataStore:
        return self._personal_data


class EmbeddedBackend(_StoresBackend):
    _database: EmbeddedDatabase
    _personal_data: SqlitePersonalDataStore

    def __init__(self, path: Path, opened: list[EmbeddedDatabase | SqlitePersonalDataStore]
                 ) -> None:
        # Deliberately not open_embedded_database(): reopen() must bypass the per-process cache.
        self._database = EmbeddedDatabase(path)
        # A file of its own, as the app keeps it (app.bootstrap.EmbeddedBackend).
        self._personal_data = SqlitePersonalDataStore(path.with_name("personaldata.db"))
        self._opened = opened
        opened.extend([self._database, self._personal_data])

    def reopen(self) -> Backend:
        self._database.close()
        self._personal_data.close()
        return EmbeddedBackend(self._database.path, self._opened)


@contextmanager
def embedded_backend(tmp_path: Path) -> Iterator[Backend]:
    opened: list[EmbeddedDatabase | SqlitePersonalDataStore] = []
    try:
        yield EmbeddedBackend(tmp_path / "contract" / "store.db", opened)
    finally:
        for database in opened:
            database.close()


# -- Cosmos DB (the test server of tests/support/cosmos_server.py) -------------------------------

COSMOS_TEST_CLIENT_OPTIONS = CosmosClientOptions(
    retry_total=3, retry_backoff_max=5, connection_timeout=5.0, read_timeout=30.0
)


PERSONAL_DATA_CONTAINER = "personaldata"


class CosmosBackend(_StoresBackend):
    """The Cosmos DB adapters over one database of the shared test server (the ``cosmos_server``
    fixture's); ``reopen()`` is a new CosmosClient over the same database."""

    _database: CosmosDatabase

    def __init__(self, settings: dict[str, str], name: str, clients: list[CosmosClient]) -> None:
        client = create_cosmos_client(settings, COSMOS_TEST_CLIENT_OPTIONS)
        clients.append(client)
        self._settings, self._name, self._clients = settings, name, clients
        self._database = CosmosDatabase(client, name)
        self._personal_data = CosmosPersonalDataStore(
            client.get_database_client(name).get_container_client(PERSONAL_DATA_CONTAINER))

    def reopen(self) -> Backend:
        self._database.client.close()
        return CosmosBackend(self._settings, self._name, self._clients)


@contextmanager
def cosmos_backend(tmp_path: Path) -> Iterator[Backend]:
    settings = shared_cosmos_server().settings
    name = f"contract-{uuid.uuid4().hex[:12]}"  # a fresh database per test
    clients: list[CosmosClient] = []
    backend = CosmosBackend(settings, name, clients)
    backend._database.ensure_containers()
    ensure_personal_data_container(backend._database.client, name, PERSONAL_DATA_CONTAINER)
    try:
        yield backend
    finally:
        cleanup = create_cosmos_client(settings, COSMOS_TEST_CLIENT_OPTIONS)
        cleanup.delete_database(name)
        for client in [*clients, cleanup]:
            client.close()


# -- registry ------------------------------------------------------------------------------------

BACKEND_FACTORIES: dict[str, Callable[[Path], AbstractContextManager[Backend]]] = {
    "embedded": embedded_backend,
    "cosmos": cosmos_backend,
}

BACKEND_MARKS: dict[str, list[pytest.MarkDecorator]] = {
    # Known gaps of the test server: COSMOS_KNOWN_GAPS in tests/support/cosmos_server.py.
    "cosmos": [pytest.mark.cosmos],
}


@pytest.fixture(
    params=[
        pytest.param(name, id=name, marks=BACKEND_MARKS.get(name, [])) for name in BACKEND_FACTORIES
    ]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with BACKEND_FACTORIES[request.param](tmp_path) as opened:
        yield opened
