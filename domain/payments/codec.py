"""How a payment is stored: its stream name and the codec of its events.

Written out field by field: the stored format must not follow Python attribute renames.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from domain.codec import (
    EventCodec,
    EventSchema,
    JsonObject,
    StreamCategory,
    stored_int,
    stored_str,
)
from domain.payments.decider import (
    FailureCode,
    PaymentCompleted,
    PaymentCreated,
    PaymentEvent,
    PaymentFailed,
    PaymentStarted,
)

PAYMENT_STREAM = StreamCategory("payment")

# PaymentFailed v1 had only the text. Its one producer, the simulated acquirer, wrote one fixed
# text per decline rule, so the text still tells the rule; any other text is unspecified.
_V1_LIMIT_DECLINE = re.compile(r"declined by the acquirer: amount \d+ is above the limit \d+")


def payment_failed_v1_to_v2(data: Mapping[str, Any]) -> JsonObject:
    reason = stored_str(data, "reason")
    code = (FailureCode.AMOUNT_ABOVE_LIMIT if _V1_LIMIT_DECLINE.fullmatch(reason)
            else FailureCode.UNSPECIFIED)
    return {**data, "reasonCode": code.value}


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
        "PaymentFailed", PaymentFailed, version=2,
        encode=lambda e: {"reason": e.reason, "reasonCode": e.reason_code},
        decode=lambda d: PaymentFailed(reason=stored_str(d, "reason"),
                                       reason_code=stored_str(d, "reasonCode")),
        upcasters={1: payment_failed_v1_to_v2},
    ),
])
