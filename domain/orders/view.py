"""The order view (the read model of ``GET /orders/{orderId}``), as a pure projection.

Takes the current view document (None before the first event), one event and its stream version,
and returns the new document. It never looks at the version for idempotency: skipping events
already applied is the kernel's job (eventstore.projection).
"""

from __future__ import annotations

from typing import Any

from domain.orders.decider import (
    ItemAddedToCart,
    ItemDeletedFromCart,
    OrderCancelled,
    OrderCreated,
    OrderEvent,
    OrderPaid,
    OrderPaymentFailed,
    OrderPreparedToPay,
    OrderStatus,
)

View = dict[str, Any]


def apply_order_event(view: View | None, event: OrderEvent, version: int) -> View:
    if isinstance(event, OrderCreated):
        return {
            "orderId": event.order_id,
            "customerId": event.customer_id,
            "status": OrderStatus.CREATED.value,
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
        case ItemAddedToCart():
            new["items"] = [*view["items"], {
                "cartItemId": event.cart_item_id,
                "productId": event.product_id,
                "quantity": event.quantity,
                "unitPrice": event.unit_price,
            }]
        case ItemDeletedFromCart():
            new["items"] = [i for i in view["items"] if i["cartItemId"] != event.cart_item_id]
        case OrderPreparedToPay():
            new["status"] = OrderStatus.PREPARED_TO_PAY.value
            new["paymentId"] = event.payment_id
        case OrderPaid():
            new["status"] = OrderStatus.PAID.value
        case OrderPaymentFailed():
            new["status"] = OrderStatus.CREATED.value
            new["paymentId"] = None
            new["lastPaymentFailure"] = {"paymentId": event.payment_id, "reason": event.reason}
        case OrderCancelled():
            new["status"] = OrderStatus.CANCELLED.value
            new["cancelReason"] = event.reason
        case _:
            raise TypeError(f"not an order event: {event!r}")
    new["total"] = sum(i["quantity"] * i["unitPrice"] for i in new["items"])
    return new
