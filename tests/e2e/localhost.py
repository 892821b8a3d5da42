"""Start and stop the local host (`python -m devhost`) as a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call probe until it returns something truthy; fail with ``what`` after the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class LocalHost:
    def __init__(self, data_dir: Path, env: Mapping[str, str] | None = None,
                 backend: str = "embedded", args: tuple[str, ...] = (),
                 launcher: tuple[str, ...] = ("-m", "devhost")) -> None:
        self.data_dir = data_dir
        self.backend = backend
        self.args = args
        self.launcher = launcher  # how the host is started (a test may run a patched one)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/api"
        self.log_path = data_dir.parent / f"host-{self.port}.log"
        self.env = {**os.environ, "PAYMENTS_ACQUIRER_DELAY_MS": "50", **(env or {})}
        self.env.pop("PAYMENTS_API_BASE_URL", None)  # the host points checkout at itself
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.base, timeout=30)

    def start(self) -> LocalHost:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *self.launcher, "--port", str(self.port),
             "--data-dir", str(self.data_dir), "--backend", self.backend, *self.args],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        poll(self._ready, 30, f"the local host on port {self.port} (log: {self.log_path})",
             interval=0.1)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"local host exited with {self.process.returncode}:\n{self.log()}")
        try:
            return httpx.get(f"{self.base}/orders/ready-probe", timeout=1).status_code == 404
        except httpx.TransportError:
            return False

    def stop(self) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"local host did not stop on SIGINT:\n{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is released or flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, **kwargs)

    def wait_for_status(self, kind: str, aggregate_id: str, status: str,
                        timeout: float = 30) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            response = self.client.get(f"/{kind}/{aggregate_id}")
            body: dict[str, Any] = response.json()
            return body if response.status_code == 200 and body["status"] == status else None

        return poll(probe, timeout, f"{kind} {aggregate_id} to be {status}")
