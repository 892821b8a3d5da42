"""`python -m devhost`: run the function app locally without Azure Functions Core Tools."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from devhost.host import HostOptions, run
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
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(),
                        help="function app root holding function_app.py (default: .)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be 1..65535, got {args.port}")
    return HostOptions(app_dir=args.app_dir.resolve(), host=args.host, port=args.port,
                       backend=args.backend, data_dir=args.data_dir,
                       settings_path=args.settings, reset=args.reset)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("azure", "httpx", "uamqp"):  # SDK request logs drown the invocation lines
        logging.getLogger(chatty).setLevel(logging.WARNING)
    options = parse_args(argv)
    try:
        return run(options)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
