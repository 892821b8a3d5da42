"""The read models of the HTTP API, as projections of domain events."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import orders, payments
from domain.orders import apply_order_event
from domain.payments import apply_payment_event


def order_view(events: list[orders.OrderEvent]) -> dict[str, Any]:
    view: dict[str, Any] | None = None
    for version, event in enumerate(events, start=1):
        view = apply_order_event(view, event, version)
    assert view is not None
    return view


CREATED = orders.OrderCreated(order_id="o1", customer_id="c1", currency="EUR")


def item(n: int, quantity: int = 1, price: int = 100) -> orders.ItemAddedToCart:
    return orders.ItemAddedToCart(cart_item_id=f"item-{n}", product_id=f"p{n}",
                                  quantity=quantity, unit_price=price)


def test_order_view_follows_the_cart_and_the_status() -> None:
    view = order_view([CREATED, item(1, 2, 150), item(2), orders.ItemDeletedFromCart("item-1")])
    assert view == {"orderId": "o1", "customerId": "c1", "status": "Created",
                    "items": [{"cartItemId": "item-2", "productId": "p2", "quantity": 1,
                               "unitPrice": 100}],
                    "total": 100, "currency": "EUR", "paymentId": None, "version": 4}
    prepared = order_view([CREATED, item(1), orders.OrderPreparedToPay("pay-1", 100, "EUR")])
    assert (prepared["status"], prepared["paymentId"]) == ("PreparedToPay", "pay-1")
    paid = order_view([CREATED, item(1), orders.OrderPreparedToPay("pay-1", 100, "EUR"),
                       orders.OrderPaid("pay-1")])
    assert (paid["status"], paid["paymentId"], paid["version"]) == ("Paid", "pay-1", 4)


def test_a_failed_payment_returns_the_view_to_created_and_says_why() -> None:
    view = order_view([CREATED, item(1), orders.OrderPreparedToPay("pay-1", 100, "EUR"),
                       orders.OrderPaymentFailed("pay-1", "declined")])
    assert view["status"] == "Created" and view["paymentId"] is None
    assert view["lastPaymentFailure"] == {"paymentId": "pay-1", "reason": "declined"}
    assert view["total"] == 100


def test_cancelled_view() -> None:
    view = order_view([CREATED, orders.OrderCancelled("changed mind")])
    assert (view["status"], view["cancelReason"]) == ("Cancelled", "changed mind")


def test_payment_view_through_both_outcomes() -> None:
    created = payments.PaymentCreated(payment_id="pay-1", reference_id="o1", amount=500,
                                      currency="EUR")
    view = apply_payment_event(None, created, 1)
    view = apply_payment_event(view, payments.PaymentStarted(), 2)
    assert view["status"] == "Started"
    completed = apply_payment_event(view, payments.PaymentCompleted("AUTH-1"), 3)
    assert completed == {"paymentId": "pay-1", "referenceId": "o1", "status": "Completed",
                         "amount": 500, "currency": "EUR", "version": 3,
                         "authorizationCode": "AUTH-1"}
    failed = apply_payment_event(
        view, payments.PaymentFailed("over the limit", "amount_above_limit"), 3)
    assert (failed["status"], failed["failureReason"], failed["failureReasonCode"]) == (
        "Failed", "over the limit", "amount_above_limit")


def test_events_before_creation_and_foreign_objects_are_refused() -> None:
    with pytest.raises(ValueError, match="before OrderCreated"):
        apply_order_event(None, orders.OrderPaid("p"), 1)
    with pytest.raises(ValueError, match="before PaymentCreated"):
        apply_payment_event(None, payments.PaymentStarted(), 1)
    view = order_view([CREATED])
    with pytest.raises(TypeError):
        apply_order_event(view, payments.PaymentStarted(), 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        apply_payment_event({"version": 1}, CREATED, 2)  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.integers(1, 1000), st.integers(0, 10_000)), max_size=20),
       st.data())
def test_view_total_is_the_sum_over_the_current_items(lines: list[tuple[int, int]],
                                                       data: st.DataObject) -> None:
    events: list[orders.OrderEvent] = [CREATED]
    events += [item(n, q, p) for n, (q, p) in enumerate(lines, start=1)]
    deleted = data.draw(st.sets(st.integers(1, max(1, len(lines)))))
    events += [orders.ItemDeletedFromCart(f"item-{n}") for n in sorted(deleted) if n <= len(lines)]
    view = order_view(events)
    kept = [(q, p) for n, (q, p) in enumerate(lines, start=1) if n not in deleted]
    assert view["total"] == sum(q * p for q, p in kept)
    assert len(view["items"]) == len(kept) and view["version"] == len(events)
