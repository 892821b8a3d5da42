"""The stores of one service database, over a shared client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from azure.cosmos import CosmosClient

from eventstore.adapters.cosmos.changefeed import CosmosPartitionedFeed
from eventstore.adapters.cosmos.connection import (
    CosmosClientOptions,
    CosmosConnection,
    cosmos_client_from_settings,
)
from eventstore.adapters.cosmos.leases import CosmosLeaseStore
from eventstore.adapters.cosmos.metering import REQUEST_METER, RequestMeter
from eventstore.adapters.cosmos.provisioning import ensure_containers
from eventstore.adapters.cosmos.stores import (
    CosmosDeadLetterStore,
    CosmosEventStore,
    CosmosViewStore,
)


@dataclass(frozen=True)
class ContainerNames:
    events: str = "events"
    views: str = "views"
    deadletters: str = "deadletters"
    leases: str = "leases"


class CosmosDatabase:
    """The stores of one service database: events (+ feed, checkpoints), views, dead letters,
    and the partitioned feed with its leases for the change-feed processor."""

    def __init__(
        self,
        client: CosmosClient,
        database_name: str,
        *,
        events_container: str = "events",
        views_container: str = "views",
        deadletters_container: str = "deadletters",
        leases_container: str = "leases",
        meter: RequestMeter | None = None,
    ) -> None:
        self.client = client
        self.database_name = database_name
        self.names = ContainerNames(
            events=events_container,
            views=views_container,
            deadletters=deadletters_container,
            leases=leases_container,
        )
        self.meter = meter or REQUEST_METER
        database = client.get_database_client(database_name)
        events = database.get_container_client(events_container)
        leases = database.get_container_client(leases_container)
        self.events = CosmosEventStore(events, leases, meter=self.meter)
        self.feed = CosmosPartitionedFeed(events, leases, meter=self.meter)
        self.leases = CosmosLeaseStore(leases, events_container, meter=self.meter)
        self.events.attach_ranges(self.feed, self.leases)
        self.views = CosmosViewStore(
            database.get_container_client(views_container), meter=self.meter
        )
        self.dead_letters = CosmosDeadLetterStore(
            database.get_container_client(deadletters_container), meter=self.meter
        )

    def ensure_containers(self) -> None:
        """Create the database and its containers when missing (emulator, tests)."""
        ensure_containers(
            self.client,
            self.database_name,
            events_container=self.names.events,
            views_container=self.names.views,
            deadletters_container=self.names.deadletters,
            leases_container=self.names.leases,
        )

    def __repr__(self) -> str:
        return f"CosmosDatabase({self.database_name!r}, {self.names})"


def open_cosmos_database(
    *,
    database: str,
    events_container: str = "events",
    views_container: str = "views",
    deadletters_container: str = "deadletters",
    leases_container: str = "leases",
    settings: Mapping[str, str] | CosmosConnection,
    options: CosmosClientOptions | None = None,
    meter: RequestMeter | None = None,
) -> CosmosDatabase:
    """The stores of one service database, over the process-wide client for ``settings``.

    Against a local emulator (loopback endpoint) the database and containers are created when
    missing, so ``func start`` works on a fresh emulator; in Azure, Bicep creates them and
    nothing is created here.
    """
    connection = (settings if isinstance(settings, CosmosConnection)
                  else CosmosConnection.from_settings(settings))
    client = cosmos_client_from_settings(connection, options)
    cosmos = CosmosDatabase(
        client,
        database,
        events_container=events_container,
        views_container=views_container,
        deadletters_container=deadletters_container,
        leases_container=leases_container,
        meter=meter,
    )
    if connection.is_loopback:
        cosmos.ensure_containers()
    return cosmos
