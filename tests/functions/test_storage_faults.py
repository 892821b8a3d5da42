"""Storage faults a client can hit answer 503 with Retry-After, never 500, and lose nothing that
was acknowledged."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore.embedded import sqlite as embedded_sqlite
from eventstore.embedded import store as embedded_store
from functions import orders
from tests.functions.conftest import Harness
from tests.functions.test_http_functions import add_item, add_ok, assert_problem, create_order

ITEM = {"productId": "p", "quantity": 1, "unitPrice": 100}

real_connect = embedded_sqlite.connect


def read_only(path: Path) -> sqlite3.Connection:
    """A connection to a file the process may read but not write (a read-only mount)."""
    real_connect(path).close()  # the pragmas the real one sets stay in the file
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)
    return conn


def full_disk(path: Path) -> sqlite3.Connection:
    """A connection whose file may not grow by a single page (a full disk)."""
    conn = real_connect(path)
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    return conn


@pytest.mark.parametrize("fault", [read_only, full_disk], ids=["read-only", "disk-full"])
def test_a_write_the_storage_refuses_is_503_and_acknowledged_writes_survive(
    embedded_app: Harness, monkeypatch: pytest.MonkeyPatch,
    fault: Callable[[Path], sqlite3.Connection],
) -> None:
    order_id = create_order(embedded_app)
    acknowledged = [add_ok(embedded_app, order_id, f"p-{n}") for n in range(3)]
    # Big enough to need a new page, so the full disk bites.
    big = {**ITEM, "productId": "x" * 100}
    with monkeypatch.context() as patch:
        patch.setattr(embedded_sqlite, "connect", fault)
        embedded_store.close_all()
        embedded_app.start()
        for _ in range(30):  # a page fills up after a few commits at the most
            result = add_item(embedded_app, order_id, big)
            if result.status != 201:
                break
        assert_problem(result, 503)
        assert result.headers["retry-after"]
        assert "unavailable" in result.json["detail"]
    embedded_store.close_all()
    embedded_app.start()  # the storage is back
    view = embedded_app.http(orders.get_order, "GET", f"/orders/{order_id}",
                             route_params={"orderId": order_id}).json
    assert [i["cartItemId"] for i in view["items"]][:3] == acknowledged
    assert add_item(embedded_app, order_id, ITEM).status == 201


def test_a_damaged_data_file_is_503_for_reads_and_writes(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    embedded_store.close_all()
    path = embedded_app.data_dir / "orders.db"
    for suffix in ("-wal", "-shm"):
        (embedded_app.data_dir / f"orders.db{suffix}").unlink(missing_ok=True)
    path.write_bytes(b"this is no longer a SQLite database" * 200)
    embedded_app.start()
    read = embedded_app.http(orders.get_order, "GET", f"/orders/{order_id}",
                             route_params={"orderId": order_id})
    assert_problem(read, 503)
    write = add_item(embedded_app, order_id, ITEM)
    assert_problem(write, 503)
