"""One trace across both services: the W3C trace context travels from the HTTP request into the
commit, from the commit through the change-feed publisher into the message's application
properties, and from there into the consuming function of the other service (and over HTTP from
checkout to Payments). Spans go to an in-memory exporter here; app.telemetry picks the console or
Application Insights in real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.settings import TelemetrySettings
from app.telemetry import configure_tracing
from eventstore.commit import Commit
from functions import orders, payments
from tests.functions.conftest import REPO_ROOT, Harness, example_settings
from tests.functions.test_http_functions import checkout, order_with_items

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"

_exporter = InMemorySpanExporter()
_processor = SimpleSpanProcessor(_exporter)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's spans from here on (the provider is process-wide and set once)."""
    settings = TelemetrySettings.model_validate({})
    if not configure_tracing(settings, "orders,payments", extra_processors=[_processor]):
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider), "another test installed a foreign provider"
        if _processor not in provider._active_span_processor._span_processors:
            provider.add_span_processor(_processor)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def purchase(app: Harness, headers: dict[str, str] | None = None) -> str:
    order_id = order_with_items(app, 1250)
    result = checkout(app, order_id, headers)
    assert result.status == 200, result
    payment_id: str = result.json["paymentId"]
    app.pump(orders.orders_publisher, "orders")
    app.authorize_and_settle(payment_id, headers)
    app.pump(orders.orders_projector, "orders")
    return payment_id


def test_a_purchase_is_one_trace_across_orders_and_payments(
    embedded_app: Harness, spans: InMemorySpanExporter
) -> None:
    """The client sends its trace on each request; every span the purchase causes, in both
    services and across both asynchronous hops, is in that trace."""
    headers = {"traceparent": CLIENT_TRACEPARENT}
    order_id = embedded_app.http(orders.create_order, "POST", "/orders",
                                 {"customerId": "c-1", "currency": "EUR"},
                                 headers=headers).json["orderId"]
    embedded_app.http(orders.add_item, "POST", f"/orders/{order_id}/items",
                      {"productId": "p", "quantity": 2, "unitPrice": 1250},
                      route_params={"orderId": order_id}, headers=headers)
    payment_id = checkout(embedded_app, order_id, headers).json["paymentId"]
    embedded_app.authorize_and_settle(payment_id, headers)

    in_trace = {s.name for s in spans.get_finished_spans() if trace_id(s) == CLIENT_TRACE}
    assert {
        "POST /orders", "POST /orders/{orderId}/items", "POST /orders/{orderId}/checkout",
        # Orders -> Payments over HTTP
        "PUT /payments/{paymentId}", "CreatePayment payment",
        "POST /payments/{paymentId}/authorize", "commit payment",
        # Payments' publisher continues the authorize commit, the acquirer the message
        "publish payment", "payments_acquirer", "CompletePayment payment",
        # ... and Orders' consumer the PaymentCompleted message: the order is Paid
        "on_payment_event", "MarkOrderPaid order", "commit order",
    } <= in_trace
    view = embedded_app.http(orders.get_order, "GET", f"/orders/{order_id}",
                             route_params={"orderId": order_id})
    assert view.json["status"] == "Paid"
    # The batch spans are their own traces, linked to the commits they carry.
    batches = named(spans, "payments-publisher-v1 batch")
    assert batches and all(trace_id(b) != CLIENT_TRACE for b in batches)
    assert any(format(link.context.trace_id, "032x") == CLIENT_TRACE
               for b in batches for link in b.links)


def test_without_a_client_trace_the_authorization_is_one_trace_into_orders(
    embedded_app: Harness, spans: InMemorySpanExporter
) -> None:
    purchase(embedded_app)
    (authorize,) = named(spans, "POST /payments/{paymentId}/authorize")
    (consumed,) = named(spans, "on_payment_event")
    (paid,) = named(spans, "MarkOrderPaid order")
    (acquired,) = named(spans, "payments_acquirer")
    assert trace_id(authorize) == trace_id(acquired) == trace_id(consumed) == trace_id(paid)
    (checked_out,) = named(spans, "POST /orders/{orderId}/checkout")
    (put,) = named(spans, "PUT /payments/{paymentId}")
    assert trace_id(put) == trace_id(checked_out) != trace_id(authorize)
    assert put.parent is not None and put.parent.span_id != 0


def test_the_trace_context_is_in_the_commit_and_the_message(
    embedded_app: Harness, spans: InMemorySpanExporter
) -> None:
    order_id = order_with_items(embedded_app, 500)
    payment_id = checkout(embedded_app, order_id).json["paymentId"]
    embedded_app.http(payments.authorize_payment, "POST", f"/payments/{payment_id}/authorize",
                      route_params={"paymentId": payment_id})
    started = embedded_app.feed("payments")[-1]
    assert started.trace_context and started.trace_context["traceparent"].startswith("00-")
    (commit_span,) = [s for s in named(spans, "commit payment")
                      if s.attributes and s.attributes.get("es.first_version") == 2]
    assert commit_span.context is not None
    assert format(commit_span.context.span_id, "016x") in started.trace_context["traceparent"]
    embedded_app.pump(payments.payments_publisher, "payments")
    (queued,) = embedded_app.bus().receive(embedded_app.authorizations_queue(), timeout=0)
    properties = queued.application_properties
    assert properties["traceparent"] == properties["Diagnostic-Id"]
    assert str(properties["traceparent"]).split("-")[1] == trace_id(commit_span)


def test_a_commit_without_trace_context_reads_as_before() -> None:
    document = {"id": "order-1:1", "streamId": "order-1", "streamType": "order", "version": 1,
                "events": [{"version": 1, "eventId": "e", "type": "OrderCreated",
                            "schemaVersion": 1, "occurredAt": "t", "data": {}}],
                "correlationId": "c", "causationId": "k", "committedAt": "t"}
    commit = Commit.from_document(document)
    assert commit.trace_context is None and "traceContext" not in commit.to_document()
    odd = Commit.from_document({**document, "traceContext": "not an object"})
    assert odd.trace_context is None  # tracing is not data: never a reason to refuse a commit
    kept = Commit.from_document({**document, "traceContext": {"traceparent": CLIENT_TRACEPARENT}})
    assert kept.to_document()["traceContext"] == {"traceparent": CLIENT_TRACEPARENT}


def run_isolated(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A fresh process: the tracer provider can be installed once per process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_console_exporter_prints_one_line_per_span() -> None:
    done = run_isolated("""
        from opentelemetry import trace
        from app.settings import TelemetrySettings
        from app.telemetry import configure_tracing
        from eventstore.tracing import span
        assert configure_tracing(TelemetrySettings.model_validate(
            {"OTEL_TRACES_EXPORTER": "console"}), "orders")
        with span("outer"):
            with span("inner"):
                pass
        trace.get_tracer_provider().force_flush()
    """)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("[trace]")]
    assert len(lines) == 2 and "inner" in lines[0] and "outer" in lines[1], done.stdout
    inner_trace = lines[0].split()[1]
    assert inner_trace == lines[1].split()[1] and inner_trace.startswith("trace=")


def test_application_insights_is_wired_by_the_connection_string() -> None:
    done = run_isolated("""
        import json
        from opentelemetry import trace
        from app.settings import Settings
        from app.bootstrap import configure_telemetry
        import os
        settings = Settings.from_environ(os.environ)
        assert configure_telemetry(settings)
        provider = trace.get_tracer_provider()
        exporters = [type(getattr(p, "span_exporter", None)).__name__
                     for p in provider._active_span_processor._span_processors]
        print(json.dumps({"exporters": exporters,
                          "service": provider.resource.attributes["service.name"]}))
    """, **{**example_settings(), **dict(APPLICATIONINSIGHTS_CONNECTION_STRING=(
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=https://tracing-test.in.applicationinsights.invalid/"),
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING=(
        "ClientId=00000000-0000-0000-0000-000000000000;Authorization=AAD"),
        SERVICES="payments", BACKEND="embedded", OTEL_TRACES_EXPORTER="")})
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout.strip().splitlines()[-1])
    assert "AzureMonitorTraceExporter" in described["exporters"]
    assert described["service"] == "payments"
