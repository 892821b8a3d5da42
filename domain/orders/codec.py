"""How an order is stored: its stream name and the codec of its events.

Written out field by field rather than derived from the dataclasses: the stored format must not
change when a Python attribute is renamed.
"""

from __future__ import annotations

from domain.codec import EventCodec, EventSchema, StreamCategory, stored_int, stored_str
from domain.orders.decider import (
    ItemAddedToCart,
    ItemDeletedFromCart,
    OrderCancelled,
    OrderCreated,
    OrderEvent,
    OrderPaid,
    OrderPaymentFailed,
    OrderPreparedToPay,
)

ORDER_STREAM = StreamCategory("order")

order_codec: EventCodec[OrderEvent] = EventCodec("order", OrderEvent, [
    EventSchema[OrderCreated](
        "OrderCreated", OrderCreated, version=1,
        encode=lambda e: {"orderId": e.order_id, "customerId": e.customer_id,
                          "currency": e.currency},
        decode=lambda d: OrderCreated(order_id=stored_str(d, "orderId"),
                                      customer_id=stored_str(d, "customerId"),
                                      currency=stored_str(d, "currency")),
    ),
    EventSchema[ItemAddedToCart](
        "ItemAddedToCart", ItemAddedToCart, version=1,
        encode=lambda e: {"cartItemId": e.cart_item_id, "productId": e.product_id,
                          "quantity": e.quantity, "unitPrice": e.unit_price},
        decode=lambda d: ItemAddedToCart(cart_item_id=stored_str(d, "cartItemId"),
                                         product_id=stored_str(d, "productId"),
                                         quantity=stored_int(d, "quantity"),
                                         unit_price=stored_int(d, "unitPrice")),
    ),
    EventSchema[ItemDeletedFromCart](
        "ItemDeletedFromCart", ItemDeletedFromCart, version=1,
        encode=lambda e: {"cartItemId": e.cart_item_id},
        decode=lambda d: ItemDeletedFromCart(cart_item_id=stored_str(d, "cartItemId")),
    ),
    EventSchema[OrderPreparedToPay](
        "OrderPreparedToPay", OrderPreparedToPay, version=1,
        encode=lambda e: {"paymentId": e.payment_id, "amount": e.amount, "currency": e.currency},
        decode=lambda d: OrderPreparedToPay(payment_id=stored_str(d, "paymentId"),
                                            amount=stored_int(d, "amount"),
                                            currency=stored_str(d, "currency")),
    ),
    EventSchema[OrderPaid](
        "OrderPaid", OrderPaid, version=1,
        encode=lambda e: {"paymentId": e.payment_id},
        decode=lambda d: OrderPaid(payment_id=stored_str(d, "paymentId")),
    ),
    EventSchema[OrderPaymentFailed](
        "OrderPaymentFailed", OrderPaymentFailed, version=1,
        encode=lambda e: {"paymentId": e.payment_id, "reason": e.reason},
        decode=lambda d: OrderPaymentFailed(payment_id=stored_str(d, "paymentId"),
                                            reason=stored_str(d, "reason")),
    ),
    EventSchema[OrderCancelled](
        "OrderCancelled", OrderCancelled, version=1,
        encode=lambda e: {"reason": e.reason},
        decode=lambda d: OrderCancelled(reason=stored_str(d, "reason")),
    ),
])
