"""The process's ``Services``, for the trigger functions (the Functions programming model has no
dependency injection): bootstrapped on first use from the app settings, once.

Tests and hosts may ``install`` their own (built with ``app.bootstrap.bootstrap``) instead.
"""

from __future__ import annotations

import threading

from app.bootstrap import Services, bootstrap, configure_telemetry, settings_from_environment
from app.settings import Settings


class _ProcessServices:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.services: Services | None = None
        self.settings: Settings | None = None


_current = _ProcessServices()


def settings() -> Settings:
    """The parsed app settings (no I/O: function_app.py reads them while being indexed)."""
    with _current.lock:
        if _current.services is not None:
            return _current.services.settings
        if _current.settings is None:
            _current.settings = settings_from_environment()
        return _current.settings


def start_telemetry() -> None:
    """Install the trace exporters before the first invocation, so its spans are exported too."""
    configure_telemetry(settings())


def services() -> Services:
    parsed = settings()
    with _current.lock:
        if _current.services is None:
            _current.services = bootstrap(parsed)
        return _current.services


def install(replacement: Services | None) -> None:
    """Use these services from now on (None: bootstrap again from the settings on next use)."""
    with _current.lock:
        _current.services, _current.settings = replacement, None


def shutdown() -> None:
    """Close the services' clients and forget them (host shutdown, between tests)."""
    with _current.lock:
        closing, _current.services, _current.settings = _current.services, None, None
    if closing is not None:
        closing.close()
