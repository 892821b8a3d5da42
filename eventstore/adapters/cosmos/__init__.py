"""Cosmos DB adapters of the kernel's ports, one module per job:

- ``connection``: connection settings (Functions convention) and the shared client;
- ``stores``: the event store (one ``create_item`` per commit), views and dead letters;
- ``personaldata``: the erasable personal-data store, apart from the event log;
- ``changefeed``: the pull-model change feed, whole (with checkpoints in the leases container)
  and split into feed ranges;
- ``leases``: the change-feed processor's leases in the leases container;
- ``metering``: requests and RU per command;
- ``errors``: which SDK failures are transient;
- ``provisioning``: containers for the emulator and tests (Bicep creates them in Azure);
- ``database``: the stores of one service database.
"""

from eventstore.adapters.cosmos.changefeed import CosmosChangeFeed, CosmosPartitionedFeed
from eventstore.adapters.cosmos.connection import (
    CosmosClientOptions,
    CosmosConfigurationError,
    CosmosConnection,
    close_cached_clients,
    cosmos_client_from_settings,
    create_cosmos_client,
    is_loopback_endpoint,
)
from eventstore.adapters.cosmos.database import ContainerNames, CosmosDatabase, open_cosmos_database
from eventstore.adapters.cosmos.errors import is_transient_status
from eventstore.adapters.cosmos.leases import CosmosLeaseStore
from eventstore.adapters.cosmos.metering import REQUEST_METER, Measurement, RequestMeter
from eventstore.adapters.cosmos.personaldata import (
    CosmosPersonalDataStore,
    ensure_personal_data_container,
    open_personal_data_store,
)
from eventstore.adapters.cosmos.provisioning import EVENTS_INDEXING_POLICY, ensure_containers
from eventstore.adapters.cosmos.stores import (
    STREAM_PAGE_SIZE,
    CosmosDeadLetterStore,
    CosmosEventStore,
    CosmosViewStore,
)

__all__ = [
    "EVENTS_INDEXING_POLICY",
    "REQUEST_METER",
    "STREAM_PAGE_SIZE",
    "ContainerNames",
    "CosmosChangeFeed",
    "CosmosClientOptions",
    "CosmosConfigurationError",
    "CosmosConnection",
    "CosmosDatabase",
    "CosmosDeadLetterStore",
    "CosmosEventStore",
    "CosmosLeaseStore",
    "CosmosPartitionedFeed",
    "CosmosPersonalDataStore",
    "CosmosViewStore",
    "Measurement",
    "RequestMeter",
    "close_cached_clients",
    "cosmos_client_from_settings",
    "create_cosmos_client",
    "ensure_containers",
    "ensure_personal_data_container",
    "is_loopback_endpoint",
    "is_transient_status",
    "open_cosmos_database",
    "open_personal_data_store",
]
