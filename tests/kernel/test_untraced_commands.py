"""Without an OpenTelemetry SDK provider the kernel skips the tracing API entirely: no span, and
no trace context stored in a commit, even when the caller sends a ``traceparent``. Run in a
fresh interpreter, since a provider, once installed by another test, stays for the process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from pathlib import Path
from domain.orders import ORDER_STREAM, CreateOrder, order_codec, order_decider
from eventstore import tracing
from eventstore.commands import CommandContext, CommandProcessor
from eventstore.embedded.store import EmbeddedDatabase

inbound = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
with EmbeddedDatabase(Path(sys.argv[1]) / "orders.db") as database:
    processor = CommandProcessor(database.events, ORDER_STREAM, order_decider, order_codec)
    with tracing.span("request", parent=inbound) as current:
        processor.execute("o-1", CreateOrder("o-1", "c-1", "EUR"), CommandContext("c", "k"))
        valid = current.get_span_context().is_valid
    [commit] = database.events.read_stream(ORDER_STREAM.stream_id("o-1"))
print(json.dumps({"configured": tracing.tracing_configured(), "span_valid": valid,
                  "trace_context": commit.trace_context}))
"""


def test_without_an_sdk_nothing_is_traced_or_stored(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"configured": False, "span_valid": False,
                                       "trace_context": None}
