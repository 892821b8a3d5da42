"""Over HTTP against `python -m devhost`: a customer's personal data is erased for good (no
byte of it left in anything the embedded backends or the host wrote), and orders and payments
are read as they were at an earlier version or moment."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.localhost import LocalHost

pytestmark = pytest.mark.e2e

# ASCII, so that every encoding the backends might use (UTF-8, JSON) writes the same bytes.
FIRST = {"name": "Zelda Quintero-Marsh", "email": "zelda.qm@example.org",
         "shippingAddress": "Calle Falsa 123\nSpringfield"}
MOVED = {"name": "Zelda Q. Marsh-Okafor", "email": "zelda.okafor@example.net",
         "shippingAddress": "Rua Inventada 9\nLisboa"}
SECRETS = [FIRST["name"], FIRST["email"], MOVED["name"], MOVED["email"], "zelda at example"]


def written_files(host: LocalHost) -> list[Path]:
    """Every file the host and its embedded backends wrote: the data folder and the host's
    captured output."""
    return [*sorted(p for p in host.data_dir.rglob("*") if p.is_file()), host.log_path]


def hits(files: list[Path]) -> dict[str, list[str]]:
    """Which files hold which secret (as written, or lower-cased)."""
    found: dict[str, list[str]] = {}
    for path in files:
        content = path.read_bytes()
        for secret in SECRETS:
            if any(form.encode() in content for form in (secret, secret.lower())):
                found.setdefault(path.name, []).append(secret)
    return found


def create(host: LocalHost, customer: dict[str, str] | None) -> str:
    body: dict[str, Any] = {"customerId": "cust-zelda", "currency": "EUR"}
    if customer is not None:
        body["customer"] = customer
    response = host.request("POST", "/orders", json=body)
    assert response.status_code == 201, response.text
    order_id: str = response.json()["orderId"]
    return order_id


def add_and_pay(host: LocalHost, order_id: str, price: int) -> None:
    added = host.request("POST", f"/orders/{order_id}/items",
                         json={"productId": "book", "quantity": 1, "unitPrice": price})
    assert added.status_code == 201, added.text
    checkout = host.request("POST", f"/orders/{order_id}/checkout")
    assert checkout.status_code == 200, checkout.text
    authorized = host.request("POST", f"/payments/{checkout.json()['paymentId']}/authorize")
    assert authorized.status_code == 202, authorized.text
    host.wait_for_status("orders", order_id, "Paid")


def test_erasure_leaves_no_byte_of_the_customer_while_orders_and_events_stay(
        host: LocalHost) -> None:
    paid = create(host, FIRST)
    moved = host.request("PUT", "/customers/cust-zelda/personal-data", json=MOVED)
    assert moved.status_code == 204, moved.text
    add_and_pay(host, paid, 1500)
    open_order = create(host, MOVED)
    refused = host.request("POST", "/orders", json={
        "customerId": "cust-zelda", "currency": "EUR",
        "customer": {**MOVED, "email": "zelda at example"}})
    assert refused.status_code == 400 and refused.json()["errors"][0]["field"] == \
        "customer.email"
    assert host.request("GET", f"/orders/{paid}").json()["customer"] == MOVED
    events = host.request("GET", f"/orders/{paid}/events").json()

    # The control: the search finds the details where they are kept, before the erasure.
    before = hits(written_files(host))
    assert before, "the search must find the personal data before it is erased"
    assert set(before) <= {"orders-personaldata.db", "orders-personaldata.db-wal"}, before

    assert host.request("DELETE", "/customers/cust-zelda/personal-data").status_code == 204
    again = host.request("DELETE", "/customers/cust-zelda/personal-data")
    assert again.status_code == 204 and again.content == b""

    files = written_files(host)
    assert {p.name for p in files} >= {"orders.db", "orders.db-wal", "payments.db",
                                       "payments.db-wal", "bus.db", "bus.db-wal",
                                       "orders-personaldata.db", "orders-personaldata.db-wal",
                                       host.log_path.name}
    assert hits(files) == {}

    # The orders and their events are intact; the details show as erased.
    order = host.request("GET", f"/orders/{paid}").json()
    assert order["status"] == "Paid" and order["customerId"] == "cust-zelda"
    assert order["customer"]["erased"] is True
    assert host.request("GET", f"/orders/{paid}/events").json() == events
    # The flow goes on for the customer's open order.
    add_and_pay(host, open_order, 700)
    assert host.request("GET", f"/orders/{open_order}").json()["customer"]["erased"] is True
    assert "Executed 'Functions.orders_erase_personal_data' (Succeeded" in host.log()

    assert host.stop() == 0
    assert hits(written_files(host)) == {}


def at(timestamp: str, microseconds: int = 0) -> str:
    moment = datetime.fromisoformat(timestamp) + timedelta(microseconds=microseconds)
    return moment.isoformat().replace("+00:00", "Z")


def test_reading_the_walk_through_order_as_it_was(host: LocalHost) -> None:
    order_id = create(host, None)
    for n in range(1, 5):
        host.request("POST", f"/orders/{order_id}/items",
                     json={"productId": f"product-{n}", "quantity": n, "unitPrice": 1250})
    host.request("DELETE", f"/orders/{order_id}/items/item-2")
    payment_id = host.request("POST", f"/orders/{order_id}/checkout").json()["paymentId"]
    host.request("POST", f"/payments/{payment_id}/authorize")
    host.wait_for_status("orders", order_id, "Paid")
    events = host.request("GET", f"/orders/{order_id}/events").json()
    assert len(events) == 8

    at_five = host.request("GET", f"/orders/{order_id}", params={"asOfVersion": "5"})
    assert at_five.status_code == 200 and at_five.headers["X-View-Source"] == "stream"
    assert (at_five.json()["status"], at_five.json()["total"], len(at_five.json()["items"])) \
        == ("Created", 12500, 4)
    deleted_at = events[5]["occurredAt"]
    then = host.request("GET", f"/orders/{order_id}", params={"asOf": deleted_at}).json()
    assert (then["version"], then["total"]) == (6, 10000)
    offset = datetime.fromisoformat(deleted_at).isoformat()  # "+00:00", sent as %2B00:00
    assert host.request("GET", f"/orders/{order_id}",
                        params={"asOf": offset}).json()["version"] == 6
    before = host.request("GET", f"/orders/{order_id}",
                          params={"asOf": at(events[0]["occurredAt"], -1)})
    assert before.status_code == 404 and "did not exist at" in before.json()["detail"]
    beyond = host.request("GET", f"/orders/{order_id}", params={"asOfVersion": "9"})
    assert beyond.status_code == 404
    for params in ({"asOfVersion": "five"}, {"asOf": "last tuesday"},
                   {"asOf": "2026-01-05T10:00:00"}):
        malformed = host.request("GET", f"/orders/{order_id}", params=params)
        assert malformed.status_code == 400, params
        assert malformed.headers["content-type"].startswith("application/problem+json")
        assert malformed.json()["errors"][0]["field"] == next(iter(params))

    started = host.request("GET", f"/payments/{payment_id}", params={"asOfVersion": "2"})
    assert started.status_code == 200 and started.json()["status"] == "Started"
    assert host.request("GET", f"/payments/{payment_id}").json()["status"] == "Completed"
