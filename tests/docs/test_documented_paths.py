"""Every repository path the documentation names exists (docs rot silently otherwise)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A backquoted path under a top-level folder of the project, or a root file.
PATH = re.compile(r"`((?:app|domain|contracts|eventstore|functions|devhost|infra|tests|bench|docs)"
                  r"/[A-Za-z0-9_./-]*|function_app\.py|host\.json|Makefile|"
                  r"local\.settings\.example\.json|requirements[a-z-]*\.txt|\.funcignore)")


GENERATED = ("bench/results/",)  # written by `make bench`, not committed


def named_paths(document: Path) -> set[str]:
    found = set()
    for match in PATH.finditer(document.read_text(encoding="utf-8")):
        path = match.group(1).split("::")[0].split(":")[0].rstrip(".,")
        if not path.startswith(GENERATED):
            found.add(path)
    return found


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_named_path_exists(document: Path) -> None:
    missing = sorted(p for p in named_paths(document) if not (ROOT / p).exists())
    assert missing == [], f"{document.name} names paths that do not exist: {missing}"


def test_the_architecture_page_answers_where_is_with_paths() -> None:
    assert len(named_paths(ROOT / "docs" / "architecture.md")) >= 20
