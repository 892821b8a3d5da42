"""The payment view (the read model of ``GET /payments/{paymentId}``), as a pure projection.

Same shape as the order view: (view or None, event, version) -> new view.
"""

from __future__ import annotations

from typing import Any

from domain.payments.decider import (
    PaymentCompleted,
    PaymentCreated,
    PaymentEvent,
    PaymentFailed,
    PaymentStarted,
    PaymentStatus,
)

View = dict[str, Any]


def apply_payment_event(view: View | None, event: PaymentEvent, version: int) -> View:
    if isinstance(event, PaymentCreated):
        return {
            "paymentId": event.payment_id,
            "referenceId": event.reference_id,
            "status": PaymentStatus.CREATED.value,
            "amount": event.amount,
            "currency": event.currency,
            "version": version,
        }
    if view is None:
        raise ValueError(f"{type(event).__name__} at version {version} before PaymentCreated")
    new = {**view, "version": version}
    match event:
        case PaymentStarted():
            new["status"] = PaymentStatus.STARTED.value
        case PaymentCompleted():
            new["status"] = PaymentStatus.COMPLETED.value
            new["authorizationCode"] = event.authorization_code
        case PaymentFailed():
            new["status"] = PaymentStatus.FAILED.value
            new["failureReason"] = event.reason
            new["failureReasonCode"] = event.reason_code
        case _:
            raise TypeError(f"not a payment event: {event!r}")
    return new
