"""Running one function invocation and printing the line `func start` prints for it."""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("devhost")
_print_lock = threading.Lock()


def invoke(name: str, call: Callable[..., Any], kwargs: dict[str, Any], detail: str = "") -> Any:
    """Call the function; print `Executed 'Functions.<name>' (Succeeded|Failed, Id, Duration)`."""
    invocation_id = uuid.uuid4()
    started = time.perf_counter()
    outcome = "Succeeded"
    try:
        return call(**kwargs)
    except BaseException:
        outcome = "Failed"
        raise
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        suffix = f" {detail}" if detail else ""
        with _print_lock:
            print(f"[{stamp}] Executed 'Functions.{name}' ({outcome}, Id={invocation_id}, "
                  f"Duration={elapsed_ms:.0f}ms){suffix}", file=sys.stdout, flush=True)
