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

import json
import sys
from pathlib import Path
from typing import Any

from bench.harness import SYNCHRONOUS_LEVELS, lifecycle_arguments, timed_lifecycles
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

    return timed_lifecycles(lambda: lifecycle(processor), orders, clients, database.close, db,
                            synchronous)


def main() -> int:
    args = lifecycle_arguments("python -m bench.lifecycle", __doc__)
    print(json.dumps(run(args.orders, args.clients, args.mode, args.synchronous, args.db)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
