"""The settings the function app reads: one list, checked against local.settings.example.json and
the Bicep app settings by the tests, and one accessor that fails with the setting's name."""

from __future__ import annotations

import os

# Connection prefixes, resolved the Functions way: "COSMOS" holds a connection string, or
# "COSMOS__accountEndpoint" (+ "COSMOS__clientId") selects identity-based access.
COSMOS_CONNECTION = "COSMOS"
SERVICEBUS_CONNECTION = "SERVICEBUS"
CONNECTIONS = frozenset({COSMOS_CONNECTION, SERVICEBUS_CONNECTION})

_COMMON = frozenset({
    "SERVICES", "BACKEND", COSMOS_CONNECTION, SERVICEBUS_CONNECTION,
    "EVENTS_CONTAINER", "VIEWS_CONTAINER", "LEASES_CONTAINER", "DEADLETTERS_CONTAINER",
})

# What each service's functions read (bindings and code) when they run in Azure.
SETTINGS_READ_BY_SERVICE: dict[str, frozenset[str]] = {
    "orders": _COMMON | {
        "ORDERS_DATABASE", "ORDERS_TOPIC", "PAYMENTS_TOPIC", "PAYMENTS_SUBSCRIPTION",
        "PAYMENTS_API_BASE_URL",
    },
    "payments": _COMMON | {
        "PAYMENTS_DATABASE", "PAYMENTS_TOPIC", "AUTHORIZATIONS_QUEUE",
        "PAYMENTS_ACQUIRER_DELAY_MS", "PAYMENTS_DECLINE_ABOVE",
    },
}

# Read only on a developer machine (local host, emulators), never set in Azure.
LOCAL_ONLY_SETTINGS = frozenset({"EMBEDDED_DATA_DIR", "COSMOS_ACCEPT_EMULATOR_CERT"})

SERVICE_NAMES = ("orders", "payments")


class MissingSettingError(RuntimeError):
    pass


def setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise MissingSettingError(
            f"app setting {name!r} is not set (see local.settings.example.json and the README's "
            "settings table)"
        )
    return value


def int_setting(name: str, default: int) -> int:
    raw = setting(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise MissingSettingError(f"app setting {name!r} must be an integer, got {raw!r}") from None


def enabled_services() -> list[str]:
    raw = setting("SERVICES", ",".join(SERVICE_NAMES))
    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    unknown = sorted(set(names) - set(SERVICE_NAMES))
    if unknown or not names:
        raise MissingSettingError(
            f"SERVICES must list some of {', '.join(SERVICE_NAMES)}; got {raw!r}"
        )
    return names
