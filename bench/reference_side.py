"""The reference side of the comparison: the same order lifecycle on the Python ``eventsourcing``
library with its SQLite persistence, written the way that library's documentation writes an
aggregate and an application.

Run by ``bench.compare`` with the interpreter of the reference's own virtualenv
(``.venv-bench-ref``); of this project it imports only ``bench.harness`` (standard library
only), which it shares with ``bench.lifecycle``. Prints one JSON object.

- cold: no aggregate cache, so every command reconstructs the order from its stored events (what
  this project's command loop does with an empty cache);
- warm: the library's aggregate cache without fast-forwarding, so a command reads nothing and
  writes once (what this project's command loop does with a cached stream).

The library sets no ``synchronous`` pragma (SQLite's default, FULL, applies); for a matched
comparison every connection its pool opens is given the requested level, which is read back
from the pool's own connection and reported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

# Run as a script from the reference's virtualenv: the repository root makes bench.harness
# importable (nothing else of this project is, or is needed).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.sqlite import SQLiteConnectionPool

from bench.harness import SYNCHRONOUS_LEVELS, lifecycle_arguments, timed_lifecycles

CHECKOUT_NAMESPACE = UUID("fa766fc9-0d98-560b-bdb5-b954f23201f3")


class OrderRefused(Exception):
    pass


class Order(Aggregate):
    @event("Created")
    def __init__(self, customer_id: str, currency: str) -> None:
        self.customer_id = customer_id
        self.currency = currency
        self.status = "Created"
        self.items: dict[str, int] = {}  # cart item id -> subtotal
        self.items_added = 0
        self.payment_id: str | None = None

    @property
    def total(self) -> int:
        return sum(self.items.values())

    def add_item(self, product_id: str, quantity: int, unit_price: int) -> str:
        if self.status != "Created":
            raise OrderRefused("items can only change while the order is Created")
        cart_item_id = f"item-{self.items_added + 1}"
        self._item_added(cart_item_id, product_id, quantity, unit_price)
        return cart_item_id

    @event("ItemAdded")
    def _item_added(self, cart_item_id: str, product_id: str, quantity: int, unit_price: int
                    ) -> None:
        self.items[cart_item_id] = quantity * unit_price
        self.items_added += 1

    def delete_item(self, cart_item_id: str) -> None:
        if self.status != "Created":
            raise OrderRefused("items can only change while the order is Created")
        if cart_item_id not in self.items:
            raise OrderRefused(f"no cart item {cart_item_id}")
        self._item_deleted(cart_item_id)

    @event("ItemDeleted")
    def _item_deleted(self, cart_item_id: str) -> None:
        del self.items[cart_item_id]

    def prepare_to_pay(self, payment_id: str, amount: int) -> None:
        if self.status != "Created" or not self.items or amount != self.total:
            raise OrderRefused("cannot check out")
        self._prepared_to_pay(payment_id, amount, self.currency)

    @event("PreparedToPay")
    def _prepared_to_pay(self, payment_id: str, amount: int, currency: str) -> None:
        self.status = "PreparedToPay"
        self.payment_id = payment_id

    def mark_paid(self, payment_id: str) -> None:
        if self.status != "PreparedToPay" or payment_id != self.payment_id:
            raise OrderRefused("does not wait for this payment")
        self._paid(payment_id)

    @event("Paid")
    def _paid(self, payment_id: str) -> None:
        self.status = "Paid"


class Orders(Application[UUID]):
    def create(self, customer_id: str, currency: str) -> UUID:
        order = Order(customer_id, currency)
        self.save(order)
        return order.id

    def add_item(self, order_id: UUID, product_id: str, quantity: int, unit_price: int) -> str:
        order: Order = self.repository.get(order_id)
        cart_item_id = order.add_item(product_id, quantity, unit_price)
        self.save(order)
        return cart_item_id

    def delete_item(self, order_id: UUID, cart_item_id: str) -> None:
        order: Order = self.repository.get(order_id)
        order.delete_item(cart_item_id)
        self.save(order)

    def checkout(self, order_id: UUID) -> str:
        order: Order = self.repository.get(order_id)
        payment_id = str(uuid5(CHECKOUT_NAMESPACE, f"{order_id}:{order.version}"))
        order.prepare_to_pay(payment_id, order.total)
        self.save(order)
        return payment_id

    def mark_paid(self, order_id: UUID, payment_id: str) -> None:
        order: Order = self.repository.get(order_id)
        order.mark_paid(payment_id)
        self.save(order)


def set_synchronous(level: str) -> None:
    """Give every connection the pool opens ``PRAGMA synchronous = level``."""
    original = SQLiteConnectionPool._create_connection

    def create(pool: SQLiteConnectionPool) -> Any:
        connection = original(pool)
        connection._sqlite_conn.execute(f"PRAGMA synchronous = {level}")
        return connection

    SQLiteConnectionPool._create_connection = create


def run(orders: int, clients: int, mode: str, synchronous: str, db: Path) -> dict[str, Any]:
    set_synchronous(synchronous)
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}
    if mode == "warm":
        env |= {"AGGREGATE_CACHE_MAXSIZE": str(orders + 1), "AGGREGATE_CACHE_FASTFORWARD": "n"}
    app = Orders(env=env)
    with app.factory.datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA synchronous")
        applied = cursor.fetchone()[0]
    if applied != SYNCHRONOUS_LEVELS[synchronous]:
        raise SystemExit(f"the reference runs with synchronous={applied}, not {synchronous}")

    def lifecycle() -> None:
        order_id = app.create("customer-1", "EUR")
        added = [app.add_item(order_id, f"product-{n}", 1 + n, 250 * (n + 1)) for n in range(4)]
        app.delete_item(order_id, added[1])
        payment_id = app.checkout(order_id)
        app.mark_paid(order_id, payment_id)

    return timed_lifecycles(lifecycle, orders, clients, app.close, db, synchronous)


def main() -> int:
    args = lifecycle_arguments("reference_side.py", __doc__)
    print(json.dumps(run(args.orders, args.clients, args.mode, args.synchronous, args.db)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
