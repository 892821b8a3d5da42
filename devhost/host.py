"""Wires the pieces: settings, the indexed app, HTTP server, feed pumps and bus workers."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from devhost import processes
from devhost import settings as host_settings
from devhost.bus import BusOptions, BusWorker
from devhost.datadir import DataDirectory, DataDirectoryError
from devhost.feed import feed_processor
from devhost.http import FunctionsHttpApp, HttpLimits, StrictHttpProtocol
from devhost.indexing import AppIndex, index_app, load_app
from devhost.invocations import flush_lines, print_line
from eventstore.changefeed import ChangeFeedProcessor, ProcessorOptions

if TYPE_CHECKING:
    from app.bootstrap import Services, ServiceStores
    from devhost.chaos import Chaos

log = logging.getLogger("devhost")


class StartupError(RuntimeError):
    """The host cannot start; the message is one line that says why and what to do."""


@dataclass(frozen=True)
class HostOptions:
    app_dir: Path
    host: str = "127.0.0.1"
    port: int = 7071
    backend: str = "embedded"
    data_dir: Path | None = None
    settings_path: Path | None = None
    reset: bool = False
    accept_missing_data: bool = False
    limits: HttpLimits = field(default_factory=HttpLimits)
    instance_id: str | None = None  # None: "{hostname}:{pid}"
    lease_seconds: float = 10.0
    chaos_seed: int | None = None
    processes: int = 1  # host processes on the port and data folder (see devhost/processes.py)
    process_number: int = 1  # which of them this is; 2..N are started by the first
    listen_fd: int | None = None  # 2..N: the first process's listening socket


def default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def host_json(app_dir: Path) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json.loads((app_dir / "host.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise StartupError(f"{app_dir / 'host.json'} is not valid JSON: {error}") from None
    return document


def route_prefix(app_dir: Path) -> str:
    return str(host_json(app_dir).get("extensions", {}).get("http", {}).get("routePrefix", "api"))


def data_directory(options: HostOptions, values: dict[str, str]) -> Path:
    data_dir = options.data_dir or Path(os.environ.get("EMBEDDED_DATA_DIR")
                                        or values.get("EMBEDDED_DATA_DIR") or ".data")
    return data_dir if data_dir.is_absolute() else options.app_dir / data_dir


def prepare(options: HostOptions) -> tuple[AppIndex, dict[str, str]]:
    """Export settings, load and index the app. Raises SettingsError with a clear message."""
    values = host_settings.load_values(
        host_settings.settings_file(options.app_dir, options.settings_path))
    data_dir = data_directory(options, values)
    if options.reset and DataDirectory(data_dir).reset():
        print(f"Removed local data in {data_dir}")
    overrides = {"BACKEND": options.backend, "EMBEDDED_DATA_DIR": str(data_dir)}
    if "PAYMENTS_API_BASE_URL" not in os.environ:
        # Both services run in this host: checkout calls Payments here, whatever the port.
        overrides["PAYMENTS_API_BASE_URL"] = (
            f"http://{_loopback_for(options.host)}:{options.port}/{route_prefix(options.app_dir)}")
    settings = host_settings.apply(values, overrides)
    index = index_app(load_app(options.app_dir), settings)
    return index, settings


def _loopback_for(bind_address: str) -> str:
    """Where this host can call itself: a wildcard bind address is not a destination."""
    if bind_address in ("0.0.0.0", ""):
        return "127.0.0.1"
    if ":" in bind_address:
        return "[::1]" if bind_address in ("::", "::0") else f"[{bind_address}]"
    return bind_address


class _Server(uvicorn.Server):
    """Announces the functions only once the port is bound (a failed bind says so instead)."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self._banner, flush=True)


def _stop_workers(stop: threading.Event, http_app: FunctionsHttpApp,
                  processors: list[ChangeFeedProcessor], threads: list[threading.Thread],
                  others: processes.OtherProcesses | None) -> None:
    if others is not None:
        others.signal_stop()  # they stop meanwhile
    stop.set()
    http_app.close()
    for processor in processors:
        processor.request_stop()
    for processor in processors:
        processor.stop()  # releases its leases: the other hosts take over at once
    for thread in threads:
        thread.join(timeout=10)
    if others is not None:
        others.wait()


def run(options: HostOptions) -> int:
    """Run until Ctrl-C; the exit code is 1 when the HTTP server could not start."""
    try:
        listener = processes.shared_listener(options)
    except OSError as error:
        print(f"error: could not listen on {options.host}:{options.port}: {error}",
              file=sys.stderr)
        return 1
    index, _ = prepare(options)
    from functions import runtime

    instance_id = options.instance_id or default_instance_id()
    chaos = _install_chaos(options) if options.chaos_seed is not None else None
    services = runtime.services()
    settings = services.settings
    data = DataDirectory(settings.host.embedded_data_dir)
    files = [f"{settings.database(s)}.db" for s in settings.services] + ["bus.db"]
    if options.backend == "embedded":
        _hold(data, files, options.accept_missing_data)
    stop = threading.Event()
    try:
        processors, threads = _triggers(index, services, options, instance_id, stop)
        if options.backend == "embedded":
            data.register(files)
        prefix = route_prefix(options.app_dir)
        StrictHttpProtocol.header_timeout = options.limits.header_timeout
        http_app = FunctionsHttpApp(index.http, prefix, options.limits)
        config = uvicorn.Config(
            http_app, host=options.host,
            port=options.port, log_level="warning", access_log=False, lifespan="off",
            http=StrictHttpProtocol,
            loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio")
        banner = _banner(index, options, prefix, instance_id, processors, chaos)
        server = _Server(config, banner)
        for processor in processors:
            processor.start()
        for thread in threads:
            thread.start()
        # uvicorn shuts down on SIGTERM, then raises it again: stop as after Ctrl-C (leases
        # released, summary printed) instead of dying at once.
        signal.signal(signal.SIGTERM, _interrupt)
        others = (processes.OtherProcesses.start(options, listener)
                  if listener is not None and options.listen_fd is None else None)
        try:
            server.run(sockets=None if listener is None else [listener])
        except SystemExit:  # uvicorn exits when it cannot bind; say so below, once
            pass
        finally:
            if options.listen_fd is not None:
                processes.ignore_stop_signals()
            _stop_workers(stop, http_app, processors, threads, others)
    finally:
        if chaos is not None:
            print_line(chaos.summary())
        flush_lines()  # every invocation's line before the host says it stopped
        runtime.shutdown()
        data.release()
        print("Host stopped.", flush=True)
    if not server.started and not server.should_exit:  # not stopped during start-up
        print(f"error: could not listen on {options.host}:{options.port}", file=sys.stderr)
        return 1
    return 0


def _hold(data: DataDirectory, files: list[str], accept_missing: bool) -> None:
    """Mark the data folder in use, after checking its files belong together."""
    data.hold()
    try:
        for warning in data.check(files, accept_missing):
            log.warning(warning)
    except DataDirectoryError as error:
        data.release()
        raise StartupError(str(error)) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _triggers(index: AppIndex, services: Services, options: HostOptions, instance_id: str,
              stop: threading.Event) -> tuple[list[ChangeFeedProcessor], list[threading.Thread]]:
    """A processor per change-feed function, and the bus workers."""
    processors: list[ChangeFeedProcessor] = []
    threads: list[threading.Thread] = []
    lease_options = ProcessorOptions.scaled(options.lease_seconds)
    for spec in index.feeds:
        stores = _reachable(services, spec.database)
        if stores.feed is None or stores.leases is None:
            raise StartupError(f"the {options.backend} backend offers no partitioned change feed "
                               f"with leases for database {spec.database!r}")
        processors.append(feed_processor(spec, stores.feed, stores.leases,
                                         instance_id=instance_id, options=lease_options))
    bus_options = BusOptions.from_host_json(host_json(options.app_dir))
    for bus_spec in index.bus:
        threads.extend(
            BusWorker(bus_spec, services.backend.inbox(bus_spec.entity_path,
                                                       bus_options.max_auto_lock_renewal),
                      stop, i, bus_options)
            for i in range(bus_options.max_concurrent_calls))
    return processors, threads


def _install_chaos(options: HostOptions) -> Chaos:
    """Build this process's Services over the fault-injecting backend: the functions run the
    same code as always, on unkind stores and bus."""
    from app.bootstrap import EmbeddedBackend, bootstrap
    from devhost.chaos import Chaos, ChaosBackend
    from functions import runtime

    if options.backend != "embedded":
        raise StartupError("--chaos works on the embedded backend only")
    assert options.chaos_seed is not None
    chaos = Chaos(options.chaos_seed)
    settings = runtime.settings()
    runtime.install(bootstrap(settings, backend=ChaosBackend(EmbeddedBackend(settings), chaos)))
    return chaos


def _reachable(services: Services, database: str) -> ServiceStores:
    """The database's stores, after one cheap read: an unreachable or misconfigured backend
    stops the start with one line instead of feed pumps failing forever."""
    from eventstore.errors import TransientError

    try:
        stores = services.stores_of_database(database)
        stores.events.load_checkpoint("devhost-start-probe")
        if stores.feed is not None:
            stores.feed.feed_ranges()  # Cosmos DB: records the container's ranges on first use
    except TransientError as error:
        raise StartupError(f"the event store of database {database!r} is unreachable: "
                           f"{_first_line(error)}") from None
    except (ValueError, LookupError, OSError) as error:
        raise StartupError(f"the event store of database {database!r} cannot be used: "
                           f"{_first_line(error)}") from None
    return stores


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _banner(index: AppIndex, options: HostOptions, prefix: str, instance_id: str,
            processors: list[ChangeFeedProcessor], chaos: Chaos | None) -> str:
    if options.process_number > 1:
        return (f"Host process {options.process_number} of {options.processes} "
                f"(instance {instance_id}) serves the same port.")
    base = f"http://{options.host}:{options.port}/{prefix}".rstrip("/")
    lines = [f"Local host ({options.backend} backend), instance {instance_id}."]
    if options.processes > 1:
        lines.append(f"{options.processes} host processes share this port and the change feed "
                     "(this is the first; the others print one line each).")
    if processors:
        ranges = len(processors[0].feed.feed_ranges())
        where = "data folder" if options.backend == "embedded" else "Cosmos DB account"
        lines.append(f"Change feed: {ranges} feed ranges per lease prefix, shared with every "
                     f"host on this {where} (leases of {options.lease_seconds:g}s).")
    if chaos is not None:
        lines.append(f"Chaos mode, seed {chaos.seed}: faults are injected and printed as "
                     "'chaos fault #N'.")
    lines.append("Functions:")
    for http_spec in index.http:
        lines.append(f"    {http_spec.name}: [{','.join(http_spec.methods)}] "
                     f"{base}/{http_spec.route}")
    for feed in index.feeds:
        lines.append(f"    {feed.name}: cosmosDBTrigger ({feed.database}/{feed.container}, "
                     f"lease prefix {feed.lease_prefix!r})")
    for bus_spec in index.bus:
        lines.append(f"    {bus_spec.name}: serviceBusTrigger ({bus_spec.entity_path})")
    lines.append(f"Listening on {base} (Ctrl-C to stop)")
    return "\n".join(lines)

