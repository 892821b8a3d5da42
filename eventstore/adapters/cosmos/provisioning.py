"""Creating the database and containers where nothing else does (the emulator, tests).

In Azure, Bicep creates them with the same partition keys and indexing policy; this is never
called there.
"""

from __future__ import annotations

from azure.cosmos import CosmosClient, DatabaseProxy, PartitionKey

from eventstore.adapters.cosmos.errors import translated
from eventstore.commit import JsonDict

EVENTS_INDEXING_POLICY: JsonDict = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/streamId/?"}, {"path": "/version/?"}],
    "excludedPaths": [{"path": "/*"}],
}
"""As in infra/bicep (cosmos-database.bicep): the stream read filters on streamId and orders by
version; event bodies are not indexed."""


def ensure_containers(
    client: CosmosClient,
    database_name: str,
    *,
    events_container: str = "events",
    views_container: str = "views",
    deadletters_container: str = "deadletters",
    leases_container: str = "leases",
) -> DatabaseProxy:
    """Create the database and containers when missing (emulator, tests). In Azure, Bicep
    creates them; this function is not called there."""
    with translated("ensure_containers"):
        database = client.create_database_if_not_exists(database_name)
        database.create_container_if_not_exists(
            events_container, PartitionKey("/streamId"), indexing_policy=EVENTS_INDEXING_POLICY
        )
        for name in (views_container, deadletters_container, leases_container):
            database.create_container_if_not_exists(name, PartitionKey("/id"))
    return database
