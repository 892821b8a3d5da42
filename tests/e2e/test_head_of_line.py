"""Head-of-line proof: a slow acquirer (seconds per payment) holds up neither the projections of
unrelated streams nor the other payments. The acquirer runs in a Service Bus function, off the
change feed, with as many messages in flight as host.json allows; the feed is split into ranges
pumped side by side."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from contracts.headers import VIEW_SOURCE_HEADER
from tests.e2e.localhost import LocalHost, poll

pytestmark = pytest.mark.e2e

ACQUIRER_SECONDS = 2.0
PAYMENTS = 8


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LocalHost]:
    local = LocalHost(tmp_path / "data",
                      {"PAYMENTS_ACQUIRER_DELAY_MS": str(int(ACQUIRER_SECONDS * 1000))}).start()
    yield local
    local.stop()


def status(client: httpx.Client, kind: str, aggregate_id: str) -> str:
    response = client.get(f"/{kind}/{aggregate_id}")
    assert response.status_code == 200, response.text
    found: str = response.json()["status"]
    return found


def projection_lag(client: httpx.Client) -> float:
    """Seconds from an add-item's answer until the projection (not the stream fallback) shows
    its version."""
    order = client.post("/orders", json={"customerId": "c", "currency": "EUR"}).json()["orderId"]
    added = client.post(f"/orders/{order}/items",
                        json={"productId": "p", "quantity": 1, "unitPrice": 100})
    assert added.status_code == 201, added.text
    answered, version = time.monotonic(), int(added.json()["version"])

    def projected() -> bool:
        # Until the projection has the version, the host answers from the stream (it knows it
        # wrote that version): the header tells the two apart.
        response = client.get(f"/orders/{order}")
        return (response.headers.get(VIEW_SOURCE_HEADER) == "projection"
                and int(response.json()["version"]) >= version)

    poll(projected, 10, f"the projection of order {order}", interval=0.005)
    return time.monotonic() - answered


def test_a_slow_acquirer_delays_neither_unrelated_projections_nor_other_payments(
    host: LocalHost, capsys: pytest.CaptureFixture[str],
) -> None:
    client = httpx.Client(base_url=host.base, timeout=30)
    payment_ids = [str(uuid.uuid4()) for _ in range(PAYMENTS)]
    for payment_id in payment_ids:
        put = client.put(f"/payments/{payment_id}",
                         json={"referenceId": f"order-{payment_id}", "amount": 1000,
                               "currency": "EUR"})
        assert put.status_code == 201, put.text

    started = time.monotonic()
    with ThreadPoolExecutor(PAYMENTS) as pool:
        answers = list(pool.map(lambda p: client.post(f"/payments/{p}/authorize").status_code,
                                payment_ids))
    assert answers == [202] * PAYMENTS

    lags = [projection_lag(client) for _ in range(5)]
    # Every unrelated projection was there while the acquirer was still busy with all of them.
    still_started = [status(client, "payments", p) for p in payment_ids]
    during_acquirer = time.monotonic() - started
    assert still_started == ["Started"] * PAYMENTS, still_started
    assert during_acquirer < ACQUIRER_SECONDS

    poll(lambda: all(status(client, "payments", p) == "Completed" for p in payment_ids), 30,
         "every payment to complete")
    elapsed = time.monotonic() - started
    client.close()

    with capsys.disabled():
        print(f"\nhead-of-line: {PAYMENTS} payments with a {ACQUIRER_SECONDS:g}s acquirer "
              f"completed together in {elapsed:.2f}s (one after another: "
              f"{PAYMENTS * ACQUIRER_SECONDS:g}s); 5 unrelated projections meanwhile, lag "
              f"median {statistics.median(lags) * 1000:.0f}ms, max {max(lags) * 1000:.0f}ms")
    assert elapsed < 2 * ACQUIRER_SECONDS  # about one acquirer delay, not eight
