"""The Payment aggregate's decider, and the simulated acquirer's decision.

States: Created -> Started (the customer authorized) -> Completed | Failed (the acquirer said).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Never

from domain.decider import Decider
from domain.errors import (
    AlreadyExists,
    InvalidCommand,
    InvalidTransition,
    StreamNotFound,
    require_id,
    require_int,
    require_resource_id,
    require_text,
)
from domain.money import MAX_AMOUNT, validate_currency


class PaymentStatus(StrEnum):
    CREATED = "Created"
    STARTED = "Started"
    COMPLETED = "Completed"
    FAILED = "Failed"


TERMINAL_PAYMENT_STATUSES = frozenset({PaymentStatus.COMPLETED, PaymentStatus.FAILED})


class FailureCode(StrEnum):
    """Why a payment failed, for machines (``reason`` is the text for people)."""

    AMOUNT_ABOVE_LIMIT = "amount_above_limit"
    UNSPECIFIED = "unspecified"


FAILURE_CODES = frozenset(code.value for code in FailureCode)


# Commands ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreatePayment:
    payment_id: str
    reference_id: str  # the order id
    amount: int  # minor units
    currency: str


@dataclass(frozen=True, slots=True)
class AuthorizePayment:
    """The customer authorizes the payment; the acquirer then decides, out of band."""


@dataclass(frozen=True, slots=True)
class CompletePayment:
    authorization_code: str


@dataclass(frozen=True, slots=True)
class FailPayment:
    reason: str
    reason_code: str  # a FailureCode value


PaymentCommand = CreatePayment | AuthorizePayment | CompletePayment | FailPayment


# Events -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentCreated:
    payment_id: str
    reference_id: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class PaymentStarted:
    pass


@dataclass(frozen=True, slots=True)
class PaymentCompleted:
    authorization_code: str


@dataclass(frozen=True, slots=True)
class PaymentFailed:
    reason: str
    reason_code: str  # a FailureCode value; stored since schema version 2


PaymentEvent = PaymentCreated | PaymentStarted | PaymentCompleted | PaymentFailed


# State ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentState:
    status: PaymentStatus | None = None  # None: the stream has no events yet
    payment_id: str = ""
    reference_id: str = ""
    amount: int = 0
    currency: str = ""
    authorization_code: str | None = None
    failure_reason: str | None = None
    failure_code: str | None = None

    @property
    def exists(self) -> bool:
        return self.status is not None


INITIAL_PAYMENT = PaymentState()


# Decide -----------------------------------------------------------------------------------------
# As for orders: the command's own fields first (400), then existence (404), then the state (409).


def decide(command: PaymentCommand, state: PaymentState) -> list[PaymentEvent]:
    match command:
        case CreatePayment():
            return _create(command, state)
        case AuthorizePayment():
            return _authorize(state)
        case CompletePayment():
            return _complete(command, state)
        case FailPayment():
            return _fail(command, state)
        case _:
            _unexpected("command", command)


def _create(command: CreatePayment, state: PaymentState) -> list[PaymentEvent]:
    created = PaymentCreated(
        payment_id=require_resource_id(command.payment_id, "paymentId"),
        reference_id=require_id(command.reference_id, "referenceId"),
        amount=require_int(command.amount, "amount", 1, MAX_AMOUNT),
        currency=validate_currency(command.currency),
    )
    if not state.exists:
        return [created]
    # Creation is an idempotent PUT: the same request again is a no-op, a different one a clash.
    differing = [
        name
        for name, stored, asked in (
            ("paymentId", state.payment_id, created.payment_id),
            ("referenceId", state.reference_id, created.reference_id),
            ("amount", state.amount, created.amount),
            ("currency", state.currency, created.currency),
        )
        if stored != asked
    ]
    if differing:
        raise AlreadyExists(
            f"CreatePayment refused: payment {state.payment_id} already exists with a different "
            + ", ".join(differing)
        )
    return []


def _authorize(state: PaymentState) -> list[PaymentEvent]:
    status = _require_payment(state, "AuthorizePayment")
    if status is PaymentStatus.CREATED:
        return [PaymentStarted()]
    if status is PaymentStatus.STARTED:
        return []  # a retried authorization
    raise _refused(state, "AuthorizePayment", "the acquirer has already decided")


def _complete(command: CompletePayment, state: PaymentState) -> list[PaymentEvent]:
    code = require_id(command.authorization_code, "authorizationCode")
    status = _require_payment(state, "CompletePayment")
    if status is PaymentStatus.STARTED:
        return [PaymentCompleted(authorization_code=code)]
    if status is PaymentStatus.COMPLETED:
        if code == state.authorization_code:
            return []  # the acquirer's answer redelivered
        raise _refused(
            state,
            "CompletePayment",
            f"it was completed with authorization code {state.authorization_code}, not {code}",
        )
    why = "it was not authorized" if status is PaymentStatus.CREATED else "it has failed"
    raise _refused(state, "CompletePayment", why)


def _fail(command: FailPayment, state: PaymentState) -> list[PaymentEvent]:
    reason = require_text(command.reason, "reason")
    if command.reason_code not in FAILURE_CODES:
        raise InvalidCommand(
            f"reasonCode must be one of {', '.join(FailureCode)}, got {command.reason_code!r}",
            "reasonCode")
    status = _require_payment(state, "FailPayment")
    if status is PaymentStatus.STARTED:
        return [PaymentFailed(reason=reason, reason_code=command.reason_code)]
    if status is PaymentStatus.FAILED:
        return []  # the acquirer's answer redelivered
    why = "it was not authorized" if status is PaymentStatus.CREATED else "it is completed"
    raise _refused(state, "FailPayment", why)


def _require_payment(state: PaymentState, command: str) -> PaymentStatus:
    if state.status is None:
        raise StreamNotFound(f"{command} refused: the payment does not exist")
    return state.status


def _refused(state: PaymentState, command: str, why: str) -> InvalidTransition:
    status = str(state.status)
    return InvalidTransition(
        f"{command} refused: payment {state.payment_id} is {status}; {why}",
        state=status,
        command=command,
    )


def _unexpected(kind: str, value: Never) -> Never:
    # Reached only when a caller ignores the type hints; mypy proves the matches exhaustive.
    raise TypeError(f"not a payment {kind}: {value!r}")


def acquirer_decision(
    payment_id: str, amount: int, decline_above: int
) -> CompletePayment | FailPayment:
    """What the simulated acquirer answers: a pure function, so a redelivered request gets the
    same answer (and the same authorization code) every time."""
    if amount > decline_above:
        return FailPayment(
            reason=f"declined by the acquirer: amount {amount} is above the limit {decline_above}",
            reason_code=FailureCode.AMOUNT_ABOVE_LIMIT,
        )
    digest = hashlib.sha256(payment_id.encode("utf-8")).hexdigest()
    return CompletePayment(authorization_code=f"AUTH-{digest[:8]}")


# Evolve -----------------------------------------------------------------------------------------


def evolve(state: PaymentState, event: PaymentEvent) -> PaymentState:
    """Apply one event. Never refuses: events are facts, already decided."""
    match event:
        case PaymentCreated():
            return PaymentState(
                status=PaymentStatus.CREATED,
                payment_id=event.payment_id,
                reference_id=event.reference_id,
                amount=event.amount,
                currency=event.currency,
            )
        case PaymentStarted():
            return replace(state, status=PaymentStatus.STARTED)
        case PaymentCompleted():
            return replace(
                state, status=PaymentStatus.COMPLETED, authorization_code=event.authorization_code
            )
        case PaymentFailed():
            return replace(state, status=PaymentStatus.FAILED, failure_reason=event.reason,
                           failure_code=event.reason_code)
        case _:
            _unexpected("event", event)


payment_decider: Decider[PaymentCommand, PaymentEvent, PaymentState] = Decider(
    initial_state=INITIAL_PAYMENT, decide=decide, evolve=evolve
)
