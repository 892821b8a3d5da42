"""Translating SDK failures: what is worth retrying becomes the kernel's ``TransientError``.

Throttling (429) is retried by the SDK itself (``CosmosClientOptions``); what still fails after
that, and timeouts, unavailability and connection errors, is transient. Everything else (a bad
request, a missing container, an untrusted certificate) is re-raised unchanged.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from eventstore.adapters.cosmos.metering import RequestMeter
from eventstore.errors import TransientError

T = TypeVar("T")

HEADER_RACE_RETRIES = 3

TRANSIENT_STATUS_CODES = frozenset({408, 429, 449, 500, 502, 503, 504})
"""Statuses worth retrying later: request timeout, throttling (after the SDK's own retries),
retry-with (449), and server-side failures/unavailability."""


def is_transient_status(status_code: int | None) -> bool:
    return status_code is not None and status_code in TRANSIENT_STATUS_CODES


def is_certificate_error(error: BaseException) -> bool:
    """True when an untrusted TLS certificate is somewhere in the error's chain: a permanent
    failure (configuration), not a transient one."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        pending.extend((current.__cause__, current.__context__))
        inner = getattr(current, "inner_exception", None)
        if isinstance(inner, BaseException):
            pending.append(inner)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return False


def raise_translated(operation: str, error: Exception) -> NoReturn:
    """Raise ``TransientError`` for retryable failures; re-raise anything else unchanged."""
    if isinstance(error, CosmosHttpResponseError):
        if is_transient_status(error.status_code):
            raise TransientError(
                f"Cosmos DB {operation} failed with status {error.status_code} "
                f"(substatus {error.sub_status}): {error.message}"
            ) from error
        raise error
    if isinstance(
        error, ServiceRequestError | ServiceResponseError | CosmosClientTimeoutError
    ) and not is_certificate_error(error):
        raise TransientError(f"Cosmos DB {operation} failed: {error}") from error
    raise error


@contextmanager
def translated(operation: str) -> Iterator[None]:
    try:
        yield
    except (
        CosmosHttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
        CosmosClientTimeoutError,
    ) as error:
        raise_translated(operation, error)


def read_or_none(
    container: ContainerProxy, item_id: str, meter: RequestMeter, operation: str
) -> dict[str, Any] | None:
    """Point read of an item whose partition key is its id; None when it does not exist."""
    try:
        return container.read_item(
            item_id, partition_key=item_id, raw_response_hook=meter.response_hook(operation)
        )
    except CosmosHttpResponseError as error:
        if error.status_code == 404:
            return None
        raise_translated(operation, error)
    except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
        raise_translated(operation, error)


def retried_on_header_race(call: Callable[[], T]) -> T:
    """Run a query again when the SDK trips over its own response headers.

    azure-cosmos 4.17 shares response-header dictionaries of one client between the threads
    that query through it; under concurrent queries one thread can fail with "RuntimeError:
    OrderedDict mutated during iteration" while copying headers another thread is changing
    (seen here with several writers re-reading one stream). The request itself succeeded or
    was read-only, so asking again is safe."""
    for attempt in range(HEADER_RACE_RETRIES):
        try:
            return call()
        except RuntimeError as error:
            if "mutated during iteration" not in str(error) or attempt == HEADER_RACE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")
