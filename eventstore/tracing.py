"""Trace context across the asynchronous hops (OpenTelemetry API only; the SDK and its exporter
are chosen by the composition root, ``app.telemetry``).

A trace is carried as W3C trace context: in HTTP headers, in the commit document
(``traceContext``) so the change-feed consumers continue the command's trace, and in a message's
application properties (``traceparent``, and ``Diagnostic-Id`` as Service Bus' own convention
names it) so the consuming function in the other service continues it too. Without a configured
SDK every span here is a no-op and nothing is stored or sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["DIAGNOSTIC_ID", "TRACEPARENT", "TRACESTATE", "SpanKind", "TraceCarrier", "carrier_of",
           "current_context", "mark_failed", "message_properties", "span", "tracer",
           "tracing_configured"]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DIAGNOSTIC_ID = "Diagnostic-Id"  # Service Bus' name for the traceparent of a message
TRACER_NAME = "es-orders-payments"

_propagator = TraceContextTextMapPropagator()
TraceCarrier = dict[str, str]


def tracer() -> trace.Tracer:
    # Looked up per use: the provider may be installed after this module is imported.
    return trace.get_tracer(TRACER_NAME)


def tracing_configured() -> bool:
    """Whether an SDK tracer provider is installed (``app.telemetry``); checked per span, since
    it may be installed after this module is imported."""
    return not isinstance(trace.get_tracer_provider(),
                          (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def current_context() -> TraceCarrier:
    """The current span's W3C trace context ({} when nothing is being traced)."""
    if not tracing_configured():
        return {}
    carrier: TraceCarrier = {}
    _propagator.inject(carrier)
    return carrier


def carrier_of(values: Mapping[str, Any] | None) -> TraceCarrier:
    """The trace context in headers, a commit's ``traceContext`` or a message's application
    properties (case-insensitive names; ``Diagnostic-Id`` when there is no ``traceparent``)."""
    if not values:
        return {}
    lowered = {str(k).lower(): v for k, v in values.items()}
    parent = lowered.get(TRACEPARENT) or lowered.get(DIAGNOSTIC_ID.lower())
    if isinstance(parent, bytes):
        parent = parent.decode("ascii", errors="replace")
    if not isinstance(parent, str) or not parent:
        return {}
    carrier = {TRACEPARENT: parent}
    state = lowered.get(TRACESTATE)
    if isinstance(state, str) and state:
        carrier[TRACESTATE] = state
    return carrier


def message_properties() -> TraceCarrier:
    """The application properties that carry the current trace on a message."""
    carrier = current_context()
    if TRACEPARENT in carrier:
        carrier[DIAGNOSTIC_ID] = carrier[TRACEPARENT]
    return carrier


def _span_context(carrier: Mapping[str, str]) -> trace.SpanContext | None:
    found = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
    return found if found.is_valid else None


@contextmanager
def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL,
         parent: Mapping[str, Any] | None = None, links: Iterable[Mapping[str, Any]] = (),
         attributes: Mapping[str, str | int] | None = None) -> Iterator[Span]:
    """A span, child of ``parent`` (a carrier, see ``carrier_of``) when it holds a trace context,
    else of the current span; ``links`` point at other traces (a batch's commits). An exception
    marks the span as failed and propagates."""
    if not tracing_configured():
        yield trace.INVALID_SPAN  # what the API's no-op tracer gives, for a tenth of the cost
        return
    context = None
    inbound = carrier_of(parent)
    if inbound:
        context = _propagator.extract(inbound, context=otel_context.Context())
    linked = [Link(found) for carrier in links
              if (found := _span_context(carrier_of(carrier))) is not None]
    with tracer().start_as_current_span(name, context=context, kind=kind, links=linked,
                                        attributes=dict(attributes or {}),
                                        record_exception=True,
                                        set_status_on_exception=True) as current:
        yield current


def mark_failed(current: Span, description: str) -> None:
    current.set_status(Status(StatusCode.ERROR, description))
