"""The HTTP API, invoked with real func.HttpRequest objects on the embedded backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from domain import orders as order_domain
from eventstore.commands import CommandContext, CommandProcessor
from functions import orders, payments
from functions.http import MAX_BODY_BYTES
from tests.functions.conftest import Harness, HttpResult

EVENT_FIELDS = {"version", "eventId", "type", "schemaVersion", "occurredAt", "data", "streamId",
                "correlationId", "causationId"}


# -- helpers --------------------------------------------------------------------------------------


def assert_problem(result: HttpResult, status: int, field: str | None = None) -> None:
    """An application/problem+json response with type/title/status/detail (naming `field`)."""
    assert result.status == status, result
    assert result.headers["content-type"].startswith("application/problem+json"), result
    body = result.json
    assert isinstance(body, dict)
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    if field is not None:
        named = {e.get("field") for e in body.get("errors") or []}
        assert field in named or field in body["detail"], body


def create_order(app: Harness, customer: str = "customer-1", currency: str = "EUR",
                 headers: Mapping[str, str] | None = None) -> str:
    result = app.http(orders.create_order, "POST", "/orders",
                      {"customerId": customer, "currency": currency}, headers=headers)
    assert result.status == 201, result
    order_id: str = result.json["orderId"]
    return order_id


def add_item(app: Harness, order_id: str, body: Any, headers: Mapping[str, str] | None = None
             ) -> HttpResult:
    return app.http(orders.add_item, "POST", f"/orders/{order_id}/items", body,
                    route_params={"orderId": order_id}, headers=headers)


def add_ok(app: Harness, order_id: str, product: str = "p-1", quantity: int = 1,
           unit_price: int = 100) -> str:
    result = add_item(app, order_id,
                      {"productId": product, "quantity": quantity, "unitPrice": unit_price})
    assert result.status == 201, result
    cart_item_id: str = result.json["cartItemId"]
    return cart_item_id


def checkout(app: Harness, order_id: str, headers: Mapping[str, str] | None = None
             ) -> HttpResult:
    return app.http(orders.checkout, "POST", f"/orders/{order_id}/checkout",
                    route_params={"orderId": order_id}, headers=headers)


def get_order(app: Harness, order_id: str, params: Mapping[str, str] | None = None
              ) -> HttpResult:
    return app.http(orders.get_order, "GET", f"/orders/{order_id}",
                    route_params={"orderId": order_id}, params=params)


def order_events(app: Harness, order_id: str) -> HttpResult:
    return app.http(orders.get_order_events, "GET", f"/orders/{order_id}/events",
                    route_params={"orderId": order_id})


def payment_events(app: Harness, payment_id: str) -> HttpResult:
    return app.http(payments.get_payment_events, "GET", f"/payments/{payment_id}/events",
                    route_params={"paymentId": payment_id})


def put_payment(app: Harness, payment_id: str, body: Any) -> HttpResult:
    return app.http(payments.put_payment, "PUT", f"/payments/{payment_id}", body,
                    route_params={"paymentId": payment_id})


def order_with_items(app: Harness, *prices: int) -> str:
    order_id = create_order(app)
    for n, price in enumerate(prices or (250,), start=1):
        add_ok(app, order_id, f"p-{n}", 2, price)
    return order_id


# -- success paths --------------------------------------------------------------------------------


def test_create_order(embedded_app: Harness) -> None:
    result = embedded_app.http(orders.create_order, "POST", "/orders",
                               {"customerId": "c-1", "currency": "EUR"})
    assert result.status == 201
    assert set(result.json) == {"orderId", "version"}
    assert result.json["version"] == 1
    order_id = result.json["orderId"]
    assert result.headers["location"] == f"http://localhost:7071/api/orders/{order_id}"
    assert result.headers["content-type"].startswith("application/json")


def test_add_and_delete_items(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    first = add_item(embedded_app, order_id, {"productId": "p-1", "quantity": 2, "unitPrice": 150})
    assert first.status == 201
    assert set(first.json) == {"cartItemId", "version"} and first.json["version"] == 2
    second = add_item(embedded_app, order_id, {"productId": "p-2", "quantity": 1, "unitPrice": 99})
    assert second.status == 201 and second.json["version"] == 3
    assert second.json["cartItemId"] != first.json["cartItemId"]

    deleted = embedded_app.http(orders.delete_item, "DELETE",
                                f"/orders/{order_id}/items/{first.json['cartItemId']}",
                                route_params={"orderId": order_id,
                                              "cartItemId": first.json["cartItemId"]})
    assert deleted.status == 200 and deleted.json == {"version": 4}
    view = get_order(embedded_app, order_id).json
    assert [i["cartItemId"] for i in view["items"]] == [second.json["cartItemId"]]
    assert view["total"] == 99


def test_get_order_view(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app, customer="c-42", currency="USD")
    item_id = add_ok(embedded_app, order_id, "sku-1", 3, 250)
    result = get_order(embedded_app, order_id)
    assert result.status == 200
    assert result.json == {
        "orderId": order_id, "customerId": "c-42", "status": "Created",
        "items": [{"cartItemId": item_id, "productId": "sku-1", "quantity": 3, "unitPrice": 250}],
        "total": 750, "currency": "USD", "paymentId": None, "version": 2,
        "customer": None,  # no details were given (tests/functions/test_personal_data_functions)
    }


def test_checkout_creates_the_payment(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 250, 100)
    result = checkout(embedded_app, order_id)
    assert result.status == 200, result
    assert set(result.json) == {"paymentId", "amount", "currency", "version"}
    assert result.json["amount"] == 700 and result.json["currency"] == "EUR"
    assert result.json["version"] == 4
    payment_id = result.json["paymentId"]

    assert [(c.method, c.status) for c in embedded_app.payments_calls] == [("PUT", 201)]
    assert embedded_app.payments_calls[0].url.endswith(f"/api/payments/{payment_id}")
    view = get_order(embedded_app, order_id).json
    assert view["status"] == "PreparedToPay" and view["paymentId"] == payment_id
    payment = embedded_app.http(payments.get_payment, "GET", f"/payments/{payment_id}",
                                route_params={"paymentId": payment_id})
    assert payment.status == 200
    assert payment.json == {"paymentId": payment_id, "referenceId": order_id,
                            "status": "Created", "amount": 700, "currency": "EUR", "version": 1}


def test_retried_checkout_returns_the_same_payment_and_creates_no_second_one(
    embedded_app: Harness,
) -> None:
    order_id = order_with_items(embedded_app, 500)
    first = checkout(embedded_app, order_id)
    again = checkout(embedded_app, order_id)
    assert first.status == again.status == 200
    assert again.json == first.json
    events = payment_events(embedded_app, first.json["paymentId"]).json
    assert [e["type"] for e in events] == ["PaymentCreated"]
    assert sum(1 for c in embedded_app.payments_calls if c.status == 201) == 1


def test_retried_checkout_on_an_instance_with_a_stale_cache_reuses_the_payment(
    embedded_app: Harness,
) -> None:
    """Scale-out: this instance last saw the order at version 2; another instance then added an
    item and checked out. A retried checkout routed here must answer with that payment and must
    not ask Payments for another one (a retried checkout cannot create a second
    payment)."""
    order_id = order_with_items(embedded_app, 100)  # this instance's cache: version 2
    other = CommandProcessor(embedded_app.stores("orders").events, order_domain.ORDER_STREAM,
                             order_domain.order_decider, order_domain.order_codec)
    other.execute(order_id, order_domain.AddItemToCart("p-9", 1, 50),
                  CommandContext("corr-other", "cause-other-1"))
    state, version = other.load(order_id)
    command = order_domain.checkout_command(state, version)
    assert put_payment(embedded_app, command.payment_id,
                       {"referenceId": order_id, "amount": command.amount,
                        "currency": "EUR"}).status == 201
    other.execute(order_id, command, CommandContext("corr-other", "cause-other-2"))
    calls_before = len(embedded_app.payments_calls)

    retried = checkout(embedded_app, order_id)

    assert retried.status == 200, retried
    assert retried.json["paymentId"] == command.payment_id
    assert retried.json["amount"] == 250
    assert [c.url for c in embedded_app.payments_calls[calls_before:]
            if not c.url.endswith(command.payment_id)] == []


def test_cancel(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    result = embedded_app.http(orders.cancel, "POST", f"/orders/{order_id}/cancel",
                               {"reason": "changed my mind"}, route_params={"orderId": order_id})
    assert result.status == 200 and result.json == {"version": 2}
    view = get_order(embedded_app, order_id).json
    assert view["status"] == "Cancelled" and view["cancelReason"] == "changed my mind"


def test_cancel_without_a_body(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    result = embedded_app.http(orders.cancel, "POST", f"/orders/{order_id}/cancel",
                               route_params={"orderId": order_id})
    assert result.status == 200 and result.json == {"version": 2}
    assert get_order(embedded_app, order_id).json["status"] == "Cancelled"


def test_order_events_in_order_with_metadata(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 10, 20)
    checkout(embedded_app, order_id)
    result = order_events(embedded_app, order_id)
    assert result.status == 200
    events = result.json
    assert [e["type"] for e in events] == ["OrderCreated", "ItemAddedToCart", "ItemAddedToCart",
                                           "OrderPreparedToPay"]
    assert [e["version"] for e in events] == [1, 2, 3, 4]
    for event in events:
        assert set(event) == EVENT_FIELDS
        assert event["streamId"] == f"order-{order_id}"
        assert event["schemaVersion"] == 1
        assert event["occurredAt"].endswith("Z") and event["eventId"]
        assert event["correlationId"] and event["causationId"]
    assert events[0]["data"] == {"orderId": order_id, "customerId": "customer-1",
                                 "currency": "EUR"}
    assert len({e["eventId"] for e in events}) == 4


def test_put_payment_is_idempotent(embedded_app: Harness) -> None:
    body = {"referenceId": "order-x", "amount": 1234, "currency": "EUR"}
    created = put_payment(embedded_app, "pay-1", body)
    assert created.status == 201
    assert created.json["paymentId"] == "pay-1" and created.json["version"] == 1
    same = put_payment(embedded_app, "pay-1", body)
    assert same.status == 200 and same.json["version"] == 1
    differs = put_payment(embedded_app, "pay-1", {**body, "amount": 999})
    assert_problem(differs, 409)
    assert "amount" in differs.json["detail"]
    assert [e["type"] for e in payment_events(embedded_app, "pay-1").json] == ["PaymentCreated"]


def test_authorize_and_get_payment(embedded_app: Harness) -> None:
    put_payment(embedded_app, "pay-2", {"referenceId": "o-2", "amount": 500, "currency": "GBP"})
    result = embedded_app.http(payments.authorize_payment, "POST", "/payments/pay-2/authorize",
                               route_params={"paymentId": "pay-2"})
    assert result.status == 202 and result.json == {"version": 2}
    view = embedded_app.http(payments.get_payment, "GET", "/payments/pay-2",
                             route_params={"paymentId": "pay-2"})
    assert view.status == 200
    assert view.json == {"paymentId": "pay-2", "referenceId": "o-2", "status": "Started",
                         "amount": 500, "currency": "GBP", "version": 2}
    events = payment_events(embedded_app, "pay-2")
    assert events.status == 200
    assert [(e["type"], e["version"]) for e in events.json] == [("PaymentCreated", 1),
                                                                ("PaymentStarted", 2)]
    assert all(set(e) == EVENT_FIELDS for e in events.json)


def test_a_failed_payment_shows_its_reason(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100_000)  # 200 000 > PAYMENTS_DECLINE_ABOVE
    payment_id = checkout(embedded_app, order_id).json["paymentId"]
    embedded_app.authorize_and_settle(payment_id)
    view = embedded_app.http(payments.get_payment, "GET", f"/payments/{payment_id}",
                             route_params={"paymentId": payment_id}).json
    assert view["status"] == "Failed" and "declined" in view["failureReason"]


# -- read your writes -----------------------------------------------------------------------------


def test_reads_see_the_writes_before_the_projector_ran(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    first = get_order(embedded_app, order_id)
    assert first.status == 200 and first.headers["x-view-source"] == "stream"
    assert first.json["version"] == 1

    embedded_app.pump(orders.orders_projector, "orders")
    projected = get_order(embedded_app, order_id)
    assert projected.headers["x-view-source"] == "projection"
    assert projected.json == first.json

    item_id = add_ok(embedded_app, order_id)
    after_write = get_order(embedded_app, order_id)
    assert after_write.headers["x-view-source"] == "stream"
    assert after_write.json["version"] == 2
    assert [i["cartItemId"] for i in after_write.json["items"]] == [item_id]

    embedded_app.pump(orders.orders_projector, "orders")
    caught_up = get_order(embedded_app, order_id)
    assert caught_up.headers["x-view-source"] == "projection"
    assert caught_up.json == after_write.json


def test_min_version_reads_through_a_stale_projection(embedded_app: Harness) -> None:
    """Another instance (no cache here) honours the client's minVersion."""
    order_id = create_order(embedded_app)
    embedded_app.pump(orders.orders_projector, "orders")
    add_ok(embedded_app, order_id)
    embedded_app.start()  # a fresh process: nothing cached; the projection is at version 1
    stale = get_order(embedded_app, order_id)
    assert stale.headers["x-view-source"] == "projection" and stale.json["version"] == 1
    fresh = get_order(embedded_app, order_id, params={"minVersion": "2"})
    assert fresh.status == 200 and fresh.headers["x-view-source"] == "stream"
    assert fresh.json["version"] == 2 and len(fresh.json["items"]) == 1


def test_payment_reads_see_the_writes_before_the_projector_ran(embedded_app: Harness) -> None:
    put_payment(embedded_app, "pay-3", {"referenceId": "o-3", "amount": 10, "currency": "EUR"})
    embedded_app.pump(payments.payments_projector, "payments")
    embedded_app.http(payments.authorize_payment, "POST", "/payments/pay-3/authorize",
                      route_params={"paymentId": "pay-3"})
    view = embedded_app.http(payments.get_payment, "GET", "/payments/pay-3",
                             route_params={"paymentId": "pay-3"})
    assert view.headers["x-view-source"] == "stream" and view.json["status"] == "Started"
    embedded_app.pump(payments.payments_projector, "payments")
    view = embedded_app.http(payments.get_payment, "GET", "/payments/pay-3",
                             route_params={"paymentId": "pay-3"})
    assert view.headers["x-view-source"] == "projection" and view.json["status"] == "Started"


# -- correlation ----------------------------------------------------------------------------------


def test_correlation_id_is_recorded_echoed_and_forwarded_to_payments(
    embedded_app: Harness,
) -> None:
    trace = {"X-Correlation-Id": "trace-123"}
    created = embedded_app.http(orders.create_order, "POST", "/orders",
                                {"customerId": "c", "currency": "EUR"}, headers=trace)
    assert created.headers["x-correlation-id"] == "trace-123"
    order_id = created.json["orderId"]
    add_ok(embedded_app, order_id)  # no header: a new correlation id
    result = checkout(embedded_app, order_id, headers=trace)
    payment_id = result.json["paymentId"]

    events = order_events(embedded_app, order_id).json
    assert events[0]["correlationId"] == "trace-123"
    assert events[1]["correlationId"] not in ("", "trace-123")
    assert events[2]["correlationId"] == "trace-123"

    created_payment = payment_events(embedded_app, payment_id).json
    assert [e["correlationId"] for e in created_payment] == ["trace-123"]
    # Payments records the checkout as the cause of the payment.
    assert created_payment[0]["causationId"] == events[2]["causationId"]
    call = embedded_app.payments_calls[0]
    assert call.headers["x-correlation-id"] == "trace-123"


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b'{"customerId": "c", ', b"\xff\xfe\x00",
                                 b"{'customerId': 'c'}"])
def test_malformed_json_is_400(embedded_app: Harness, raw: bytes) -> None:
    assert_problem(embedded_app.http(orders.create_order, "POST", "/orders", raw), 400)


@pytest.mark.parametrize("body", [[1, 2], "a string", 42, None, True])
def test_a_body_that_is_not_an_object_is_400(embedded_app: Harness, body: Any) -> None:
    raw = json.dumps(body).encode()
    assert_problem(embedded_app.http(orders.create_order, "POST", "/orders", raw), 400)


def test_an_empty_body_is_400(embedded_app: Harness) -> None:
    assert_problem(embedded_app.http(orders.create_order, "POST", "/orders", b""), 400)


@pytest.mark.parametrize(("body", "field"), [
    ({"currency": "EUR"}, "customerId"),
    ({"customerId": "c"}, "currency"),
    ({"customerId": "c", "currency": "EUR", "vip": True}, "vip"),
    ({"customerId": 5, "currency": "EUR"}, "customerId"),
    ({"customerId": "", "currency": "EUR"}, "customerId"),
    ({"customerId": "c", "currency": "XYZ"}, "currency"),
    ({"customerId": "c", "currency": "eur"}, "currency"),
])
def test_invalid_create_fields_are_400_naming_the_field(
    embedded_app: Harness, body: dict[str, Any], field: str
) -> None:
    result = embedded_app.http(orders.create_order, "POST", "/orders", body)
    assert_problem(result, 400, field)


@pytest.mark.parametrize(("body", "field"), [
    ({"productId": "p", "quantity": "2", "unitPrice": 100}, "quantity"),
    ({"productId": "p", "quantity": True, "unitPrice": 100}, "quantity"),
    ({"productId": "p", "quantity": 0, "unitPrice": 100}, "quantity"),
    ({"productId": "p", "quantity": 1001, "unitPrice": 100}, "quantity"),
    ({"productId": "p", "quantity": 1.5, "unitPrice": 100}, "quantity"),
    ({"productId": "p", "quantity": 1, "unitPrice": -1}, "unitPrice"),
    ({"productId": "p", "quantity": 1, "unitPrice": 9.99}, "unitPrice"),
    ({"productId": "p", "quantity": 1}, "unitPrice"),
    ({"quantity": 1, "unitPrice": 1}, "productId"),
    ({"productId": "p", "quantity": 1, "unitPrice": 1, "discount": 5}, "discount"),
])
def test_invalid_item_fields_are_400_naming_the_field(
    embedded_app: Harness, body: dict[str, Any], field: str
) -> None:
    order_id = create_order(embedded_app)
    assert_problem(add_item(embedded_app, order_id, body), 400, field)
    assert get_order(embedded_app, order_id).json["items"] == []


@pytest.mark.parametrize(("body", "field"), [
    ({"referenceId": "o", "amount": 0, "currency": "EUR"}, "amount"),
    ({"referenceId": "o", "amount": "10", "currency": "EUR"}, "amount"),
    ({"amount": 10, "currency": "EUR"}, "referenceId"),
    ({"referenceId": "o", "amount": 10, "currency": "XYZ"}, "currency"),
])
def test_invalid_payment_fields_are_400_naming_the_field(
    embedded_app: Harness, body: dict[str, Any], field: str
) -> None:
    assert_problem(put_payment(embedded_app, "pay-9", body), 400, field)
    assert payment_events(embedded_app, "pay-9").status == 404


def test_a_body_over_64_kib_is_413(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    padding = "x" * MAX_BODY_BYTES
    body = json.dumps({"productId": "p", "quantity": 1, "unitPrice": 1, "note": padding})
    assert_problem(add_item(embedded_app, order_id, body.encode()), 413)


def test_a_body_of_exactly_64_kib_is_not_413(embedded_app: Harness) -> None:
    prefix, suffix = '{"customerId": "c", "currency": "EUR", "note": "', '"}'
    body = prefix + "x" * (MAX_BODY_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(body.encode()) == MAX_BODY_BYTES
    assert_problem(embedded_app.http(orders.create_order, "POST", "/orders", body), 400, "note")


@pytest.mark.parametrize("raw", [
    b"[" * 50_000,  # nesting deeper than the JSON parser's recursion limit
    b'{"customerId": "c", "currency": "EUR", "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    b'{"customerId": "c", "currency": "EUR", "n": ' + b"1" * 5_000 + b"}",  # > int digit limit
])
def test_pathological_json_is_400_not_500(embedded_app: Harness, raw: bytes) -> None:
    """No request ever gets a 500 for bad input."""
    assert len(raw) <= MAX_BODY_BYTES
    assert_problem(embedded_app.http(orders.create_order, "POST", "/orders", raw), 400)


def _unknown_order_calls(order_id: str) -> list[tuple[Callable[..., Any], str, str, Any,
                                                       dict[str, str]]]:
    route = {"orderId": order_id}
    return [
        (orders.get_order, "GET", f"/orders/{order_id}", None, route),
        (orders.get_order_events, "GET", f"/orders/{order_id}/events", None, route),
        (orders.add_item, "POST", f"/orders/{order_id}/items",
         {"productId": "p", "quantity": 1, "unitPrice": 1}, route),
        (orders.delete_item, "DELETE", f"/orders/{order_id}/items/item-1", None,
         {**route, "cartItemId": "item-1"}),
        (orders.checkout, "POST", f"/orders/{order_id}/checkout", None, route),
        (orders.cancel, "POST", f"/orders/{order_id}/cancel", None, route),
    ]


def _unknown_payment_calls(payment_id: str) -> list[tuple[Callable[..., Any], str, str, Any,
                                                           dict[str, str]]]:
    route = {"paymentId": payment_id}
    return [
        (payments.get_payment, "GET", f"/payments/{payment_id}", None, route),
        (payments.get_payment_events, "GET", f"/payments/{payment_id}/events", None, route),
        (payments.authorize_payment, "POST", f"/payments/{payment_id}/authorize", None, route),
    ]


def test_unknown_orders_and_payments_are_404(embedded_app: Harness) -> None:
    calls = _unknown_order_calls("0d4a9c8e-no-such-order") + _unknown_payment_calls("no-such")
    for fn, method, url, body, route in calls:
        result = embedded_app.http(fn, method, url, body, route_params=route)
        assert_problem(result, 404)
    assert embedded_app.payments_calls == []


@pytest.mark.parametrize("bad_id", ["has space", "a/b", "..", "-leading-dash", "x" * 101, "",
                                    "semi;colon", "uni\u00e9", "trailing-newline\n"])
def test_an_id_with_bad_characters_is_404(embedded_app: Harness, bad_id: str) -> None:
    calls = _unknown_order_calls(bad_id) + _unknown_payment_calls(bad_id)
    calls.append((payments.put_payment, "PUT", "/payments/x",
                  {"referenceId": "o", "amount": 1, "currency": "EUR"}, {"paymentId": bad_id}))
    for fn, method, url, body, route in calls:
        result = embedded_app.http(fn, method, url, body, route_params=route)
        assert_problem(result, 404)


def test_deleting_an_unknown_cart_item_is_404_naming_it(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100)
    result = embedded_app.http(orders.delete_item, "DELETE", f"/orders/{order_id}/items/item-9",
                               route_params={"orderId": order_id, "cartItemId": "item-9"})
    assert_problem(result, 404, "item-9")


def test_a_retried_delete_is_a_no_op(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100)
    route = {"orderId": order_id, "cartItemId": "item-1"}
    first = embedded_app.http(orders.delete_item, "DELETE", f"/orders/{order_id}/items/item-1",
                              route_params=route)
    again = embedded_app.http(orders.delete_item, "DELETE", f"/orders/{order_id}/items/item-1",
                              route_params=route)
    assert (first.status, again.status) == (200, 200)
    assert first.json == again.json == {"version": 3}


def test_checkout_of_an_empty_cart_is_409(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    assert_problem(checkout(embedded_app, order_id), 409)
    assert embedded_app.payments_calls == []


def test_adding_an_item_after_checkout_is_409(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100)
    checkout(embedded_app, order_id)
    result = add_item(embedded_app, order_id, {"productId": "p", "quantity": 1, "unitPrice": 1})
    assert_problem(result, 409)


def test_cancelling_a_paid_order_is_409(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100)
    embedded_app.authorize_and_settle(checkout(embedded_app, order_id).json["paymentId"])
    assert get_order(embedded_app, order_id).json["status"] == "Paid"
    result = embedded_app.http(orders.cancel, "POST", f"/orders/{order_id}/cancel",
                               route_params={"orderId": order_id})
    assert_problem(result, 409)
    assert get_order(embedded_app, order_id).json["status"] == "Paid"


def test_authorizing_a_decided_payment_is_409(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100)
    payment_id = checkout(embedded_app, order_id).json["paymentId"]
    embedded_app.authorize_and_settle(payment_id)
    result = embedded_app.http(payments.authorize_payment, "POST",
                               f"/payments/{payment_id}/authorize",
                               route_params={"paymentId": payment_id})
    assert_problem(result, 409)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "\u00b2", "1" * 5000])
def test_an_invalid_min_version_is_400(embedded_app: Harness, value: str) -> None:
    order_id = create_order(embedded_app)
    assert_problem(get_order(embedded_app, order_id, params={"minVersion": value}), 400,
                   "minVersion")


def test_checkout_answers_503_when_payments_is_unavailable(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    embedded_app.payments_handler = down
    result = checkout(embedded_app, order_id)
    assert_problem(result, 503)
    assert result.headers["retry-after"]
    assert get_order(embedded_app, order_id).json["status"] == "Created"

    embedded_app.payments_handler = lambda request: httpx.Response(503)
    assert_problem(checkout(embedded_app, order_id), 503)

    embedded_app.payments_handler = None  # back up: the retry succeeds
    assert checkout(embedded_app, order_id).status == 200
    assert get_order(embedded_app, order_id).json["status"] == "PreparedToPay"


def test_checkout_answers_409_when_payments_refuses(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100)
    embedded_app.payments_handler = lambda request: httpx.Response(
        409, json={"title": "Conflict", "status": 409})
    assert_problem(checkout(embedded_app, order_id), 409)
    assert get_order(embedded_app, order_id).json["status"] == "Created"


def test_payment_projection_and_stream_views_agree(embedded_app: Harness) -> None:
    put_payment(embedded_app, "pay-4", {"referenceId": "o-4", "amount": 42, "currency": "JPY"})
    from_stream = embedded_app.http(payments.get_payment, "GET", "/payments/pay-4",
                                    route_params={"paymentId": "pay-4"}).json
    embedded_app.pump(payments.payments_projector, "payments")
    embedded_app.start()  # a fresh process: the view can only come from the projection
    from_projection = embedded_app.http(payments.get_payment, "GET", "/payments/pay-4",
                                        route_params={"paymentId": "pay-4"})
    assert from_projection.headers["x-view-source"] == "projection"
    assert from_projection.json == from_stream


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_checkout_answers_502_when_payments_rejects_the_call_itself(embedded_app: Harness,
                                                                    status: int) -> None:
    """A wrong key, base URL or contract is this deployment's fault, not a state conflict."""
    order_id = order_with_items(embedded_app, 100)
    embedded_app.payments_handler = lambda request: httpx.Response(status)
    assert_problem(checkout(embedded_app, order_id), 502)
    assert get_order(embedded_app, order_id).json["status"] == "Created"


def test_a_body_over_64_kib_is_413_on_routes_that_take_no_body(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100)
    result = embedded_app.http(orders.checkout, "POST", f"/orders/{order_id}/checkout",
                               b"x" * (MAX_BODY_BYTES + 1), route_params={"orderId": order_id})
    assert_problem(result, 413)
    assert embedded_app.payments_calls == []


def test_min_version_beyond_the_stream_is_404(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    result = embedded_app.http(orders.get_order, "GET", f"/orders/{order_id}",
                               route_params={"orderId": order_id}, params={"minVersion": "5"})
    assert_problem(result, 404)
    assert "no version 5" in result.json["detail"]


def test_an_idempotency_key_makes_a_retried_add_return_the_original_result(
        embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    route = {"orderId": order_id}
    body = {"productId": "p", "quantity": 1, "unitPrice": 100}
    key = {"Idempotency-Key": "add-p-once"}
    first = embedded_app.http(orders.add_item, "POST", f"/orders/{order_id}/items", body,
                              route_params=route, headers=key)
    again = embedded_app.http(orders.add_item, "POST", f"/orders/{order_id}/items", body,
                              route_params=route, headers=key)
    assert (first.status, again.status) == (201, 201) and first.json == again.json
    other = embedded_app.http(orders.add_item, "POST", f"/orders/{order_id}/items", body,
                              route_params=route)
    assert other.json["cartItemId"] != first.json["cartItemId"]
    events = embedded_app.http(orders.get_order_events, "GET", f"/orders/{order_id}/events",
                               route_params=route).json
    assert [e["type"] for e in events].count("ItemAddedToCart") == 2
    assert events[1]["causationId"] == "add-p-once"
