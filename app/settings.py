"""The app settings, parsed once into typed objects; the one list of every setting's name.

The same names everywhere: ``local.settings.example.json``, the app settings Bicep deploys, and
the local host. Connection settings follow the Functions convention and are validated as the
Functions extensions validate theirs (``COSMOS`` or ``COSMOS__accountEndpoint``; ``SERVICEBUS`` or
``SERVICEBUS__fullyQualifiedNamespace``), so a missing or malformed one fails at start-up with
its name, not at the first request. An empty value counts as unset, as in the Functions host.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from eventstore.adapters.cosmos.connection import (
    SETTING_ACCEPT_EMULATOR_CERT,
    CosmosConfigurationError,
    CosmosConnection,
)
from eventstore.adapters.servicebus.connection import (
    ServiceBusConfigurationError,
    ServiceBusConnection,
)

ServiceName = Literal["orders", "payments"]
SERVICE_NAMES: tuple[ServiceName, ...] = get_args(ServiceName)
Backend = Literal["azure", "embedded"]

COSMOS_CONNECTION = "COSMOS"
SERVICEBUS_CONNECTION = "SERVICEBUS"
CONNECTIONS = frozenset({COSMOS_CONNECTION, SERVICEBUS_CONNECTION})


_G = TypeVar("_G", bound="_Group")


class SettingsError(ValueError):
    """A setting is missing or has a value the app cannot use; the message names it."""


class _Group(BaseModel):
    """Settings read from the flat app-settings mapping by their exact names (the aliases)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(str(f.alias) for f in cls.model_fields.values())


class Containers(_Group):
    events: str = Field("events", alias="EVENTS_CONTAINER", min_length=1)
    views: str = Field("views", alias="VIEWS_CONTAINER", min_length=1)
    leases: str = Field("leases", alias="LEASES_CONTAINER", min_length=1)
    deadletters: str = Field("deadletters", alias="DEADLETTERS_CONTAINER", min_length=1)


class OrdersSettings(_Group):
    database: str = Field("orders", alias="ORDERS_DATABASE", min_length=1)
    orders_topic: str = Field("orders", alias="ORDERS_TOPIC", min_length=1)
    payments_topic: str = Field("payments", alias="PAYMENTS_TOPIC", min_length=1)
    payments_subscription: str = Field("orders", alias="PAYMENTS_SUBSCRIPTION", min_length=1)
    payments_api_base_url: str = Field("", alias="PAYMENTS_API_BASE_URL")
    # Customers' personal data, apart from the event log so that it can be erased.
    # It names a container and, on the embedded backend, a file.
    personal_data_container: str = Field("personaldata", alias="PERSONALDATA_CONTAINER",
                                         pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$")

    @field_validator("payments_api_base_url")
    @classmethod
    def _is_http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class ServiceAuthSettings(_Group):
    """How Orders authenticates to Payments' PUT /payments/{id}: ``entra`` in Azure (a token of
    Orders' managed identity, checked by Payments), ``none`` locally (as under func start)."""

    mode: Literal["entra", "none"] = Field(alias="PAYMENTS_API_AUTH")
    audience: str = Field("", alias="PAYMENTS_API_AUDIENCE")  # the Payments API app's client id
    tenant_id: str = Field("", alias="PAYMENTS_API_TENANT_ID")
    # The token's oid: object (principal) ids of the identities allowed to call, not client ids.
    allowed_callers: tuple[str, ...] = Field((), alias="PAYMENTS_API_ALLOWED_CALLERS")
    client_id: str = Field("", alias="AZURE_CLIENT_ID")  # Orders' user-assigned identity

    CALLER: ClassVar[frozenset[str]] = frozenset(
        {"PAYMENTS_API_AUTH", "PAYMENTS_API_AUDIENCE", "AZURE_CLIENT_ID"})
    VALIDATOR: ClassVar[frozenset[str]] = frozenset(
        {"PAYMENTS_API_AUTH", "PAYMENTS_API_AUDIENCE", "PAYMENTS_API_TENANT_ID",
         "PAYMENTS_API_ALLOWED_CALLERS"})

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("allowed_callers", mode="before")
    @classmethod
    def _callers(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def check(self, services: tuple[ServiceName, ...]) -> None:
        if self.mode == "none":
            return
        required = ({"PAYMENTS_API_AUDIENCE": self.audience}
                    | ({"AZURE_CLIENT_ID": self.client_id} if "orders" in services else {})
                    | ({"PAYMENTS_API_TENANT_ID": self.tenant_id,
                        "PAYMENTS_API_ALLOWED_CALLERS": ",".join(self.allowed_callers)}
                       if "payments" in services else {}))
        for name, value in required.items():
            if not value:
                raise SettingsError(f"app setting {name} is required when PAYMENTS_API_AUTH=entra"
                                    " (see docs/deploy.md)")


class PaymentsSettings(_Group):
    database: str = Field("payments", alias="PAYMENTS_DATABASE", min_length=1)
    payments_topic: str = Field("payments", alias="PAYMENTS_TOPIC", min_length=1)
    authorizations_queue: str = Field("payment-authorizations", alias="AUTHORIZATIONS_QUEUE",
                                      min_length=1)
    acquirer_delay_ms: int = Field(1000, alias="PAYMENTS_ACQUIRER_DELAY_MS", ge=0)
    decline_above: int = Field(100_000, alias="PAYMENTS_DECLINE_ABOVE", ge=0)


class HostSettings(_Group):
    services: tuple[ServiceName, ...] = Field(SERVICE_NAMES, alias="SERVICES")
    backend: Backend = Field("azure", alias="BACKEND")
    embedded_data_dir: Path = Field(Path(".data"), alias="EMBEDDED_DATA_DIR")
    # How many feed ranges a new embedded store splits its change feed into (Cosmos DB has one
    # per physical partition); fixed per data folder once created.
    embedded_feed_ranges: int = Field(4, alias="EMBEDDED_FEED_RANGES", ge=1, le=256)
    # The embedded bus's peek-lock duration (Service Bus: the entity's LockDuration).
    embedded_bus_lock_seconds: float = Field(30.0, alias="EMBEDDED_BUS_LOCK_SECONDS", gt=0,
                                             le=300)

    @field_validator("services", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            names = [part.strip().lower() for part in value.split(",") if part.strip()]
            if not names:
                raise ValueError(f"must list some of {', '.join(SERVICE_NAMES)}")
            return tuple(dict.fromkeys(names))
        return value

    @field_validator("backend", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class TelemetrySettings(_Group):
    """Where traces go: Application Insights when its connection string is set (Azure), else the
    console when OTEL_TRACES_EXPORTER=console (local), else nowhere."""

    applicationinsights_connection_string: str = Field(
        "", alias="APPLICATIONINSIGHTS_CONNECTION_STRING", repr=False)
    # "ClientId=<id>;Authorization=AAD": the identity that may send (local auth is disabled).
    applicationinsights_authentication_string: str = Field(
        "", alias="APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    traces_exporter: Literal["none", "console"] = Field("none", alias="OTEL_TRACES_EXPORTER")

    @field_validator("applicationinsights_authentication_string")
    @classmethod
    def _is_aad(cls, value: str) -> str:
        if value and "authorization=aad" not in value.lower().replace(" ", ""):
            raise ValueError("must be 'ClientId=<client id>;Authorization=AAD' (or unset)")
        return value

    @field_validator("traces_exporter", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def applicationinsights_client_id(self) -> str | None:
        """The managed identity's client id of the authentication string, if it names one."""
        for part in self.applicationinsights_authentication_string.split(";"):
            name, _, value = part.partition("=")
            if name.strip().lower() == "clientid" and value.strip():
                return value.strip()
        return None


class Settings(BaseModel):
    """Every setting the app reads, typed. Build it with ``from_environ``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    host: HostSettings
    containers: Containers
    orders: OrdersSettings
    payments: PaymentsSettings
    auth: ServiceAuthSettings
    telemetry: TelemetrySettings = Field(
        default_factory=lambda: TelemetrySettings.model_validate({}))
    cosmos: CosmosConnection | None = None  # None on the embedded backend
    servicebus: ServiceBusConnection | None = None

    LOCAL_ONLY: ClassVar[frozenset[str]] = frozenset({
        "EMBEDDED_DATA_DIR", "EMBEDDED_FEED_RANGES", "EMBEDDED_BUS_LOCK_SECONDS",
        SETTING_ACCEPT_EMULATOR_CERT, "OTEL_TRACES_EXPORTER"})

    @property
    def services(self) -> tuple[ServiceName, ...]:
        return self.host.services

    @property
    def backend(self) -> Backend:
        return self.host.backend

    def database(self, service: ServiceName) -> str:
        return self.orders.database if service == "orders" else self.payments.database

    def service_of_database(self, database: str) -> ServiceName:
        for service in SERVICE_NAMES:
            if self.database(service) == database:
                return service
        raise SettingsError(f"no service uses the database {database!r} (ORDERS_DATABASE is "
                            f"{self.orders.database!r}, PAYMENTS_DATABASE "
                            f"{self.payments.database!r})")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate; raises SettingsError naming the first bad setting."""
        values = {k: v.strip() for k, v in environ.items() if v.strip()}
        host = _parse(HostSettings, values)
        orders = _parse(OrdersSettings, values)
        if "orders" in host.services and not orders.payments_api_base_url:
            raise SettingsError("app setting PAYMENTS_API_BASE_URL is not set: checkout calls "
                                "Payments there (see local.settings.example.json)")
        auth = _parse(ServiceAuthSettings, values)
        auth.check(host.services)
        cosmos = servicebus = None
        if host.backend == "azure":
            try:
                cosmos = CosmosConnection.from_settings(values)
                servicebus = ServiceBusConnection.from_settings(values)
            except (CosmosConfigurationError, ServiceBusConfigurationError) as error:
                raise SettingsError(str(error)) from None
        return cls(host=host, containers=_parse(Containers, values), orders=orders,
                   payments=_parse(PaymentsSettings, values), auth=auth,
                   telemetry=_parse(TelemetrySettings, values), cosmos=cosmos,
                   servicebus=servicebus)


def _parse(group: type[_G], values: Mapping[str, str]) -> _G:
    try:
        return group.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else group.__name__
        given = values.get(name)
        got = f", got {given!r}" if given is not None else ""
        what = "is not set" if first["type"] == "missing" else f"{first['msg']}{got}"
        raise SettingsError(
            f"app setting {name} {what} (see local.settings.example.json and the README's "
            "settings table)"
        ) from None


def settings_file_values(path: Path) -> dict[str, str]:
    """The ``Values`` of a local.settings.json-style file (SettingsError when unreadable)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SettingsError(f"cannot read the settings file {path}: {error}") from None
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise SettingsError(f"{path} has no 'Values' object")
    return {str(k): str(v) for k, v in values.items()}


def settings_read_by(service: ServiceName) -> frozenset[str]:
    """The names a service's functions read when they run in Azure (the settings contract)."""
    group = OrdersSettings if service == "orders" else PaymentsSettings
    auth = ServiceAuthSettings.CALLER if service == "orders" else ServiceAuthSettings.VALIDATOR
    common = (HostSettings.names() | TelemetrySettings.names()) - Settings.LOCAL_ONLY
    return common | Containers.names() | group.names() | auth | CONNECTIONS


SETTINGS_READ_BY_SERVICE: dict[str, frozenset[str]] = {s: settings_read_by(s)
                                                       for s in SERVICE_NAMES}
LOCAL_ONLY_SETTINGS = Settings.LOCAL_ONLY
