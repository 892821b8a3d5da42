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


def require_connection(name: str, settings: Mapping[str, str], where: str) -> None:
    """A connection is a setting (connection string) or a NAME__* group (identity-based)."""
    if settings.get(name) or any(k.startswith(f"{name}__") and v for k, v in settings.items()):
        return
    raise SettingsError(f"{where}: connection {name!r} is not configured (set {name} or "
                        f"{name}__accountEndpoint / {name}__fullyQualifiedNamespace)")
