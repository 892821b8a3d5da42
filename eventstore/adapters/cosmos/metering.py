"""Request metering: every Cosmos DB response's request charge (RU), counted per scope.

A caller scopes a measurement around one command (``with meter.measure() as m: ...``); every
request the stores make in that thread or task is added to it, so the cost of the pattern is
visible per command.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from azure.core.pipeline import PipelineResponse

logger = logging.getLogger("eventstore.adapters.cosmos")


class Measurement:
    """Requests and request units counted while a ``RequestMeter.measure()`` scope was active.

    ``requests`` counts the HTTP responses Cosmos DB returned to operations of the stores,
    including SDK retries (a throttled create that succeeds on the second try is 2 requests) and
    failed ones (a 409 costs RUs too). Metadata reads the SDK makes once to warm its caches
    (account, container properties, partition key ranges) are not attributed to operations.
    """

    __slots__ = ("_lock", "_request_charge", "_requests")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._request_charge = 0.0

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def request_charge(self) -> float:
        with self._lock:
            return self._request_charge

    def add(self, request_charge: float) -> None:
        with self._lock:
            self._requests += 1
            self._request_charge += request_charge

    def __repr__(self) -> str:
        return f"Measurement(requests={self.requests}, request_charge={self.request_charge:g})"


_ACTIVE_SCOPES: contextvars.ContextVar[tuple[tuple[RequestMeter, Measurement], ...]] = (
    contextvars.ContextVar("cosmos_request_meter_scopes", default=())
)


class RequestMeter:
    """Thread-safe accumulator of Cosmos DB requests and request charges.

    ``measure()`` opens a scope in the current context (thread or task): every request the stores
    make in it is added to the scope's ``Measurement`` (and to any enclosing scope, and to
    ``total``). Scopes in other threads are not affected.
    """

    def __init__(self) -> None:
        self.total = Measurement()

    @contextmanager
    def measure(self) -> Iterator[Measurement]:
        measurement = Measurement()
        token = _ACTIVE_SCOPES.set((*_ACTIVE_SCOPES.get(), (self, measurement)))
        try:
            yield measurement
        finally:
            _ACTIVE_SCOPES.reset(token)

    def record(self, request_charge: float) -> None:
        """Count one request costing ``request_charge`` RU."""
        self.total.add(request_charge)
        for meter, measurement in _ACTIVE_SCOPES.get():
            if meter is self:
                measurement.add(request_charge)

    def response_hook(self, operation: str) -> Callable[[PipelineResponse[Any, Any]], None]:
        """A ``raw_response_hook`` for one SDK call: records every HTTP response it gets."""

        def hook(response: PipelineResponse[Any, Any]) -> None:
            http_response = response.http_response
            raw = http_response.headers.get("x-ms-request-charge")
            try:
                charge = float(raw) if raw is not None else 0.0
            except ValueError:
                charge = 0.0
            self.record(charge)
            logger.debug(
                "cosmos %s: status %s, %.2f RU", operation, http_response.status_code, charge
            )

        return hook


REQUEST_METER = RequestMeter()
"""The process-wide meter the stores use unless given another one."""
