"""The local host under hostile clients and damaged data: bounded bodies, deadlines, problem+json
for every error it answers itself, logs an operator can follow, and refusals that name the file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.localhost import ROOT, LocalHost, free_port, poll

pytestmark = pytest.mark.e2e

LIMITS = ("--max-request-bytes", str(1024 * 1024), "--body-timeout", "1",
          "--header-timeout", "1")


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LocalHost]:
    local = LocalHost(tmp_path / "data", args=LIMITS).start()
    yield local
    local.stop()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raw_exchange(host: LocalHost, data: bytes, wait: float = 5.0) -> bytes:
    """Send bytes as they are and read until the server closes or ``wait`` passes."""
    with socket.create_connection(("127.0.0.1", host.port), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
        return received


def problem_of(response: bytes) -> tuple[int, dict[str, object], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"content-type: application/problem+json" in head.lower(), head
    return status, json.loads(body), head


def test_a_chunked_body_over_the_limit_is_413_without_growing_the_host(host: LocalHost) -> None:
    assert host.process is not None
    before = rss_kib(host.process.pid)
    chunk = b"x" * 65536

    def body() -> Iterator[bytes]:
        for _ in range(64 * 16):  # 64 MiB, sixty-four times the limit
            yield chunk

    try:
        response = httpx.post(f"{host.base}/orders", content=body(),
                              headers={"content-type": "application/json"}, timeout=30)
        status = response.status_code
        assert response.headers["content-type"] == "application/problem+json"
    except httpx.TransportError:
        status = 413  # the host may close the connection while the client is still sending
    assert status == 413
    grown_mib = (rss_kib(host.process.pid) - before) / 1024
    assert grown_mib < 16, f"the host grew by {grown_mib:.0f} MiB"
    assert host.request("GET", "/orders/unknown").status_code == 404  # still serving


def test_a_body_shorter_than_announced_is_answered_408_within_the_deadline(
        host: LocalHost) -> None:
    started = time.monotonic()
    response = raw_exchange(host, b"POST /api/orders HTTP/1.1\r\nhost: x\r\n"
                                  b"content-type: application/json\r\ncontent-length: 100\r\n"
                                  b"\r\n{\"customerId\"")
    status, problem, _ = problem_of(response)
    assert status == 408 and problem["status"] == 408
    assert time.monotonic() - started < 4


def test_a_request_head_that_never_completes_is_disconnected(host: LocalHost) -> None:
    started = time.monotonic()
    response = raw_exchange(host, b"GET /api/orders/x HTTP/1.1\r\nhost: x\r\n", wait=6)
    assert response == b"" and time.monotonic() - started < 4


def test_malformed_http_and_unknown_methods_get_problem_json(host: LocalHost) -> None:
    status, problem, _ = problem_of(raw_exchange(host, b"GARBAGE\x00\x01 nonsense\r\n\r\n"))
    assert status == 400 and problem["title"] == "Malformed request"
    for method in ("TRACE", "PATCH", "PROPFIND"):
        response = host.request(method, "/orders")
        assert response.status_code == 405, method
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["allow"] == "POST"
    unknown = host.request("GET", "/nothing-here")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


def test_a_client_that_disconnects_mid_body_is_not_an_error(host: LocalHost) -> None:
    with socket.create_connection(("127.0.0.1", host.port)) as sock:
        sock.sendall(b"POST /api/orders HTTP/1.1\r\nhost: x\r\ncontent-length: 50\r\n\r\n{")
    assert host.request("GET", "/orders/unknown").status_code == 404
    assert "Exception in ASGI application" not in host.log()
    assert "Traceback" not in host.log()


def test_each_invocation_line_has_outcome_status_route_ids_and_correlation(
        host: LocalHost) -> None:
    created = host.request("POST", "/orders", json={"customerId": "c", "currency": "EUR"},
                           headers={"X-Correlation-Id": "trace-log-1"})
    order_id = created.json()["orderId"]
    assert created.headers["X-Correlation-Id"] == "trace-log-1"
    refused = host.request("POST", f"/orders/{order_id}/checkout")  # empty cart: 409
    assert refused.status_code == 409
    assert refused.headers["X-Correlation-Id"]  # made for the request, and shown

    def lines() -> list[str] | None:
        found = [line for line in host.log().splitlines()
                 if "Functions.orders_create'" in line or "Functions.orders_checkout'" in line]
        return found if len(found) >= 2 else None

    create_line, checkout_line = poll(lines, 10, "two invocation lines")[:2]
    assert "(Succeeded" in create_line and "POST /api/orders -> 201" in create_line
    assert "correlation=trace-log-1" in create_line
    assert f"orderId={order_id}" in checkout_line and "-> 409" in checkout_line
    assert f"correlation={refused.headers['X-Correlation-Id']}" in checkout_line


def run_host(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Start the host and expect it to refuse (it exits by itself)."""
    env = {**os.environ, "PAYMENTS_ACQUIRER_DELAY_MS": "0"}
    return subprocess.run([sys.executable, "-m", "devhost", "--port", str(free_port()),
                           "--data-dir", str(tmp_path / "data"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_a_damaged_data_file_stops_the_start_with_one_line_naming_it(tmp_path: Path) -> None:
    first = LocalHost(tmp_path / "data").start()
    first.request("POST", "/orders", json={"customerId": "c", "currency": "EUR"})
    first.stop()
    (tmp_path / "data" / "payments.db").write_bytes(b"garbage" * 1000)
    done = run_host(tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "payments.db is damaged" in errors[0], done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_lost_service_file_is_refused_while_the_others_refer_to_it(tmp_path: Path) -> None:
    first = LocalHost(tmp_path / "data").start()
    first.request("POST", "/orders", json={"customerId": "c", "currency": "EUR"})
    first.stop()
    (tmp_path / "data" / "orders.db").unlink()
    refused = run_host(tmp_path)
    assert refused.returncode == 2
    assert "orders.db is missing" in refused.stderr and "--accept-missing-data" in refused.stderr
    accepted = LocalHost(tmp_path / "data", args=("--accept-missing-data",)).start()
    try:
        assert "going on without its data" in accepted.log()
        assert accepted.request("GET", "/orders/x").status_code == 404
    finally:
        accepted.stop()


def test_reset_refuses_while_a_host_runs_on_the_data(tmp_path: Path) -> None:
    running = LocalHost(tmp_path / "data").start()
    try:
        done = run_host(tmp_path, "--reset")
        assert done.returncode == 2 and "stop it" in done.stderr
        alone = subprocess.run([sys.executable, "-m", "devhost.reset", "--data-dir",
                                str(tmp_path / "data")], cwd=ROOT, capture_output=True,
                               text=True, timeout=60, check=False)
        assert alone.returncode == 2 and "stop it" in alone.stderr
        assert (tmp_path / "data" / "orders.db").exists()
    finally:
        running.stop()


def test_a_port_in_use_fails_without_announcing_it_listens(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ}
        done = subprocess.run([sys.executable, "-m", "devhost", "--port", str(port),
                               "--data-dir", str(tmp_path / "data")], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "Listening on" not in done.stdout and "could not listen" in done.stderr


def test_an_unreachable_cosmos_db_stops_the_start_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ,
           "COSMOS": f"AccountEndpoint=https://127.0.0.1:{free_port()}/;AccountKey="
                     "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEc"
                     "aGQy67XIw/Jw==;",
           "COSMOS_ACCEPT_EMULATOR_CERT": "true"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "devhost", "--port", str(free_port()),
                           "--backend", "azure"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unreachable" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 120
