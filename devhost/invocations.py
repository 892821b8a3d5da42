"""Running one function invocation and printing the line `func start` prints for it, with what
an operator needs to follow it: outcome, status, route, aggregate id, correlation id, duration.

Lines are written by one writer thread, in the order the invocations finished, a few
milliseconds' worth at a time: a request never waits for the terminal (or a pipe that a slow
reader drains), and no lock is held around a write. ``flush_lines`` (also run at exit) waits
until every line so far is written.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from eventstore.clock import new_id, utc_now_iso

log = logging.getLogger("devhost")

# Given the function's result: (did it fail?, what to append to the line).
Describe = Callable[[Any], tuple[bool, str]]

_FLUSH_TIMEOUT = 5.0
_GATHER_SECONDS = 0.005


def invoke(name: str, call: Callable[..., Any], kwargs: dict[str, Any], detail: str = "",
           describe: Describe | None = None) -> Any:
    """Call the function; print `Executed 'Functions.<name>' (Succeeded|Failed, Id, Duration)`
    followed by ``detail`` and what ``describe`` says of the result."""
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
                   f"Id={new_id()}, Duration={elapsed_ms:.0f}ms)" + (f" {suffix}"
                                                                     if suffix else ""))


class _LineWriter:
    """Writes queued lines to stdout from its own thread, as many at a time as are waiting."""

    def __init__(self) -> None:
        self._lines: queue.SimpleQueue[str | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def put(self, line: str) -> None:
        self._ensure_started()
        self._lines.put(line)

    def flush(self, timeout: float = _FLUSH_TIMEOUT) -> None:
        if self._thread is None:
            return
        written = threading.Event()
        self._lines.put(written)
        written.wait(timeout)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="invocation-lines", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            batch = [self._lines.get()]
            if isinstance(batch[0], str):
                # Let the lines of the invocations running now gather: one wake-up and one write
                # for all of them, instead of a thread switch per line on the hot path.
                time.sleep(_GATHER_SECONDS)
            while True:
                try:
                    batch.append(self._lines.get_nowait())
                except queue.Empty:
                    break
            text = "".join(item for item in batch if isinstance(item, str))
            if text:
                try:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                except (OSError, ValueError) as error:  # stdout closed or gone: say it once
                    log.debug("could not write invocation lines: %r", error)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()


_writer = _LineWriter()
atexit.register(_writer.flush)


def print_line(text: str) -> None:
    stamp = utc_now_iso()[:23] + "Z"  # milliseconds, as isoformat(timespec="milliseconds")
    _writer.put(f"[{stamp}] {text}\n")


def flush_lines() -> None:
    """Wait until every line printed so far is written."""
    _writer.flush()
