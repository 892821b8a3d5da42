"""HTTP plumbing shared by both services: JSON bodies, problem+json errors, request context.

Every client mistake becomes a 4xx problem document that says what is wrong; only bugs are 500s,
and even then the response carries no stack trace.
"""

from __future__ import annotations

import decimal
import functools
import json
import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar, cast, get_args

import azure.functions as func
import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue, RootModel, ValidationError
from pydantic.config import JsonDict

from app.adapters.entra_auth import EntraAuthError, EntraTokenValidator
from app.ports import PaymentRefused, PaymentsMisconfigured
from contracts.headers import (
    CAUSATION_HEADER,
    CORRELATION_HEADER,
    IDEMPOTENCY_HEADER,
    RETRY_AFTER_HEADER,
    VIEW_SOURCE_HEADER,
)
from domain.errors import (
    ID_PATTERN,
    MAX_ID_LENGTH,
    RESOURCE_ID_PATTERN,
    AlreadyExists,
    CartChanged,
    CartItemNotFound,
    DomainError,
    InvalidCommand,
    InvalidTransition,
    PaymentMismatch,
    StreamNotFound,
    require_resource_id,
)
from domain.money import ISO_4217_CURRENCIES
from eventstore.clock import new_id
from eventstore.commands import CommandContext
from eventstore.errors import ConcurrencyError, IdempotencyKeyReused, NotFound, TransientError
from eventstore.reads import PointInTime, ViewSource
from eventstore.tracing import SpanKind, mark_failed, span

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
PROBLEM_JSON = "application/problem+json"

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    def __init__(self, status: int, title: str, detail: str,
                 errors: list[dict[str, str]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.errors = errors
        self.headers = dict(headers or {})


class FieldProblem(BaseModel):
    field: str = Field(description="the body field, header or parameter that is wrong")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document: every error response of both APIs."""

    model_config = ConfigDict(title="Problem")
    type: str = Field(examples=["https://httpstatuses.io/400"])
    title: str = Field(examples=["Invalid request body"])
    status: int = Field(ge=400, le=599)
    detail: str = Field(examples=["invalid field(s): quantity"])
    errors: list[FieldProblem] | None = Field(
        default=None, description="one entry per wrong field, when the problem is about fields")


# JSON Schemas of the values the domain checks, from its constants (it enforces them).
RESOURCE_ID_SCHEMA: JsonDict = {"type": "string", "pattern": f"^{RESOURCE_ID_PATTERN.pattern}$"}
ID_SCHEMA: JsonDict = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
                       "pattern": ID_PATTERN}
CURRENCY_SCHEMA: JsonDict = {"description": "ISO-4217 code",
                             "enum": cast(list[JsonValue], sorted(ISO_4217_CURRENCIES))}


class StreamVersion(BaseModel):
    version: int = Field(description="the stream version after the command")


class StoredEvent(BaseModel):
    """One event of a stream, with its commit's metadata (``GET .../events``)."""

    version: int
    eventId: str
    type: str
    schemaVersion: int
    occurredAt: str
    data: dict[str, Any]
    streamId: str
    correlationId: str
    causationId: str


class EventList(RootModel[list[StoredEvent]]):
    pass


# What each problem status means, for the OpenAPI document (functions/openapi.py).
PROBLEM_STATUSES: dict[int, str] = {
    400: "The body, a header or a query parameter is malformed or has an invalid value",
    401: "No valid bearer token (Azure only: the caller must be an allowed identity)",
    403: "The token is valid but not of an allowed caller",
    404: "No such resource (a malformed id can never exist, so it is 404 as well)",
    409: "The resource's current state refuses the request",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes",
    422: "The Idempotency-Key was already used for a different request",
    500: "A bug: the response carries no stack trace",
    502: "A service this one depends on answered in a way that means it is misconfigured",
    503: "A backend is temporarily unavailable: retry after Retry-After seconds",
}


def json_bytes(body: Any) -> bytes:
    """Compact UTF-8 JSON (orjson; the standard library for what orjson refuses, such as an
    integer beyond 64 bits)."""
    try:
        return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _encode(body: Any) -> bytes:
    """The one JSON encoding of every response body."""
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json", exclude_unset=True)
    return json_bytes(body)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None
                  ) -> func.HttpResponse:
    """A JSON response; a pydantic body is dumped without the optional fields it was not given
    (a view without ``cancelReason`` has no such key, rather than ``null``)."""
    return func.HttpResponse(_encode(body), status_code=status, mimetype="application/json",
                             headers=dict(headers or {}))


def no_content() -> func.HttpResponse:
    return func.HttpResponse(status_code=204)


def problem(status: int, title: str, detail: str, errors: list[dict[str, str]] | None = None,
            headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    body = Problem(type=f"https://httpstatuses.io/{status}", title=title, status=status,
                   detail=detail)
    if errors:
        body.errors = [FieldProblem(**error) for error in errors]  # marks the field as set
    return func.HttpResponse(_encode(body), status_code=status, mimetype=PROBLEM_JSON,
                             headers=dict(headers or {}))


def _json_number(text: str) -> int | float:
    """JSON has one number type: 2.0 is the integer 2 (as JSON Schema says), 2.5 is not. Past 19
    digits it stays a float (out of every range anyway), so 1e999999999 costs no huge int."""
    value = decimal.Decimal(text)
    if value.is_finite() and value.adjusted() < 19 and value == value.to_integral_value():
        return int(value)
    return float(text)


def read_json(req: func.HttpRequest, model: type[M], *, optional: bool = False) -> M:
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "Payload too large",
                       f"the body has {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    if not body.strip():
        if optional:
            return model()
        raise ApiError(400, "Invalid request body", "a JSON object body is required")
    try:
        payload = json.loads(body, parse_float=_json_number)
    except (ValueError, RecursionError) as error:
        # ValueError covers bad UTF-8, bad syntax and over-long integers; RecursionError, nesting
        # deeper than the parser allows. All are the client's mistake.
        raise ApiError(400, "Malformed JSON", f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "Invalid request body",
                       f"the body must be a JSON object, not {type(payload).__name__}")
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in error.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        raise ApiError(400, "Invalid request body", f"invalid field(s): {fields}",
                       errors) from None


def route_id(req: func.HttpRequest, name: str, what: str) -> str:
    """A path id; one the domain's resource-id rule refuses could never exist: not found."""
    value = str(req.route_params.get(name, ""))
    try:
        return require_resource_id(value, name)
    except InvalidCommand:
        raise ApiError(404, f"{what.capitalize()} not found",
                       f"no {what} with id {value!r}") from None


def require_caller(req: func.HttpRequest, callers: EntraTokenValidator | None) -> None:
    """Refuse a request whose bearer token is not of an allowed caller (None: no check)."""
    if callers is None:
        return
    try:
        callers.authenticate(req.headers.get("Authorization"))
    except EntraAuthError as error:
        titles = {401: "Unauthorized", 403: "Forbidden", 503: "Service unavailable"}
        raise ApiError(error.status_code, titles.get(error.status_code, "Refused"), str(error),
                       headers=error.headers) from None


MAX_VERSION_DIGITS = 18
MIN_VERSION_PARAMETER: dict[str, Any] = {
    "name": "minVersion", "in": "query", "required": False,
    "description": "Read your own writes: the version a command returned. When the projection "
    "is behind it the view is computed from the stream; 404 when the stream has no such version.",
    "schema": {"type": "integer", "minimum": 0, "maximum": 10**MAX_VERSION_DIGITS - 1},
}


def min_version(req: func.HttpRequest) -> int:
    raw = str(req.params.get("minVersion", "0"))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_VERSION_DIGITS):
        raise ApiError(400, "Invalid query parameter",
                       f"minVersion must be a non-negative integer, got {raw!r}",
                       [{"field": "minVersion", "message": "must be a non-negative integer"}])
    return int(raw)


POINT_IN_TIME_PARAMETERS: tuple[dict[str, Any], ...] = (
    {"name": "asOfVersion", "in": "query", "required": False,
     "description": "Read the past: the view as it was at this stream version (404 when the "
     "stream had not reached it). Only one of asOfVersion, asOf and minVersion.",
     "schema": {"type": "integer", "minimum": 0, "maximum": 10**MAX_VERSION_DIGITS - 1}},
    {"name": "asOf", "in": "query", "required": False,
     "description": "Read the past: the view as it was at this time, an ISO 8601 timestamp with "
     "its UTC offset (404 when the stream did not exist yet). Only one of asOfVersion, asOf and "
     "minVersion.",
     "schema": {"type": "string", "format": "date-time", "maxLength": 64,
                "examples": ["2026-01-05T10:00:00Z"]}},
)


def point_in_time(req: func.HttpRequest) -> PointInTime | None:
    """``asOfVersion=N`` or ``asOf=<timestamp with a UTC offset>``: a read of the past (at most
    one of them, and not with minVersion, which asks for a fresh view)."""
    given = [name for name in ("asOfVersion", "asOf", "minVersion") if name in req.params]
    if len(given) > 1:
        raise ApiError(400, "Invalid query parameter",
                       f"use one of asOfVersion, asOf and minVersion, not {' and '.join(given)}",
                       [{"field": name, "message": "only one of them"} for name in given])
    if "asOfVersion" in req.params:
        raw = str(req.params["asOfVersion"])
        if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_VERSION_DIGITS):
            raise ApiError(400, "Invalid query parameter",
                           f"asOfVersion must be a non-negative integer, got {raw!r}",
                           [{"field": "asOfVersion", "message": "must be a non-negative integer"}])
        return PointInTime(version=int(raw))
    if "asOf" in req.params:
        raw = str(req.params["asOf"])
        moment = _utc_timestamp(raw)
        if moment is None:
            raise ApiError(400, "Invalid query parameter",
                           f"asOf must be an ISO 8601 timestamp with its UTC offset, e.g. "
                           f"2026-01-05T10:00:00Z (send '+' as %2B), got {raw[:64]!r}",
                           [{"field": "asOf", "message": "must be a timestamp such as "
                                                         "2026-01-05T10:00:00Z"}])
        return PointInTime(at=moment)
    return None


def _utc_timestamp(raw: str) -> datetime | None:
    # A date alone or a time without an offset would be read in some unknown zone: refused.
    if len(raw) > 64 or "T" not in raw.upper():
        return None
    try:
        moment = datetime.fromisoformat(raw)
        return moment.astimezone(UTC) if moment.tzinfo is not None else None
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved out of range
        return None


MAX_KEY_LENGTH = 128
KEY_PATTERN = f"^[!-~]{{1,{MAX_KEY_LENGTH}}}$"  # what idempotency_key accepts, for the docs


def idempotency_key(req: func.HttpRequest) -> str | None:
    """The client's Idempotency-Key: 1 to 128 printable ASCII characters (a UUID is ideal)."""
    raw = req.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    key = str(raw).strip()
    if not key or len(key) > MAX_KEY_LENGTH or not all(32 < ord(c) < 127 for c in key):
        raise ApiError(400, "Invalid Idempotency-Key",
                       f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII "
                       "characters without spaces, e.g. a UUID",
                       [{"field": IDEMPOTENCY_HEADER, "message": "invalid key"}])
    return key


# The headers the functions read and write, as the OpenAPI document describes them.
REQUEST_HEADERS: dict[str, dict[str, Any]] = {
    IDEMPOTENCY_HEADER: {
        "description": "Makes a command safe to retry: a retried request with the same key is "
        "answered with the first result (a create names the same order); the same key for a "
        "different request is 422. A UUID is ideal.",
        "schema": {"type": "string", "pattern": KEY_PATTERN},
    },
    CORRELATION_HEADER: {
        "description": "Correlates this request with the events and messages it causes; made "
        f"up when absent, echoed in the response. At most {MAX_KEY_LENGTH} characters are kept.",
        "schema": {"type": "string"},
    },
    CAUSATION_HEADER: {
        "description": "For service-to-service calls: names the calling command, so a retried "
        "call is recognised (the Idempotency-Key takes precedence).",
        "schema": {"type": "string"},
    },
}
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    CORRELATION_HEADER: {"description": "The request's correlation id (the caller's or a new one)",
                         "required": True,
                         "schema": {"type": "string"}},
    RETRY_AFTER_HEADER: {"description": "Seconds to wait before retrying", "required": True,
                         "schema": {"type": "integer", "minimum": 0}},
    VIEW_SOURCE_HEADER: {
        "description": "Where the view came from: the projection, or the stream itself when the "
        "projection had not caught up with the version asked for (read-your-writes)",
        "required": True, "schema": {"type": "string", "enum": list(get_args(ViewSource))},
    },
    "Location": {"description": "The URL of the created resource", "required": True,
                 "schema": {"type": "string", "format": "uri"}},
}


# The correlation id of the request this thread serves: the caller's, or one made for it once, so
# the command records the same id the response (and the host's log line) shows.
_correlation: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def _header(req: func.HttpRequest, name: str) -> str:
    return str(req.headers.get(name) or "").strip()[:MAX_KEY_LENGTH]


def command_context(req: func.HttpRequest) -> CommandContext:
    """Correlation id from the caller (or new). The causation id names the command: the client's
    Idempotency-Key (so a retried request is recognised and answered with the original result),
    else the calling service's command (X-Causation-Id), else this request."""
    correlation = _correlation.get() or _header(req, CORRELATION_HEADER) or new_id()
    causation = idempotency_key(req) or _header(req, CAUSATION_HEADER) or new_id()
    return CommandContext(correlation_id=correlation, causation_id=causation)


_DOMAIN_STATUS: list[tuple[type[DomainError], int, str]] = [
    (InvalidCommand, 400, "Invalid request"),
    (StreamNotFound, 404, "Not found"),
    (CartItemNotFound, 404, "Not found"),
    (AlreadyExists, 409, "Conflict"),
    (InvalidTransition, 409, "Not allowed in the current state"),
    (PaymentMismatch, 409, "Payment mismatch"),
    (CartChanged, 409, "Cart changed"),
]


def _domain_problem(error: DomainError, req: func.HttpRequest) -> func.HttpResponse:
    detail = error.message
    if isinstance(error, StreamNotFound):
        # The domain cannot name what does not exist; the route can.
        ids = ", ".join(f"{k}={v}" for k, v in req.route_params.items())
        detail = f"{detail} ({ids})" if ids else detail
    for error_type, status, title in _DOMAIN_STATUS:
        if isinstance(error, error_type):
            field = getattr(error, "field", None)
            errors = [{"field": field, "message": error.message}] if field else None
            return problem(status, title, detail, errors)
    return problem(409, "Refused", detail)


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def http_endpoint(handler: Handler, route: str = "", service: str = "") -> Handler:
    """Turn exceptions into problem responses; every response carries the correlation id. The
    request is a server span, continuing the caller's trace (its ``traceparent`` header)."""

    @functools.wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        correlation = _header(req, CORRELATION_HEADER) or new_id()
        token = _correlation.set(correlation)
        try:
            with span(f"{req.method} /{route}" if route else handler.__name__,
                      kind=SpanKind.SERVER, parent=req.headers,
                      attributes={"http.request.method": req.method, "http.route": f"/{route}",
                                  "app.service": service,
                                  "app.correlation_id": correlation}) as traced:
                response = _handle(handler, req)
                traced.set_attribute("http.response.status_code", response.status_code)
                if response.status_code >= 500:
                    mark_failed(traced, f"answered {response.status_code}")
        finally:
            _correlation.reset(token)
        response.headers[CORRELATION_HEADER] = correlation
        return response

    return wrapper


def _handle(handler: Handler, req: func.HttpRequest) -> func.HttpResponse:
    try:
        body_size = len(req.get_body() or b"")
        if body_size > MAX_BODY_BYTES:  # every route, also those that ignore the body
            raise ApiError(413, "Payload too large",
                           f"the body has {body_size} bytes; the limit is {MAX_BODY_BYTES}")
        response = handler(req)
    except ApiError as error:
        response = problem(error.status, error.title, error.detail, error.errors,
                           error.headers)
    except DomainError as error:
        response = _domain_problem(error, req)
    except NotFound as error:
        title = "not found" if error.version is None else "version not found"
        response = problem(404, f"{error.what.capitalize()} {title}", error.detail)
    except ConcurrencyError as error:
        response = problem(409, "Concurrent modification", str(error))
    except IdempotencyKeyReused as error:
        response = problem(422, "Idempotency-Key already used", str(error),
                           [{"field": IDEMPOTENCY_HEADER, "message": str(error)}])
    except PaymentRefused as error:
        response = problem(409, "Payment refused", str(error))
    except PaymentsMisconfigured as error:
        log.error("%s: %s", handler.__name__, error)
        response = problem(502, "Payments unavailable",
                           "the payment service could not be called; retry later")
    except TransientError as error:
        log.warning("transient failure in %s: %r", handler.__name__, error)
        response = problem(503, "Service unavailable",
                           "a backend is temporarily unavailable; retry shortly",
                           headers={RETRY_AFTER_HEADER: "2"})
    except Exception:
        log.exception("unhandled error in %s", handler.__name__)
        response = problem(500, "Internal error", "an unexpected error occurred")
    return response
