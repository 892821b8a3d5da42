"""Fixtures for the Cosmos DB adapter tests (the server itself: tests/support/cosmos_server.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.cosmos import CosmosClient

from eventstore.adapters.cosmos import (
    CosmosClientOptions,
    CosmosDatabase,
    RequestMeter,
    cosmos_client_from_settings,
)
from tests.support.cosmos_server import CosmosServerInfo

FAST_FAILING = CosmosClientOptions(
    retry_total=1, retry_backoff_max=1, connection_timeout=2.0, read_timeout=5.0
)
"""Client options for tests: failures surface in well under a second."""


@pytest.fixture
def cosmos_client(cosmos_server: CosmosServerInfo) -> CosmosClient:
    return cosmos_client_from_settings(cosmos_server.settings, FAST_FAILING)


@pytest.fixture
def meter() -> RequestMeter:
    return RequestMeter()


@pytest.fixture
def cosmos_db(cosmos_client: CosmosClient, meter: RequestMeter) -> Iterator[CosmosDatabase]:
    """The stores over a fresh database (unique name), deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    database = CosmosDatabase(cosmos_client, name, meter=meter)
    database.ensure_containers()
    try:
        yield database
    finally:
        cosmos_client.delete_database(name)
