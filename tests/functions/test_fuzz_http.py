"""No request is ever answered 500: every HTTP function, fed arbitrary bodies, ids and query
strings (hypothesis), answers a success or a problem+json 4xx."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions import orders, payments
from tests.functions.conftest import Harness, make_request

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["customerId", "currency", "productId", "quantity", "unitPrice",
                               "reason", "referenceId", "amount", "customer", "name", "email",
                               "shippingAddress"])
plausible_objects = st.dictionaries(field_names, json_values, max_size=5)
plausible_customers = st.fixed_dictionaries(
    {"name": st.text(max_size=12), "email": st.text(max_size=12)},
    optional={"shippingAddress": st.text(max_size=12)})
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    plausible_objects.map(lambda v: json.dumps(v).encode()),
    plausible_customers.map(lambda v: json.dumps(v).encode()),
    plausible_customers.map(lambda v: json.dumps(
        {"customerId": "c", "currency": "EUR", "customer": v}).encode()),
)
ids = st.one_of(st.text(max_size=40), st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True))

ROUTES: list[tuple[str, Callable[[func.HttpRequest], func.HttpResponse], list[str]]] = [
    ("POST", orders.create_order, []),
    ("POST", orders.add_item, ["orderId"]),
    ("DELETE", orders.delete_item, ["orderId", "cartItemId"]),
    ("POST", orders.checkout, ["orderId"]),
    ("POST", orders.cancel, ["orderId"]),
    ("GET", orders.get_order, ["orderId"]),
    ("GET", orders.get_order_events, ["orderId"]),
    ("PUT", orders.put_personal_data, ["customerId"]),
    ("DELETE", orders.erase_personal_data, ["customerId"]),
    ("PUT", payments.put_payment, ["paymentId"]),
    ("POST", payments.authorize_payment, ["paymentId"]),
    ("GET", payments.get_payment, ["paymentId"]),
    ("GET", payments.get_payment_events, ["paymentId"]),
]


@pytest.mark.parametrize(("method", "function", "params"), ROUTES,
                         ids=["orders_create", "orders_add_item", "orders_delete_item",
                              "orders_checkout", "orders_cancel", "orders_get", "orders_events",
                              "orders_put_personal_data", "orders_erase_personal_data",
                              "payments_put", "payments_authorize", "payments_get",
                              "payments_events"])
def test_no_input_gets_a_500(embedded_app: Harness, method: str,
                             function: Callable[[func.HttpRequest], func.HttpResponse],
                             params: list[str]) -> None:
    order_id = embedded_app.http(orders.create_order, "POST", "/orders",
                                 {"customerId": "c", "currency": "EUR"}).json["orderId"]

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=bodies, route=st.fixed_dictionaries({p: ids for p in params}),
           query=st.dictionaries(st.sampled_from(["minVersion", "asOfVersion", "asOf", "x"]),
                                 st.text(max_size=8) | st.just("2026-01-05T10:00:00Z"),
                                 max_size=2),
           known_order=st.booleans())
    def probe(body: bytes, route: dict[str, str], query: dict[str, str],
              known_order: bool) -> None:
        if known_order and "orderId" in route:
            route["orderId"] = order_id  # also reach the code behind the existence check
        request = make_request(method, "/fuzz", body, route_params=route, params=query)
        response = function(request)
        status = response.status_code
        assert status < 500 or status in (502, 503), (status, response.get_body()[:300])
        if status >= 400:
            assert response.mimetype == "application/problem+json"
            problem: dict[str, Any] = json.loads(response.get_body())
            assert problem["status"] == status and problem["detail"]

    probe()
