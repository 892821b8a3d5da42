"""`python -m devhost`: run the function app locally without Azure Functions Core Tools."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from app.settings import SettingsError as AppSettingsError
from devhost.datadir import DataDirectoryError
from devhost.host import HostOptions, StartupError, run
from devhost.http import HttpLimits
from devhost.settings import SettingsError


def parse_args(argv: list[str] | None = None) -> HostOptions:
    parser = argparse.ArgumentParser(
        prog="python -m devhost",
        description="Run function_app.py locally: HTTP triggers on http://HOST:PORT/api, the "
        "change feed pumped into the change-feed functions, bus messages delivered to the "
        "Service Bus-triggered functions. Settings come from local.settings.json (else "
        "local.settings.example.json); environment variables take precedence.",
    )
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--backend", choices=["embedded", "azure"], default="embedded",
                        help="embedded: SQLite store + embedded bus under --data-dir (default); "
                        "azure: Cosmos DB and Service Bus from the COSMOS/SERVICEBUS settings")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="embedded data folder (default: EMBEDDED_DATA_DIR or .data)")
    parser.add_argument("--settings", type=Path, default=None,
                        help="settings file (default: local.settings.json, else the example)")
    parser.add_argument("--reset", action="store_true",
                        help="delete the embedded data folder before starting")
    parser.add_argument("--accept-missing-data", action="store_true",
                        help="start even when one service's data file is missing or replaced "
                        "while the others still refer to it (its data is lost)")
    limits = HttpLimits()
    parser.add_argument("--max-request-bytes", type=int, default=limits.max_request_bytes,
                        help=f"largest request body the host reads (default "
                        f"{limits.max_request_bytes}, the Functions host's limit)")
    parser.add_argument("--body-timeout", type=float, default=limits.body_timeout,
                        help=f"seconds a request body may take to arrive (default "
                        f"{limits.body_timeout:g})")
    parser.add_argument("--header-timeout", type=float, default=limits.header_timeout,
                        help=f"seconds a request head may take to arrive (default "
                        f"{limits.header_timeout:g})")
    parser.add_argument("--instance-id", default=None,
                        help="this host's name in the change-feed leases (default: "
                        "HOSTNAME:PID); hosts on one data folder (or Cosmos DB database) share "
                        "the feed ranges")
    parser.add_argument("--lease-seconds", type=float, default=10.0,
                        help="how long a feed-range lease lasts unless renewed: a stopped host's "
                        "ranges are taken over after this (default 10)")
    parser.add_argument("--chaos", type=int, default=None, metavar="SEED",
                        help="chaos mode: inject transient failures, redeliveries, delays and "
                        "early lock expiry, reproducibly from SEED (embedded backend only)")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="host processes sharing the port and the data folder, as N "
                        "instances would: Python runs on one core per process (default 1)")
    # Set by the first process for the others it starts (devhost/processes.py).
    parser.add_argument("--process-number", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(),
                        help="function app root holding function_app.py (default: .)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be 1..65535, got {args.port}")
    if args.max_request_bytes < 1 or args.body_timeout <= 0 or args.header_timeout <= 0:
        parser.error("--max-request-bytes, --body-timeout and --header-timeout must be positive")
    if not 1.0 <= args.lease_seconds <= 3600:
        parser.error(f"--lease-seconds must be 1..3600, got {args.lease_seconds:g}")
    if args.instance_id is not None and not (
            0 < len(args.instance_id) <= 128 and args.instance_id.isprintable()):
        parser.error("--instance-id must be 1 to 128 printable characters")
    if args.chaos is not None and args.backend != "embedded":
        parser.error("--chaos works on the embedded backend only")
    if not 1 <= args.processes <= 64:
        parser.error(f"--processes must be 1..64, got {args.processes}")
    if args.chaos is not None and args.processes > 1:
        parser.error("--chaos runs in one process: its faults are reproducible from the seed "
                     "only there")
    return HostOptions(app_dir=args.app_dir.resolve(), host=args.host, port=args.port,
                       backend=args.backend, data_dir=args.data_dir,
                       settings_path=args.settings, reset=args.reset,
                       accept_missing_data=args.accept_missing_data,
                       limits=HttpLimits(args.max_request_bytes, args.body_timeout,
                                         args.header_timeout),
                       instance_id=args.instance_id, lease_seconds=args.lease_seconds,
                       chaos_seed=args.chaos, processes=args.processes,
                       process_number=args.process_number, listen_fd=args.listen_fd)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("azure", "httpx", "uamqp"):  # SDK request logs drown the invocation lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    options = parse_args(argv)
    try:
        return run(options)
    except (SettingsError, AppSettingsError, StartupError, DataDirectoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
