"""Retry keys that cannot lie, and poison that cannot stall a consumer.

An Idempotency-Key is matched by key AND request: the same key for another request is refused
(422), never answered with the first request's result. A stored commit that no reader can parse
is parked by each consumer with its raw document, and the valid commits around it go on.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest

from eventstore.commit import Commit, EventRecord
from eventstore.embedded.store import feed_range_of
from functions import orders, payments, runtime
from tests.functions.conftest import Harness, HttpResult
from tests.functions.test_change_feed_functions import letters, receive_all, view
from tests.functions.test_http_functions import add_ok, assert_problem, create_order

NOW = "2026-01-01T00:00:00.000000Z"


def with_key(app: Harness, fn: Any, method: str, url: str, key: str, body: Any = None,
             route: dict[str, str] | None = None) -> HttpResult:
    return app.http(fn, method, url, body, route_params=route,
                    headers={"Idempotency-Key": key})


def order_types(app: Harness, order_id: str) -> list[str]:
    events = app.http(orders.get_order_events, "GET", f"/orders/{order_id}/events",
                      route_params={"orderId": order_id}).json
    return [e["type"] for e in events]


# -- retry keys ---------------------------------------------------------------------------------


def test_the_key_of_an_add_cannot_check_the_order_out(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    route = {"orderId": order_id}
    added = with_key(embedded_app, orders.add_item, "POST", f"/orders/{order_id}/items", "Y",
                     {"productId": "p", "quantity": 1, "unitPrice": 100}, route)
    assert added.status == 201
    checkout = with_key(embedded_app, orders.checkout, "POST", f"/orders/{order_id}/checkout",
                        "Y", route=route)
    assert_problem(checkout, 422, "Idempotency-Key")
    assert "already used for another request" in checkout.json["detail"]
    assert embedded_app.payments_calls == []  # no payment was created for it
    assert order_types(embedded_app, order_id) == ["OrderCreated", "ItemAddedToCart"]


@pytest.mark.parametrize("second", ["cancel", "delete", "add-other-body"])
def test_a_reused_key_is_refused_for_any_other_request(embedded_app: Harness,
                                                       second: str) -> None:
    order_id = create_order(embedded_app)
    route = {"orderId": order_id}
    item = add_ok(embedded_app, order_id)
    with_key(embedded_app, orders.add_item, "POST", f"/orders/{order_id}/items", "K",
             {"productId": "p", "quantity": 2, "unitPrice": 100}, route)
    if second == "cancel":
        result = with_key(embedded_app, orders.cancel, "POST", f"/orders/{order_id}/cancel", "K",
                          route=route)
    elif second == "delete":
        result = with_key(embedded_app, orders.delete_item, "DELETE",
                          f"/orders/{order_id}/items/{item}", "K",
                          route={**route, "cartItemId": item})
    else:
        result = with_key(embedded_app, orders.add_item, "POST", f"/orders/{order_id}/items",
                          "K", {"productId": "p", "quantity": 3, "unitPrice": 100}, route)
    assert_problem(result, 422, "Idempotency-Key")
    assert order_types(embedded_app, order_id) == ["OrderCreated", "ItemAddedToCart",
                                                   "ItemAddedToCart"]


def test_an_add_with_the_key_of_a_cancel_is_refused_not_a_500(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    route = {"orderId": order_id}
    assert with_key(embedded_app, orders.cancel, "POST", f"/orders/{order_id}/cancel", "C",
                    route=route).status == 200
    result = with_key(embedded_app, orders.add_item, "POST", f"/orders/{order_id}/items", "C",
                      {"productId": "p", "quantity": 1, "unitPrice": 1}, route)
    assert_problem(result, 422, "Idempotency-Key")


def test_a_retried_checkout_answers_its_first_result_even_after_the_order_was_paid(
        embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    route = {"orderId": order_id}
    add_ok(embedded_app, order_id)
    first = with_key(embedded_app, orders.checkout, "POST", f"/orders/{order_id}/checkout",
                     "pay-it", route=route)
    assert first.status == 200
    embedded_app.authorize_and_settle(first.json["paymentId"])
    assert view_of(embedded_app, order_id)["status"] == "Paid"
    embedded_app.start()  # another instance: nothing cached
    again = with_key(embedded_app, orders.checkout, "POST", f"/orders/{order_id}/checkout",
                     "pay-it", route=route)
    assert (again.status, again.json) == (200, first.json)
    assert len(embedded_app.payments_calls) == 1


def test_creating_an_order_with_a_key_is_idempotent(embedded_app: Harness) -> None:
    body = {"customerId": "c-1", "currency": "EUR"}
    first = with_key(embedded_app, orders.create_order, "POST", "/orders", "new-order-1", body)
    embedded_app.start()  # the retry lands on a fresh instance
    again = with_key(embedded_app, orders.create_order, "POST", "/orders", "new-order-1", body)
    assert first.status == again.status == 201 and first.json == again.json
    assert order_types(embedded_app, first.json["orderId"]) == ["OrderCreated"]
    other = with_key(embedded_app, orders.create_order, "POST", "/orders", "new-order-1",
                     {"customerId": "c-2", "currency": "EUR"})
    assert_problem(other, 422, "Idempotency-Key")
    without = embedded_app.http(orders.create_order, "POST", "/orders", body)
    assert without.json["orderId"] != first.json["orderId"]


@pytest.mark.parametrize("key", ["", "   ", "with space", "x" * 129, "caf\u00e9"])
def test_a_malformed_key_is_400(embedded_app: Harness, key: str) -> None:
    result = with_key(embedded_app, orders.create_order, "POST", "/orders", key,
                      {"customerId": "c", "currency": "EUR"})
    assert_problem(result, 400, "Idempotency-Key")


def view_of(app: Harness, order_id: str) -> Any:
    return app.http(orders.get_order, "GET", f"/orders/{order_id}",
                    route_params={"orderId": order_id}).json


# -- poison in the change feed ------------------------------------------------------------------


def store_raw(app: Harness, database: str, stream_id: str, version: int,
              document: str) -> None:
    """A commit row written behind the store's back (a buggy writer, a hand edit)."""
    app.stores("orders" if database == "orders" else "payments")  # the file and its schema
    feed_range = feed_range_of(stream_id, app.settings.host.embedded_feed_ranges)
    with sqlite3.connect(app.data_dir / f"{database}.db") as conn:
        conn.execute("INSERT INTO commits (stream_id, first_version, last_version, document,"
                     " feed_range) VALUES (?, ?, ?, ?, ?)",
                     (stream_id, version, version, document, feed_range))


def test_append_refuses_a_commit_no_reader_could_decode() -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        EventRecord(version=1, event_id="e", type="OrderCreated", schema_version=1,
                    occurred_at=NOW, data=["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be a JSON object"):
        Commit.from_document({"streamId": "order-x", "streamType": "order", "events": [
            {"version": 1, "eventId": "e", "type": "OrderCreated", "schemaVersion": 1,
             "occurredAt": NOW, "data": [["orderId", "x"]]}],
            "correlationId": "c", "causationId": "k", "committedAt": NOW})


@pytest.mark.parametrize("bad", [
    json.dumps({"id": "order-bad:1", "streamId": "order-bad", "streamType": "order",
                "version": 1, "events": [{"version": 1, "eventId": "e", "type": "OrderCreated",
                                          "schemaVersion": 1, "occurredAt": NOW,
                                          "data": "not an object"}],
                "correlationId": "c", "causationId": "k", "committedAt": NOW}),
    "this is not JSON at all",
    json.dumps(["a", "list"]),
], ids=["data-not-an-object", "not-json", "not-an-object"])
def test_an_unreadable_commit_is_parked_and_the_valid_ones_after_it_go_on(
        embedded_app: Harness, bad: str) -> None:
    tap = "orders/Subscriptions/tap"
    embedded_app.bus().declare_subscription("orders", "tap")
    store_raw(embedded_app, "orders", "order-bad", 1, bad)
    order_id = create_order(embedded_app)
    add_ok(embedded_app, order_id)
    cancelled = embedded_app.http(orders.cancel, "POST", f"/orders/{order_id}/cancel",
                                  route_params={"orderId": order_id})
    assert cancelled.status == 200

    embedded_app.pump(orders.orders_projector, "orders")
    embedded_app.pump(orders.orders_publisher, "orders")

    assert view("orders", order_id)["status"] == "Cancelled"
    assert [m.subject for m in receive_all(embedded_app, tap)] == ["OrderCancelled"]
    parked = {(letter.consumer, letter.event_type) for letter in letters("orders")}
    assert parked == {("orders-projector-v1", "(malformed commit)"),
                      ("orders-publisher-v1", "(malformed commit)")}
    raw = letters("orders")[0].payload
    assert raw.get("raw") == bad or raw == json.loads(bad)  # kept as it was stored
    # Nothing stalls: a later commit flows on the next pump.
    second = create_order(embedded_app)
    embedded_app.pump(orders.orders_projector, "orders")
    assert view("orders", second)["version"] == 1


def test_poison_before_and_after_a_valid_event_never_stops_its_publication(
        embedded_app: Harness) -> None:
    put = embedded_app.http(payments.put_payment, "PUT", "/payments/pay-9",
                            {"referenceId": "o-9", "amount": 500, "currency": "EUR"},
                            route_params={"paymentId": "pay-9"})
    assert put.status == 201
    embedded_app.pump(payments.payments_publisher, "payments")  # PaymentCreated is behind us
    events = runtime.services().stores("payments").events

    def stored(version: int, event_type: str, data: dict[str, Any]) -> Commit:
        return Commit(stream_id="payment-pay-9", stream_type="payment", events=(EventRecord(
            version=version, event_id=f"e{version}", type=event_type, schema_version=1,
            occurred_at=NOW, data=data),), correlation_id="c", causation_id=f"k{version}",
            committed_at=NOW)

    # Published event types whose data no decoder accepts, around a valid one.
    events.append(stored(2, "PaymentFailed", {"reason": 5}))
    events.append(stored(3, "PaymentStarted", {}))
    events.append(stored(4, "PaymentCompleted", {}))
    embedded_app.start()  # a fresh publisher: the creation event must be read from the stream

    embedded_app.pump(payments.payments_publisher, "payments")

    [command] = receive_all(embedded_app, embedded_app.authorizations_queue())
    assert (command.message_id, command.subject) == ("payment-pay-9:3", "AuthorizePayment")
    assert command.body == {"paymentId": "pay-9", "referenceId": "o-9", "amount": 500,
                            "currency": "EUR"}
    assert sorted(letter.version for letter in letters("payments")) == [2, 4]
