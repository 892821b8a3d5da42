"""The OpenAPI document: it describes exactly the HTTP functions the app registers (no more, no
fewer), is a valid OpenAPI 3.1 document, documents the domain's limits from the domain's own
constants, and is served with its docs page by the app itself."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from devhost.indexing import load_app
from domain.errors import (
    DOCUMENT_KEY_PATTERN,
    ID_PATTERN,
    MAX_ID_LENGTH,
    SPACE,
    InvalidCommand,
    require_document_key,
    require_id,
)
from domain.money import ISO_4217_CURRENCIES
from domain.personal_data import ADDRESS_SCHEMA_PATTERN, EMAIL_SCHEMA_PATTERN, customer_details
from functions import apidocs, runtime
from functions.openapi import ApiRoutes, Reply, openapi_document
from tests.functions.conftest import REPO_ROOT, Harness, example_settings

Route = tuple[str, str]  # (METHOD, /path)


def registered_routes(app: func.FunctionApp) -> set[Route]:
    """The HTTP functions as the Functions worker indexes them (raw bindings)."""
    routes = set()
    for function in app.get_functions():
        for raw in function.get_raw_bindings():
            binding = json.loads(raw)
            if binding["type"] == "httpTrigger":
                for method in binding["methods"]:
                    routes.add((method.upper(), "/" + binding["route"].strip("/")))
    return routes


def documented_routes(document: dict[str, Any]) -> set[Route]:
    return {(method.upper(), path) for path, item in document["paths"].items()
            for method in item}


def coverage_gaps(app: func.FunctionApp, document: dict[str, Any]
                  ) -> tuple[list[Route], list[Route]]:
    """(routes the app serves that the document does not describe, the reverse)."""
    served, described = registered_routes(app), documented_routes(document)
    return sorted(served - described), sorted(described - served)


def load(monkeypatch: pytest.MonkeyPatch, services: str) -> func.FunctionApp:
    monkeypatch.setenv("SERVICES", services)
    monkeypatch.delitem(sys.modules, "function_app", raising=False)
    runtime.shutdown()
    return load_app(REPO_ROOT)


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in example_settings().items():
        monkeypatch.setenv(name, value)
    yield
    runtime.shutdown()


def document_of_this_app() -> dict[str, Any]:
    return openapi_document(apidocs._document_groups(), "http://localhost:7071/api")


@pytest.mark.usefixtures("settings_env")
@pytest.mark.parametrize("services", ["orders,payments", "orders", "payments"])
def test_the_document_describes_exactly_the_routes_the_app_serves(
    monkeypatch: pytest.MonkeyPatch, services: str
) -> None:
    app = load(monkeypatch, services)
    document = document_of_this_app()
    assert coverage_gaps(app, document) == ([], [])
    tags = {op["tags"][0] for item in document["paths"].values() for op in item.values()}
    assert tags == {*services.split(","), "documentation"}


@pytest.mark.usefixtures("settings_env")
def test_a_route_added_without_its_description_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control for the test above: a route registered the plain way (bp.route) is served
    but not described, and a described operation the app does not serve is the reverse."""
    app = load(monkeypatch, "orders,payments")
    undocumented = func.Blueprint()  # type: ignore[no-untyped-call]

    @undocumented.function_name("customers_orders")
    @undocumented.route(route="customers/{customerId}/orders", methods=["GET"])
    def customers_orders(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(status_code=200)

    app.register_functions(undocumented)
    phantom = ApiRoutes(func.Blueprint(), "phantom", "described, never registered")  # type: ignore[no-untyped-call]
    phantom.route("phantom_get", "GET", "phantom", summary="nothing serves this",
                  replies={200: Reply("ok")})(lambda req: func.HttpResponse())
    document = openapi_document((*apidocs._document_groups(), phantom), "http://h/api")
    assert coverage_gaps(app, document) == ([("GET", "/customers/{customerId}/orders")],
                                            [("GET", "/phantom")])


@pytest.mark.usefixtures("settings_env")
def test_the_document_is_valid_openapi_3_1_with_every_header_and_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load(monkeypatch, "orders,payments")
    document = document_of_this_app()
    validate(document)  # raises on anything OpenAPI 3.1 does not allow
    assert document["openapi"] == "3.1.0"
    operations = {op["operationId"]: op for item in document["paths"].values()
                  for op in item.values()}

    def request_headers(name: str) -> set[str]:
        return {p["name"] for p in operations[name]["parameters"] if p["in"] == "header"}

    assert {"Idempotency-Key", "X-Correlation-Id"} <= request_headers("orders_create")
    assert {"Idempotency-Key", "X-Correlation-Id"} <= request_headers("orders_checkout")
    get_order = operations["orders_get"]
    assert [p["name"] for p in get_order["parameters"] if p["in"] == "query"] == [
        "minVersion", "asOfVersion", "asOf"]
    assert set(get_order["responses"]["200"]["headers"]) == {"X-Correlation-Id", "X-View-Source"}
    for name, op in operations.items():
        # Every operation can answer problem+json, and 503 says when to retry.
        assert {"413", "500", "503"} <= set(op["responses"]), name
        assert set(op["responses"]["503"]["headers"]) == {"X-Correlation-Id", "Retry-After"}
        problem = op["responses"]["503"]["content"]["application/problem+json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/Problem"}
    assert operations["orders_checkout"]["responses"]["200"]["links"]["authorizePayment"] == {
        "operationId": "payments_authorize",
        "parameters": {"paymentId": "$response.body#/paymentId"}}
    # The service-to-service call takes the Orders identity's Entra ID token in Azure.
    assert operations["payments_put"]["security"] == [{"entraToken": []}]
    assert {"401", "403"} <= set(operations["payments_put"]["responses"])
    assert document["components"]["securitySchemes"]["entraToken"]["scheme"] == "bearer"
    assert "security" not in operations["orders_create"]


@pytest.mark.usefixtures("settings_env")
def test_domain_limits_are_documented_from_the_domain_constants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load(monkeypatch, "orders,payments")
    schemas = document_of_this_app()["components"]["schemas"]
    create = schemas["CreateOrderBody"]
    assert create["additionalProperties"] is False
    assert set(create["properties"]["currency"]["enum"]) == ISO_4217_CURRENCIES
    assert create["properties"]["customerId"]["maxLength"] == MAX_ID_LENGTH
    add = schemas["AddItemBody"]["properties"]
    assert (add["quantity"]["minimum"], add["quantity"]["maximum"]) == (1, 1000)
    assert schemas["PutPaymentBody"]["properties"]["amount"]["maximum"] == 2**53 - 1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=MAX_ID_LENGTH))
def test_the_documented_id_pattern_accepts_what_the_domain_accepts(value: str) -> None:
    try:
        require_id(value, "id")
        accepted = True
    except InvalidCommand:
        accepted = False
    assert accepted == bool(re.fullmatch(ID_PATTERN, value))


# -- served by the app -----------------------------------------------------------------------------


def test_the_app_serves_its_document_with_its_own_url(embedded_app: Harness) -> None:
    result = embedded_app.http(apidocs.openapi_json, "GET", "/openapi.json")
    assert result.status == 200
    assert result.headers["content-type"].startswith("application/json")
    assert result.json["servers"] == [{"url": "http://localhost:7071/api"}]
    assert ("POST", "/orders") in documented_routes(result.json)
    other_host = embedded_app.http(apidocs.openapi_json, "GET",
                                   "https://orders.example.invalid/api/openapi.json")
    assert other_host.json["servers"] == [{"url": "https://orders.example.invalid/api"}]


def request_for(path: str, route_params: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(method="GET", url=f"http://localhost:7071/api{path}", headers={},
                            params={}, route_params=route_params or {}, body=b"")


@pytest.mark.usefixtures("embedded_app")
def test_the_docs_page_loads_only_what_the_app_serves() -> None:
    page = apidocs.docs_page(request_for("/docs"))
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_body().decode()
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert loaded and all(url.startswith("/api/docs/") for url in loaded), loaded
    assert '"/api/openapi.json"' in html
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for url in loaded:
        name = url.removeprefix("/api/docs/")
        asset = apidocs.docs_asset(request_for(url.removeprefix("/api"), {"asset": name}))
        assert asset.status_code == 200, url
        assert asset.mimetype == apidocs.ASSETS[name]
        assert len(asset.get_body()) > 500


def test_an_unknown_docs_file_is_a_problem_404(embedded_app: Harness) -> None:
    result = embedded_app.http(apidocs.docs_asset, "GET", "/docs/index.html",
                               route_params={"asset": "index.html"})
    assert result.status == 404
    assert result.headers["content-type"].startswith("application/problem+json")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=MAX_ID_LENGTH))
def test_the_documented_document_key_pattern_accepts_what_the_domain_accepts(value: str) -> None:
    try:
        require_document_key(value, "customerId")
        accepted = True
    except InvalidCommand:
        accepted = False
    assert accepted == bool(re.fullmatch(DOCUMENT_KEY_PATTERN, value))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.emails(), st.text(max_size=80),
                 st.builds(lambda a, b: f"{a}@{b}", st.text(max_size=70), st.text(max_size=20))))
def test_the_documented_email_pattern_accepts_what_the_domain_accepts(value: str) -> None:
    try:
        customer_details("Ada", value)
        accepted = True
    except InvalidCommand:
        accepted = False
    assert accepted == (bool(re.fullmatch(EMAIL_SCHEMA_PATTERN, value)) and len(value) <= 254)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_the_documented_address_pattern_accepts_what_the_domain_accepts(value: str) -> None:
    try:
        customer_details("Ada", "ada@example.com", value)
        accepted = True
    except InvalidCommand:
        accepted = False
    assert accepted == bool(re.fullmatch(ADDRESS_SCHEMA_PATTERN, value))


def test_the_documented_white_space_is_what_python_strips() -> None:
    """ECMA-262's \\s differs from Python's: the patterns spell white space out instead."""
    spelled = re.compile(f"[{SPACE}]")
    every = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    assert [c for c in every if bool(spelled.fullmatch(c)) != c.isspace()] == []
    assert [c for c in every if bool(re.fullmatch(r"\s", c)) != c.isspace()] == []
