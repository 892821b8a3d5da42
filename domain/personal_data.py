"""A customer's personal data: the details an order may carry about the person, and their rules.

Kept out of the event log on purpose. Events are immutable and kept forever, so they name the
customer only by ``customerId``, an opaque id; the details live in a separate store keyed by that
id, from which they can be erased (the right to erasure) while every event stays as it was.
Views look the details up when an order is read, and show them as erased afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.errors import SPACE, InvalidCommand

MAX_NAME_LENGTH = 200
MAX_EMAIL_LENGTH = 254  # the longest address SMTP can deliver to (RFC 5321)
MAX_EMAIL_LOCAL_PART_LENGTH = 64
MAX_ADDRESS_LENGTH = 500

# One '@', no spaces, and a domain of at least two dot-separated labels. Deliberately loose:
# whether an address exists only a mail to it can tell.
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
_LINE_BREAKS = frozenset("\n\r")

# The rules below as JSON Schema (ECMA-262) patterns, for the API docs (the checks enforce them).
_NOT_EMAIL = f"@{SPACE}\\u0000-\\u001f\\u007f"
EMAIL_SCHEMA_PATTERN = (f"^[^{_NOT_EMAIL}]{{1,{MAX_EMAIL_LOCAL_PART_LENGTH}}}"
                        f"@[^{_NOT_EMAIL}.]+(?:\\.[^{_NOT_EMAIL}.]+)+$")
ADDRESS_SCHEMA_PATTERN = "^[^\\u0000-\\u0009\\u000b\\u000c\\u000e-\\u001f\\u007f]*$"


@dataclass(frozen=True, slots=True)
class CustomerDetails:
    name: str
    email: str
    shipping_address: str = ""


def customer_details(name: object, email: object, shipping_address: object = "",
                     prefix: str = "") -> CustomerDetails:
    """Checked details; InvalidCommand names the field as the API does (``prefix`` + name).

    The messages never repeat the value: it is personal data, and errors end up in logs."""
    return CustomerDetails(
        name=_text(name, prefix + "name", MAX_NAME_LENGTH, required=True),
        email=_email(email, prefix + "email"),
        shipping_address=_text(shipping_address, prefix + "shippingAddress", MAX_ADDRESS_LENGTH,
                               required=False, line_breaks=True),
    )


def _text(value: object, field: str, max_length: int, *, required: bool,
          line_breaks: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidCommand(f"{field} must be a string", field)
    if required and not value.strip():
        raise InvalidCommand(f"{field} must not be empty", field)
    if len(value) > max_length:
        raise InvalidCommand(f"{field} must be at most {max_length} characters, got "
                             f"{len(value)}", field)
    allowed = _LINE_BREAKS if line_breaks else frozenset()
    if any((ord(c) < 32 or ord(c) == 127) and c not in allowed for c in value):
        raise InvalidCommand(f"{field} must not contain control characters", field)
    return value


def _email(value: object, field: str) -> str:
    email = _text(value, field, MAX_EMAIL_LENGTH, required=True)
    if not EMAIL_PATTERN.fullmatch(email):
        raise InvalidCommand(f"{field} must be an e-mail address such as name@example.com",
                             field)
    if len(email.rpartition("@")[0]) > MAX_EMAIL_LOCAL_PART_LENGTH:
        raise InvalidCommand(f"{field} must have at most {MAX_EMAIL_LOCAL_PART_LENGTH} "
                             "characters before the '@'", field)
    return email


def details_document(details: CustomerDetails) -> dict[str, Any]:
    """How the details are stored in the personal-data store."""
    return {"name": details.name, "email": details.email,
            "shippingAddress": details.shipping_address}


def details_from_document(document: Mapping[str, Any]) -> CustomerDetails:
    """Stored details read back; ValueError when the stored document is not details."""
    values = [document.get(key) for key in ("name", "email", "shippingAddress")]
    if not all(isinstance(value, str) for value in values):
        raise ValueError("stored customer details must have string name, email and "
                         "shippingAddress")
    name, email, address = values
    return CustomerDetails(name=str(name), email=str(email), shipping_address=str(address))


def customer_view(details: CustomerDetails | None, erased_at: str | None) -> dict[str, Any] | None:
    """What an order's view shows as its ``customer``: the details, that they were erased (and
    when), or None when none were given."""
    if erased_at is not None:
        return {"erased": True, "erasedAt": erased_at}
    if details is None:
        return None
    return details_document(details)
