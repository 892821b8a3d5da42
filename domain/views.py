"""Read models (the views of the HTTP API), as pure projections of domain events.

Each function takes the current view document (None before the first event), one event and its
stream version, and returns the new document. They never look at the version for idempotency:
skipping already-applied events is the kernel's job (eventstore.projection).
"""

from __future__ import annotations

from typing import Any

from domain import orders, payments

View = dict[str, Any]


def apply_order_event(view: View | None, event: orders.OrderEvent, version: int) -> View:
    if isinstance(event, orders.OrderCreated):
        return {
            "orderId": event.order_id,
            "customerId": event.customer_id,
            "status": orders.OrderStatus.CREATED.value,
            "items": [],
            "total": 0,
            "currency": event.currency,
            "paymentId": None,
            "version": version,
        }
    if view is None:
        raise ValueError(f"{type(event).__name__} at version {version} before OrderCreated")
    new = {**view, "version": version}
    match event:
        case orders.ItemAddedToCart():
            new["items"] = [*view["items"], {
                "cartItemId": event.cart_item_id,
                "productId": event.product_id,
                "quantity": event.quantity,
                "unitPrice": event.unit_price,
            }]
        case orders.ItemDeletedFromCart():
            new["items"] = [i for i in view["items"] if i["cartItemId"] != event.cart_item_id]
        case orders.OrderPreparedToPay():
            new["status"] = orders.OrderStatus.PREPARED_TO_PAY.value
            new["paymentId"] = event.payment_id
        case orders.OrderPaid():
            new["status"] = orders.OrderStatus.PAID.value
        case orders.OrderPaymentFailed():
            new["status"] = orders.OrderStatus.CREATED.value
            new["paymentId"] = None
            new["lastPaymentFailure"] = {"paymentId": event.payment_id, "reason": event.reason}
        case orders.OrderCancelled():
            new["status"] = orders.OrderStatus.CANCELLED.value
            new["cancelReason"] = event.reason
        case _:
            raise TypeError(f"not an order event: {event!r}")
    new["total"] = sum(i["quantity"] * i["unitPrice"] for i in new["items"])
    return new


def apply_payment_event(view: View | None, event: payments.PaymentEvent, version: int) -> View:
    if isinstance(event, payments.PaymentCreated):
        return {
            "paymentId": event.payment_id,
            "referenceId": event.reference_id,
            "status": payments.PaymentStatus.CREATED.value,
            "amount": event.amount,
            "currency": event.currency,
            "version": version,
        }
    if view is None:
        raise ValueError(f"{type(event).__name__} at version {version} before PaymentCreated")
    new = {**view, "version": version}
    match event:
        case payments.PaymentStarted():
            new["status"] = payments.PaymentStatus.STARTED.value
        case payments.PaymentCompleted():
            new["status"] = payments.PaymentStatus.COMPLETED.value
            new["authorizationCode"] = event.authorization_code
        case payments.PaymentFailed():
            new["status"] = payments.PaymentStatus.FAILED.value
            new["failureReason"] = event.reason
        case _:
            raise TypeError(f"not a payment event: {event!r}")
    return new
