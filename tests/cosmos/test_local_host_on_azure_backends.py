"""`make run BACKEND=azure`: the local host with the Cosmos DB and Service Bus adapters.

Every function runs in this mode: the HTTP functions over HTTP, the change-feed functions fed
from the Cosmos-protocol test server's change feed by the lease-based processor (leases in the
leases container), the Service Bus functions from the AMQP test broker through the Service Bus
SDK's receivers. The original scenario reaches Paid.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.localhost import LocalHost, poll
from tests.support.amqp_broker import AmqpTestBroker
from tests.support.cosmos_server import CosmosServerInfo

pytestmark = [pytest.mark.cosmos, pytest.mark.e2e]


@pytest.fixture
def azure_host(cosmos_server: CosmosServerInfo, tmp_path: Path) -> Iterator[LocalHost]:
    suffix = uuid.uuid4().hex[:8]
    with AmqpTestBroker() as broker:
        # The entities Bicep creates in Azure (duplicate detection on all of them).
        for topic in ("orders", "payments"):
            broker.declare_topic(topic, duplicate_detection_window=600)
        broker.declare_subscription("payments", "orders")
        broker.declare_queue("payment-authorizations", duplicate_detection_window=600)
        host = LocalHost(tmp_path / "unused", backend="azure", env={
            **cosmos_server.settings, "SERVICEBUS": broker.connection_string,
            "ORDERS_DATABASE": f"orders-{suffix}", "PAYMENTS_DATABASE": f"payments-{suffix}",
        }).start()
        yield host
        host.stop()


def test_http_functions_work_on_the_azure_backends(azure_host: LocalHost) -> None:
    host = azure_host
    created = host.request("POST", "/orders", json={"customerId": "c-1", "currency": "EUR"})
    assert created.status_code == 201, created.text
    order_id = created.json()["orderId"]
    for n in range(1, 3):
        added = host.request("POST", f"/orders/{order_id}/items",
                             json={"productId": f"p{n}", "quantity": n, "unitPrice": 100})
        assert added.status_code == 201, added.text
    checkout = host.request("POST", f"/orders/{order_id}/checkout")  # calls PUT /payments here
    assert checkout.status_code == 200, checkout.text
    payment_id = checkout.json()["paymentId"]
    assert host.request("POST", f"/payments/{payment_id}/authorize").status_code == 202

    order = host.request("GET", f"/orders/{order_id}")
    assert order.status_code == 200
    assert (order.json()["status"], order.json()["total"], order.json()["version"]) == (
        "PreparedToPay", 300, 4)
    payment = host.request("GET", f"/payments/{payment_id}").json()
    assert (payment["status"], payment["amount"], payment["referenceId"]) == (
        "Started", 300, order_id)
    events = host.request("GET", f"/orders/{order_id}/events").json()
    assert [e["type"] for e in events] == ["OrderCreated", "ItemAddedToCart", "ItemAddedToCart",
                                           "OrderPreparedToPay"]
    missing = host.request("GET", "/orders/not-there")
    assert missing.status_code == 404
    assert "request(s)" in host.log() and "RU" in host.log()  # per-command cost is logged


def test_the_original_scenario_reaches_paid_on_the_azure_backends(azure_host: LocalHost) -> None:
    host = azure_host
    order_id = host.request("POST", "/orders",
                            json={"customerId": "c-2", "currency": "EUR"}).json()["orderId"]
    items = [host.request("POST", f"/orders/{order_id}/items",
                          json={"productId": f"product-{n}", "quantity": n, "unitPrice": 1250}
                          ).json() for n in range(1, 5)]
    deleted = host.request("DELETE", f"/orders/{order_id}/items/{items[1]['cartItemId']}")
    assert deleted.status_code == 200
    payment_id = host.request("POST", f"/orders/{order_id}/checkout").json()["paymentId"]
    assert host.request("POST", f"/payments/{payment_id}/authorize").status_code == 202

    # Paid only through the asynchronous half: the payments publisher (change feed) sends the
    # authorization command, the acquirer (a Service Bus function) decides, the publisher sends
    # PaymentCompleted, Orders' Service Bus function records OrderPaid.
    order = host.wait_for_status("orders", order_id, "Paid", timeout=60)
    assert order["total"] == (1 + 3 + 4) * 1250 and order["paymentId"] == payment_id
    assert host.wait_for_status("payments", payment_id, "Completed")["status"] == "Completed"
    events = host.request("GET", f"/orders/{order_id}/events").json()
    assert [e["version"] for e in events] == list(range(1, 9))
    assert events[-1]["type"] == "OrderPaid"
    log = host.log()
    assert "Functions.payments_acquirer' (Succeeded" in log
    assert "Functions.orders_on_payment_event' (Succeeded" in log
    # Every change-feed function ran through the lease-based processor on the Cosmos DB leases.
    for function in ("orders_projector", "orders_publisher", "payments_projector",
                     "payments_publisher"):
        assert re.search(rf"Lease '{function}' range [0-9a-f]{{12}}/1 acquired by ", log), function
    # The projector read the whole stream from the change feed: the view catches up.
    def projected() -> bool:
        response = host.request("GET", f"/orders/{order_id}")
        return (response.headers["X-View-Source"] == "projection"
                and response.json()["version"] == 8)

    poll(projected, 30, "the order projection to reach version 8")
