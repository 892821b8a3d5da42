"""The whole flow over HTTP against the local host (``python -m devhost``, acquirer delay 0).

- **add-item, one client**: the round trip of one add-item request with nothing else running;
- **order flow, N clients for S seconds**: each client creates an order, adds 4 items, deletes
  one, checks out and authorizes the payment, then waits until the order is Paid; it reports
  complete orders per second, authorize -> Paid latency (until the order's projection shows
  Paid), and the projection lag: from the 2xx of the last add-item until the projection (what
  ``GET /orders/{id}`` answers with ``X-View-Source: projection``) has that version.

The flow runs twice: with one client (nothing queues, so its latencies are the path's own) and
with N clients (the host's throughput, and what queueing adds to the latencies).

The clients use the standard library's ``http.client`` with one kept-alive connection each, so the
client's own cost stays small next to the host's. Waiting watches the projection in the host's
data file instead of polling the API, which would load the host it measures: one thread of this
process reads the views every client waits for with one query every half millisecond (a
read-only SQLite reader; WAL readers never block the host), and each wait ends with one ``GET``
through the API that must agree.
"""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.0005


class Client:
    """One kept-alive HTTP/1.1 connection to the host."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None
                ) -> tuple[int, dict[str, str], Any]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if payload is not None else {}
        self._connection.request(method, f"/api{path}", body=payload, headers=headers)
        response = self._connection.getresponse()
        raw = response.read()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        status, _, document = self.request(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path} answered {status}: {document}")
        return document

    def close(self) -> None:
        self._connection.close()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def add_item_latency(port: int, requests: int) -> dict[str, Any]:
    client = Client(port)
    try:
        order = client.ok("POST", "/orders", {"customerId": "c", "currency": "EUR"})["orderId"]
        for _ in range(20):  # warm the connection, the caches and the thread pool
            client.ok("POST", f"/orders/{order}/items",
                      {"productId": "p", "quantity": 1, "unitPrice": 1})
        latencies = []
        for n in range(requests):
            if n % 10 == 0:  # carts of a realistic size (a view's cost grows with its cart)
                order = client.ok("POST", "/orders", {"customerId": "c",
                                                      "currency": "EUR"})["orderId"]
            started = time.perf_counter()
            client.ok("POST", f"/orders/{order}/items",
                      {"productId": "p", "quantity": 1, "unitPrice": 1})
            latencies.append(time.perf_counter() - started)
    finally:
        client.close()
    return {"requests": requests, "p50_ms": ms(statistics.median(latencies)),
            "p99_ms": ms(percentile(latencies, 0.99))}


View = dict[str, Any]


@dataclass
class _Wait:
    order_id: str
    done: Callable[[View], bool]
    seen: threading.Event = field(default_factory=threading.Event)
    seen_at: float = 0.0


class ProjectionWatcher:
    """One thread that reads, every ``POLL_SECONDS``, the views of the orders being waited for,
    straight from the host's SQLite file, and releases each wait at the first read whose view
    satisfies it (stamped with the time of that read)."""

    def __init__(self, database: Path) -> None:
        self._database = database
        self._waits: list[_Wait] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="projection-watcher",
                                        daemon=True)
        self._thread.start()

    def wait(self, order_id: str, done: Callable[[View], bool], timeout: float,
             what: str) -> float:
        """Block until the order's view satisfies ``done``; returns when that was first read
        (``time.perf_counter()``)."""
        wait = _Wait(order_id, done)
        with self._lock:
            self._waits.append(wait)
            self._wake.notify()
        if not wait.seen.wait(timeout):
            with self._lock:
                if wait in self._waits:
                    self._waits.remove(wait)
            raise RuntimeError(f"timed out waiting for {what}")
        return wait.seen_at

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        conn = sqlite3.connect(f"file:{self._database}?mode=ro", uri=True)
        try:
            while True:
                with self._lock:
                    while not self._waits and not self._stopped:
                        self._wake.wait()
                    if self._stopped:
                        return
                    waits = list(self._waits)
                ids = sorted({w.order_id for w in waits})
                rows = conn.execute(
                    f"SELECT id, document FROM views WHERE id IN ({','.join('?' * len(ids))})",
                    ids).fetchall()
                read_at = time.perf_counter()
                views = {row[0]: dict(json.loads(row[1])) for row in rows}
                released = [w for w in waits if w.order_id in views and w.done(views[w.order_id])]
                if released:
                    with self._lock:
                        for wait in released:
                            self._waits.remove(wait)
                    for wait in released:
                        wait.seen_at = read_at
                        wait.seen.set()
                time.sleep(POLL_SECONDS)
        finally:
            conn.close()


@dataclass
class FlowFigures:
    orders: int = 0
    to_paid: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def one_order(client: Client, watcher: ProjectionWatcher, figures: FlowFigures) -> None:
    order = client.ok("POST", "/orders", {"customerId": "c", "currency": "EUR"})["orderId"]
    added = []
    for n in range(4):
        added.append(client.ok("POST", f"/orders/{order}/items",
                               {"productId": f"p{n}", "quantity": 1, "unitPrice": 100}))
    written = time.perf_counter()
    version = added[-1]["version"]
    projected = watcher.wait(order, lambda view: int(view["version"]) >= version, 30,
                             f"the projection of order {order} at version {version}")
    lag = projected - written
    status, headers, _ = client.request("GET", f"/orders/{order}?minVersion={version}")
    if status != 200 or headers.get("x-view-source") != "projection":
        raise RuntimeError(f"the API does not answer order {order} from the projection")
    client.ok("DELETE", f"/orders/{order}/items/{added[1]['cartItemId']}")
    payment = client.ok("POST", f"/orders/{order}/checkout")["paymentId"]
    started = time.perf_counter()
    client.ok("POST", f"/payments/{payment}/authorize")
    paid = watcher.wait(order, lambda view: view.get("status") == "Paid", 30,
                        f"order {order} to be Paid")
    to_paid = paid - started
    if client.ok("GET", f"/orders/{order}")["status"] != "Paid":
        raise RuntimeError(f"the API does not show order {order} Paid")
    with figures.lock:
        figures.orders += 1
        figures.lag.append(lag)
        figures.to_paid.append(to_paid)


def order_flow(port: int, watcher: ProjectionWatcher, clients: int, seconds: float
               ) -> dict[str, Any]:
    figures = FlowFigures()
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def client_loop() -> None:
        client = Client(port)
        try:
            while time.monotonic() < deadline:
                one_order(client, watcher, figures)
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"the order flow failed: {errors[0]!r}") from errors[0]
    return {
        "clients": clients, "seconds": round(elapsed, 1), "orders": figures.orders,
        "orders_per_second": round(figures.orders / elapsed, 1),
        "authorize_to_paid_p50_ms": ms(statistics.median(figures.to_paid)),
        "authorize_to_paid_p99_ms": ms(percentile(figures.to_paid, 0.99)),
        "projection_lag_p50_ms": ms(statistics.median(figures.lag)),
        "projection_lag_p99_ms": ms(percentile(figures.lag, 0.99)),
    }


def run(clients: int, seconds: float, add_items: int, processes: int = 1) -> dict[str, Any]:
    """The figures of one host, ``processes`` processes (``--processes``) on its port."""
    from tests.e2e.localhost import LocalHost, poll

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        host = LocalHost(data_dir, {"PAYMENTS_ACQUIRER_DELAY_MS": "0"},
                         args=("--processes", str(processes))).start()
        watcher: ProjectionWatcher | None = None
        try:
            # Measured once every process serves and owns its share of the feed ranges.
            poll(lambda: balanced(host.log(), processes), 60,
                 f"the {processes} host processes to share the feed ranges", interval=0.2)
            single = add_item_latency(host.port, add_items)
            watcher = ProjectionWatcher(data_dir / "orders.db")
            alone = order_flow(host.port, watcher, 1, seconds / 2)
            flow = order_flow(host.port, watcher, clients, seconds)
        finally:
            if watcher is not None:
                watcher.close()
            host.stop()
    return {"processes": processes, "add_item_one_client": single,
            "order_flow_one_client": alone, "order_flow": flow}


_OWNS = re.compile(r"Lease '(\w+)' range \S+ .*; (\S+) owns ranges (\S+) of \d+")


def balanced(log: str, processes: int) -> bool:
    """Whether the host's log says every change-feed function's ranges are spread evenly over
    ``processes`` instances (the latest line of each instance counts)."""
    owned: dict[str, dict[str, int]] = {}
    for function, instance, ranges in _OWNS.findall(log):
        owned.setdefault(function, {})[instance] = 0 if ranges == "none" else len(
            ranges.split(","))
    counts = [[n for n in by_instance.values() if n] for by_instance in owned.values()]
    return bool(counts) and all(
        len(c) == processes and max(c) - min(c) <= 1 for c in counts)


def print_figures(figures: dict[str, Any]) -> None:
    single = figures["add_item_one_client"]
    print(f"\nover HTTP (local host, {figures['processes']} process(es), acquirer delay 0): "
          f"add-item, 1 client: p50 "
          f"{single['p50_ms']} ms, p99 {single['p99_ms']} ms ({single['requests']} requests)")
    for flow in (figures["order_flow_one_client"], figures["order_flow"]):
        print(f"order flow, {flow['clients']} client(s), {flow['seconds']} s: {flow['orders']} "
              f"orders Paid, {flow['orders_per_second']}/s; authorize -> Paid p50 "
              f"{flow['authorize_to_paid_p50_ms']} ms, p99 {flow['authorize_to_paid_p99_ms']} "
              f"ms; projection lag p50 {flow['projection_lag_p50_ms']} ms, p99 "
              f"{flow['projection_lag_p99_ms']} ms")
