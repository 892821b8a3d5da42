"""Wires the pieces: settings, the indexed app, HTTP server, feed pumps and bus workers."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from devhost import settings as host_settings
from devhost.bus import BusWorker
from devhost.feed import FeedPump
from devhost.http import build_app
from devhost.indexing import AppIndex, index_app, load_app

log = logging.getLogger("devhost")

BUS_WORKERS_PER_FUNCTION = 4


@dataclass(frozen=True)
class HostOptions:
    app_dir: Path
    host: str = "127.0.0.1"
    port: int = 7071
    backend: str = "embedded"
    data_dir: Path | None = None
    settings_path: Path | None = None
    reset: bool = False


def route_prefix(app_dir: Path) -> str:
    try:
        host_json = json.loads((app_dir / "host.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "api"
    return str(host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api"))


def prepare(options: HostOptions) -> tuple[AppIndex, dict[str, str]]:
    """Export settings, load and index the app. Raises SettingsError with a clear message."""
    import os

    values = host_settings.load_values(
        host_settings.settings_file(options.app_dir, options.settings_path))
    data_dir = options.data_dir or Path(os.environ.get("EMBEDDED_DATA_DIR")
                                        or values.get("EMBEDDED_DATA_DIR") or ".data")
    if not data_dir.is_absolute():
        data_dir = options.app_dir / data_dir
    if options.reset and data_dir.exists():
        shutil.rmtree(data_dir)
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


def run(options: HostOptions) -> int:
    """Run until Ctrl-C; the exit code is 1 when the HTTP server could not start."""
    index, _ = prepare(options)
    from app.bootstrap import EmbeddedBackend
    from functions import runtime

    services = runtime.services()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    for spec in index.feeds:
        threads.append(FeedPump(spec, services.stores_of_database(spec.database).events, stop))
    if index.bus:
        if isinstance(services.backend, EmbeddedBackend):
            bus = services.backend.bus
            for bus_spec in index.bus:
                threads.extend(BusWorker(bus_spec, bus, stop, i)
                               for i in range(BUS_WORKERS_PER_FUNCTION))
        else:
            log.warning("--backend azure: Service Bus-triggered functions are not run by this "
                        "host (use `func start` for them); messages stay in Service Bus")
    prefix = route_prefix(options.app_dir)
    _print_banner(index, options, prefix)
    for thread in threads:
        thread.start()
    config = uvicorn.Config(build_app(index.http, prefix), host=options.host, port=options.port,
                            log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        runtime.shutdown()
        print("Host stopped.", flush=True)
    if not server.started:
        print(f"error: could not listen on {options.host}:{options.port}", file=sys.stderr)
        return 1
    return 0


def _print_banner(index: AppIndex, options: HostOptions, prefix: str) -> None:
    base = f"http://{options.host}:{options.port}/{prefix}".rstrip("/")
    lines = [f"Local host ({options.backend} backend). Functions:"]
    for http_spec in index.http:
        lines.append(f"    {http_spec.name}: [{','.join(http_spec.methods)}] "
                     f"{base}/{http_spec.route}")
    for feed in index.feeds:
        lines.append(f"    {feed.name}: cosmosDBTrigger ({feed.database}/{feed.container}, "
                     f"lease prefix {feed.lease_prefix!r})")
    for bus_spec in index.bus:
        lines.append(f"    {bus_spec.name}: serviceBusTrigger ({bus_spec.entity_path})")
    lines.append(f"Listening on {base} (Ctrl-C to stop)")
    print("\n".join(lines), flush=True)
