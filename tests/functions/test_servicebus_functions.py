"""The Service Bus-triggered functions, and the whole order-to-paid flow through the functions
alone (no host): every asynchronous step is a pump of the change feed or a bus delivery."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage

from contracts.messages import CONTRACT_VERSION_PROPERTY, ContractError
from devhost.bus import to_function_message
from domain.errors import StreamNotFound
from eventstore.embedded.bus import MAX_DELIVERY_COUNT_EXCEEDED, ReceivedMessage
from eventstore.ports import OutboundMessage
from functions import orders, payments, runtime
from tests.functions.conftest import Harness
from tests.functions.test_http_functions import (
    add_ok,
    checkout,
    create_order,
    get_order,
    order_events,
    payment_events,
)


def events_of(app: Harness, order_id: str) -> list[dict[str, Any]]:
    result = order_events(app, order_id)
    assert result.status == 200
    events: list[dict[str, Any]] = result.json
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def service_bus_message(subject: str, body: Any, version: Any = 1,
                        message_id: str = "msg-1") -> ServiceBusMessage:
    properties: dict[str, Any] = {} if version is None else {CONTRACT_VERSION_PROPERTY: version}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ServiceBusMessage(body=raw, message_id=message_id, subject=subject, label=subject,
                             correlation_id="corr-msg", content_type="application/json",
                             application_properties=properties, user_properties=properties)


def to_payment_outcome(app: Harness, payment_id: str) -> None:
    """Authorize, and run the chain until the payment's outcome waits on Orders' subscription."""
    result = app.http(payments.authorize_payment, "POST", f"/payments/{payment_id}/authorize",
                      route_params={"paymentId": payment_id})
    assert result.status == 202
    app.pump(payments.payments_publisher, "payments")
    assert len(app.deliver(payments.payments_acquirer, app.authorizations_queue())) == 1
    app.pump(payments.payments_publisher, "payments")


def receive_one(app: Harness, path: str) -> ReceivedMessage:
    received: list[ReceivedMessage] = app.bus().receive(path, max_messages=10, timeout=0)
    assert len(received) == 1, received
    return received[0]


def test_an_order_is_paid_through_the_functions(embedded_app: Harness) -> None:
    app = embedded_app
    order_id = create_order(app)
    for n in range(4):
        add_ok(app, order_id, f"p-{n}", n + 1, 100)
    first_item = events_of(app, order_id)[1]["data"]["cartItemId"]
    app.http(orders.delete_item, "DELETE", f"/orders/{order_id}/items/{first_item}",
             route_params={"orderId": order_id, "cartItemId": first_item})
    result = checkout(app, order_id)
    assert result.status == 200 and result.json["amount"] == 900
    payment_id = result.json["paymentId"]

    authorized = app.http(payments.authorize_payment, "POST",
                          f"/payments/{payment_id}/authorize",
                          route_params={"paymentId": payment_id})
    assert authorized.status == 202
    assert [c.version for c in app.pump(payments.payments_publisher, "payments")] == [1, 2]
    commands = app.deliver(payments.payments_acquirer, app.authorizations_queue())
    assert [m.subject for m in commands] == ["AuthorizePayment"]
    assert [c.version for c in app.pump(payments.payments_publisher, "payments")] == [3]
    outcomes = app.deliver(orders.on_payment_event, app.payment_events_path())
    assert [m.subject for m in outcomes] == ["PaymentCompleted"]

    order = get_order(app, order_id).json
    assert order["status"] == "Paid" and order["paymentId"] == payment_id
    assert types(events_of(app, order_id))[-2:] == ["OrderPreparedToPay", "OrderPaid"]
    payment = app.http(payments.get_payment, "GET", f"/payments/{payment_id}",
                       route_params={"paymentId": payment_id}).json
    assert payment["status"] == "Completed" and payment["authorizationCode"].startswith("AUTH-")
    # Nothing left behind on any entity.
    assert app.deliver(payments.payments_acquirer, app.authorizations_queue()) == []
    assert app.deliver(orders.on_payment_event, app.payment_events_path()) == []


def test_a_redelivered_payment_completed_pays_the_order_once(embedded_app: Harness) -> None:
    app = embedded_app
    order_id = create_order(app)
    add_ok(app, order_id)
    payment_id = checkout(app, order_id).json["paymentId"]
    to_payment_outcome(app, payment_id)
    bus = app.bus()

    first = receive_one(app, app.payment_events_path())
    orders.on_payment_event(to_function_message(first))
    bus.abandon(first)  # e.g. the lock was lost before the host completed the message
    again = receive_one(app, app.payment_events_path())
    assert again.message_id == first.message_id and again.delivery_count == 2
    orders.on_payment_event(to_function_message(again))
    bus.complete(again)

    assert types(events_of(app, order_id)).count("OrderPaid") == 1
    assert get_order(app, order_id).json["status"] == "Paid"


def test_a_redelivered_authorization_command_decides_once(embedded_app: Harness) -> None:
    app = embedded_app
    order_id = create_order(app)
    add_ok(app, order_id)
    payment_id = checkout(app, order_id).json["paymentId"]
    app.http(payments.authorize_payment, "POST", f"/payments/{payment_id}/authorize",
             route_params={"paymentId": payment_id})
    app.pump(payments.payments_publisher, "payments")
    command = receive_one(app, app.authorizations_queue())
    payments.payments_acquirer(to_function_message(command))
    payments.payments_acquirer(to_function_message(command))
    app.bus().complete(command)
    assert [e["type"] for e in payment_events(app, payment_id).json] == [
        "PaymentCreated", "PaymentStarted", "PaymentCompleted"]


def test_a_declined_payment_returns_the_order_to_created_and_checkout_can_be_retried(
    embedded_app: Harness,
) -> None:
    app = embedded_app
    order_id = create_order(app)
    add_ok(app, order_id, "cheap", 1, 500)
    expensive = add_ok(app, order_id, "expensive", 1, 150_000)
    declined = checkout(app, order_id).json
    assert declined["amount"] == 150_500

    app.authorize_and_settle(declined["paymentId"])

    order = get_order(app, order_id).json
    assert order["status"] == "Created" and order["paymentId"] is None
    assert len(order["items"]) == 2
    assert types(events_of(app, order_id))[-1] == "OrderPaymentFailed"
    assert events_of(app, order_id)[-1]["data"]["paymentId"] == declined["paymentId"]

    app.http(orders.delete_item, "DELETE", f"/orders/{order_id}/items/{expensive}",
             route_params={"orderId": order_id, "cartItemId": expensive})
    retry = checkout(app, order_id)
    assert retry.status == 200
    assert retry.json["paymentId"] != declined["paymentId"] and retry.json["amount"] == 500

    app.authorize_and_settle(retry.json["paymentId"])
    order = get_order(app, order_id).json
    assert order["status"] == "Paid" and order["paymentId"] == retry.json["paymentId"]


def test_checkout_right_after_a_decline_gets_a_new_payment(embedded_app: Harness) -> None:
    app = embedded_app
    order_id = create_order(app)
    add_ok(app, order_id, "p", 1, 200_000)
    first = checkout(app, order_id).json["paymentId"]
    app.authorize_and_settle(first)
    second = checkout(app, order_id)
    assert second.status == 200 and second.json["paymentId"] != first
    assert [e["type"] for e in payment_events(app, second.json["paymentId"]).json] == [
        "PaymentCreated"]


@pytest.mark.parametrize(("subject", "body", "version"), [
    ("PaymentRefunded", {"paymentId": "p", "orderId": "o"}, 1),  # unknown contract
    ("PaymentCompleted", {"paymentId": "p", "orderId": "o", "amount": 1, "currency": "EUR",
                          "authorizationCode": "A"}, 2),  # unknown version
    ("PaymentCompleted", {"paymentId": "p", "orderId": "o", "amount": 1, "currency": "EUR",
                          "authorizationCode": "A"}, None),  # no contractVersion
    ("PaymentCompleted", {"paymentId": "p", "orderId": "o"}, 1),  # missing fields
    ("PaymentCompleted", {"paymentId": "p", "orderId": "o", "amount": "1", "currency": "EUR",
                          "authorizationCode": "A"}, 1),  # wrong type
    ("PaymentFailed", b"not json", 1),
])
def test_an_unreadable_message_makes_the_consumers_raise(
    embedded_app: Harness, subject: str, body: Any, version: Any
) -> None:
    message = service_bus_message(subject, body, version)
    with pytest.raises(ContractError):
        orders.on_payment_event(message)
    with pytest.raises(ContractError):
        payments.payments_acquirer(service_bus_message(subject, body, version))


def test_the_acquirer_refuses_a_message_that_is_not_an_authorization(
    embedded_app: Harness,
) -> None:
    message = service_bus_message("PaymentCompleted", {
        "paymentId": "p", "orderId": "o", "amount": 1, "currency": "EUR",
        "authorizationCode": "A"})
    with pytest.raises(ValueError, match="PaymentCompleted"):
        payments.payments_acquirer(message)


def test_a_payment_outcome_for_an_unknown_order_raises(embedded_app: Harness) -> None:
    message = service_bus_message("PaymentCompleted", {
        "paymentId": "p", "orderId": "no-such-order", "amount": 1, "currency": "EUR",
        "authorizationCode": "A"})
    with pytest.raises(StreamNotFound):
        orders.on_payment_event(message)


def test_a_poison_message_is_abandoned_then_dead_lettered(embedded_app: Harness) -> None:
    app = embedded_app
    bus = app.bus()
    path = app.payment_events_path()
    topic, _, subscription = path.split("/")
    bus.declare_subscription(topic, subscription, max_delivery_count=2)
    bus.send([OutboundMessage(destination=topic, message_id="bad-1", subject="PaymentRefunded",
                              body={"paymentId": "p"}, correlation_id="corr",
                              application_properties={CONTRACT_VERSION_PROPERTY: 1})])

    for attempt in (1, 2):
        with pytest.raises(ContractError):
            app.deliver(orders.on_payment_event, path)
        dead = bus.peek_dead_letters(path)
        assert len(dead) == attempt - 1  # dead-lettered on the last allowed delivery

    assert app.deliver(orders.on_payment_event, path) == []
    [letter] = bus.peek_dead_letters(path)
    assert letter.message_id == "bad-1" and letter.reason == MAX_DELIVERY_COUNT_EXCEEDED


def test_correlation_flows_across_both_services(embedded_app: Harness) -> None:
    app = embedded_app
    trace = {"X-Correlation-Id": "trace-order-1"}
    order_id = create_order(app, headers=trace)
    result = app.http(orders.add_item, "POST", f"/orders/{order_id}/items",
                      {"productId": "p", "quantity": 1, "unitPrice": 100},
                      route_params={"orderId": order_id}, headers=trace)
    assert result.status == 201
    payment_id = checkout(app, order_id, headers=trace).json["paymentId"]
    app.authorize_and_settle(payment_id, headers=trace)

    payment_stream = payment_events(app, payment_id).json
    assert types(payment_stream) == ["PaymentCreated", "PaymentStarted", "PaymentCompleted"]
    assert {e["correlationId"] for e in payment_stream} == {"trace-order-1"}
    # The acquirer's decision was caused by the AuthorizePayment message.
    assert payment_stream[2]["causationId"] == f"payment-{payment_id}:2"

    order_stream = events_of(app, order_id)
    assert {e["correlationId"] for e in order_stream} == {"trace-order-1"}
    paid = order_stream[-1]
    assert paid["type"] == "OrderPaid"
    assert paid["causationId"] == f"payment-{payment_id}:3"  # the PaymentCompleted message id


def test_a_message_without_correlation_id_correlates_with_itself(embedded_app: Harness) -> None:
    app = embedded_app
    order_id = create_order(app)
    add_ok(app, order_id)
    payment_id = checkout(app, order_id).json["paymentId"]
    message = ServiceBusMessage(
        body=json.dumps({"paymentId": payment_id, "orderId": order_id, "amount": 100,
                         "currency": "EUR", "authorizationCode": "AUTH-1"}).encode(),
        message_id="external-1", subject="PaymentCompleted",
        application_properties={CONTRACT_VERSION_PROPERTY: 1},
        user_properties={CONTRACT_VERSION_PROPERTY: 1})
    orders.on_payment_event(message)
    paid = events_of(app, order_id)[-1]
    assert paid["type"] == "OrderPaid"
    assert paid["correlationId"] == paid["causationId"] == "external-1"
    assert runtime.services().stores("orders").dead_letters.list_letters() == []
