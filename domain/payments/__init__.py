"""The Payment aggregate (stream ``payment-{paymentId}``) and the simulated acquirer's decision.

``decider`` decides and evolves; ``codec`` says how payments are stored; ``view`` is the read
model.
"""

from domain.payments.codec import PAYMENT_STREAM, payment_codec
from domain.payments.decider import (
    INITIAL_PAYMENT,
    TERMINAL_PAYMENT_STATUSES,
    AuthorizePayment,
    CompletePayment,
    CreatePayment,
    FailPayment,
    FailureCode,
    PaymentCommand,
    PaymentCompleted,
    PaymentCreated,
    PaymentEvent,
    PaymentFailed,
    PaymentStarted,
    PaymentState,
    PaymentStatus,
    acquirer_decision,
    decide,
    evolve,
    payment_decider,
)
from domain.payments.view import apply_payment_event

__all__ = [
    "INITIAL_PAYMENT",
    "PAYMENT_STREAM",
    "TERMINAL_PAYMENT_STATUSES",
    "AuthorizePayment",
    "CompletePayment",
    "CreatePayment",
    "FailPayment",
    "FailureCode",
    "PaymentCommand",
    "PaymentCompleted",
    "PaymentCreated",
    "PaymentEvent",
    "PaymentFailed",
    "PaymentStarted",
    "PaymentState",
    "PaymentStatus",
    "acquirer_decision",
    "apply_payment_event",
    "decide",
    "evolve",
    "payment_codec",
    "payment_decider",
]
