"""Domain errors, and the field checks that raise them.

Every refusal carries a human ``message`` saying what was refused and why; the HTTP layer maps
the class to a status (InvalidCommand 400, StreamNotFound and CartItemNotFound 404, the others
409) and the message to the problem's ``detail``.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 100
RESOURCE_ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_ID_LENGTH - 1}}}")
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")
MAX_REASON_LENGTH = 500
# Cosmos DB refuses these in a document id; an id that also names a document must avoid them.
DOCUMENT_ID_FORBIDDEN = frozenset("/\\?#")
# What require_id accepts, as a JSON Schema (ECMA-262) pattern for the API docs: no control
# characters and at least one that is not white space (the length limit is separate). White
# space is spelled out as str.isspace() knows it: ECMA's \s is another set (it has U+FEFF and
# lacks U+0085), so the pattern means the same in both.
SPACE = (r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f"
         r"\u205f\u3000")
_CONTROL = r"\u0000-\u001f\u007f"
ID_PATTERN = f"^[^{_CONTROL}]*[^{SPACE}{_CONTROL}][^{_CONTROL}]*$"
# What require_document_key accepts, likewise.
_KEY = _CONTROL + r"/\\?#"
DOCUMENT_KEY_PATTERN = f"^[^{_KEY}]*[^{SPACE}{_KEY}][^{_KEY}]*$"


class DomainError(Exception):
    """A command was refused. ``message`` says what and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidCommand(DomainError):
    """A field of the command has a value no state could accept (HTTP 400)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field  # the API name (camelCase), so clients can point at it


class StreamNotFound(DomainError):
    """The aggregate the command is addressed to does not exist (HTTP 404)."""


class CartItemNotFound(DomainError):
    """The command names a cart item the order never had (HTTP 404)."""


class AlreadyExists(DomainError):
    """A create command found the aggregate already there, with other data (HTTP 409)."""


class InvalidTransition(DomainError):
    """The aggregate's current state does not allow the command (HTTP 409)."""

    def __init__(self, message: str, state: str, command: str) -> None:
        super().__init__(message)
        self.state = state
        self.command = command


class PaymentMismatch(DomainError):
    """The command names a payment that is not the one the order is waiting for (HTTP 409)."""


class CartChanged(DomainError):
    """The checkout amount no longer matches the cart (HTTP 409): re-read and retry."""


# Field checks. Commands arrive from JSON, so the annotated types are not trusted here.


def require_id(value: object, field: str) -> str:
    """A non-blank identifier of at most MAX_ID_LENGTH characters, without control characters."""
    if not isinstance(value, str):
        raise InvalidCommand(f"{field} must be a string, got {_kind(value)}", field)
    if not value.strip():
        raise InvalidCommand(f"{field} must not be empty", field)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidCommand(
            f"{field} must be at most {MAX_ID_LENGTH} characters, got {len(value)}", field
        )
    # Ids end up in stream ids, document ids, message ids and logs, where these break things.
    if _CONTROL_CHARACTER.search(value):
        raise InvalidCommand(f"{field} must not contain control characters", field)
    return value


def require_resource_id(value: object, field: str) -> str:
    """The id of an order or payment: it names a stream, a document and a URL path segment, so
    it is ASCII letters, digits, '.', '_' and '-', starting with a letter or digit."""
    require_id(value, field)
    assert isinstance(value, str)
    if not RESOURCE_ID_PATTERN.fullmatch(value):
        raise InvalidCommand(
            f"{field} must be 1 to {MAX_ID_LENGTH} ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit", field)
    return value


def require_document_key(value: object, field: str) -> str:
    """An id (``require_id``) that also names a document, such as the customer id that keys a
    customer's personal data: without '/', '\\', '?' or '#', which Cosmos DB refuses in ids."""
    require_id(value, field)
    assert isinstance(value, str)
    if not is_document_key(value):
        raise InvalidCommand(
            f"{field} must not contain '/', '\\', '?' or '#' (it names a document)", field)
    return value


def is_document_key(value: str) -> bool:
    return not DOCUMENT_ID_FORBIDDEN.intersection(value)


def require_text(value: object, field: str, max_length: int = MAX_REASON_LENGTH) -> str:
    """Free text (may be empty) of at most max_length characters."""
    if not isinstance(value, str):
        raise InvalidCommand(f"{field} must be a string, got {_kind(value)}", field)
    if len(value) > max_length:
        raise InvalidCommand(
            f"{field} must be at most {max_length} characters, got {len(value)}", field
        )
    return value


def require_int(value: object, field: str, minimum: int, maximum: int) -> int:
    """An integer in minimum..maximum (inclusive)."""
    # bool is a subclass of int, but `true` is never a meaningful quantity or amount.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidCommand(f"{field} must be an integer, got {_kind(value)}", field)
    if not minimum <= value <= maximum:
        raise InvalidCommand(f"{field} must be between {minimum} and {maximum}, got {value}", field)
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float | str):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__
