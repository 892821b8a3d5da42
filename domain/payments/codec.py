"""How a payment is stored: its stream name and the codec of its events.

Written out field by field: the stored format must not follow Python attribute renames.
"""

from __future__ import annotations

from domain.codec import EventCodec, EventSchema, StreamCategory, stored_int, stored_str
from domain.payments.decider import (
    PaymentCompleted,
    PaymentCreated,
    PaymentEvent,
    PaymentFailed,
    PaymentStarted,
)

PAYMENT_STREAM = StreamCategory("payment")

payment_codec: EventCodec[PaymentEvent] = EventCodec("payment", PaymentEvent, [
    EventSchema[PaymentCreated](
        "PaymentCreated", PaymentCreated, version=1,
        encode=lambda e: {"paymentId": e.payment_id, "referenceId": e.reference_id,
                          "amount": e.amount, "currency": e.currency},
        decode=lambda d: PaymentCreated(payment_id=stored_str(d, "paymentId"),
                                        reference_id=stored_str(d, "referenceId"),
                                        amount=stored_int(d, "amount"),
                                        currency=stored_str(d, "currency")),
    ),
    EventSchema[PaymentStarted](
        "PaymentStarted", PaymentStarted, version=1,
        encode=lambda e: {},
        decode=lambda d: PaymentStarted(),
    ),
    EventSchema[PaymentCompleted](
        "PaymentCompleted", PaymentCompleted, version=1,
        encode=lambda e: {"authorizationCode": e.authorization_code},
        decode=lambda d: PaymentCompleted(authorization_code=stored_str(d, "authorizationCode")),
    ),
    EventSchema[PaymentFailed](
        "PaymentFailed", PaymentFailed, version=1,
        encode=lambda e: {"reason": e.reason},
        decode=lambda d: PaymentFailed(reason=stored_str(d, "reason")),
    ),
])
