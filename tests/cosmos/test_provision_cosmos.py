"""`python -m devhost.provision` creates each service's database and containers (emulator set-up
for `func start`), idempotently."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from devhost.provision import main
from eventstore.adapters.cosmos import cosmos_client_from_settings
from tests.support.cosmos_server import CosmosServerInfo

pytestmark = pytest.mark.cosmos


def test_provision_cosmos_creates_databases_and_containers(
        cosmos_server: CosmosServerInfo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    suffix = uuid.uuid4().hex[:8]
    for name, value in {**cosmos_server.settings, "ORDERS_DATABASE": f"o-{suffix}",
                        "PAYMENTS_DATABASE": f"p-{suffix}"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(Path(__file__).resolve().parents[2])

    assert main([]) == 0
    assert main([]) == 0  # idempotent
    assert f"database 'o-{suffix}': containers ready" in capsys.readouterr().out

    client = cosmos_client_from_settings(cosmos_server.settings)
    for database in (f"o-{suffix}", f"p-{suffix}"):
        db = client.get_database_client(database)
        containers = {c["id"]: c["partitionKey"]["paths"] for c in db.list_containers()}
        personal = {"personaldata": ["/id"]} if database.startswith("o-") else {}
        assert containers == {"events": ["/streamId"], "views": ["/id"], "leases": ["/id"],
                              "deadletters": ["/id"], **personal}
        client.delete_database(database)
