"""Customer details (personal data): their rules, how they are stored and shown, and the rule
for ids that name documents."""

from __future__ import annotations

from typing import Any

import pytest

from domain.errors import InvalidCommand, is_document_key, require_document_key
from domain.personal_data import (
    MAX_ADDRESS_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    CustomerDetails,
    customer_details,
    customer_view,
    details_document,
    details_from_document,
)

ADA = CustomerDetails("Ada Lovelace", "ada@example.org", "12 St James's Square\r\nLondon")


def test_valid_details_are_kept_as_given() -> None:
    assert customer_details(ADA.name, ADA.email, ADA.shipping_address) == ADA
    assert customer_details("Ada", "a@b.co") == CustomerDetails("Ada", "a@b.co", "")
    longest_email = "a" * 64 + "@" + "b" * (MAX_EMAIL_LENGTH - 64 - 5) + ".com"
    assert customer_details("n" * MAX_NAME_LENGTH, longest_email,
                            "x" * MAX_ADDRESS_LENGTH).email == longest_email
    assert customer_details("Zoë Ünal", "zoë@exämple.de").name == "Zoë Ünal"


@pytest.mark.parametrize(("name", "email", "address", "field", "message"), [
    (None, "a@b.co", "", "customer.name", "must be a string"),
    ("  ", "a@b.co", "", "customer.name", "must not be empty"),
    ("n" * (MAX_NAME_LENGTH + 1), "a@b.co", "", "customer.name", "at most 200 characters"),
    ("Ada\nLovelace", "a@b.co", "", "customer.name", "control characters"),
    ("Ada", 5, "", "customer.email", "must be a string"),
    ("Ada", "", "", "customer.email", "must not be empty"),
    ("Ada", "ada.example.org", "", "customer.email", "an e-mail address"),
    ("Ada", "ada@@example.org", "", "customer.email", "an e-mail address"),
    ("Ada", "ada@localhost", "", "customer.email", "an e-mail address"),
    ("Ada", "ada @example.org", "", "customer.email", "an e-mail address"),
    ("Ada", "ada@example..org", "", "customer.email", "an e-mail address"),
    ("Ada", "a" * 65 + "@example.org", "", "customer.email", "at most 64 characters before"),
    ("Ada", "a@" + "b" * MAX_EMAIL_LENGTH + ".org", "", "customer.email", "at most 254"),
    ("Ada", "a@b.co", ["street"], "customer.shippingAddress", "must be a string"),
    ("Ada", "a@b.co", "x" * (MAX_ADDRESS_LENGTH + 1), "customer.shippingAddress", "at most 500"),
    ("Ada", "a@b.co", "street\x00", "customer.shippingAddress", "control characters"),
])
def test_invalid_details_name_the_field_and_never_repeat_the_value(
        name: Any, email: Any, address: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidCommand) as raised:
        customer_details(name, email, address, prefix="customer.")
    assert raised.value.field == field and message in raised.value.message
    for value in (name, email, address):
        if isinstance(value, str) and len(value.strip()) > 2:
            assert value not in raised.value.message


def test_details_are_stored_and_read_back() -> None:
    document = details_document(ADA)
    assert document == {"name": "Ada Lovelace", "email": "ada@example.org",
                        "shippingAddress": "12 St James's Square\r\nLondon"}
    assert details_from_document(document) == ADA


@pytest.mark.parametrize("document", [{}, {"name": "A", "email": "a@b.co"},
                                      {"name": 1, "email": "a@b.co", "shippingAddress": ""}])
def test_stored_details_that_are_not_details_are_refused(document: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="stored customer details"):
        details_from_document(document)


def test_what_a_view_shows() -> None:
    assert customer_view(ADA, None) == details_document(ADA)
    assert customer_view(None, None) is None
    erased = {"erased": True, "erasedAt": "2026-01-05T10:00:00Z"}
    assert customer_view(None, "2026-01-05T10:00:00Z") == erased
    assert customer_view(ADA, "2026-01-05T10:00:00Z") == erased  # erasure wins


@pytest.mark.parametrize("value", ["customer-42", "c 1", "Zoë", "a.b_c-d@e", "x" * 100])
def test_document_keys(value: str) -> None:
    assert require_document_key(value, "customerId") == value and is_document_key(value)


@pytest.mark.parametrize(("value", "message"), [
    ("a/b", "must not contain '/', '\\', '?' or '#'"),
    ("a\\b", "must not contain"),
    ("a?b", "must not contain"),
    ("a#b", "must not contain"),
    ("", "must not be empty"),
    ("x" * 101, "at most 100"),
    (7, "must be a string"),
])
def test_ids_that_cannot_name_a_document_are_refused(value: Any, message: str) -> None:
    with pytest.raises(InvalidCommand) as raised:
        require_document_key(value, "customerId")
    assert raised.value.field == "customerId" and message in raised.value.message
