"""The operator CLI on the Azure backend: Cosmos DB (the test peer) and Service Bus (the test
broker) through the same adapters as in Azure. Each command runs against data made through the
app's own functions."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusClient
from typer.testing import CliRunner, Result

from eventstore.adapters.servicebus import ServiceBusConnection, ServiceBusPublisher
from eventstore.ports import OutboundMessage
from functions import orders, runtime
from ops.cli import app
from tests.functions.conftest import example_settings, http
from tests.support.amqp_broker import AmqpTestBroker
from tests.support.cosmos_server import CosmosServerInfo

pytestmark = [pytest.mark.cosmos, pytest.mark.servicebus]
runner = CliRunner()


@pytest.fixture
def azure_env(cosmos_server: CosmosServerInfo, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[tuple[dict[str, str], AmqpTestBroker]]:
    with AmqpTestBroker() as broker:
        broker.declare_topic("payments")
        broker.declare_subscription("payments", "orders")
        broker.declare_queue("payment-authorizations")
        suffix = uuid.uuid4().hex[:8]
        settings = {**example_settings(), **cosmos_server.settings, "BACKEND": "azure",
                    "SERVICEBUS": broker.connection_string,
                    "ORDERS_DATABASE": f"orders-{suffix}",
                    "PAYMENTS_DATABASE": f"payments-{suffix}"}
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        runtime.shutdown()
        try:
            yield settings, broker
        finally:
            runtime.shutdown()


def ops(*args: str) -> Result:
    return runner.invoke(app, ["--backend", "azure", *args], env={"COLUMNS": "240"},
                         catch_exceptions=False)


def test_every_command_works_on_cosmos_and_service_bus(
    azure_env: tuple[dict[str, str], AmqpTestBroker],
) -> None:
    settings, broker = azure_env
    created = http(orders.create_order, "POST", "/orders",
                   {"customerId": "c-1", "currency": "EUR"})
    order_id = created.json["orderId"]
    http(orders.add_item, "POST", f"/orders/{order_id}/items",
         {"productId": "p", "quantity": 1, "unitPrice": 700}, route_params={"orderId": order_id})
    runtime.shutdown()

    listed = ops("streams", "orders")
    assert listed.exit_code == 0 and re.search(rf"order-{order_id}\s+│\s+2\s+│\s+2",
                                               listed.output), listed.output
    shown = ops("stream", "orders", f"order-{order_id}")
    assert shown.exit_code == 0 and "ItemAddedToCart" in shown.output
    lag = ops("consumers", "orders")
    row = r"orders-projector-v1\s+│\s+[0-9a-f]{12}\s+│\s+\(never read\)\s+│\s+-\s+│\s+2\s+│\s+2"
    assert re.search(row, lag.output), lag.output
    rebuilt = ops("rebuild", "orders")
    assert rebuilt.exit_code == 0 and "rebuilt 1 view(s) of orders from 2 event(s)" in \
        rebuilt.output, rebuilt.output

    # A message the broker dead-lettered on the queue Payments consumes.
    connection = ServiceBusConnection.from_settings(settings)
    publisher = ServiceBusPublisher.from_settings(connection)
    publisher.publish([OutboundMessage("payment-authorizations", "payment-x:2",
                                       "AuthorizePayment", {"paymentId": "x"}, "c",
                                       {"contractVersion": 99})])
    publisher.close()
    with ServiceBusClient.from_connection_string(broker.connection_string) as client, \
            client.get_queue_receiver("payment-authorizations", prefetch_count=0) as receiver:
        (message,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.dead_letter_message(message, reason="MaxDeliveryCountExceeded",
                                     error_description="gave up")
    letters = ops("deadletters", "list", "payments")
    assert "payment-authorizations#" in letters.output, letters.output
    letter_id = re.findall(r"(payment-authorizations#\d+)", letters.output)[0]
    replayed = ops("deadletters", "replay", "payments", letter_id)
    assert replayed.exit_code == 1 and "failed again, parked: ContractError" in replayed.output
    assert broker.dead_lettered("payment-authorizations") == []
    parked = ops("deadletters", "list", "payments")
    assert "bus:payment-authorizations" in parked.output, parked.output
    discarded = ops("deadletters", "discard", "payments", "--all")
    assert discarded.exit_code == 0 and "discarded" in discarded.output
    assert "no dead letters" in ops("deadletters", "list", "payments").output
