"""This project's side of the comparison: the order lifecycle of 8 commands (create, 4 adds,
delete 1, checkout, mark paid) through the kernel's command loop on the embedded SQLite store.

- cold: the processor caches nothing, so every command reads its stream, folds it, decides and
  appends;
- warm: the stream's state is cached, so a command decides and appends (one write, no read).

Each command carries what a real one does: a correlation id per order, a new causation id per
command, and the request fingerprint. Run as ``python -m bench.lifecycle``; prints one JSON
object (the same fields as ``bench/reference_side.py``).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from domain.orders import (
    ORDER_STREAM,
    AddItemToCart,
    CreateOrder,
    DeleteItemFromCart,
    ItemAddedToCart,
    MarkOrderPaid,
    OrderCommand,
    OrderEvent,
    OrderState,
    checkout_command,
    order_codec,
    order_decider,
)
from eventstore.clock import new_id
from eventstore.commands import CommandContext, CommandProcessor
from eventstore.embedded.store import EmbeddedDatabase

SYNCHRONOUS_LEVELS = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}


OrderProcessor = CommandProcessor[OrderCommand, OrderEvent, OrderState]


def lifecycle(processor: OrderProcessor) -> None:
    order_id, correlation = new_id(), new_id()  # as the HTTP functions make them

    def context() -> CommandContext:
        return CommandContext(correlation, new_id())

    processor.execute(order_id, CreateOrder(order_id, "customer-1", "EUR"), context())
    added = []
    for n in range(4):
        result = processor.execute(order_id, AddItemToCart(f"product-{n}", 1 + n, 250 * (n + 1)),
                                   context())
        added.append(next(e.cart_item_id for e in result.events
                          if isinstance(e, ItemAddedToCart)))
    # The checkout is decided from what the last command returned, as a client would.
    deleted = processor.execute(order_id, DeleteItemFromCart(added[1]), context())
    checkout = checkout_command(deleted.state, deleted.version)
    processor.execute(order_id, checkout, context())
    processor.execute(order_id, MarkOrderPaid(checkout.payment_id), context())


def run(orders: int, clients: int, mode: str, synchronous: str, db: Path) -> dict[str, Any]:
    database = EmbeddedDatabase(db, synchronous=synchronous)
    applied = database.pragma("synchronous")
    if applied != SYNCHRONOUS_LEVELS[synchronous]:
        raise SystemExit(f"this project runs with synchronous={applied}, not {synchronous}")
    processor = CommandProcessor(database.events, ORDER_STREAM, order_decider, order_codec,
                                 cache_size=0 if mode == "cold" else orders + 1)

    def lifecycles(count: int) -> None:
        for _ in range(count):
            lifecycle(processor)

    share = orders // clients
    started, cpu_started = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        for done in [pool.submit(lifecycles, share) for _ in range(clients)]:
            done.result()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    database.close()
    commands = 8 * share * clients
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--clients", type=int, default=1, help="threads, each its own orders")
    parser.add_argument("--mode", choices=("cold", "warm"), required=True)
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), required=True)
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(run(args.orders, args.clients, args.mode, args.synchronous, args.db)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
