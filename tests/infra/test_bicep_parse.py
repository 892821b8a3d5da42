"""Every Bicep file parses, module calls fit the modules they call, and main.bicepparam fits main.

The Bicep CLI is not available offline, so this is what stands in for `bicep build`: pycep-parser
parses each file (a parse error fails the test), and the checks below catch the mistakes the
compiler would catch between files (unknown module parameters, missing required ones, outputs that
do not exist). pycep cannot parse .bicepparam files (`using` is not in its grammar), so
main.bicepparam gets a small dedicated check.

The files are infra/bicep/** (also checked by checkov) and infra/entra/* (Microsoft Graph
extension; this environment's pycep-parser reads `extension`, checkov's pinned one does not).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pycep import BicepParser

from tests.infra.bicep_model import (
    BICEP_DIR,
    ENTRA_DIR,
    INFRA_DIR,
    MAIN,
    OUTPUT_REF,
    PARAMS_FILE,
    ROOT,
    Template,
    Unresolved,
    bicep_files,
    body,
    flatten_accessor,
    main_scope,
    resolve_path,
    walk,
)

# ---------------------------------------------------------------------------- tests


def test_bicep_files_exist() -> None:
    names = {p.relative_to(INFRA_DIR).as_posix() for p in bicep_files()}
    assert "bicep/main.bicep" in names
    assert any(n.startswith("bicep/modules/") for n in names), names
    assert "entra/payments-api.bicep" in names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: p.relative_to(INFRA_DIR).as_posix())
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
                references.update(OUTPUT_REF.findall(node))
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
            allowed = {"readEnvironmentVariable", "bool"}
            assert function in allowed, f"{name}: unexpected {function}()"
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


def test_graph_extension_files_are_outside_checkov_and_resolve_through_bicepconfig() -> None:
    # Files that declare `extension X` need X in a bicepconfig.json that Bicep finds by walking
    # up from the file; checkov's pycep-parser cannot read `extension`, so none may sit in
    # infra/bicep (run-checkov.sh would fail on it).
    config = json.loads((INFRA_DIR / "bicepconfig.json").read_text())
    declared = set(config.get("extensions", {}))
    using = []
    for path in bicep_files():
        extensions = set(Template.load(path).doc.get("extensions", {}))
        if extensions:
            using.append(path)
            assert path.is_relative_to(ENTRA_DIR), f"{path.name}: extension outside infra/entra"
            assert extensions <= declared, f"{path.name}: {sorted(extensions - declared)}"
    assert using, "the Payments API application template declares the Graph extension"
    for name in declared:
        assert config["extensions"][name].startswith("br:mcr.microsoft.com/bicep/extensions/")
    assert not (BICEP_DIR / "bicepconfig.json").exists(), "one bicepconfig.json, in infra/"
