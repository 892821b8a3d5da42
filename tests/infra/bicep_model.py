"""A small model of the Bicep templates for the infra tests (parsed with pycep-parser).

It resolves literals, parameters (defaults, the arguments a module call passes, or overrides of
main's parameters such as networkIsolation), variables, `module.outputs.x`, `resource.name`,
`${...}` interpolation and `cond ? a : b` with a resolvable condition; anything else (functions
of runtime values such as uniqueString or resource properties) stays `Unresolved`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = ROOT / "infra"
BICEP_DIR = INFRA_DIR / "bicep"
# Templates that use the Microsoft Graph extension, kept out of checkov's directory.
ENTRA_DIR = INFRA_DIR / "entra"
MAIN = BICEP_DIR / "main.bicep"
PARAMS_FILE = BICEP_DIR / "main.bicepparam"

_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
OUTPUT_REF = re.compile(r"\b([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)")


# ---------------------------------------------------------------------------- model


def bicep_files() -> list[Path]:
    return sorted([*BICEP_DIR.rglob("*.bicep"), *ENTRA_DIR.rglob("*.bicep")])


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    """pycep's JSON for one file. Raises on a parse error."""
    result: dict[str, Any] = dict(BicepParser().parse(file_path=path))
    return result


@dataclass(frozen=True)
class Template:
    path: Path
    doc: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Template:
        return cls(path.resolve(), parse(path.resolve()))

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.doc.get("parameters", {}))

    @property
    def variables(self) -> dict[str, Any]:
        return dict(self.doc.get("variables", {}))

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.doc.get("resources", {}))

    @property
    def modules(self) -> dict[str, Any]:
        return dict(self.doc.get("modules", {}))

    @property
    def outputs(self) -> dict[str, Any]:
        return dict(self.doc.get("outputs", {}))

    def module_path(self, symbol: str) -> Path:
        relative = str(self.modules[symbol]["detail"]["path"])
        return (self.path.parent / relative).resolve()

    def module_template(self, symbol: str) -> Template:
        return Template.load(self.module_path(symbol))

    def module_config(self, symbol: str) -> dict[str, Any]:
        config: dict[str, Any] = self.modules[symbol]["config"]
        return config

    def module_calls(self, module_file: str) -> dict[str, dict[str, Any]]:
        """Module symbol -> its config, for every call of modules/<module_file>."""
        return {
            symbol: self.module_config(symbol)
            for symbol in self.modules
            if self.module_path(symbol).name == module_file
        }

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            symbol: resource
            for symbol, resource in self.resources.items()
            if resource["type"].lower() == resource_type.lower()
        }


def body(resource_or_module: dict[str, Any]) -> dict[str, Any]:
    """The object body of a resource/module config, looking through a `[for ...]` loop and an
    `if (...)` condition."""
    config: dict[str, Any] = resource_or_module.get("config", resource_or_module)
    while "loop_type" in config or ("condition" in config and "config" in config):
        config = config["config"]
    return config


def condition_of(resource_or_module: dict[str, Any]) -> Any:
    """The `if (...)` condition of a resource/module, or None when it is unconditional."""
    config: dict[str, Any] = resource_or_module.get("config", resource_or_module)
    if "loop_type" in config:
        config = config["config"]
    return config.get("condition") if "config" in config else None


def flatten_accessor(expr: Any) -> list[Any]:
    """`a.b.c` (pycep property_accessor tree) -> ["a", "b", "c"]."""
    if isinstance(expr, dict) and expr.get("operator", {}).get("type") == "property_accessor":
        operands = expr["operator"]["operands"]
        return flatten_accessor(operands["operand_1"]) + flatten_accessor(operands["operand_2"])
    return [expr]


def dotted(expr: Any) -> str | None:
    """`a.b.c` as a string when every part is a plain name, else None."""
    parts = flatten_accessor(expr)
    if all(isinstance(p, str) and _IDENTIFIER.match(p) for p in parts):
        return ".".join(parts)
    return None


def walk(expr: Any) -> Iterator[Any]:
    """Every node of a pycep JSON value, depth first."""
    yield expr
    if isinstance(expr, dict):
        for value in expr.values():
            yield from walk(value)
    elif isinstance(expr, list):
        for value in expr:
            yield from walk(value)


def calls_list_function(expr: Any) -> bool:
    """True if the expression calls listKeys()/list*() (which return secrets)."""
    for node in walk(expr):
        if isinstance(node, dict) and node.get("function", {}).get("type") == "list_func":
            return True
        if isinstance(node, str) and re.search(r"\blist[A-Z]\w*\(", node):
            return True
    return False


# ---------------------------------------------------------------------------- evaluator


@dataclass(frozen=True)
class Unresolved:
    """A value only known at deployment time (or an expression this evaluator does not model)."""

    what: str

    def __str__(self) -> str:
        return f"<unresolved {self.what}>"


@dataclass(frozen=True)
class Scope:
    template: Template
    args: dict[str, Any] | None = None  # the params a module call passes; None for main
    parent: Scope | None = field(default=None, repr=False)
    overrides: dict[str, Any] = field(default_factory=dict)  # main's params, e.g. a variant


def resolve(expr: Any, scope: Scope) -> Any:
    """Evaluate a pycep JSON value as far as it can be known before deployment."""
    if expr is None or isinstance(expr, bool | int | float):
        return expr
    if isinstance(expr, str):
        return _resolve_string(expr, scope)
    if isinstance(expr, list):
        return [resolve(item, scope) for item in expr]
    if isinstance(expr, dict):
        if "operator" in expr:
            operator = expr["operator"]
            if operator.get("type") == "conditional":
                operands = operator["operands"]
                condition = resolve(operands["condition"], scope)
                if isinstance(condition, bool):
                    branch = operands["true_value" if condition else "false_value"]
                    return resolve(branch, scope)
                return Unresolved("conditional")
            path = dotted(expr)
            return resolve_path(path.split("."), scope) if path else Unresolved("operator")
        if "function" in expr:
            function = expr["function"]
            if function["type"] == "string":
                value = resolve(function["parameters"]["value_to_convert"], scope)
                return value if isinstance(value, Unresolved) else str(value)
            return Unresolved(f"function {function['type']}")
        if "loop_type" in expr:
            return Unresolved("loop")
        return {key.strip("'"): resolve(value, scope) for key, value in expr.items()}
    return Unresolved(repr(expr))


def _resolve_string(text: str, scope: Scope) -> Any:
    if _IDENTIFIER.match(text):
        # pycep renders identifiers and string literals alike; a name of a parameter or
        # variable in scope is taken as a reference (the templates avoid literals that are also
        # such names: test_bicep_structure checks it).
        if text in scope.template.params or text in scope.template.variables:
            return resolve_path([text], scope)
        return text
    if "${" not in text:
        return text
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        inner = match.group(1).strip()
        value = resolve_path(inner.split("."), scope) if re.fullmatch(r"[\w.]+", inner) else None
        if value is None or isinstance(value, Unresolved | dict | list):
            missing.append(inner)
            return match.group(0)
        return str(value).lower() if isinstance(value, bool) else str(value)

    rendered = _INTERPOLATION.sub(substitute, text)
    return Unresolved(f"'{rendered}'") if missing else rendered


def resolve_path(parts: list[str], scope: Scope) -> Any:
    template = scope.template
    symbol, rest = parts[0], parts[1:]
    if symbol in template.params:
        if symbol in scope.overrides:
            value = scope.overrides[symbol]
        elif scope.args is not None and symbol in scope.args:
            assert scope.parent is not None
            value = resolve(scope.args[symbol], scope.parent)
        elif template.params[symbol].get("default") is not None:
            value = resolve(template.params[symbol]["default"], scope)
        else:
            value = Unresolved(f"param {symbol}")
        return _descend(value, rest)
    if symbol in template.variables:
        return _descend(resolve(template.variables[symbol]["value"], scope), rest)
    if symbol in template.modules and rest[:1] == ["outputs"] and len(rest) >= 2:
        child_template = template.module_template(symbol)
        child = Scope(child_template, dict(body(template.modules[symbol]).get("params", {})), scope)
        output = child_template.outputs.get(rest[1])
        if output is None:
            return Unresolved(f"no output {rest[1]} in {child_template.path.name}")
        return _descend(resolve(output["value"], child), rest[2:])
    if symbol in template.resources and rest == ["name"]:
        resource = template.resources[symbol]
        if "loop_type" in resource["config"]:
            return Unresolved(f"{symbol} is a loop")
        return resolve(resource["config"]["name"], scope)
    return Unresolved(".".join(parts))


def _descend(value: Any, rest: list[str]) -> Any:
    for part in rest:
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return Unresolved(f"{part} of {value}")
    return value


def main_scope(**overrides: Any) -> Scope:
    """main.bicep's scope; keyword arguments override its parameters (networkIsolation=True)."""
    return Scope(Template.load(MAIN), overrides=dict(overrides))


def module_scope(parent: Scope, symbol: str) -> Scope:
    """The scope inside a module call: its params bound to the arguments the caller passes."""
    template = parent.template
    return Scope(
        template.module_template(symbol),
        dict(body(template.modules[symbol]).get("params", {})),
        parent,
    )
