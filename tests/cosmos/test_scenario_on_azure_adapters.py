"""The original scenario on the production adapters: Cosmos DB (over the azure-cosmos SDK, against
the Cosmos-protocol test server) and Service Bus (over the azure-servicebus SDK and AMQP 1.0,
against the test broker).

The HTTP functions write to the server; the change-feed functions get DocumentLists built from
the documents actually stored there, read back through the SDK per stream (so that each step
feeds exactly the commits it is about); the Service Bus functions get the messages the broker
actually received from the publisher.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.functions.servicebus import ServiceBusMessage

from app.adapters.payments_http import HttpPaymentsGateway
from app.bootstrap import bootstrap
from app.settings import Settings
from eventstore.adapters.cosmos import REQUEST_METER, cosmos_client_from_settings
from functions import orders, payments, runtime
from tests.functions.conftest import Harness, example_settings, http
from tests.support.amqp_broker import AmqpTestBroker, ReceivedAmqpMessage
from tests.support.cosmos_server import CosmosServerInfo

pytestmark = [pytest.mark.cosmos, pytest.mark.servicebus]


@pytest.fixture
def broker() -> Iterator[AmqpTestBroker]:
    with AmqpTestBroker() as running:
        yield running


@pytest.fixture
def azure_app(cosmos_server: CosmosServerInfo, broker: AmqpTestBroker,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    runtime.shutdown()
    suffix = uuid.uuid4().hex[:8]
    settings = {**example_settings(), **cosmos_server.settings,
                "BACKEND": "azure", "SERVICEBUS": broker.connection_string,
                "ORDERS_DATABASE": f"orders-{suffix}", "PAYMENTS_DATABASE": f"payments-{suffix}",
                "PAYMENTS_ACQUIRER_DELAY_MS": "0"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    gateway = HttpPaymentsGateway("http://payments.test/api",
                                  transport=httpx.MockTransport(Harness._call_payments_put))
    runtime.install(bootstrap(Settings.from_environ(settings), payments_gateway=gateway))
    yield settings
    runtime.shutdown()


def stored_documents(settings: dict[str, str], database: str, stream_id: str
                     ) -> list[dict[str, Any]]:
    """The commit documents as stored, system properties included, read through the SDK."""
    container = cosmos_client_from_settings(settings).get_database_client(database) \
        .get_container_client("events")
    documents = list(container.query_items(
        "SELECT * FROM c WHERE c.streamId = @streamId",
        parameters=[{"name": "@streamId", "value": stream_id}], partition_key=stream_id))
    return sorted(documents, key=lambda d: int(d["version"]))


def feed(function: Callable[[func.DocumentList], None], documents: list[dict[str, Any]]) -> None:
    function(func.DocumentList([func.Document.from_dict(d) for d in documents]))


def as_function_message(received: ReceivedAmqpMessage) -> ServiceBusMessage:
    """What the Functions worker hands a Service Bus-triggered function for this message."""
    assert received.message_id is not None
    return ServiceBusMessage(
        body=received.body, message_id=received.message_id, subject=received.subject,
        content_type=received.content_type, correlation_id=received.correlation_id,
        application_properties=received.application_properties,
        user_properties=received.application_properties, delivery_count=1,
        sequence_number=received.sequence_number,
        enqueued_time_utc=received.enqueued_time_utc)


def test_original_scenario_on_cosmos_and_service_bus(azure_app: dict[str, str],
                                                     broker: AmqpTestBroker) -> None:
    trace = {"X-Correlation-Id": "trace-azure-1"}
    created = http(orders.create_order, "POST", "/orders",
                   {"customerId": "c-1", "currency": "EUR"}, headers=trace)
    assert created.status == 201, created
    order_id = created.json["orderId"]
    route = {"orderId": order_id}
    for n in range(1, 5):
        added = http(orders.add_item, "POST", f"/orders/{order_id}/items",
                     {"productId": f"p-{n}", "quantity": n, "unitPrice": 100},
                     route_params=route, headers=trace)
        assert added.status == 201, added
    deleted = http(orders.delete_item, "DELETE", f"/orders/{order_id}/items/item-2",
                   route_params={**route, "cartItemId": "item-2"}, headers=trace)
    assert deleted.json == {"version": 6}
    checkout = http(orders.checkout, "POST", f"/orders/{order_id}/checkout", route_params=route,
                    headers=trace)
    assert checkout.status == 200 and checkout.json["amount"] == 800, checkout
    payment_id = checkout.json["paymentId"]
    authorized = http(payments.authorize_payment, "POST", f"/payments/{payment_id}/authorize",
                      route_params={"paymentId": payment_id}, headers=trace)
    assert authorized.status == 202, authorized

    payments_db, orders_db = azure_app["PAYMENTS_DATABASE"], azure_app["ORDERS_DATABASE"]
    payment_stream, order_stream = f"payment-{payment_id}", f"order-{order_id}"
    payment_docs = stored_documents(azure_app, payments_db, payment_stream)
    assert [d["id"] for d in payment_docs] == [f"{payment_stream}:1", f"{payment_stream}:2"]
    assert "_etag" in payment_docs[0]  # real stored documents, system properties and all

    feed(payments.payments_publisher, payment_docs)
    [command] = broker.wait_for(azure_app["AUTHORIZATIONS_QUEUE"], 1)
    assert (command.message_id, command.subject, command.content_type) == (
        f"{payment_stream}:2", "AuthorizePayment", "application/json")
    assert command.application_properties["contractVersion"] == 1
    assert command.correlation_id == "trace-azure-1"
    assert command.json() == {"paymentId": payment_id, "referenceId": order_id, "amount": 800,
                              "currency": "EUR"}

    payments.payments_acquirer(as_function_message(command))
    completed_docs = stored_documents(azure_app, payments_db, payment_stream)[2:]
    assert [d["events"][0]["type"] for d in completed_docs] == ["PaymentCompleted"]
    feed(payments.payments_publisher, completed_docs)
    [outcome] = broker.wait_for(azure_app["PAYMENTS_TOPIC"], 1)
    assert (outcome.subject, outcome.message_id) == ("PaymentCompleted", f"{payment_stream}:3")

    orders.on_payment_event(as_function_message(outcome))
    orders.on_payment_event(as_function_message(outcome))  # redelivery: a no-op
    order_docs = stored_documents(azure_app, orders_db, order_stream)
    assert [d["events"][-1]["type"] for d in order_docs][-2:] == ["OrderPreparedToPay",
                                                                  "OrderPaid"]
    assert order_docs[-1]["causationId"] == f"{payment_stream}:3"
    assert {d["correlationId"] for d in order_docs} == {"trace-azure-1"}

    feed(orders.orders_projector, order_docs)
    feed(orders.orders_projector, order_docs)  # the change feed delivers at least once
    feed(payments.payments_projector, stored_documents(azure_app, payments_db, payment_stream))
    feed(orders.orders_publisher, order_docs)
    published = broker.wait_for(azure_app["ORDERS_TOPIC"], 2)
    assert [m.subject for m in published] == ["OrderPlaced", "OrderPaid"]

    view = http(orders.get_order, "GET", f"/orders/{order_id}", route_params=route)
    assert view.headers["X-View-Source"] == "projection"
    assert view.json["status"] == "Paid" and view.json["total"] == 800
    assert [i["cartItemId"] for i in view.json["items"]] == ["item-1", "item-3", "item-4"]
    payment_view = http(payments.get_payment, "GET", f"/payments/{payment_id}",
                        route_params={"paymentId": payment_id})
    assert payment_view.json["status"] == "Completed"
    assert payment_view.headers["X-View-Source"] == "projection"


def test_a_warm_command_costs_one_cosmos_request_and_a_cold_one_two(
        azure_app: dict[str, str]) -> None:
    from domain.orders import ORDER_STREAM, AddItemToCart, CreateOrder, order_codec, order_decider
    from eventstore.commands import CommandContext, CommandProcessor

    events = runtime.services().stores("orders").events
    CommandProcessor(events, ORDER_STREAM, order_decider, order_codec).execute(
        "cost", CreateOrder("cost", "c", "EUR"), CommandContext("c", "k1"))
    # A fresh process: nothing cached.
    processor = CommandProcessor(events, ORDER_STREAM, order_decider, order_codec)
    with REQUEST_METER.measure() as cold:
        processor.execute("cost", AddItemToCart("p", 1, 100), CommandContext("c", "k2"))
    with REQUEST_METER.measure() as warm:
        processor.execute("cost", AddItemToCart("p", 1, 100), CommandContext("c", "k3"))
    assert (cold.requests, warm.requests) == (2, 1)
    assert warm.request_charge >= 0 and cold.request_charge >= warm.request_charge
