#!/usr/bin/env bash
# Static security checks of infra/bicep with checkov (framework bicep), configured by
# infra/checkov.yaml (which lists every skipped check with its reason).
#
# checkov runs from its own virtualenv, .venv-checkov at the repository root (created on first
# use), because its pinned dependencies conflict with the app's. It reads the templates with its
# own pinned pycep-parser and would skip a file it cannot parse with a mere log line, so this
# script first parses every file with that parser and fails on any error.
#
# Exit status: 0 when every check passes, non-zero on a failed check, a parse error or an
# install failure. Offline apart from the one-time install from PyPI.
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

"$venv/bin/python" - <<'PY'
import pathlib
import sys

from pycep import BicepParser

failed = False
for path in sorted(pathlib.Path("infra/bicep").rglob("*.bicep")):
    try:
        BicepParser().parse(file_path=path)
    except Exception as error:  # the parser raises several types
        failed = True
        print(f"run-checkov: {path} does not parse with checkov's pycep-parser: {error}", file=sys.stderr)
sys.exit(1 if failed else 0)
PY

export BC_SKIP_MAPPING=TRUE
exec "$venv/bin/checkov" --framework bicep -d infra/bicep --config-file infra/checkov.yaml "$@"
