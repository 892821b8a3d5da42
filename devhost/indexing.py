"""Index the function app as the Python worker does: load function_app.py, call get_functions(),
read each function's raw bindings and settings. A mis-declared binding fails here, as in Azure."""

from __future__ import annotations

import importlib.util
import json
import random
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func

from devhost.settings import IDENTITY_KEYS, SettingsError, require_connection, resolve

RANDOMIZATION = 0.2  # the host's randomization factor for exponential backoff


@dataclass(frozen=True)
class RetryPolicy:
    strategy: str  # "exponential_backoff" | "fixed_delay"
    max_retry_count: int  # -1 = forever
    delay: float = 0.0
    minimum: float = 0.0
    maximum: float = 0.0

    def delay_before(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based). Exponential backoff is
        randomized as the Functions host randomizes it: the minimum first, then the minimum plus
        minimum x 2^(retry-2) x a factor in [0.8, 1.2], up to the maximum, so that instances
        retrying together spread out."""
        if self.strategy == "fixed_delay":
            return self.delay
        if retry <= 1:
            return min(self.minimum, self.maximum)
        factor = (rng or random).uniform(1.0 - RANDOMIZATION, 1.0 + RANDOMIZATION)
        return min(self.maximum, self.minimum + factor * self.minimum * 2.0 ** min(retry - 2, 32))

    def allows(self, retry: int) -> bool:
        return self.max_retry_count < 0 or retry <= self.max_retry_count


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    call: Callable[..., Any]
    arg_name: str
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class HttpSpec(FunctionSpec):
    methods: tuple[str, ...] = ()
    route: str = ""
    auth_level: str = "ANONYMOUS"
    pattern: re.Pattern[str] = field(default=re.compile(""), repr=False)
    specificity: tuple[int, ...] = ()


@dataclass(frozen=True)
class FeedSpec(FunctionSpec):
    database: str = ""
    container: str = ""
    lease_container: str = ""
    lease_prefix: str = ""
    max_items: int = 100
    retry: RetryPolicy | None = None


@dataclass(frozen=True)
class BusSpec(FunctionSpec):
    entity_path: str = ""  # queue name, or "{topic}/Subscriptions/{subscription}"


@dataclass(frozen=True)
class AppIndex:
    http: list[HttpSpec]
    feeds: list[FeedSpec]
    bus: list[BusSpec]

    @property
    def all(self) -> list[FunctionSpec]:
        return [*self.http, *self.feeds, *self.bus]


def load_app(app_dir: Path) -> func.FunctionApp:
    path = app_dir / "function_app.py"
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    spec = importlib.util.spec_from_file_location("function_app", path)
    if spec is None or spec.loader is None:
        raise SettingsError(f"cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if not isinstance(app, func.FunctionApp):
        raise SettingsError(f"{path} defines no FunctionApp named 'app'")
    return app


def index_app(app: func.FunctionApp, settings: Mapping[str, str]) -> AppIndex:
    http: list[HttpSpec] = []
    feeds: list[FeedSpec] = []
    bus: list[BusSpec] = []
    names: set[str] = set()
    for function in app.get_functions():
        name = function.get_function_name() or function.get_user_function().__name__
        if name in names:
            raise SettingsError(f"two functions are named {name!r}")
        names.add(name)
        bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
        triggers = [b for b in bindings if b["type"].lower().endswith("trigger")]
        if len(triggers) != 1:
            raise SettingsError(f"function {name!r} must have exactly one trigger")
        trigger = triggers[0]
        others = [b for b in bindings if b is not trigger
                  and not (b["type"] == "http" and b["direction"] == "OUT")]
        if others:
            raise SettingsError(f"function {name!r}: the local host does not support bindings "
                                f"{[b['type'] for b in others]}")
        kind = trigger["type"]
        where = f"function {name!r}"
        common: dict[str, Any] = {"name": name, "call": function.get_user_function(),
                                  "arg_name": trigger["name"], "raw": trigger}
        if kind == "httpTrigger":
            route = trigger.get("route") or name
            pattern, specificity = compile_route(route)
            http.append(HttpSpec(**common, methods=tuple(m.upper() for m in
                                                         trigger.get("methods") or
                                                         ["GET", "POST", "PUT", "DELETE",
                                                          "PATCH", "HEAD", "OPTIONS"]),
                                 route=route, auth_level=str(trigger.get("authLevel", "")),
                                 pattern=pattern, specificity=specificity))
        elif kind == "cosmosDBTrigger":
            require_connection(trigger["connection"], settings, where, IDENTITY_KEYS[kind])
            retry = function.get_settings_dict("retry_policy")
            feeds.append(FeedSpec(
                **common,
                database=resolve(trigger["databaseName"], settings, where),
                container=resolve(trigger["containerName"], settings, where),
                lease_container=resolve(trigger.get("leaseContainerName", "leases"), settings,
                                        where),
                lease_prefix=resolve(trigger.get("leaseContainerPrefix", ""), settings, where),
                max_items=int(trigger.get("maxItemsPerInvocation", 100)),
                retry=_retry_policy(retry) if retry else None,
            ))
        elif kind == "serviceBusTrigger":
            require_connection(trigger["connection"], settings, where, IDENTITY_KEYS[kind])
            if "queueName" in trigger:
                path = resolve(trigger["queueName"], settings, where)
            else:
                path = (f"{resolve(trigger['topicName'], settings, where)}/Subscriptions/"
                        f"{resolve(trigger['subscriptionName'], settings, where)}")
            bus.append(BusSpec(**common, entity_path=path))
        else:
            raise SettingsError(f"{where}: trigger type {kind!r} is not supported by the "
                                "local host")
    http.sort(key=lambda spec: spec.specificity)
    return AppIndex(http=http, feeds=feeds, bus=bus)


def compile_route(route: str) -> tuple[re.Pattern[str], tuple[int, ...]]:
    """An ASP.NET-style route template ("orders/{orderId}/items") as a regex; literal segments
    sort before parameters, as in the Functions host's routing."""
    parts = []
    specificity = []
    for segment in route.strip("/").split("/"):
        param = re.fullmatch(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]+)?(\?)?\}", segment)
        if param:
            catch_all, name, optional = param.groups()
            body = f"(?P<{name}>.+)" if catch_all else f"(?P<{name}>[^/]+)"
            parts.append(f"(?:/{body})?" if optional else f"/{body}")
            specificity.append(2 if catch_all else 1)
        else:
            parts.append(f"/(?i:{re.escape(segment)})")  # ASP.NET routing ignores literal case
            specificity.append(0)
    return re.compile("^" + "".join(parts) + "/?$"), tuple(specificity)


def _timespan(value: str | None) -> float:
    if not value:
        return 0.0
    hours, minutes, seconds = str(value).split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _retry_policy(raw: Mapping[str, Any]) -> RetryPolicy:
    return RetryPolicy(
        strategy=str(raw["strategy"]),
        max_retry_count=int(raw["max_retry_count"]),
        delay=_timespan(raw.get("delay_interval")),
        minimum=_timespan(raw.get("minimum_interval")),
        maximum=_timespan(raw.get("maximum_interval")),
    )
