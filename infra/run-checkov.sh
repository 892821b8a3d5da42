#!/usr/bin/env bash
# Static security checks of infra/bicep with checkov (framework bicep), configured by
# infra/checkov.yaml (which lists every skipped check with its variant tag and reason).
#
# main.bicep has two network variants (param networkIsolation). checkov does not evaluate
# parameters, so infra/bicep_variants.py renders a copy of the templates per variant, and checkov
# runs once on each copy with the skips tagged [both] plus those of that variant.
#
# checkov runs from its own virtualenv, .venv-checkov at the repository root (created on first
# use), because its pinned dependencies conflict with the app's. It reads the templates with its
# own pinned pycep-parser and would skip a file it cannot parse with a mere log line, so this
# script first parses every rendered file with that parser and fails on any error.
# infra/entra/ (the Microsoft Graph extension, which that parser cannot read and for which
# checkov has no checks) is outside the checked directory; tests/infra parses it.
#
# Exit status: 0 when every check of both variants passes, non-zero on a failed check, a parse
# error, a render error or an install failure. Offline apart from the one-time install from PyPI.
set -euo pipefail

CHECKOV_VERSION="3.2.533"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${CHECKOV_VENV:-$root/.venv-checkov}"
python="${PYTHON:-python3}"

installed=""
if [[ -x "$venv/bin/python" ]]; then
  installed="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null || true)"
fi
if [[ "$installed" != "$CHECKOV_VERSION" ]]; then
  echo "run-checkov: installing checkov $CHECKOV_VERSION into $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

status=0
for variant in public isolated; do
  "$python" infra/bicep_variants.py render infra/bicep "$work/$variant" "$variant"

  "$venv/bin/python" - "$work/$variant" <<'PY'
import pathlib
import sys

from pycep import BicepParser

failed = False
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.bicep")):
    try:
        BicepParser().parse(file_path=path)
    except Exception as error:  # the parser raises several types
        failed = True
        print(f"run-checkov: {path} does not parse with checkov's pycep-parser: {error}", file=sys.stderr)
sys.exit(1 if failed else 0)
PY

  skips="$("$python" infra/bicep_variants.py skips infra/checkov.yaml "$variant")"
  echo "run-checkov: variant $variant (networkIsolation=$([[ $variant == isolated ]] && echo true || echo false)), skipping $skips"
  # --skip-check replaces the config file's list; -d names the rendered copy.
  if ! BC_SKIP_MAPPING=TRUE "$venv/bin/checkov" --config-file infra/checkov.yaml \
      -d "$work/$variant" --skip-check "$skips" "$@"; then
    status=1
  fi
done
exit "$status"
