"""Running one function invocation and printing the line `func start` prints for it, with what
an operator needs to follow it: outcome, status, route, aggregate id, correlation id, duration."""

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

# Given the function's result: (did it fail?, what to append to the line).
Describe = Callable[[Any], tuple[bool, str]]


def invoke(name: str, call: Callable[..., Any], kwargs: dict[str, Any], detail: str = "",
           describe: Describe | None = None) -> Any:
    """Call the function; print `Executed 'Functions.<name>' (Succeeded|Failed, Id, Duration)`
    followed by ``detail`` and what ``describe`` says of the result."""
    invocation_id = uuid.uuid4()
    started = time.perf_counter()
    failed = True
    suffix = detail
    try:
        result = call(**kwargs)
        failed = False
        if describe is not None:
            failed, described = describe(result)
            suffix = f"{detail} {described}".strip()
        return result
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        print_line(f"Executed 'Functions.{name}' ({'Failed' if failed else 'Succeeded'}, "
                   f"Id={invocation_id}, Duration={elapsed_ms:.0f}ms)" + (f" {suffix}"
                                                                          if suffix else ""))


def print_line(text: str) -> None:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    with _print_lock:
        print(f"[{stamp}] {text}", file=sys.stdout, flush=True)
