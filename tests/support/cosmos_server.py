"""The Cosmos DB protocol test server (``@vercel/cosmosdb-server``) for the test run.

A pytest plugin (registered in ``tests/conftest.py``):

- fixture ``cosmos_server`` (session): starts the server once per test process, on a free
  loopback port over HTTPS (self-signed certificate), and yields a ``CosmosServerInfo``
  (``endpoint``, ``key``, ``connection_string``, ``settings``). The server is stopped when the
  session ends. The contract suite's cosmos backend uses the same server via
  ``shared_cosmos_server()``.
- ``COSMOS_KNOWN_GAPS``: the ONE list of tests that cannot pass against this server because it
  lacks a Cosmos DB feature. They run as ``xfail(strict=True)`` for the cosmos backend only, so a
  server that gains the feature makes them XPASS and fail the run until the entry is removed.
  docs/cosmos-test-server.md explains each gap.

Nothing is installed here: ``npm ci`` (part of ``make test``) installs the pinned server from
package-lock.json into node_modules/.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO_ROOT / "node_modules" / "@vercel" / "cosmosdb-server"
LAUNCHER = Path(__file__).with_name("cosmos_server_launcher.js")

EMULATOR_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
"""The well-known, publicly documented key of the Azure Cosmos DB emulator. It is the ONLY Cosmos
DB key allowed in this repository (the test server accepts any key; this one makes the
connection string look like the emulator's)."""

START_TIMEOUT = 30.0

# --------------------------------------------------------------------------------------------
# Known gaps of the test server: the one list (see docs/cosmos-test-server.md)
# --------------------------------------------------------------------------------------------

COSMOS_KNOWN_GAPS: dict[str, str] = {}
"""THE list of tests the test server cannot pass, by node id (without parameters), with the
reason. Applied only to the cosmos variant of a contract test (``[cosmos]``) or to a test marked
``cosmos``, as xfail(strict=True, raises=AssertionError): if the server gains the feature, the
run fails until the entry is removed. Keep docs/cosmos-test-server.md in step."""


def pytest_configure(config: pytest.Config) -> None:
    # The test server's certificate is self-signed and the Cosmos tests accept it (loopback
    # only); urllib3 warns on every such request, also from the SDK's background threads while
    # other tests run. Only loopback hosts are silenced.
    config.addinivalue_line(
        "filterwarnings",
        r"ignore:Unverified HTTPS request is being made to host '127\.:"
        "urllib3.exceptions.InsecureRequestWarning",
    )


def _is_cosmos_item(item: pytest.Item) -> bool:
    """The cosmos variant of a contract test, or a test marked ``cosmos``."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "backend" in callspec.params:
        return bool(callspec.params["backend"] == "cosmos")
    return item.get_closest_marker("cosmos") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        reason = COSMOS_KNOWN_GAPS.get(item.nodeid.split("[", 1)[0])
        if reason is not None and _is_cosmos_item(item):
            item.add_marker(pytest.mark.xfail(reason=f"test-server gap: {reason}", strict=True,
                                              raises=AssertionError))


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CosmosServerInfo:
    endpoint: str  # "https://{host}:{port}/", host 127.0.0.1 unless asked otherwise
    key: str  # EMULATOR_KEY
    connection_string: str  # "AccountEndpoint=...;AccountKey=...;"

    @property
    def settings(self) -> dict[str, str]:
        """App settings for ``cosmos_client_from_settings``: the connection string plus the
        loopback-only permission to accept the self-signed certificate."""
        return {"COSMOS": self.connection_string, "COSMOS_ACCEPT_EMULATOR_CERT": "true"}


@dataclass
class CosmosTestServer:
    info: CosmosServerInfo
    process: subprocess.Popen[str]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
        with suppress(OSError):
            self.log_path.unlink()


def _require_installed() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "node is not on PATH: the Cosmos tests need Node.js >= 20 to run the Cosmos DB test "
            "server (@vercel/cosmosdb-server)",
            pytrace=False,
        )
    if not (PACKAGE_DIR / "package.json").is_file():
        pytest.fail(
            f"@vercel/cosmosdb-server is not installed ({PACKAGE_DIR} is missing): run `npm ci` "
            f"in {REPO_ROOT} (make test does it)",
            pytrace=False,
        )
    return node


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)


def start_cosmos_server(
    *, host: str = "127.0.0.1", timeout: float = START_TIMEOUT
) -> CosmosTestServer:
    """Start a server process on ``host`` (a loopback address) and a free port, and wait (up to
    ``timeout`` seconds) until it accepts connections. The caller stops it."""
    node = _require_installed()
    log_fd, log_name = tempfile.mkstemp(prefix="cosmosdb-server-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(log_fd, "w") as log_file:
        process = subprocess.Popen(
            [node, str(LAUNCHER), host, "0"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,  # the launcher exits when this pipe closes
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(
        target=_read_lines, args=(process.stdout, lines), name="cosmosdb-server-stdout", daemon=True
    ).start()

    def fail(why: str) -> NoReturn:
        log = server.log()
        server.stop()
        pytest.fail(f"the Cosmos DB test server {why}\n--- server log ---\n{log}", pytrace=False)

    info = CosmosServerInfo(endpoint="", key=EMULATOR_KEY, connection_string="")
    server = CosmosTestServer(info=info, process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    port: int | None = None
    while port is None:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.0)) if remaining > 0 else None
        except queue.Empty:
            line = None
        if line is None:
            fail(
                f"did not report a port within {timeout:g}s"
                if process.poll() is None
                else f"exited with code {process.returncode} before it was ready"
            )
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("ready"):
            port = int(message["port"])

    # The port is reported from the listen callback; still confirm it accepts connections.
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                break
        except OSError:
            if time.monotonic() >= deadline or process.poll() is not None:
                fail(f"is not accepting connections on {host}:{port}")
            time.sleep(0.05)

    endpoint = f"https://{host}:{port}/"
    server.info = CosmosServerInfo(
        endpoint=endpoint,
        key=EMULATOR_KEY,
        connection_string=f"AccountEndpoint={endpoint};AccountKey={EMULATOR_KEY};",
    )
    return server


@contextmanager
def running_cosmos_server(
    *, host: str = "127.0.0.1", timeout: float = START_TIMEOUT
) -> Iterator[CosmosTestServer]:
    """A server of its own (e.g. to stop it mid-test); the shared one is ``cosmos_server``."""
    server = start_cosmos_server(host=host, timeout=timeout)
    try:
        yield server
    finally:
        server.stop()


class _SharedServer:
    """One server per test process, started on first use (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: CosmosTestServer | None = None

    def get(self) -> CosmosServerInfo:
        with self._lock:
            if self._server is None or self._server.process.poll() is not None:
                self._server = start_cosmos_server()
            return self._server.info

    def stop(self) -> None:
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()


_SHARED = _SharedServer()


def shared_cosmos_server() -> CosmosServerInfo:
    """The test process's server, started on first use and stopped at the end of the session."""
    return _SHARED.get()


def stop_shared_cosmos_server() -> None:
    _SHARED.stop()


@pytest.fixture(scope="session")
def cosmos_server() -> Iterator[CosmosServerInfo]:
    """The running test server: ``endpoint``, ``key``, ``connection_string``, ``settings``."""
    try:
        yield shared_cosmos_server()
    finally:
        stop_shared_cosmos_server()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_shared_cosmos_server()
