"""The local host the e2e tests run against: a fresh data folder per test, stopped afterwards
(a module that needs other settings defines its own ``host``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.localhost import LocalHost


@pytest.fixture
def host(tmp_path: Path) -> Iterator[LocalHost]:
    running = LocalHost(tmp_path / "data").start()
    try:
        yield running
    finally:
        running.stop()
