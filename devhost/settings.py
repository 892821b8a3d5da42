"""Settings the way Core Tools loads them: local.settings.json (or the example), with
environment variables taking precedence, exported into the process environment."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

_EXPRESSION = re.compile(r"%([^%]+)%")


class SettingsError(RuntimeError):
    pass


def settings_file(app_dir: Path, explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    local = app_dir / "local.settings.json"
    return local if local.exists() else app_dir / "local.settings.example.json"


def load_values(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist") from None
    except json.JSONDecodeError as error:
        raise SettingsError(f"settings file {path} is not valid JSON: {error}") from None
    values = document.get("Values", {})
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: 'Values' must be an object")
    return {str(k): str(v) for k, v in values.items()}


def apply(values: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """Export file values not already in the environment, then the host's own overrides
    (which only fill what the user did not set explicitly)."""
    for name, value in values.items():
        os.environ.setdefault(name, value)
    for name, value in overrides.items():
        os.environ[name] = value
    return dict(os.environ)


def resolve(expression: str, settings: Mapping[str, str], where: str) -> str:
    """Resolve %NAME% binding expressions as the Functions host does; a missing one is an error."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings or settings[name] == "":
            raise SettingsError(f"{where}: binding expression %{name}% refers to a missing "
                                f"app setting {name!r}")
        return settings[name]

    return _EXPRESSION.sub(lookup, expression)


# The key an identity-based connection cannot do without, per trigger type.
IDENTITY_KEYS = {"cosmosDBTrigger": "accountEndpoint",
                 "serviceBusTrigger": "fullyQualifiedNamespace"}


def require_connection(name: str, settings: Mapping[str, str], where: str,
                       identity_key: str) -> None:
    """As the extensions resolve a connection: the setting itself (a connection string), or
    the identity-based form, which needs ``{name}__{identity_key}`` (other ``{name}__*`` keys,
    such as ``__clientId`` or ``__credential``, only qualify it)."""
    if (settings.get(name) or "").strip() or (settings.get(f"{name}__{identity_key}")
                                              or "").strip():
        return
    partial = sorted(k for k, v in settings.items() if k.startswith(f"{name}__") and v)
    hint = f"; {', '.join(partial)} alone is not enough" if partial else ""
    raise SettingsError(f"{where}: connection {name!r} is not configured: set {name} (a "
                        f"connection string) or {name}__{identity_key} (identity-based){hint}")
