"""Index function_app.py the way the Python worker does (get_functions(), raw bindings) and check
every declaration, and that every setting a binding or the code reads is in the example settings.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from app.settings import CONNECTIONS, LOCAL_ONLY_SETTINGS, SETTINGS_READ_BY_SERVICE, SettingsError
from devhost.indexing import AppIndex, RetryPolicy, index_app, load_app
from functions import runtime
from tests.functions.conftest import REPO_ROOT, example_settings

HTTP_OUT = {"direction": "OUT", "type": "http", "name": "$return"}
FEED_RETRY = {
    "setting_name": "retry_policy",
    "strategy": "exponential_backoff",
    "max_retry_count": "-1",
    "minimum_interval": "00:00:01",
    "maximum_interval": "00:01:00",
}


def _http(route: str, method: str, auth: str = "ANONYMOUS") -> dict[str, Any]:
    return {"direction": "IN", "type": "httpTrigger", "name": "req", "methods": [method],
            "authLevel": auth, "route": route}


def _feed(database_setting: str, prefix: str) -> dict[str, Any]:
    return {"direction": "IN", "type": "cosmosDBTrigger", "name": "documents",
            "connection": "COSMOS", "databaseName": f"%{database_setting}%",
            "containerName": "%EVENTS_CONTAINER%", "leaseContainerName": "%LEASES_CONTAINER%",
            "leaseContainerPrefix": prefix, "maxItemsPerInvocation": 100}


# name -> (trigger binding, retry policy setting or None)
EXPECTED: dict[str, tuple[dict[str, Any], dict[str, str] | None]] = {
    "orders_create": (_http("orders", "POST"), None),
    "orders_add_item": (_http("orders/{orderId}/items", "POST"), None),
    "orders_delete_item": (_http("orders/{orderId}/items/{cartItemId}", "DELETE"), None),
    "orders_checkout": (_http("orders/{orderId}/checkout", "POST"), None),
    "orders_cancel": (_http("orders/{orderId}/cancel", "POST"), None),
    "orders_get": (_http("orders/{orderId}", "GET"), None),
    "orders_events": (_http("orders/{orderId}/events", "GET"), None),
    "orders_put_personal_data": (_http("customers/{customerId}/personal-data", "PUT"), None),
    "orders_erase_personal_data": (_http("customers/{customerId}/personal-data", "DELETE"),
                                   None),
    "orders_projector": (_feed("ORDERS_DATABASE", "orders-projector-v1"), FEED_RETRY),
    "orders_publisher": (_feed("ORDERS_DATABASE", "orders-publisher-v1"), FEED_RETRY),
    "orders_on_payment_event": ({
        "direction": "IN", "type": "serviceBusTrigger", "name": "message",
        "connection": "SERVICEBUS", "topicName": "%PAYMENTS_TOPIC%",
        "subscriptionName": "%PAYMENTS_SUBSCRIPTION%"}, None),
    # Service-to-service (checkout → Payments): a function key in Azure.
    "payments_put": (_http("payments/{paymentId}", "PUT", "ANONYMOUS"), None),
    "payments_authorize": (_http("payments/{paymentId}/authorize", "POST"), None),
    "payments_get": (_http("payments/{paymentId}", "GET"), None),
    "payments_events": (_http("payments/{paymentId}/events", "GET"), None),
    "payments_projector": (_feed("PAYMENTS_DATABASE", "payments-projector-v1"), FEED_RETRY),
    "payments_publisher": (_feed("PAYMENTS_DATABASE", "payments-publisher-v1"), FEED_RETRY),
    "payments_acquirer": ({
        "direction": "IN", "type": "serviceBusTrigger", "name": "message",
        "connection": "SERVICEBUS", "queueName": "%AUTHORIZATIONS_QUEUE%"}, None),
    # The API's description, registered whichever services the app runs.
    "apidocs_openapi": (_http("openapi.json", "GET"), None),
    "apidocs_page": (_http("docs", "GET"), None),
    "apidocs_asset": (_http("docs/{asset}", "GET"), None),
}
DOCS_PREFIX = "apidocs_"

# Checked by its own test (test_change_feed_triggers_start_from_the_beginning), so that the
# exact comparison below reports any other difference on its own.
START_FROM_BEGINNING = "startFromBeginning"


class Indexed:
    """One function as the worker sees it."""

    def __init__(self, function: Any) -> None:
        self.name: str = function.get_function_name()
        self.bindings: list[dict[str, Any]] = [json.loads(b)
                                               for b in function.get_raw_bindings()]
        self.retry: dict[str, str] | None = function.get_settings_dict("retry_policy")
        triggers = [b for b in self.bindings if b["type"].endswith("Trigger")]
        assert len(triggers) == 1, f"{self.name}: exactly one trigger, got {triggers}"
        self.trigger = triggers[0]
        self.others = [b for b in self.bindings if b is not self.trigger]


@pytest.fixture
def fresh_import(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each load_app() runs function_app.py again, with the example settings as its app
    settings (as the worker indexes it); sys.modules is restored afterwards."""
    for name, value in example_settings().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delitem(sys.modules, "function_app", raising=False)
    runtime.shutdown()
    yield
    runtime.shutdown()


def _load(monkeypatch: pytest.MonkeyPatch, services: str | None) -> func.FunctionApp:
    if services is None:
        monkeypatch.delenv("SERVICES", raising=False)
    else:
        monkeypatch.setenv("SERVICES", services)
    runtime.shutdown()  # the settings are parsed once per process
    return load_app(REPO_ROOT)


def _functions(monkeypatch: pytest.MonkeyPatch, services: str | None = None
               ) -> dict[str, Indexed]:
    indexed = [Indexed(f) for f in _load(monkeypatch, services).get_functions()]
    by_name = {f.name: f for f in indexed}
    assert len(by_name) == len(indexed), "function names must be unique"
    return by_name


def _setting_expressions(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(re.findall(r"%([^%]+)%", value))
    if isinstance(value, dict):
        return {name for v in value.values() for name in _setting_expressions(v)}
    if isinstance(value, list):
        return {name for v in value for name in _setting_expressions(v)}
    return set()


pytestmark = pytest.mark.usefixtures("fresh_import")


def test_every_function_is_declared_exactly_as_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    functions = _functions(monkeypatch)
    assert sorted(functions) == sorted(EXPECTED)
    for name, (trigger, retry) in EXPECTED.items():
        indexed = functions[name]
        actual = {k: v for k, v in indexed.trigger.items() if k != START_FROM_BEGINNING}
        assert actual == trigger, name
        assert indexed.retry == retry, name
        if trigger["type"] == "httpTrigger":
            assert indexed.others == [HTTP_OUT], f"{name}: unexpected bindings {indexed.others}"
        else:
            assert indexed.others == [], f"{name}: unexpected bindings {indexed.others}"


def test_change_feed_triggers_start_from_the_beginning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bumping a lease prefix replays the feed from the beginning (projection rebuild).
    The Cosmos DB trigger only does that with startFromBeginning=true; by default a new lease
    set starts at the current time and never sees the events already in the container."""
    functions = _functions(monkeypatch)
    feeds = {name: f for name, f in functions.items() if f.trigger["type"] == "cosmosDBTrigger"}
    assert len(feeds) == 4
    not_from_beginning = sorted(name for name, f in feeds.items()
                                if f.trigger.get(START_FROM_BEGINNING) is not True)
    assert not_from_beginning == []


@pytest.mark.parametrize(("services", "expected_prefixes"), [
    (None, {"orders_", "payments_"}),
    ("orders,payments", {"orders_", "payments_"}),
    (" Payments , orders ", {"orders_", "payments_"}),
    ("orders", {"orders_"}),
    ("payments", {"payments_"}),
])
def test_services_setting_selects_the_blueprints(
    monkeypatch: pytest.MonkeyPatch, services: str | None, expected_prefixes: set[str]
) -> None:
    names = set(_functions(monkeypatch, services))
    expected = {n for n in EXPECTED if any(n.startswith(p)
                                           for p in (*expected_prefixes, DOCS_PREFIX))}
    assert names == expected


@pytest.mark.parametrize("services", ["shipping", "orders,shipping"])
def test_an_unknown_service_fails_clearly(monkeypatch: pytest.MonkeyPatch, services: str) -> None:
    with pytest.raises(SettingsError, match="SERVICES") as raised:
        _load(monkeypatch, services)
    assert "shipping" in str(raised.value)
    assert "orders" in str(raised.value) and "payments" in str(raised.value)


def test_every_binding_setting_and_connection_is_in_the_example_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example = example_settings()
    functions = _functions(monkeypatch)
    used: dict[str, set[str]] = {}
    connections: set[str] = set()
    for name, indexed in functions.items():
        for binding in indexed.bindings:
            for setting in _setting_expressions(binding):
                used.setdefault(setting, set()).add(name)
            if "connection" in binding:
                connections.add(binding["connection"])
    assert used, "the bindings use %SETTING% expressions"
    missing = {s: sorted(f) for s, f in used.items() if s not in example}
    assert missing == {}
    assert connections == set(CONNECTIONS)
    assert sorted(c for c in connections if not example.get(c)) == []


def test_each_service_declares_the_settings_its_bindings_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, indexed in _functions(monkeypatch).items():
        if name.startswith(DOCS_PREFIX):
            continue  # no bindings beyond HTTP: no settings
        service = name.split("_", 1)[0]
        declared = SETTINGS_READ_BY_SERVICE[service]
        used = {s for b in indexed.bindings for s in _setting_expressions(b)}
        used |= {b["connection"] for b in indexed.bindings if "connection" in b}
        assert used - declared == set(), name


def test_every_setting_the_code_reads_is_in_the_example_settings() -> None:
    example = example_settings()
    read = set().union(*SETTINGS_READ_BY_SERVICE.values()) | LOCAL_ONLY_SETTINGS
    assert sorted(read - set(example)) == []


def test_lease_prefixes_are_unique_per_function(monkeypatch: pytest.MonkeyPatch) -> None:
    prefixes = [f.trigger.get("leaseContainerPrefix") for f in _functions(monkeypatch).values()
                if f.trigger["type"] == "cosmosDBTrigger"]
    assert len(prefixes) == 4
    assert all(prefixes), "every change-feed function needs its own lease prefix"
    assert len(set(prefixes)) == len(prefixes)


def test_the_local_host_indexes_the_app_with_the_example_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index: AppIndex = index_app(_load(monkeypatch, None), example_settings())
    assert sorted(s.name for s in index.all) == sorted(EXPECTED)
    feeds = {s.name: s for s in index.feeds}
    assert {n: (s.database, s.container, s.lease_container, s.lease_prefix, s.max_items)
            for n, s in feeds.items()} == {
        "orders_projector": ("orders", "events", "leases", "orders-projector-v1", 100),
        "orders_publisher": ("orders", "events", "leases", "orders-publisher-v1", 100),
        "payments_projector": ("payments", "events", "leases", "payments-projector-v1", 100),
        "payments_publisher": ("payments", "events", "leases", "payments-publisher-v1", 100),
    }
    for spec in feeds.values():
        assert spec.retry == RetryPolicy("exponential_backoff", -1, 0.0, 1.0, 60.0)
    assert {s.name: s.entity_path for s in index.bus} == {
        "orders_on_payment_event": "payments/Subscriptions/orders",
        "payments_acquirer": "payment-authorizations",
    }
    routes = {s.name: (s.route, s.methods, s.auth_level) for s in index.http}
    assert routes["payments_put"] == ("payments/{paymentId}", ("PUT",), "ANONYMOUS")
    assert routes["orders_get"] == ("orders/{orderId}", ("GET",), "ANONYMOUS")
