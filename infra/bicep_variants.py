"""The two network variants of infra/bicep as plain Bicep, for checkov and the infra tests.

checkov reads Bicep files without evaluating parameters, so `networkIsolation ? 'Disabled' :
'Enabled'` is neither value to it. This renders a copy of the templates for one variant: every
`networkIsolation ? A : B` (A and B single literals or references, the only form the templates
use) becomes A or B, and the parameter's default becomes the variant's value. Any other use of
networkIsolation in an expression is an error, so a template cannot grow a form that checkov
would silently misread.

It also reads infra/checkov.yaml, whose skipped checks each carry a tag saying which variant the
skip is for: `# [both] ...`, `# [public] ...` or `# [isolated] ...`.

    python3 infra/bicep_variants.py render SRC_DIR DEST_DIR public|isolated
    python3 infra/bicep_variants.py skips CHECKOV_YAML public|isolated

Standard library only: run-checkov.sh runs it with the system Python.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

VARIANTS = ("public", "isolated")
PARAM = "networkIsolation"

_OPERAND = r"'(?:[^'\\\n]|\\.)*'|-?\d+|true|false|null|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_TERNARY = re.compile(rf"\b{PARAM}\s*\?\s*({_OPERAND})\s*:\s*({_OPERAND})")
_DEFAULT = re.compile(rf"^(param\s+{PARAM}\s+bool\s*=\s*)(true|false)\b", re.MULTILINE)
# Uses that stay as they are: module/resource conditions and passing the parameter on.
_ALLOWED_USE = re.compile(
    rf"if\s*\(\s*{PARAM}\s*\)|^\s*{PARAM}\s*:\s*{PARAM}\s*$|^param\s+{PARAM}\b.*$|"
    rf"^output\s+\w+\s+bool\s*=\s*{PARAM}\s*$"
)
_STRING = re.compile(r"'(?:[^'\\\n]|\\.)*'")
_COMMENT = re.compile(r"//.*$")
_SKIP_LINE = re.compile(r"^\s+-\s+(CKV\w+)\s*#\s*\[(both|public|isolated)\]\s*(.*)$")


class VariantError(ValueError):
    pass


def _check_variant(variant: str) -> bool:
    if variant not in VARIANTS:
        raise VariantError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return variant == "isolated"


def render(text: str, variant: str, where: str = "<text>") -> str:
    isolated = _check_variant(variant)
    rendered = _TERNARY.sub(lambda m: m.group(1) if isolated else m.group(2), text)
    rendered = _DEFAULT.sub(lambda m: m.group(1) + ("true" if isolated else "false"), rendered)
    for number, line in enumerate(rendered.splitlines(), start=1):
        # Strings and comments may name the parameter; only code counts.
        code = _ALLOWED_USE.sub("", _COMMENT.sub("", _STRING.sub("''", line)))
        if re.search(rf"\b{PARAM}\b", code):
            raise VariantError(
                f"{where}:{number}: {PARAM} is used in a form this renderer does not resolve "
                f"(only `{PARAM} ? A : B` with single literals or references): {line.strip()}"
            )
    return rendered


def render_tree(source: Path, destination: Path, variant: str) -> list[Path]:
    """Copy SOURCE to DESTINATION with every .bicep file rendered for the variant."""
    written = []
    for path in sorted(source.rglob("*")):
        if not path.is_file():
            continue
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".bicep":
            target.write_text(render(path.read_text(), variant, str(path)))
        else:
            shutil.copyfile(path, target)
        written.append(target)
    return written


def skipped_checks(config_text: str, variant: str) -> dict[str, str]:
    """Check id -> reason, for the skips of infra/checkov.yaml that apply to the variant."""
    _check_variant(variant)
    skips: dict[str, str] = {}
    in_skips = False
    for line in config_text.splitlines():
        if re.match(r"^skip-check:", line):
            in_skips = True
            continue
        if in_skips and re.match(r"^\S", line):
            in_skips = False
        if not in_skips or not line.strip() or line.strip().startswith("#"):
            continue
        match = _SKIP_LINE.match(line)
        if match is None:
            raise VariantError(f"skip-check entry without a [both|public|isolated] tag: {line!r}")
        check, tag, reason = match.groups()
        if tag in ("both", variant):
            skips[check] = reason
    return skips


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "render":
        render_tree(Path(argv[1]), Path(argv[2]), argv[3])
        return 0
    if len(argv) == 3 and argv[0] == "skips":
        print(",".join(skipped_checks(Path(argv[1]).read_text(), argv[2])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except VariantError as error:
        print(f"bicep_variants: {error}", file=sys.stderr)
        sys.exit(1)
