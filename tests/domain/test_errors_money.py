"""Field checks and currencies."""

from __future__ import annotations

import pytest

from domain.errors import (
    AlreadyExists,
    CartChanged,
    DomainError,
    InvalidCommand,
    InvalidTransition,
    PaymentMismatch,
    StreamNotFound,
    require_id,
    require_int,
    require_resource_id,
    require_text,
)
from domain.money import ISO_4217_CURRENCIES, MAX_AMOUNT, validate_currency


@pytest.mark.parametrize("code", ["EUR", "USD", "JPY", "CHF", "XOF", "XCG", "SLE", "ZWG", "VES"])
def test_active_currencies_are_accepted(code: str) -> None:
    assert validate_currency(code) == code


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        ("eur", '(codes are upper case: "EUR")'),
        ("ABC", "'ABC' is not supported"),
        ("EURO", "'EURO'"),
        ("", "''"),
        ("XXX", "'XXX'"),  # "no currency"
        ("XAU", "'XAU'"),  # gold
        ("XTS", "'XTS'"),  # testing
        ("HRK", "'HRK'"),  # withdrawn when Croatia adopted the euro
        (978, "978"),  # the numeric code of EUR is not accepted
        (None, "None"),
    ],
)
def test_other_currency_codes_are_refused(code: str, detail: str) -> None:
    with pytest.raises(InvalidCommand) as caught:
        validate_currency(code)
    assert caught.value.field == "currency"
    assert detail in caught.value.message
    assert 'a 3-letter ISO-4217 currency code such as "EUR"' in caught.value.message


def test_currency_list_is_well_formed() -> None:
    assert all(len(c) == 3 and c.isalpha() and c.isupper() for c in ISO_4217_CURRENCIES)
    assert len(ISO_4217_CURRENCIES) == 169
    assert {"EUR", "USD", "GBP", "CNY", "INR", "BRL", "ZAR"} <= ISO_4217_CURRENCIES


def test_max_amount_is_the_largest_exact_double_integer() -> None:
    assert float(MAX_AMOUNT) == MAX_AMOUNT and float(MAX_AMOUNT + 2) != MAX_AMOUNT + 2


def test_field_checks_return_valid_values() -> None:
    assert require_id("o-1", "orderId") == "o-1"
    assert require_id("ordre n° 1 ~ é", "orderId") == "ordre n° 1 ~ é"
    assert require_text("", "reason") == ""
    assert require_text("abc", "note", max_length=3) == "abc"
    assert require_int(5, "quantity", 5, 5) == 5


@pytest.mark.parametrize(
    ("call", "field", "detail"),
    [
        (lambda: require_id(None, "orderId"), "orderId", "must be a string, got null"),
        (lambda: require_id("  ", "orderId"), "orderId", "must not be empty"),
        (lambda: require_id("o-1\n", "orderId"), "orderId", "must not contain control"),
        (lambda: require_id("o\x7f1", "orderId"), "orderId", "must not contain control"),
        (lambda: require_resource_id("a/b", "orderId"), "orderId", "ASCII letters, digits"),
        (lambda: require_resource_id("-a", "paymentId"), "paymentId", "starting with a letter"),
        (lambda: require_resource_id(7, "orderId"), "orderId", "must be a string, got int 7"),
        (lambda: require_text(b"x", "reason"), "reason", "must be a string, got bytes"),
        (lambda: require_text("abcd", "note", 3), "note", "at most 3 characters, got 4"),
        (lambda: require_int(4, "quantity", 5, 9), "quantity", "between 5 and 9, got 4"),
        (lambda: require_int(True, "amount", 0, 9), "amount", "integer, got boolean true"),
    ],
)
def test_field_checks_say_which_field_and_why(call: object, field: str, detail: str) -> None:
    assert callable(call)
    with pytest.raises(InvalidCommand) as caught:
        call()
    assert caught.value.field == field
    assert caught.value.message.startswith(field) and detail in caught.value.message


def test_every_refusal_is_a_domain_error_with_a_message() -> None:
    errors: list[DomainError] = [
        InvalidCommand("bad quantity", "quantity"),
        StreamNotFound("no such order"),
        AlreadyExists("exists"),
        InvalidTransition("refused", state="Paid", command="CancelOrder"),
        PaymentMismatch("other payment"),
        CartChanged("cart changed"),
    ]
    for error in errors:
        assert isinstance(error, DomainError) and str(error) == error.message != ""
    assert len({type(e) for e in errors}) == 6
