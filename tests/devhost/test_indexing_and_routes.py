"""The local host's indexing: route templates, retry policies, binding expressions, connections,
and the clear errors for what it cannot run."""

from __future__ import annotations

import random

import azure.functions as func
import pytest

from devhost.indexing import RetryPolicy, compile_route, index_app
from devhost.settings import SettingsError, require_connection, resolve

SETTINGS = {"DB": "orders", "CONTAINER": "events", "COSMOS": "AccountEndpoint=x;AccountKey=y;",
            "SERVICEBUS": "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b",
            "QUEUE": "work", "EMPTY": ""}


# -- routes ---------------------------------------------------------------------------------------


def test_route_parameters_capture_one_segment() -> None:
    pattern, specificity = compile_route("orders/{orderId}/items/{cartItemId}")
    match = pattern.match("/orders/o-1/items/item-2")
    assert match is not None
    assert match.groupdict() == {"orderId": "o-1", "cartItemId": "item-2"}
    assert specificity == (0, 1, 0, 1)
    assert pattern.match("/orders/o-1/items/item-2/") is not None  # a trailing slash is fine
    for path in ("/orders/o-1/items", "/orders/o-1/items/a/b", "/orders//items/x",
                 "/orders/o-1/items/x/extra", "/order/o-1/items/x", "orders/o-1/items/x"):
        assert pattern.match(path) is None, path


def test_literal_segments_are_matched_literally() -> None:
    pattern, _ = compile_route("a.b/{x}")
    assert pattern.match("/a.b/1") is not None
    assert pattern.match("/aXb/1") is None


def test_literal_segments_match_case_insensitively() -> None:
    """ASP.NET Core routing (the Functions host's) ignores case in literal segments, so
    /api/Orders/1 reaches orders/{orderId} in Azure; the local host should agree."""
    pattern, _ = compile_route("orders/{orderId}")
    match = pattern.match("/Orders/o-1")
    assert match is not None and match.group("orderId") == "o-1"


def test_optional_parameters() -> None:
    pattern, specificity = compile_route("things/{id?}")
    assert specificity == (0, 1)
    bare = pattern.match("/things")
    assert bare is not None and bare.group("id") is None
    given = pattern.match("/things/42")
    assert given is not None and given.group("id") == "42"
    assert pattern.match("/things/42/more") is None


def test_catch_all_parameters_take_the_rest_of_the_path() -> None:
    pattern, specificity = compile_route("files/{*path}")
    assert specificity == (0, 2)
    match = pattern.match("/files/a/b/c.txt")
    assert match is not None and match.group("path") == "a/b/c.txt"
    assert pattern.match("/other/a") is None


def test_constraints_are_accepted_in_templates() -> None:
    pattern, _ = compile_route("orders/{id:int}")
    match = pattern.match("/orders/7")
    assert match is not None and match.group("id") == "7"


def test_literal_routes_sort_before_parameters() -> None:
    assert compile_route("orders/special")[1] < compile_route("orders/{orderId}")[1]
    assert compile_route("orders/{orderId}")[1] < compile_route("orders/{*rest}")[1]

    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="orders/{*rest}", methods=["GET"])
    def catch_all(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("catch-all")

    @app.route(route="orders/{orderId}", methods=["GET"])
    def by_id(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("by id")

    @app.route(route="orders/special", methods=["GET"])
    def special(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("special")

    index = index_app(app, SETTINGS)
    assert [spec.name for spec in index.http] == ["special", "by_id", "catch_all"]
    first_match = next(s for s in index.http if s.pattern.match("/orders/special"))
    assert first_match.name == "special"
    first_match = next(s for s in index.http if s.pattern.match("/orders/other"))
    assert first_match.name == "by_id"
    first_match = next(s for s in index.http if s.pattern.match("/orders/a/b"))
    assert first_match.name == "catch_all"


def test_an_http_function_without_route_or_methods_gets_the_defaults() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route()
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    [spec] = index_app(app, SETTINGS).http
    assert spec.route == "ping"
    assert spec.pattern.match("/ping") is not None
    assert {"GET", "POST"} <= set(spec.methods)
    assert spec.auth_level == "FUNCTION"


# -- retry policies -------------------------------------------------------------------------------


class Pinned(random.Random):
    """A random source that always answers the same point of the interval."""

    def __init__(self, where: float) -> None:
        super().__init__()
        self.where = where

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.where


@pytest.mark.parametrize(("where", "factor"), [(0.0, 0.8), (0.5, 1.0), (1.0, 1.2)])
def test_exponential_backoff_grows_from_the_minimum_randomized_as_the_host_does(
        where: float, factor: float) -> None:
    policy = RetryPolicy("exponential_backoff", -1, minimum=1.0, maximum=60.0)
    delays = [policy.delay_before(n, Pinned(where)) for n in range(1, 10)]
    expected = [1.0] + [min(60.0, 1.0 + factor * 2 ** (n - 2)) for n in range(2, 10)]
    assert delays == pytest.approx(expected)


def test_exponential_backoff_of_instances_retrying_together_spreads_out() -> None:
    policy = RetryPolicy("exponential_backoff", -1, minimum=1.0, maximum=600.0)
    delays = {round(policy.delay_before(5, random.Random(seed)), 6) for seed in range(20)}
    assert len(delays) > 10 and all(1 + 0.8 * 8 <= d <= 1 + 1.2 * 8 for d in delays)


def test_exponential_delay_is_capped_even_after_very_many_retries() -> None:
    """max_retry_count -1 retries forever: after ~1000 retries 2.0 ** n overflows a float."""
    policy = RetryPolicy("exponential_backoff", -1, minimum=1.0, maximum=60.0)
    assert policy.delay_before(2_000) == 60.0


def test_fixed_delay_is_constant() -> None:
    policy = RetryPolicy("fixed_delay", 3, delay=2.5)
    assert [policy.delay_before(n) for n in (1, 2, 3)] == [2.5, 2.5, 2.5]


def test_a_bounded_policy_allows_its_count() -> None:
    policy = RetryPolicy("fixed_delay", 3, delay=0.1)
    assert [policy.allows(n) for n in (1, 2, 3, 4)] == [True, True, True, False]
    assert not RetryPolicy("fixed_delay", 0, delay=0.1).allows(1)


def test_minus_one_retries_forever() -> None:
    policy = RetryPolicy("exponential_backoff", -1, minimum=1.0, maximum=60.0)
    assert all(policy.allows(n) for n in (1, 10, 10_000, 10**9))


def test_retry_settings_are_read_from_the_function() -> None:
    app = func.FunctionApp()

    @app.retry(strategy="fixed_delay", max_retry_count="4", delay_interval="00:00:02.5")
    @app.cosmos_db_trigger(arg_name="docs", connection="COSMOS", database_name="%DB%",
                           container_name="%CONTAINER%", lease_container_name="leases",
                           lease_container_prefix="p-v1", max_items_per_invocation=7)
    def feed(docs: func.DocumentList) -> None:
        pass

    @app.retry(strategy="exponential_backoff", max_retry_count="-1",
               minimum_interval="00:00:01", maximum_interval="01:00:00")
    @app.cosmos_db_trigger(arg_name="docs", connection="COSMOS", database_name="%DB%",
                           container_name="%CONTAINER%", lease_container_name="leases",
                           lease_container_prefix="q-v1")
    def other(docs: func.DocumentList) -> None:
        pass

    feeds = {spec.name: spec for spec in index_app(app, SETTINGS).feeds}
    assert feeds["feed"].retry == RetryPolicy("fixed_delay", 4, delay=2.5)
    assert (feeds["feed"].database, feeds["feed"].container) == ("orders", "events")
    assert (feeds["feed"].lease_prefix, feeds["feed"].max_items) == ("p-v1", 7)
    assert feeds["other"].retry == RetryPolicy("exponential_backoff", -1, minimum=1.0,
                                               maximum=3600.0)


# -- settings -------------------------------------------------------------------------------------


def test_resolve_replaces_binding_expressions() -> None:
    assert resolve("%DB%", SETTINGS, "f") == "orders"
    assert resolve("%DB%-%CONTAINER%-v1", SETTINGS, "f") == "orders-events-v1"
    assert resolve("plain-name", SETTINGS, "f") == "plain-name"


@pytest.mark.parametrize("expression", ["%MISSING%", "prefix-%MISSING%", "%EMPTY%"])
def test_resolve_names_a_missing_setting(expression: str) -> None:
    name = expression.split("%")[1]
    with pytest.raises(SettingsError, match=name) as raised:
        resolve(expression, SETTINGS, "function 'f'")
    assert "function 'f'" in str(raised.value)


@pytest.mark.parametrize("settings", [
    {"COSMOS": "AccountEndpoint=https://x/;AccountKey=k;"},
    {"COSMOS__accountEndpoint": "https://x.documents.azure.com/"},
    {"COSMOS__accountEndpoint": "https://x.documents.azure.com/", "COSMOS__clientId": "id"},
])
def test_require_connection_accepts_a_string_or_an_identity_group(
    settings: dict[str, str],
) -> None:
    require_connection("COSMOS", settings, "function 'f'", "accountEndpoint")


def test_require_connection_accepts_a_service_bus_namespace() -> None:
    require_connection("SERVICEBUS", {"SERVICEBUS__fullyQualifiedNamespace": "x.servicebus"},
                       "f", "fullyQualifiedNamespace")


@pytest.mark.parametrize(("name", "key", "settings"), [
    ("COSMOS", "accountEndpoint", {"COSMOS__clientId": "id", "COSMOS__credential": "mi"}),
    ("COSMOS", "accountEndpoint", {"COSMOS__endpoint": "https://x/"}),  # a wrong key name
    ("SERVICEBUS", "fullyQualifiedNamespace", {"SERVICEBUS__namespace": "x.servicebus"}),
])
def test_require_connection_is_as_strict_as_the_extensions(
        name: str, key: str, settings: dict[str, str]) -> None:
    """The Cosmos DB and Service Bus extensions refuse an identity-based connection without its
    endpoint key, whatever else the group holds; so does the local host, naming that key."""
    with pytest.raises(SettingsError, match=f"{name}__{key}") as raised:
        require_connection(name, settings, "function 'f'", key)
    assert "alone is not enough" in str(raised.value)


@pytest.mark.parametrize("settings", [
    {},
    {"COSMOS": ""},
    {"COSMOS__accountEndpoint": ""},
    {"COSMOSDB": "AccountEndpoint=x"},  # a different setting that merely starts alike
    {"COSMOS_accountEndpoint": "https://x/"},  # one underscore is not the group separator
])
def test_require_connection_names_a_missing_connection(settings: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="'COSMOS'") as raised:
        require_connection("COSMOS", settings, "function 'f'", "accountEndpoint")
    assert "function 'f'" in str(raised.value)


# -- index_app errors -----------------------------------------------------------------------------


def test_index_app_rejects_an_unsupported_trigger() -> None:
    app = func.FunctionApp()

    @app.timer_trigger(schedule="0 */5 * * * *", arg_name="timer")
    def tick(timer: func.TimerRequest) -> None:
        pass

    with pytest.raises(SettingsError, match="timerTrigger") as raised:
        index_app(app, SETTINGS)
    assert "tick" in str(raised.value)


def test_index_app_rejects_unsupported_bindings() -> None:
    app = func.FunctionApp()

    @app.queue_output(arg_name="out", queue_name="q", connection="STORAGE")
    @app.service_bus_queue_trigger(arg_name="message", connection="SERVICEBUS",
                                   queue_name="%QUEUE%")
    def relay(message: func.ServiceBusMessage, out: func.Out[str]) -> None:
        pass

    with pytest.raises(SettingsError, match="relay") as raised:
        index_app(app, SETTINGS)
    assert "queue" in str(raised.value)


def test_index_app_names_a_missing_binding_setting() -> None:
    app = func.FunctionApp()

    @app.cosmos_db_trigger(arg_name="docs", connection="COSMOS", database_name="%NO_SUCH_DB%",
                           container_name="%CONTAINER%", lease_container_name="leases")
    def feed(docs: func.DocumentList) -> None:
        pass

    with pytest.raises(SettingsError, match="NO_SUCH_DB") as raised:
        index_app(app, SETTINGS)
    assert "feed" in str(raised.value)


def test_index_app_names_a_missing_connection() -> None:
    app = func.FunctionApp()

    @app.service_bus_topic_trigger(arg_name="message", connection="OTHERBUS",
                                   topic_name="t", subscription_name="s")
    def consume(message: func.ServiceBusMessage) -> None:
        pass

    with pytest.raises(SettingsError, match="OTHERBUS") as raised:
        index_app(app, SETTINGS)
    assert "consume" in str(raised.value)


def test_index_app_resolves_service_bus_entities() -> None:
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="message", connection="SERVICEBUS",
                                   queue_name="%QUEUE%")
    def worker(message: func.ServiceBusMessage) -> None:
        pass

    @app.service_bus_topic_trigger(arg_name="msg", connection="SERVICEBUS",
                                   topic_name="%DB%", subscription_name="sub")
    def listener(msg: func.ServiceBusMessage) -> None:
        pass

    specs = {spec.name: spec for spec in index_app(app, SETTINGS).bus}
    assert specs["worker"].entity_path == "work" and specs["worker"].arg_name == "message"
    assert specs["listener"].entity_path == "orders/Subscriptions/sub"
    assert specs["listener"].arg_name == "msg"


@pytest.mark.parametrize(("bind", "target"), [
    ("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("::", "[::1]"), ("::1", "[::1]"),
    ("localhost", "localhost")])
def test_the_host_calls_itself_on_an_address_it_can_reach(bind: str, target: str) -> None:
    from devhost.host import _loopback_for

    assert _loopback_for(bind) == target
