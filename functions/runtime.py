"""Composition root: builds the adapters, processors and handlers from settings, once per process.

Function code asks this module for what it needs; nothing else reads settings or creates clients.
`BACKEND=azure` (the default, used under `func start` and in Azure) wires Cosmos DB and Service
Bus; `BACKEND=embedded` (set by the local host) wires the SQLite store and the embedded bus.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from domain.orders import OrderCommand, OrderEvent, OrderState, order_decider
from domain.payments import PaymentCommand, PaymentEvent, PaymentState, payment_decider
from eventstore.commands import CommandProcessor
from eventstore.ports import (
    ChangeFeed,
    CheckpointStore,
    CostMeter,
    DeadLetterStore,
    EventStore,
    MessagePublisher,
    ViewStore,
)
from functions.settings import MissingSettingError, setting

if TYPE_CHECKING:  # adapters are imported when the backend that needs them is chosen
    from eventstore.embedded.bus import EmbeddedBus
    from functions.payments_api import PaymentsApi

T = TypeVar("T")


class FeedStore(EventStore, ChangeFeed, CheckpointStore, Protocol):
    """An event store that also serves its change feed (the local host pumps it)."""


@dataclass(frozen=True)
class ServiceStores:
    events: FeedStore
    views: ViewStore
    dead_letters: DeadLetterStore
    meter: CostMeter | None = None


_lock = threading.RLock()
_instances: dict[str, Any] = {}
_closers: list[Callable[[], None]] = []


def _singleton(key: str, build: Callable[[], T]) -> T:
    with _lock:
        if key not in _instances:
            _instances[key] = build()
        return _instances[key]  # type: ignore[no-any-return]


def backend() -> str:
    value = setting("BACKEND", "azure").lower()
    if value not in ("azure", "embedded"):
        raise MissingSettingError(f"BACKEND must be 'azure' or 'embedded', got {value!r}")
    return value


def embedded_data_dir() -> Path:
    return Path(setting("EMBEDDED_DATA_DIR", ".data"))


def database_name(service: str) -> str:
    return setting(f"{service.upper()}_DATABASE", service)


def stores_for_database(name: str) -> ServiceStores:
    """The stores of one service database (as named by a trigger's databaseName)."""
    return _singleton(f"stores:{name}", lambda: _open_stores(name))


def stores(service: str) -> ServiceStores:
    return stores_for_database(database_name(service))


def _open_stores(database: str) -> ServiceStores:
    if backend() == "embedded":
        from eventstore.embedded.sqlite_store import open_embedded_database

        db = open_embedded_database(embedded_data_dir() / f"{database}.db")
        _closers.append(db.close)
        return ServiceStores(events=db.events, views=db.views, dead_letters=db.dead_letters)
    from eventstore.adapters.cosmos import open_cosmos_database

    cosmos = open_cosmos_database(
        database=database,
        events_container=setting("EVENTS_CONTAINER", "events"),
        views_container=setting("VIEWS_CONTAINER", "views"),
        deadletters_container=setting("DEADLETTERS_CONTAINER", "deadletters"),
        leases_container=setting("LEASES_CONTAINER", "leases"),
    )
    return ServiceStores(events=cosmos.events, views=cosmos.views,
                         dead_letters=cosmos.dead_letters, meter=cosmos.meter)


def publisher() -> MessagePublisher:
    return _singleton("publisher", _open_publisher)


def _open_publisher() -> MessagePublisher:
    if backend() == "embedded":
        from eventstore.embedded.bus import EmbeddedBusPublisher

        return EmbeddedBusPublisher(embedded_bus())
    import os

    from eventstore.adapters.servicebus import ServiceBusPublisher

    sb = ServiceBusPublisher.from_settings(os.environ)
    _closers.append(sb.close)
    return sb


def embedded_bus() -> EmbeddedBus:
    """The embedded bus with the same entities Bicep creates in Azure."""

    def open_bus() -> EmbeddedBus:
        from eventstore.embedded.bus import open_embedded_bus

        bus = open_embedded_bus(embedded_data_dir() / "bus.db")
        payments_topic = setting("PAYMENTS_TOPIC", "payments")
        bus.declare_topic(setting("ORDERS_TOPIC", "orders"))
        bus.declare_topic(payments_topic)
        bus.declare_subscription(payments_topic, setting("PAYMENTS_SUBSCRIPTION", "orders"))
        bus.declare_queue(setting("AUTHORIZATIONS_QUEUE", "payment-authorizations"))
        _closers.append(bus.close)
        return bus

    return _singleton("embedded-bus", open_bus)


def orders() -> CommandProcessor[OrderCommand, OrderEvent, OrderState]:
    return _singleton("orders-processor", lambda: _processor("orders", order_decider))


def payments() -> CommandProcessor[PaymentCommand, PaymentEvent, PaymentState]:
    return _singleton("payments-processor", lambda: _processor("payments", payment_decider))


def _processor(service: str, decider: Any) -> CommandProcessor[Any, Any, Any]:
    service_stores = stores(service)
    return CommandProcessor(service_stores.events, decider, meter=service_stores.meter)


def close() -> None:
    """Release clients and forget every instance (shutdown, and between tests)."""
    with _lock:
        for closer in reversed(_closers):
            closer()
        _closers.clear()
        _instances.clear()


def payments_api() -> PaymentsApi:
    def build() -> PaymentsApi:
        from functions.payments_api import PaymentsApi

        api = PaymentsApi(setting("PAYMENTS_API_BASE_URL"), setting("PAYMENTS_API_KEY", ""))
        _closers.append(api.close)
        return api

    return _singleton("payments-api", build)
