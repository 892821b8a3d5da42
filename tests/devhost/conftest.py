"""The function-app harness serves the local host's tests too."""

from tests.functions.conftest import embedded_app

__all__ = ["embedded_app"]
