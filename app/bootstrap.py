"""The composition root: settings in, every adapter, processor, projector and publisher out,
built once per process. Nothing else reads settings or the environment.

``bootstrap(settings)`` wires the backend the settings name (``BACKEND=azure``: Cosmos DB and
Service Bus, as under ``func start`` and in Azure; ``BACKEND=embedded``: SQLite and the embedded
bus, set by the local host). Tests pass their own backend or fakes instead, as in cosmicpython's
``bootstrap``. Each backend module is imported only when chosen, so the Azure path never imports
the embedded backends (which the deployment package does not ship), and building ``Services``
does no I/O: clients connect on first use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from app.adapters.acquirer import SimulatedAcquirer
from app.adapters.entra_auth import (
    EntraTokenValidator,
    JwksSource,
    TokenProvider,
    managed_identity_tokens,
)
from app.adapters.payments_http import HttpPaymentsGateway
from app.integration import IntegrationEvents
from app.operations import MessageHandler, ServiceOperations
from app.orders import ORDERS_PROJECTOR, ORDERS_PUBLISHER, OrdersService
from app.payments import PAYMENTS_PROJECTOR, PAYMENTS_PUBLISHER, PaymentsService
from app.ports import Acquirer, PaymentsGateway
from app.settings import ServiceName, Settings
from contracts.mapping import order_publications, payment_publications
from contracts.messages import Channel
from domain import orders, payments
from eventstore.commands import CommandProcessor
from eventstore.ports import (
    CostMeter,
    DeadLetterQueues,
    DeadLetterStore,
    FeedStore,
    LeaseStore,
    MessagePublisher,
    PartitionedFeed,
    PersonalDataStore,
    ViewStore,
)
from eventstore.projection import Projector, ViewDefinition
from eventstore.publishing import Publisher
from eventstore.reads import ViewReader

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from eventstore.embedded.bus import EmbeddedBus



@dataclass(frozen=True)
class ServiceStores:
    """The stores of one service database."""

    events: FeedStore
    views: ViewStore
    dead_letters: DeadLetterStore
    meter: CostMeter | None = None
    # The change feed split into ranges, and the leases that share them between instances
    # (eventstore.changefeed); both backends offer them, a test's fake stores may not.
    feed: PartitionedFeed | None = None
    leases: LeaseStore | None = None


class Backend(Protocol):
    """Where the services keep their events and send their messages."""

    def stores(self, database: str) -> ServiceStores: ...

    def personal_data(self, database: str, container: str) -> PersonalDataStore:
        """The erasable personal-data store of a service database, apart from its events."""
        ...

    def publisher(self) -> MessagePublisher: ...

    def inbox(self, entity_path: str, max_lock_renewal: float) -> Any:
        """Peek-lock receiving from a queue or subscription, for a host that runs the Service
        Bus-triggered functions itself (one per worker thread)."""
        ...

    def dead_letter_queues(self) -> DeadLetterQueues:
        """The broker's dead-letter sub-queues (the operator CLI's)."""
        ...

    def close(self) -> None: ...


class AzureBackend:
    """Cosmos DB (one database per service) and Service Bus, over clients shared per process."""

    def __init__(self, settings: Settings) -> None:
        if settings.cosmos is None or settings.servicebus is None:
            raise ValueError("the Azure backend needs the COSMOS and SERVICEBUS connections")
        self._settings = settings
        self._cosmos = settings.cosmos
        self._servicebus = settings.servicebus
        self._publisher: MessagePublisher | None = None
        self._lock = threading.Lock()

    def stores(self, database: str) -> ServiceStores:
        from eventstore.adapters.cosmos import open_cosmos_database

        names = self._settings.containers
        cosmos = open_cosmos_database(
            database=database, events_container=names.events, views_container=names.views,
            deadletters_container=names.deadletters, leases_container=names.leases,
            settings=self._cosmos)
        return ServiceStores(cosmos.events, cosmos.views, cosmos.dead_letters, cosmos.meter,
                             feed=cosmos.feed, leases=cosmos.leases)

    def personal_data(self, database: str, container: str) -> PersonalDataStore:
        from eventstore.adapters.cosmos import open_personal_data_store

        return open_personal_data_store(database=database, container=container,
                                        settings=self._cosmos)

    def publisher(self) -> MessagePublisher:
        from eventstore.adapters.servicebus import ServiceBusPublisher

        with self._lock:
            if self._publisher is None:
                self._publisher = ServiceBusPublisher.from_settings(self._servicebus)
            return self._publisher

    def inbox(self, entity_path: str, max_lock_renewal: float) -> Any:
        from eventstore.adapters.servicebus.receiver import ServiceBusInbox

        return ServiceBusInbox(self._servicebus, entity_path, max_lock_renewal)

    def dead_letter_queues(self) -> DeadLetterQueues:
        from eventstore.adapters.servicebus.deadletters import ServiceBusDeadLetterQueues

        return ServiceBusDeadLetterQueues(self._servicebus)

    def close(self) -> None:
        from eventstore.adapters.cosmos import close_cached_clients

        with self._lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()
        close_cached_clients()


class EmbeddedBackend:
    """SQLite files (one per service database) and the embedded bus under EMBEDDED_DATA_DIR,
    with the same bus entities Bicep creates in Azure."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._data_dir = settings.host.embedded_data_dir
        self._bus: EmbeddedBus | None = None
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def stores(self, database: str) -> ServiceStores:
        from eventstore.embedded.store import open_embedded_database

        db = open_embedded_database(self._data_dir / f"{database}.db",
                                    self._settings.host.embedded_feed_ranges)
        with self._lock:
            self._closers.append(db.close)
        return ServiceStores(db.events, db.views, db.dead_letters, feed=db.events,
                             leases=db.leases)

    def personal_data(self, database: str, container: str) -> PersonalDataStore:
        from eventstore.embedded.personaldata import SqlitePersonalDataStore

        # A file of its own, so erasing from it never touches the event log's file.
        store = SqlitePersonalDataStore(self._data_dir / f"{database}-{container}.db")
        with self._lock:
            self._closers.append(store.close)
        return store

    @property
    def bus(self) -> EmbeddedBus:
        from eventstore.embedded.bus import open_embedded_bus

        with self._lock:
            if self._bus is None:
                orders_settings, payments_settings = self._settings.orders, self._settings.payments
                lock = self._settings.host.embedded_bus_lock_seconds
                bus = open_embedded_bus(self._data_dir / "bus.db")
                bus.declare_topic(orders_settings.orders_topic)
                bus.declare_topic(payments_settings.payments_topic)
                bus.declare_subscription(orders_settings.payments_topic,
                                         orders_settings.payments_subscription,
                                         lock_duration=lock)
                bus.declare_queue(payments_settings.authorizations_queue, lock_duration=lock)
                self._bus = bus
                self._closers.append(bus.close)
            return self._bus

    def publisher(self) -> MessagePublisher:
        from eventstore.embedded.bus import EmbeddedBusPublisher

        return EmbeddedBusPublisher(self.bus)

    def inbox(self, entity_path: str, max_lock_renewal: float) -> Any:
        return self.bus  # thread-safe: every worker shares it

    def dead_letter_queues(self) -> DeadLetterQueues:
        from eventstore.embedded.bus import EmbeddedDeadLetterQueues

        return EmbeddedDeadLetterQueues(self.bus)

    def close(self) -> None:
        with self._lock:
            closers, self._closers = self._closers, []
            self._bus = None
        for close in reversed(closers):
            close()


ORDER_VIEW = ViewDefinition(orders.ORDER_STREAM, orders.order_codec, orders.apply_order_event)
PAYMENT_VIEW = ViewDefinition(payments.PAYMENT_STREAM, payments.payment_codec,
                              payments.apply_payment_event)


class Services:
    """Everything one process runs, built on first use and kept (thread-safe)."""

    def __init__(self, settings: Settings, backend: Backend, *,
                 payments_gateway: PaymentsGateway | None = None,
                 acquirer: Acquirer | None = None,
                 payments_api_callers: EntraTokenValidator | None = None) -> None:
        self.settings = settings
        self.backend = backend
        self._payments_gateway = payments_gateway
        self._acquirer = acquirer
        self._lock = threading.RLock()
        self._stores: dict[str, ServiceStores] = {}
        self._orders: OrdersService | None = None
        self._payments: PaymentsService | None = None
        self._callers = payments_api_callers
        self._projectors: dict[ServiceName, Projector[Any]] = {}
        self._publishers: dict[ServiceName, Publisher] = {}

    @property
    def payments_api_callers(self) -> EntraTokenValidator | None:
        """Who may call PUT /payments/{id}: None when nothing is checked (local runs)."""
        with self._lock:
            if self._callers is None and self.settings.auth.mode == "entra":
                self._callers = payments_api_validator(self.settings)
            return self._callers

    def stores(self, service: ServiceName) -> ServiceStores:
        return self.stores_of_database(self.settings.database(service))

    def stores_of_database(self, database: str) -> ServiceStores:
        """The stores of the database a change-feed trigger names (``databaseName``)."""
        with self._lock:
            if database not in self._stores:
                self._stores[database] = self.backend.stores(database)
            return self._stores[database]

    @property
    def orders(self) -> OrdersService:
        with self._lock:
            if self._orders is None:
                self._orders = self._build_orders()
            return self._orders

    @property
    def payments(self) -> PaymentsService:
        with self._lock:
            if self._payments is None:
                self._payments = self._build_payments()
            return self._payments

    def operations(self, service: ServiceName) -> ServiceOperations:
        """The operator's view of one service (app.operations)."""
        stores = self.stores(service)
        if service == "orders":
            # Service Bus' path of a subscription (the embedded bus uses the same).
            entity = (f"{self.settings.orders.payments_topic}/Subscriptions/"
                      f"{self.settings.orders.payments_subscription}")
            handle: MessageHandler = self.orders.record_payment_outcome
        else:
            entity = self.settings.payments.authorizations_queue
            handle = self.payments.process_authorization
        return ServiceOperations(service, stores.events, stores.views, stores.dead_letters,
                                 self.projector(service), self.publisher(service),
                                 self.backend.dead_letter_queues(), entity, handle)

    def projector(self, service: ServiceName) -> Projector[Any]:
        with self._lock:
            if service not in self._projectors:
                stores = self.stores(service)
                view, consumer = (ORDER_VIEW, ORDERS_PROJECTOR) if service == "orders" else \
                    (PAYMENT_VIEW, PAYMENTS_PROJECTOR)
                self._projectors[service] = Projector(view, stores.views, stores.dead_letters,
                                                      consumer)
            return self._projectors[service]

    def publisher(self, service: ServiceName) -> Publisher:
        with self._lock:
            if service not in self._publishers:
                stores = self.stores(service)
                if service == "orders":
                    mapper: Any = IntegrationEvents(
                        order_publications, orders.order_codec, stores.events,
                        {Channel.ORDERS_TOPIC: self.settings.orders.orders_topic})
                    consumer = ORDERS_PUBLISHER
                else:
                    config = self.settings.payments
                    mapper = IntegrationEvents(
                        payment_publications, payments.payment_codec, stores.events,
                        {Channel.PAYMENTS_TOPIC: config.payments_topic,
                         Channel.AUTHORIZATIONS_QUEUE: config.authorizations_queue})
                    consumer = PAYMENTS_PUBLISHER
                self._publishers[service] = Publisher(mapper, self.backend.publisher(),
                                                      stores.dead_letters, consumer)
            return self._publishers[service]

    def close(self) -> None:
        with self._lock:
            gateway = self._payments_gateway if self._orders is not None else None
            self._orders = self._payments = None
            self._projectors.clear()
            self._publishers.clear()
            self._stores.clear()
        if gateway is not None:
            gateway.close()
        self.backend.close()

    def _build_orders(self) -> OrdersService:
        stores = self.stores("orders")
        config = self.settings.orders
        processor = CommandProcessor(stores.events, orders.ORDER_STREAM, orders.order_decider,
                                     orders.order_codec, meter=stores.meter)
        if self._payments_gateway is None:
            self._payments_gateway = HttpPaymentsGateway(config.payments_api_base_url,
                                                         payments_api_tokens(self.settings))
        return OrdersService(
            processor, stores.events, stores.dead_letters,
            ViewReader(ORDER_VIEW, stores.views, stores.events, processor.cached_version,
                       "order"),
            self.projector("orders"), self.publisher("orders"), self._payments_gateway,
            self.backend.personal_data(config.database, config.personal_data_container),
        )

    def _build_payments(self) -> PaymentsService:
        stores = self.stores("payments")
        config = self.settings.payments
        processor = CommandProcessor(stores.events, payments.PAYMENT_STREAM,
                                     payments.payment_decider, payments.payment_codec,
                                     meter=stores.meter)
        acquirer = self._acquirer or SimulatedAcquirer(config.acquirer_delay_ms,
                                                       config.decline_above)
        return PaymentsService(
            processor, stores.events, stores.dead_letters,
            ViewReader(PAYMENT_VIEW, stores.views, stores.events, processor.cached_version,
                       "payment"),
            self.projector("payments"), self.publisher("payments"), acquirer,
        )


def bootstrap(settings: Settings, *, backend: Backend | None = None,
              payments_gateway: PaymentsGateway | None = None,
              acquirer: Acquirer | None = None,
              payments_api_callers: EntraTokenValidator | None = None) -> Services:
    if backend is None:
        backend = AzureBackend(settings) if settings.backend == "azure" else \
            EmbeddedBackend(settings)
    return Services(settings, backend, payments_gateway=payments_gateway, acquirer=acquirer,
                    payments_api_callers=payments_api_callers)


def payments_api_tokens(settings: Settings, credential: TokenCredential | None = None
                        ) -> TokenProvider | None:
    """Orders' tokens for the Payments API; None when the call stays anonymous."""
    auth = settings.auth
    if auth.mode == "none":
        return None
    return managed_identity_tokens(auth.audience, auth.client_id, credential)


def payments_api_validator(settings: Settings, source: JwksSource | None = None
                           ) -> EntraTokenValidator | None:
    """Payments' check of its callers' tokens; None when nothing is checked."""
    auth = settings.auth
    if auth.mode == "none":
        return None
    return EntraTokenValidator.for_tenant(auth.tenant_id, [auth.audience], auth.allowed_callers,
                                          source)


def configure_telemetry(settings: Settings) -> bool:
    """Install the trace exporters the settings name (once per process; see app.telemetry)."""
    from app.telemetry import configure_tracing

    return configure_tracing(settings.telemetry, ",".join(settings.services))


def settings_from_environment(overrides: Mapping[str, str] | None = None,
                              defaults: Mapping[str, str] | None = None) -> Settings:
    """The app settings of this process (as the Functions host exports them). A tool may give
    ``defaults`` (a settings file's values, for what the environment does not set, as Core
    Tools loads local.settings.json) and ``overrides`` (its command-line options)."""
    return Settings.from_environ({**(defaults or {}), **os.environ, **(overrides or {})})
