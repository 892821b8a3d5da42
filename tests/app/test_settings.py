"""Settings are parsed once into typed objects, and a bad one fails with its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SETTINGS_READ_BY_SERVICE, Settings, SettingsError
from tests.functions.conftest import example_settings


def test_the_example_settings_parse_into_every_group() -> None:
    settings = Settings.from_environ(example_settings())
    assert settings.services == ("orders", "payments") and settings.backend == "azure"
    assert settings.containers.events == "events" and settings.containers.leases == "leases"
    assert settings.orders.payments_topic == settings.payments.payments_topic == "payments"
    assert settings.payments.acquirer_delay_ms == 1000
    assert settings.cosmos is not None and settings.cosmos.accept_emulator_cert
    assert settings.servicebus is not None and settings.servicebus.connection_string
    assert settings.host.embedded_data_dir == Path(".data")


def test_defaults_apply_and_an_empty_value_counts_as_unset() -> None:
    settings = Settings.from_environ({"BACKEND": "embedded", "PAYMENTS_API_BASE_URL": "http://x/api",
                                      "PAYMENTS_API_AUTH": "none", "ORDERS_DATABASE": "",
                                      "SERVICES": " Payments , orders "})
    assert settings.orders.database == "orders" and settings.payments.database == "payments"
    assert settings.services == ("payments", "orders")
    assert settings.cosmos is None and settings.servicebus is None  # not needed on embedded


@pytest.mark.parametrize(("changes", "named"), [
    ({"PAYMENTS_ACQUIRER_DELAY_MS": "soon"}, "PAYMENTS_ACQUIRER_DELAY_MS"),
    ({"PAYMENTS_DECLINE_ABOVE": "-1"}, "PAYMENTS_DECLINE_ABOVE"),
    ({"SERVICES": "orders,shipping"}, "SERVICES"),
    ({"BACKEND": "cloud"}, "BACKEND"),
    ({"PAYMENTS_API_BASE_URL": "ftp://payments"}, "PAYMENTS_API_BASE_URL"),
    ({"PAYMENTS_API_BASE_URL": ""}, "PAYMENTS_API_BASE_URL"),
    ({"COSMOS": ""}, "COSMOS__accountEndpoint"),
    ({"COSMOS": "AccountEndpoint=https://localhost:8081/;"}, "AccountKey"),
    ({"SERVICEBUS": ""}, "SERVICEBUS__fullyQualifiedNamespace"),
    ({"SERVICEBUS": "Endpoint=sb://x;nonsense"}, "SERVICEBUS"),
])
def test_a_bad_setting_fails_at_start_up_naming_it(changes: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_environ({**example_settings(), **changes})


def test_payments_alone_needs_no_payments_api_url() -> None:
    values = {**example_settings(), "SERVICES": "payments", "PAYMENTS_API_BASE_URL": ""}
    assert Settings.from_environ(values).services == ("payments",)


def test_identity_based_connections_are_accepted() -> None:
    values = {k: v for k, v in example_settings().items()
              if k not in ("COSMOS", "SERVICEBUS", "COSMOS_ACCEPT_EMULATOR_CERT")}
    settings = Settings.from_environ({
        **values, "COSMOS__accountEndpoint": "https://acct.documents.azure.com:443/",
        "COSMOS__clientId": "cosmos-id",
        "SERVICEBUS__fullyQualifiedNamespace": "ns.servicebus.windows.net",
        "SERVICEBUS__clientId": "bus-id"})
    assert settings.cosmos is not None and settings.cosmos.key is None
    assert settings.cosmos.client_id == "cosmos-id"
    assert settings.servicebus is not None and settings.servicebus.client_id == "bus-id"


def test_the_settings_each_service_reads_are_declared_once_per_name() -> None:
    orders, payments = SETTINGS_READ_BY_SERVICE["orders"], SETTINGS_READ_BY_SERVICE["payments"]
    assert {"PAYMENTS_API_BASE_URL", "ORDERS_TOPIC"} <= orders - payments
    assert {"AUTHORIZATIONS_QUEUE", "PAYMENTS_ACQUIRER_DELAY_MS"} <= payments - orders
    assert {"COSMOS", "SERVICEBUS", "EVENTS_CONTAINER", "SERVICES"} <= orders & payments
    assert "EMBEDDED_DATA_DIR" not in orders | payments  # local only, never set in Azure
