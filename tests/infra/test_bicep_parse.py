"""Every Bicep file parses, module calls fit the modules they call, and main.bicepparam fits main.

The Bicep CLI is not available offline, so this is what stands in for `bicep build`: pycep-parser
parses each file (a parse error fails the test), and the checks below catch the mistakes the
compiler would catch between files (unknown module parameters, missing required ones, outputs that
do not exist). pycep cannot parse .bicepparam files (`using` is not in its grammar), so
main.bicepparam gets a small dedicated check.

This module also holds the small Bicep model and evaluator that test_bicep_structure.py and
test_settings_contract.py load: it resolves literals, parameters (defaults or the arguments a
module call passes), variables, `module.outputs.x`, `resource.name` and `${...}` interpolation;
anything else (functions of runtime values such as uniqueString or resource properties) stays
`Unresolved`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
BICEP_DIR = ROOT / "infra" / "bicep"
MAIN = BICEP_DIR / "main.bicep"
PARAMS_FILE = BICEP_DIR / "main.bicepparam"

_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_OUTPUT_REF = re.compile(r"\b([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)")


# ---------------------------------------------------------------------------- model


def bicep_files() -> list[Path]:
    return sorted(BICEP_DIR.rglob("*.bicep"))


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
    """The object body of a resource/module config, looking through a `[for ...]` loop."""
    config: dict[str, Any] = resource_or_module.get("config", resource_or_module)
    if "loop_type" in config:
        inner: dict[str, Any] = config["config"]
        return inner
    return config


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
        if scope.args is not None and symbol in scope.args:
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


def main_scope() -> Scope:
    return Scope(Template.load(MAIN))


def module_scope(parent: Scope, symbol: str) -> Scope:
    """The scope inside a module call: its params bound to the arguments the caller passes."""
    template = parent.template
    return Scope(
        template.module_template(symbol),
        dict(body(template.modules[symbol]).get("params", {})),
        parent,
    )


# ---------------------------------------------------------------------------- tests


def test_bicep_files_exist() -> None:
    names = {p.relative_to(BICEP_DIR).as_posix() for p in bicep_files()}
    assert "main.bicep" in names
    assert any(n.startswith("modules/") for n in names), names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(BICEP_DIR).as_posix())
def test_bicep_file_parses(path: Path) -> None:
    try:
        doc = BicepParser().parse(file_path=path)
    except Exception as error:  # a parse error must fail, with the parser's message
        pytest.fail(f"{path.relative_to(ROOT)} does not parse: {error}")
    # Every file declares something; an empty result would mean the grammar swallowed it.
    assert set(doc) - {"globals"}, f"{path.name}: nothing parsed"


def test_a_parse_error_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.bicep"
    broken.write_text("resource x 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: \n")
    with pytest.raises(Exception):  # noqa: B017 (lark raises several exception types)
        BicepParser().parse(file_path=broken)


def _templates() -> list[Template]:
    return [Template.load(p) for p in bicep_files()]


def test_every_module_file_is_used_and_every_used_module_exists() -> None:
    used: set[Path] = set()
    for template in _templates():
        for symbol in template.modules:
            path = template.module_path(symbol)
            assert path.is_file(), f"{template.path.name}: module {symbol} -> missing {path}"
            used.add(path)
    unused = {p.resolve() for p in bicep_files()} - used - {MAIN.resolve()}
    assert not unused, f"module files nobody calls: {sorted(p.name for p in unused)}"


def test_module_calls_match_module_parameters() -> None:
    problems: list[str] = []
    for template in _templates():
        for symbol in template.modules:
            module = template.module_template(symbol)
            passed = set(body(template.modules[symbol]).get("params", {}))
            declared = set(module.params)
            required = {n for n, p in module.params.items() if p.get("default") is None}
            if unknown := passed - declared:
                problems.append(f"{template.path.name}:{symbol} passes unknown {sorted(unknown)}")
            if missing := required - passed:
                problems.append(f"{template.path.name}:{symbol} misses required {sorted(missing)}")
    assert not problems, "\n".join(problems)


def test_referenced_module_outputs_exist() -> None:
    problems: list[str] = []
    for template in _templates():
        references: set[tuple[str, str]] = set()
        for node in walk(template.doc):
            if isinstance(node, dict) and "operator" in node:
                parts = flatten_accessor(node)
                if len(parts) >= 3 and parts[1] == "outputs" and isinstance(parts[0], str):
                    references.add((parts[0], str(parts[2])))
            elif isinstance(node, str):
                references.update(_OUTPUT_REF.findall(node))
        for symbol, output in sorted(references):
            if symbol not in template.modules:
                problems.append(f"{template.path.name}: {symbol}.outputs.{output}: no such module")
            elif output not in template.module_template(symbol).outputs:
                problems.append(f"{template.path.name}: {symbol}.outputs.{output}: no such output")
    assert not problems, "\n".join(problems)


def test_module_outputs_resolve_through_module_parameters() -> None:
    # The evaluator the other infra tests rely on: main -> serviceBus module -> topic resource
    # -> module param -> main param default.
    scope = main_scope()
    assert resolve_path(["serviceBus", "outputs", "ordersTopicName"], scope) == "orders"
    assert resolve_path(["ordersDatabase", "outputs", "databaseName"], scope) == "orders"
    assert isinstance(resolve_path(["cosmos", "outputs", "endpoint"], scope), Unresolved)


# ---------------------------------------------------------------------------- main.bicepparam

_PARAM_LINE = re.compile(r"^param\s+([A-Za-z_]\w*)\s*=\s*(.+)$")
_USING_LINE = re.compile(r"^using\s+'([^']+)'$")


def _bicepparam_statements() -> list[str]:
    lines = []
    for raw in PARAMS_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("//"):
            lines.append(line)
    return lines


def test_bicepparam_uses_main_and_sets_known_parameters() -> None:
    # pycep-parser has no grammar for .bicepparam (`using`, untyped `param x = ...`), so this
    # checks the file's few statement forms directly.
    statements = _bicepparam_statements()
    using = _USING_LINE.match(statements[0])
    assert using, f"first statement must be `using '<template>'`, got {statements[0]!r}"
    assert (PARAMS_FILE.parent / using.group(1)).resolve() == MAIN.resolve()

    main = Template.load(MAIN)
    assigned: dict[str, str] = {}
    for statement in statements[1:]:
        match = _PARAM_LINE.match(statement)
        assert match, f"unexpected statement in main.bicepparam: {statement!r}"
        name, value = match.groups()
        assert name not in assigned, f"{name} assigned twice"
        assert name in main.params, f"main.bicep declares no parameter {name}"
        assert value.count("'") % 2 == 0 and value.count("(") == value.count(")"), statement
        for function in re.findall(r"([A-Za-z_]\w*)\(", value):
            assert function == "readEnvironmentVariable", f"{name}: unexpected {function}()"
        assigned[name] = value
    required = {n for n, p in main.params.items() if p.get("default") is None}
    assert required <= set(assigned), f"main.bicepparam misses {sorted(required - set(assigned))}"


def test_bicepparam_values_match_parameter_types() -> None:
    main = Template.load(MAIN)
    for statement in _bicepparam_statements()[1:]:
        match = _PARAM_LINE.match(statement)
        assert match
        name, value = match.groups()
        declared = main.params[name]["type"]
        if value.startswith("'"):
            assert declared == "string", f"{name}: string value for a {declared} parameter"
        elif re.fullmatch(r"-?\d+", value):
            assert declared == "int", f"{name}: int value for a {declared} parameter"
        elif value in ("true", "false"):
            assert declared == "bool", f"{name}: bool value for a {declared} parameter"
