"""The function-app harness serves the local host's tests too; ``database`` is an embedded
store with four feed ranges, as the local host opens it."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore.embedded.store import EmbeddedDatabase
from tests.functions.conftest import embedded_app

__all__ = ["database", "embedded_app"]


@pytest.fixture
def database(tmp_path: Path) -> Iterator[EmbeddedDatabase]:
    db = EmbeddedDatabase(tmp_path / "orders.db", feed_ranges=4)
    yield db
    db.close()
