"""Event and contract versions through the functions: PaymentFailed is stored at schema version
2 and published as contract version 2; Orders accepts contract versions 1 and 2 (the transition
period); payment streams stored by the version-1 code publish version-2 messages."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.messages import (
    CONTRACT_VERSION_PROPERTY,
    ContractError,
    PaymentFailedV1,
    PaymentFailedV2,
)
from eventstore.commit import Commit
from functions import orders, payments
from tests.functions.conftest import Harness
from tests.functions.test_http_functions import (
    add_ok,
    checkout,
    create_order,
    get_order,
    payment_events,
)
from tests.functions.test_servicebus_functions import (
    events_of,
    receive_one,
    service_bus_message,
    to_payment_outcome,
    types,
)
from tests.versioning.test_stored_v1_commits import stored_documents


def _declined_checkout(app: Harness) -> tuple[str, dict[str, Any]]:
    order_id = create_order(app)
    add_ok(app, order_id, "p", 1, 200_000)  # above PAYMENTS_DECLINE_ABOVE
    placed: dict[str, Any] = checkout(app, order_id).json
    return order_id, placed


def test_a_decline_is_stored_at_version_2_and_published_as_contract_version_2(
        embedded_app: Harness) -> None:
    app = embedded_app
    order_id, placed = _declined_checkout(app)
    to_payment_outcome(app, placed["paymentId"])
    failed = payment_events(app, placed["paymentId"]).json[-1]
    assert (failed["type"], failed["schemaVersion"]) == ("PaymentFailed", 2)
    assert failed["data"]["reasonCode"] == "amount_above_limit"

    message = receive_one(app, app.payment_events_path())
    assert (message.subject, message.application_properties[CONTRACT_VERSION_PROPERTY]) == (
        "PaymentFailed", 2)
    assert PaymentFailedV2.model_validate(message.body).reasonCode == "amount_above_limit"
    app.bus().abandon(message)
    app.deliver(orders.on_payment_event, app.payment_events_path())
    assert types(events_of(app, order_id))[-1] == "OrderPaymentFailed"


@pytest.mark.parametrize("version", [1, 2])
def test_orders_accepts_both_contract_versions_of_payment_failed(
        embedded_app: Harness, version: int) -> None:
    app = embedded_app
    order_id, placed = _declined_checkout(app)
    fields = {"paymentId": placed["paymentId"], "orderId": order_id,
              "amount": placed["amount"], "currency": "EUR", "reason": "declined"}
    body = (PaymentFailedV1(**fields) if version == 1 else
            PaymentFailedV2(**fields, reasonCode="unspecified")).model_dump(mode="json")
    orders.on_payment_event(service_bus_message("PaymentFailed", body, version))
    events = events_of(app, order_id)
    assert types(events)[-1] == "OrderPaymentFailed"
    assert events[-1]["data"] == {"paymentId": placed["paymentId"], "reason": "declined"}
    assert get_order(app, order_id).json["status"] == "Created"


def test_a_v2_message_without_its_reason_code_is_refused(embedded_app: Harness) -> None:
    body = {"paymentId": "p", "orderId": "o", "amount": 1, "currency": "EUR", "reason": "r"}
    with pytest.raises(ContractError, match="reasonCode"):
        orders.on_payment_event(service_bus_message("PaymentFailed", body, 2))


def test_payment_streams_stored_by_v1_publish_version_2_messages(embedded_app: Harness) -> None:
    app = embedded_app
    store = app.stores("payments").events
    for document in stored_documents("payments"):
        store.append(Commit.from_document(document))
    app.pump(payments.payments_publisher, "payments")
    outcomes = app.bus().receive(app.payment_events_path(), max_messages=20, timeout=0)
    failed = [m for m in outcomes if m.subject == "PaymentFailed"]
    assert len(failed) == 2 and len(outcomes) == 3  # and one PaymentCompleted
    for message in failed:
        assert message.application_properties[CONTRACT_VERSION_PROPERTY] == 2
        assert message.body["reasonCode"] == "amount_above_limit"
        assert "above the limit 5000" in message.body["reason"]
    assert app.stores("payments").dead_letters.list_letters() == []
