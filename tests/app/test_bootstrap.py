"""The composition root builds everything once, lazily, and the Azure path never imports the
development-only code (the deployment package does not ship it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.bootstrap import AzureBackend, EmbeddedBackend, bootstrap
from app.settings import Settings
from eventstore.embedded import bus as embedded_bus
from eventstore.embedded import store as embedded_store
from tests.functions.conftest import REPO_ROOT, example_settings
from tests.support.cosmos_server import CosmosServerInfo

DEV_ONLY = ("devhost", "eventstore.embedded")


def embedded_settings(data_dir: Path) -> Settings:
    return Settings.from_environ({**example_settings(), "BACKEND": "embedded",
                                  "EMBEDDED_DATA_DIR": str(data_dir)})


def test_the_backend_follows_the_settings(tmp_path: Path) -> None:
    assert isinstance(bootstrap(embedded_settings(tmp_path)).backend, EmbeddedBackend)
    assert isinstance(bootstrap(Settings.from_environ(example_settings())).backend, AzureBackend)


def test_services_are_built_once_and_on_first_use(tmp_path: Path) -> None:
    services = bootstrap(embedded_settings(tmp_path))
    assert not (tmp_path / "orders.db").exists()  # building Services touched nothing
    try:
        orders = services.orders
        assert services.orders is orders and (tmp_path / "orders.db").exists()
        assert not (tmp_path / "payments.db").exists()
        assert services.stores("orders") is services.stores_of_database("orders")
    finally:
        services.close()
        embedded_store.close_all()
        embedded_bus.close_all()


def test_the_embedded_bus_has_the_entities_bicep_creates(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    backend = EmbeddedBackend(settings)
    try:
        bus = backend.bus
        for path in ("payment-authorizations", "payments/Subscriptions/orders"):
            assert bus.receive(path, timeout=0) == []  # declared: receivable, and empty
    finally:
        backend.close()


@pytest.mark.cosmos
def test_the_azure_path_never_imports_development_only_code(
        cosmos_server: CosmosServerInfo) -> None:
    script = textwrap.dedent("""
        import json, sys
        import function_app  # noqa: F401  (indexes as the Functions worker does)
        from functions import runtime
        services = runtime.services()
        services.orders, services.payments  # every adapter wired
        print(json.dumps(sorted(sys.modules)))
    """)
    env = {**os.environ, **example_settings(), **cosmos_server.settings, "BACKEND": "azure",
           "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout.strip().splitlines()[-1])
    assert "eventstore.adapters.cosmos" in modules and "app.orders" in modules
    imported = sorted(m for m in modules if m.startswith(DEV_ONLY))
    assert imported == []
