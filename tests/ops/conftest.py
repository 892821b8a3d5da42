"""The function-app harness, shared with the CLI tests."""

from tests.functions.conftest import embedded_app

__all__ = ["embedded_app"]
