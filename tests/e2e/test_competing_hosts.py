"""Two local hosts on one data folder share the change feed as the trigger's instances do: each
owns an equal share of every function's ranges and says so, both serve the flow, and a host
stopped cleanly hands its ranges over at once (released, then acquired, before any lease could
have expired)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.localhost import LocalHost, poll

pytestmark = pytest.mark.e2e

FUNCTIONS = ("orders_projector", "orders_publisher", "payments_projector", "payments_publisher")
LEASE_SECONDS = 30.0  # long: a handover seen sooner can only come from a release
OWNS = re.compile(r"Lease '(\w+)' range \S+ .*; (\S+) owns ranges (\S+) of 4")


def owned(host: LocalHost) -> dict[str, set[str]]:
    """Per function, the ranges the host's log says it owns now."""
    found: dict[str, set[str]] = {}
    for function, _, ranges in OWNS.findall(host.log()):
        found[function] = set() if ranges == "none" else set(ranges.split(","))
    return found


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[tuple[LocalHost, LocalHost]]:
    args = ("--lease-seconds", str(LEASE_SECONDS))
    first = LocalHost(tmp_path / "data", args=(*args, "--instance-id", "host-a")).start()
    second = LocalHost(tmp_path / "data", args=(*args, "--instance-id", "host-b")).start()
    yield first, second
    second.stop()
    first.stop()


def test_two_hosts_share_the_ranges_and_a_clean_stop_hands_them_over(
    hosts: tuple[LocalHost, LocalHost],
) -> None:
    a, b = hosts

    def split_evenly() -> bool:
        mine, theirs = owned(a), owned(b)
        return all(len(mine.get(f, ())) == 2 and len(theirs.get(f, ())) == 2
                   and not mine[f] & theirs[f] for f in FUNCTIONS)

    # b takes one range per function and acquisition cycle (13/60 of the lease: 6.5 s).
    poll(split_evenly, 30, "each host to own two ranges of every function", interval=0.2)
    assert "taken by host-b from host-a (balancing)" in b.log()

    order = a.request("POST", "/orders", json={"customerId": "c", "currency": "EUR"}).json()
    order_id = order["orderId"]
    assert b.request("POST", f"/orders/{order_id}/items",
                     json={"productId": "p", "quantity": 2, "unitPrice": 500}).status_code == 201
    payment = a.request("POST", f"/orders/{order_id}/checkout").json()["paymentId"]
    assert b.request("POST", f"/payments/{payment}/authorize").status_code == 202
    a.wait_for_status("orders", order_id, "Paid")

    stopped_at = time.monotonic()
    assert b.stop() == 0
    poll(lambda: all(len(owned(a).get(f, ())) == 4 for f in FUNCTIONS), 15,
         "host-a to own every range", interval=0.1)
    assert time.monotonic() - stopped_at < LEASE_SECONDS  # released, not expired
    assert b.log().count("released by host-b (stopping)") == 8
    assert all(owned(b)[f] == set() for f in FUNCTIONS)
