"""`--processes 2`: two host processes on one port and one data folder, as two instances. Both
own feed ranges, orders reach Paid through whichever process serves each step, a stop stops
both, and the second one does not outlive the first when that one is killed."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devhost.__main__ import parse_args
from tests.e2e.localhost import ROOT, LocalHost, poll

pytestmark = pytest.mark.e2e

OWNER = re.compile(r"; (\S+) owns ranges (\S+) of 4")
SECOND = re.compile(r"Host process 2 of 2 \(instance \S+:(\d+)\) serves the same port")


def owners(host: LocalHost) -> set[str]:
    """The instances whose latest lease line says they own at least one range."""
    latest: dict[str, str] = {}
    for instance, ranges in OWNER.findall(host.log()):
        latest[instance] = ranges
    return {instance for instance, ranges in latest.items() if ranges != "none"}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LocalHost]:
    started = LocalHost(tmp_path / "data", {"PAYMENTS_ACQUIRER_DELAY_MS": "0"},
                        args=("--processes", "2", "--lease-seconds", "2")).start()
    yield started
    started.kill()


def second_pid(host: LocalHost) -> int:
    found = poll(lambda: SECOND.search(host.log()), 30, "the second process's line")
    return int(found.group(1))


def test_two_processes_share_the_feed_and_serve_the_flow(host: LocalHost) -> None:
    second = second_pid(host)
    poll(lambda: len(owners(host)) == 2, 30, "both processes to own feed ranges", interval=0.2)
    assert host.process is not None and second != host.process.pid

    orders = []
    for _ in range(6):
        # A new connection each time: either process may accept it.
        with httpx.Client(base_url=host.base, timeout=30) as client:
            order_id = client.post("/orders", json={"customerId": "c", "currency": "EUR"}
                                   ).json()["orderId"]
            assert client.post(f"/orders/{order_id}/items", json={
                "productId": "p", "quantity": 1, "unitPrice": 100}).status_code == 201
            payment = client.post(f"/orders/{order_id}/checkout").json()["paymentId"]
            assert client.post(f"/payments/{payment}/authorize").status_code == 202
        orders.append(order_id)
    for order_id in orders:
        host.wait_for_status("orders", order_id, "Paid")

    assert host.stop() == 0
    poll(lambda: not alive(second), 30, "the second process to stop with the first")
    assert host.log().count("Host stopped.") == 2


def test_the_second_process_stops_when_the_first_is_killed(host: LocalHost) -> None:
    second = second_pid(host)
    host.kill()
    poll(lambda: not alive(second), 30, "the orphaned second process to stop")
    assert host.log().count("Host stopped.") == 1  # the second one's clean stop


def test_a_port_in_use_fails_before_any_process_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "devhost", "--port", str(port),
                               "--processes", "2", "--data-dir", str(tmp_path / "data")],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert f"could not listen on 127.0.0.1:{port}" in done.stderr
    assert "Host process" not in done.stdout and not (tmp_path / "data").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--processes", "0"], "--processes must be 1..64, got 0"),
    (["--processes", "2", "--chaos", "7"], "--chaos runs in one process"),
])
def test_process_counts_that_cannot_work_are_refused(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(args)
    assert exited.value.code == 2 and message in capsys.readouterr().err
