"""Customer details through the functions: stored apart from the log, shown by lookup when an
order is read, replaced with PUT, erased with DELETE (idempotent); events, messages and logs
carry only the customer id."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from eventstore.errors import TransientError
from eventstore.ports import PersonalData, PersonalDataStore
from functions import orders
from tests.functions.conftest import Harness, HttpResult
from tests.functions.test_change_feed_functions import commit, record
from tests.functions.test_http_functions import (
    add_ok,
    assert_problem,
    checkout,
    get_order,
    order_events,
)
from tests.functions.test_servicebus_functions import types

ADA = {"name": "Ada Lovelace-Byron", "email": "ada.lb@example.org",
       "shippingAddress": "12 St James's Square\nLondon SW1Y 4JH"}
SECRETS = ("Lovelace-Byron", "ada.lb@example.org", "St James's Square")


def create(app: Harness, customer_id: str = "cust-1", customer: Any = ADA,
           headers: dict[str, str] | None = None) -> HttpResult:
    body: dict[str, Any] = {"customerId": customer_id, "currency": "EUR"}
    if customer is not None:
        body["customer"] = customer
    return app.http(orders.create_order, "POST", "/orders", body, headers=headers)


def put_details(app: Harness, customer_id: str, body: Any) -> HttpResult:
    return app.http(orders.put_personal_data, "PUT", f"/customers/{customer_id}/personal-data",
                    body, route_params={"customerId": customer_id})


def erase(app: Harness, customer_id: str) -> HttpResult:
    return app.http(orders.erase_personal_data, "DELETE",
                    f"/customers/{customer_id}/personal-data",
                    route_params={"customerId": customer_id})


def shown_details(app: Harness, customer_id: str) -> Any:
    """What an order of the customer shows as its customer (through a new order without
    details)."""
    order_id = create(app, customer_id=customer_id, customer=None).json["orderId"]
    return get_order(app, order_id).json["customer"]


def stored_text(app: Harness) -> str:
    """Every commit, view, dead letter and bus message, as JSON text."""
    stores = app.stores("orders")
    parts: list[Any] = [c.to_document() for c in app.feed("orders")]
    parts += [c.to_document() for c in app.feed("payments")]
    parts += [stores.views.get(c.stream_id.removeprefix("order-")) for c in app.feed("orders")]
    parts += [letter.payload for letter in stores.dead_letters.list_letters()]
    return json.dumps(parts, default=repr, ensure_ascii=False)


def test_details_are_shown_by_lookup_and_never_stored_in_the_log(embedded_app: Harness) -> None:
    app = embedded_app
    created = create(app)
    assert created.status == 201, created
    order_id = created.json["orderId"]

    view = get_order(app, order_id).json
    assert view["customerId"] == "cust-1" and view["customer"] == ADA
    app.pump(orders.orders_projector, "orders")
    projected = get_order(app, order_id)
    assert projected.headers["x-view-source"] == "projection"
    assert projected.json["customer"] == ADA  # looked up, not projected
    assert order_events(app, order_id).json[0]["data"] == {
        "orderId": order_id, "customerId": "cust-1", "currency": "EUR"}
    assert not any(secret in stored_text(app) for secret in SECRETS)


def test_put_replaces_the_details_of_every_order_of_the_customer(embedded_app: Harness) -> None:
    app = embedded_app
    first = create(app).json["orderId"]
    second = create(app, customer=None).json["orderId"]  # same customer, no details given
    assert get_order(app, second).json["customer"] == ADA

    moved = {**ADA, "shippingAddress": "Horsley Towers, Surrey"}
    result = put_details(app, "cust-1", moved)
    assert result.status == 204 and result.json is None
    assert get_order(app, first).json["customer"] == moved
    assert get_order(app, second).json["customer"] == moved


def test_an_order_without_details_shows_none(embedded_app: Harness) -> None:
    order_id = create(embedded_app, customer_id="cust-anon", customer=None).json["orderId"]
    assert get_order(embedded_app, order_id).json["customer"] is None


def test_erasure_marks_the_details_erased_and_the_open_order_goes_on(
        embedded_app: Harness) -> None:
    app = embedded_app
    paid = create(app).json["orderId"]
    add_ok(app, paid, "p", 1, 500)
    app.authorize_and_settle(checkout(app, paid).json["paymentId"])
    open_order = create(app).json["orderId"]
    add_ok(app, open_order, "p", 2, 300)
    events_before = order_events(app, paid).json

    assert erase(app, "cust-1").status == 204
    again = erase(app, "cust-1")
    assert again.status == 204 and again.json is None  # idempotent

    for order_id in (paid, open_order):
        customer = get_order(app, order_id).json["customer"]
        assert customer["erased"] is True and customer["erasedAt"].endswith("Z")
        assert set(customer) == {"erased", "erasedAt"}
    assert order_events(app, paid).json == events_before  # the log is untouched
    assert get_order(app, paid).json["status"] == "Paid"

    # The flow still works for the customer's open order.
    add_ok(app, open_order, "q", 1, 100)
    app.authorize_and_settle(checkout(app, open_order).json["paymentId"])
    assert get_order(app, open_order).json["status"] == "Paid"
    assert types(order_events(app, open_order).json)[-1] == "OrderPaid"

    # Details given again after the erasure are stored again (new consent).
    assert put_details(app, "cust-1", ADA).status == 204
    assert get_order(app, paid).json["customer"] == ADA


def test_erasing_a_customer_never_seen_is_204_and_is_remembered(embedded_app: Harness) -> None:
    assert erase(embedded_app, "cust-unknown").status == 204
    order_id = create(embedded_app, customer_id="cust-unknown", customer=None).json["orderId"]
    assert get_order(embedded_app, order_id).json["customer"]["erased"] is True


@pytest.mark.parametrize(("customer", "field"), [
    ({**ADA, "email": "not-an-email"}, "customer.email"),
    ({**ADA, "name": " "}, "customer.name"),
    ({**ADA, "shippingAddress": "x" * 501}, "customer.shippingAddress"),
    ({"name": "Ada"}, "customer.email"),
    ({**ADA, "phone": "123"}, "customer.phone"),
    ("Ada", "customer"),
    ({**ADA, "name": 5}, "customer.name"),
])
def test_invalid_details_are_400_naming_the_field_and_nothing_is_stored(
        embedded_app: Harness, customer: Any, field: str) -> None:
    result = create(embedded_app, customer=customer)
    assert_problem(result, 400, field)
    assert embedded_app.feed("orders") == []
    assert shown_details(embedded_app, "cust-1") is None


def test_an_order_refused_for_its_own_fields_stores_no_details(embedded_app: Harness) -> None:
    result = embedded_app.http(orders.create_order, "POST", "/orders",
                               {"customerId": "cust-1", "currency": "XXQ", "customer": ADA})
    assert_problem(result, 400, "currency")
    assert shown_details(embedded_app, "cust-1") is None


@pytest.mark.parametrize("customer_id", ["a/b", "a\\b", "a?b", "a#b"])
def test_details_need_a_customer_id_that_can_name_a_document(
        embedded_app: Harness, customer_id: str) -> None:
    assert_problem(create(embedded_app, customer_id=customer_id), 400, "customerId")
    # Nor without details: the customer could never be given any later.
    assert_problem(create(embedded_app, customer_id=customer_id, customer=None), 400,
                   "customerId")
    assert embedded_app.feed("orders") == []
    assert_problem(put_details(embedded_app, customer_id, ADA), 400, "customerId")
    assert_problem(erase(embedded_app, customer_id), 400, "customerId")


def test_an_order_stored_before_the_rule_with_such_an_id_still_reads(
        embedded_app: Harness) -> None:
    order_id = "0b7a9c1e-0000-4000-8000-000000000001"
    embedded_app.stores("orders").events.append(commit(
        f"order-{order_id}", record(1, "OrderCreated", {
            "orderId": order_id, "customerId": "legacy/7", "currency": "EUR"})))
    shown = get_order(embedded_app, order_id)
    assert shown.status == 200
    assert (shown.json["customerId"], shown.json["customer"]) == ("legacy/7", None)


@pytest.mark.parametrize(("body", "field"), [
    ({**ADA, "email": "nope"}, "email"),
    ({"email": "a@b.co"}, "name"),
    (None, None),
])
def test_put_validates_the_details(embedded_app: Harness, body: Any, field: str | None) -> None:
    assert_problem(put_details(embedded_app, "cust-1", body), 400, field)


def test_a_retried_create_with_details_names_the_same_order(embedded_app: Harness) -> None:
    key = {"Idempotency-Key": "create-with-details-1"}
    first = create(embedded_app, headers=key)
    again = create(embedded_app, headers=key)
    assert first.status == 201 and again.json == first.json
    assert len(embedded_app.feed("orders")) == 1
    assert get_order(embedded_app, first.json["orderId"]).json["customer"] == ADA


class FailingPersonalData:
    def __init__(self, real: PersonalDataStore) -> None:
        self.real = real

    def put(self, subject_id: str, data: dict[str, Any]) -> None:
        raise TransientError("personal-data store unavailable")

    def get(self, subject_id: str) -> PersonalData | None:
        raise TransientError("personal-data store unavailable")

    def erase(self, subject_id: str) -> None:
        raise TransientError("personal-data store unavailable")


def test_an_unavailable_personal_data_store_is_503_and_no_order_is_created(
        embedded_app: Harness) -> None:
    app = embedded_app
    order_id = create(app, customer=None).json["orderId"]
    app.start(wrap_personal_data=FailingPersonalData)
    for result in (create(app), get_order(app, order_id), erase(app, "cust-1"),
                   put_details(app, "cust-1", ADA)):
        assert_problem(result, 503)
        assert result.headers["retry-after"] == "2"
    assert len(app.feed("orders")) == 1


def test_no_log_line_holds_personal_data(embedded_app: Harness,
                                         caplog: pytest.LogCaptureFixture) -> None:
    app = embedded_app
    with caplog.at_level(logging.DEBUG):
        order_id = create(app).json["orderId"]
        add_ok(app, order_id, "p", 1, 500)
        app.authorize_and_settle(checkout(app, order_id).json["paymentId"])
        app.pump(orders.orders_projector, "orders")
        app.pump(orders.orders_publisher, "orders")
        assert put_details(app, "cust-1", {**ADA, "email": "bad address"}).status == 400
        get_order(app, order_id)
        erase(app, "cust-1")
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "erased the personal data of customer cust-1" in text  # the logs were captured
    assert not [secret for secret in (*SECRETS, "bad address") if secret in text]
