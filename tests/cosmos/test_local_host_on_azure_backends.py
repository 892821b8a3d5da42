"""`make run BACKEND=azure`: the local host with the Cosmos DB and Service Bus adapters.

The HTTP functions must work in this mode; this drives them over HTTP against the Cosmos-protocol
test server (and the AMQP test broker for the publisher's connection string).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.localhost import LocalHost
from tests.support.amqp_broker import AmqpTestBroker
from tests.support.cosmos_server import CosmosServerInfo

pytestmark = [pytest.mark.cosmos, pytest.mark.e2e]


@pytest.fixture
def azure_host(cosmos_server: CosmosServerInfo, tmp_path: Path) -> Iterator[LocalHost]:
    suffix = uuid.uuid4().hex[:8]
    with AmqpTestBroker() as broker:
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
