"""Payment aggregate and the acquirer: every transition and every refusal."""

from __future__ import annotations

import re
from typing import Any

import pytest

from domain.errors import AlreadyExists, InvalidCommand, InvalidTransition, StreamNotFound
from domain.money import MAX_AMOUNT
from domain.payments import (
    INITIAL_PAYMENT,
    PAYMENT_STREAM,
    AuthorizePayment,
    CompletePayment,
    CreatePayment,
    FailPayment,
    FailureCode,
    PaymentCompleted,
    PaymentCreated,
    PaymentEvent,
    PaymentFailed,
    PaymentStarted,
    PaymentStatus,
    acquirer_decision,
    decide,
    evolve,
    payment_decider,
)

from .helpers import bogus, given_payment

CREATE = CreatePayment(payment_id="pay-1", reference_id="o-1", amount=3250, currency="EUR")
CREATED = PaymentCreated(payment_id="pay-1", reference_id="o-1", amount=3250, currency="EUR")
STARTED = PaymentStarted()
COMPLETED = PaymentCompleted(authorization_code="AUTH-0da3174c")
FAILED = PaymentFailed(reason="declined", reason_code="unspecified")

H_STARTED = (CREATED, STARTED)
H_COMPLETED = (*H_STARTED, COMPLETED)
H_FAILED = (*H_STARTED, FAILED)

EVERY_COMMAND_BUT_CREATE: list[Any] = [
    AuthorizePayment(),
    CompletePayment("AUTH-1"),
    FailPayment("declined", "unspecified"),
]


# CreatePayment ----------------------------------------------------------------------------------


def test_create_payment_on_a_new_stream() -> None:
    state = given_payment().when(CREATE).then(CREATED)
    assert state.status is PaymentStatus.CREATED and state.exists
    assert (state.payment_id, state.reference_id, state.amount, state.currency) == (
        "pay-1",
        "o-1",
        3250,
        "EUR",
    )


def test_create_payment_again_with_the_same_data_is_a_no_op() -> None:
    given_payment(*H_COMPLETED).when(CREATE).then_nothing()


@pytest.mark.parametrize(
    ("command", "differing"),
    [
        (CreatePayment("pay-1", "o-2", 3250, "EUR"), "referenceId"),
        (CreatePayment("pay-1", "o-1", 3251, "EUR"), "amount"),
        (CreatePayment("pay-1", "o-1", 3250, "USD"), "currency"),
        (CreatePayment("pay-2", "o-1", 3250, "EUR"), "paymentId"),
        (CreatePayment("pay-1", "o-2", 1, "USD"), "referenceId, amount, currency"),
    ],
)
def test_create_payment_again_with_other_data_is_refused(
    command: CreatePayment, differing: str
) -> None:
    error = (
        given_payment(CREATED)
        .when(command)
        .raises(AlreadyExists, "payment pay-1 already exists", f"different {differing}")
    )
    assert error.message.endswith(differing)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (CreatePayment("", "o-1", 1, "EUR"), "paymentId"),
        (CreatePayment("pay-1", "", 1, "EUR"), "referenceId"),
        (CreatePayment("pay-1", "o-1", 0, "EUR"), "amount"),
        (CreatePayment("pay-1", "o-1", -5, "EUR"), "amount"),
        (CreatePayment("pay-1", "o-1", MAX_AMOUNT + 1, "EUR"), "amount"),
        (CreatePayment("pay-1", "o-1", True, "EUR"), "amount"),
        (CreatePayment("pay-1", "o-1", 10.0, "EUR"), "amount"),  # type: ignore[arg-type]
        (CreatePayment("pay-1", "o-1", 1, "XAU"), "currency"),
    ],
)
def test_create_payment_validates_its_fields(command: CreatePayment, field: str) -> None:
    error = given_payment().when(command).raises(InvalidCommand, field)
    assert isinstance(error, InvalidCommand) and error.field == field
    # Validation comes first, so an existing payment gives the same answer.
    given_payment(CREATED).when(command).raises(InvalidCommand, field)


def test_create_payment_accepts_the_largest_amount() -> None:
    given_payment().when(CreatePayment("pay-1", "o-1", MAX_AMOUNT, "EUR")).then(
        PaymentCreated("pay-1", "o-1", MAX_AMOUNT, "EUR")
    )


@pytest.mark.parametrize("command", EVERY_COMMAND_BUT_CREATE, ids=lambda c: type(c).__name__)
def test_every_command_but_create_needs_an_existing_payment(command: Any) -> None:
    given_payment().when(command).raises(StreamNotFound, type(command).__name__, "does not exist")


# AuthorizePayment -------------------------------------------------------------------------------


def test_authorize_starts_the_payment() -> None:
    state = given_payment(CREATED).when(AuthorizePayment()).then(STARTED)
    assert state.status is PaymentStatus.STARTED


def test_authorize_again_is_a_no_op() -> None:
    given_payment(*H_STARTED).when(AuthorizePayment()).then_nothing()


@pytest.mark.parametrize(("status", "history"), [("Completed", H_COMPLETED), ("Failed", H_FAILED)])
def test_authorize_after_the_acquirer_decided_is_refused(
    status: str, history: tuple[PaymentEvent, ...]
) -> None:
    error = (
        given_payment(*history)
        .when(AuthorizePayment())
        .raises(
            InvalidTransition,
            "AuthorizePayment",
            "payment pay-1",
            f"is {status}",
            "already decided",
        )
    )
    assert isinstance(error, InvalidTransition)
    assert (error.state, error.command) == (status, "AuthorizePayment")


# CompletePayment --------------------------------------------------------------------------------


def test_complete_a_started_payment() -> None:
    state = given_payment(*H_STARTED).when(CompletePayment("AUTH-0da3174c")).then(COMPLETED)
    assert state.status is PaymentStatus.COMPLETED
    assert state.authorization_code == "AUTH-0da3174c" and state.failure_reason is None


def test_complete_redelivered_is_a_no_op() -> None:
    given_payment(*H_COMPLETED).when(CompletePayment("AUTH-0da3174c")).then_nothing()


def test_complete_again_with_another_code_is_refused() -> None:
    given_payment(*H_COMPLETED).when(CompletePayment("AUTH-other")).raises(
        InvalidTransition, "is Completed", "code AUTH-0da3174c, not AUTH-other"
    )


@pytest.mark.parametrize(
    ("status", "history", "why"),
    [("Created", (CREATED,), "not authorized"), ("Failed", H_FAILED, "it has failed")],
)
def test_complete_needs_a_started_payment(
    status: str, history: tuple[PaymentEvent, ...], why: str
) -> None:
    given_payment(*history).when(CompletePayment("AUTH-1")).raises(
        InvalidTransition, "CompletePayment", f"is {status}", why
    )


def test_complete_validates_the_code() -> None:
    error = given_payment(*H_STARTED).when(CompletePayment("")).raises(InvalidCommand)
    assert isinstance(error, InvalidCommand) and error.field == "authorizationCode"


# FailPayment ------------------------------------------------------------------------------------


def test_fail_a_started_payment() -> None:
    state = given_payment(*H_STARTED).when(FailPayment("declined", "unspecified")).then(FAILED)
    assert state.status is PaymentStatus.FAILED and state.failure_reason == "declined"
    assert state.failure_code == "unspecified"
    assert state.authorization_code is None


def test_fail_redelivered_is_a_no_op() -> None:
    given_payment(*H_FAILED).when(FailPayment("declined", "unspecified")).then_nothing()


@pytest.mark.parametrize(
    ("status", "history", "why"),
    [("Created", (CREATED,), "not authorized"), ("Completed", H_COMPLETED, "it is completed")],
)
def test_fail_needs_a_started_payment(
    status: str, history: tuple[PaymentEvent, ...], why: str
) -> None:
    given_payment(*history).when(FailPayment("declined", "unspecified")).raises(
        InvalidTransition, "FailPayment", f"is {status}", why
    )


def test_fail_reason_is_bounded() -> None:
    error = given_payment(*H_STARTED).when(FailPayment("r" * 501, "unspecified")).raises(
        InvalidCommand)
    assert isinstance(error, InvalidCommand) and error.field == "reason"


@pytest.mark.parametrize("code", ["", "declined", "AMOUNT_ABOVE_LIMIT", None])
def test_fail_reason_code_is_one_of_the_codes(code: Any) -> None:
    error = given_payment(*H_STARTED).when(FailPayment("declined", code)).raises(
        InvalidCommand, "reasonCode must be one of amount_above_limit, unspecified")
    assert isinstance(error, InvalidCommand) and error.field == "reasonCode"


def test_failure_codes_are_stable_names() -> None:
    # Stored in events and published in messages: renaming one breaks readers.
    assert [c.value for c in FailureCode] == ["amount_above_limit", "unspecified"]


# The acquirer -----------------------------------------------------------------------------------


def test_acquirer_completes_up_to_the_limit_with_a_code_derived_from_the_payment() -> None:
    decision = acquirer_decision("pay-1", 5000, decline_above=5000)
    # sha256("pay-1") starts with 0da3174c.
    assert decision == CompletePayment(authorization_code="AUTH-0da3174c")
    assert acquirer_decision("pay-1", 1, 5000) == decision
    other = acquirer_decision("pay-2", 1, 5000)
    assert isinstance(other, CompletePayment)
    assert re.fullmatch(r"AUTH-[0-9a-f]{8}", other.authorization_code)
    assert other != decision


def test_acquirer_declines_above_the_limit() -> None:
    decision = acquirer_decision("pay-1", 5001, decline_above=5000)
    assert isinstance(decision, FailPayment)
    assert "5001" in decision.reason and "5000" in decision.reason
    assert decision.reason_code == FailureCode.AMOUNT_ABOVE_LIMIT


def test_acquirer_decisions_are_accepted_by_a_started_payment() -> None:
    for amount in (3250, 3251):
        decision = acquirer_decision("pay-1", amount, decline_above=3250)
        events = decide(decision, payment_decider.fold(list(H_STARTED)))
        assert len(events) == 1
        assert isinstance(events[0], PaymentCompleted if amount == 3250 else PaymentFailed)


# Evolve and the decider -------------------------------------------------------------------------


def test_payment_decider_wiring() -> None:
    assert PAYMENT_STREAM.stream_id("pay-1") == "payment-pay-1"
    assert payment_decider.initial_state == INITIAL_PAYMENT and not INITIAL_PAYMENT.exists
    assert payment_decider.fold(list(H_FAILED)).status is PaymentStatus.FAILED


def test_status_values_are_the_api_names() -> None:
    assert [s.value for s in PaymentStatus] == ["Created", "Started", "Completed", "Failed"]


def test_unknown_commands_and_events_are_type_errors() -> None:
    with pytest.raises(TypeError, match="not a payment command"):
        decide(bogus(), INITIAL_PAYMENT)
    with pytest.raises(TypeError, match="not a payment event"):
        evolve(INITIAL_PAYMENT, bogus())
