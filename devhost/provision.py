"""`python -m devhost.provision`: create the Cosmos DB databases and containers on an emulator.

In Azure, Bicep creates them (and the Cosmos DB trigger cannot create lease containers under a
managed identity). Under `func start` against the emulator, run this once so the change-feed
triggers find their containers when the host starts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.settings import SERVICE_NAMES, Settings, SettingsError
from devhost import settings as host_settings
from eventstore.adapters.cosmos import (
    CosmosConfigurationError,
    cosmos_client_from_settings,
    ensure_containers,
    ensure_personal_data_container,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devhost.provision",
        description="Create each service's Cosmos DB database with its events, views, leases "
        "and dead-letter containers (idempotent). Reads the COSMOS connection and the "
        "container settings from local.settings.json (else the example); environment variables "
        "take precedence.")
    parser.add_argument("--settings", type=Path, default=None, help="settings file")
    args = parser.parse_args(argv)
    root = Path.cwd()
    values = host_settings.load_values(host_settings.settings_file(root, args.settings))
    try:
        settings = Settings.from_environ({**host_settings.apply(values, {}), "BACKEND": "azure"})
        assert settings.cosmos is not None  # the azure backend always has its connection
        client = cosmos_client_from_settings(settings.cosmos)
        names = settings.containers
        for service in SERVICE_NAMES:
            database = settings.database(service)
            ensure_containers(
                client, database, events_container=names.events, views_container=names.views,
                deadletters_container=names.deadletters, leases_container=names.leases,
            )
            if service == "orders":
                ensure_personal_data_container(client, database,
                                               settings.orders.personal_data_container)
            print(f"database {database!r}: containers ready", flush=True)
    except (SettingsError, CosmosConfigurationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] if len(sys.argv) > 1 else None))
