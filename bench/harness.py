"""What both sides of the lifecycle comparison share: the arguments, the timed run over client
threads, and how the result and the file size are measured.

Standard library only: ``bench/reference_side.py`` imports it from the reference library's own
virtualenv, where nothing else of this project is installed.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

SYNCHRONOUS_LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
COMMANDS_PER_LIFECYCLE = 8  # create, four adds, a delete, checkout, mark paid


def lifecycle_arguments(prog: str, description: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--clients", type=int, default=1, help="threads, each its own orders")
    parser.add_argument("--mode", choices=("cold", "warm"), required=True)
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), required=True)
    parser.add_argument("--db", type=Path, required=True)
    return parser.parse_args()


def timed_lifecycles(lifecycle: Callable[[], None], orders: int, clients: int,
                     close: Callable[[], None], db: Path, synchronous: str) -> dict[str, Any]:
    """Run ``orders // clients`` lifecycles on each of ``clients`` threads; the wall and CPU
    time of that, then (after ``close``) the file's size."""

    def lifecycles(count: int) -> None:
        for _ in range(count):
            lifecycle()

    share = orders // clients
    started, cpu_started = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        for done in [pool.submit(lifecycles, share) for _ in range(clients)]:
            done.result()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    close()
    commands = COMMANDS_PER_LIFECYCLE * share * clients
    return {"commands": commands, "events": commands, "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "bytes": database_bytes(db), "synchronous": synchronous, "clients": clients}


def database_bytes(db: Path) -> int:
    """The file's size with its WAL folded in (what the data costs on disk)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
