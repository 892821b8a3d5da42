"""Where the process's traces go, chosen once from the settings (the spans themselves are made by
the kernel and the triggers, ``eventstore.tracing``):

- ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set (Azure): the Azure Monitor distro exports to
  Application Insights, authenticated as the identity ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
  names (the component accepts Entra ID ingestion only);
- ``OTEL_TRACES_EXPORTER=console`` (local): one line per finished span on stdout;
- neither: no SDK is installed, every span is a no-op and nothing is stored or sent.

The service name (``SERVICES``) becomes the resource's ``service.name``: Application Insights
shows it as the role, one per app.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from app.settings import TelemetrySettings


class _Once:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False


_installed = _Once()


def one_line(span: ReadableSpan) -> str:
    """``trace=<id> span=<id> parent=<id|-> <kind> <name> <ms>ms [ERROR]``, for the console."""
    context = span.get_span_context()
    parent = span.parent.span_id if span.parent is not None else None
    elapsed = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    failed = " ERROR" if span.status.status_code.name == "ERROR" else ""
    trace_id = format(context.trace_id, "032x") if context else "-"
    span_id = format(context.span_id, "016x") if context else "-"
    return (f"[trace] trace={trace_id} span={span_id} "
            f"parent={format(parent, '016x') if parent else '-'} {span.kind.name.lower()} "
            f"{span.name} {elapsed:.1f}ms{failed}\n")


def configure_tracing(settings: TelemetrySettings, service_name: str,
                      extra_processors: Sequence[SpanProcessor] = (),
                      console: TextIO | None = None) -> bool:
    """Install the exporters the settings ask for, once per process; False when nothing was
    installed (now or by an earlier call)."""
    with _installed.lock:
        if _installed.done:
            return False
        resource = Resource.create({"service.name": service_name})
        processors: list[SpanProcessor] = list(extra_processors)
        if settings.traces_exporter == "console":
            processors.append(BatchSpanProcessor(ConsoleSpanExporter(
                out=console or sys.stdout, formatter=one_line), schedule_delay_millis=200))
        if settings.applicationinsights_connection_string:
            _configure_azure_monitor(settings, resource, processors)
        elif processors:
            provider = TracerProvider(resource=resource)
            for processor in processors:
                provider.add_span_processor(processor)
            trace.set_tracer_provider(provider)
        else:
            return False
        _installed.done = True
        return True


def _configure_azure_monitor(settings: TelemetrySettings, resource: Resource,
                             processors: list[SpanProcessor]) -> None:
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor

    client_id = settings.applicationinsights_client_id
    configure_azure_monitor(
        connection_string=settings.applicationinsights_connection_string,
        credential=ManagedIdentityCredential(client_id=client_id) if client_id else None,
        resource=resource,
        span_processors=processors,
        # Traces only: the Functions host already sends the logs and metrics. The SDKs' own
        # spans are left out, the kernel's commit and send spans stand for them.
        disable_logging=True,
        disable_metrics=True,
        instrumentation_options={"azure_sdk": {"enabled": False}},
    )
