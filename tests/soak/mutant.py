"""``python -m tests.soak.mutant BUG [devhost arguments]``: the local host with one seeded bug, so
that a test can show the soak catches it. Test code only; nothing here is reachable from the app.

Bugs:

- ``projector-no-skip``: the projector applies every event it is given, also those the view has
  applied already (what ``eventstore.projection.project`` exists to prevent), so a redelivered
  batch is applied twice. Chaos redelivers half the change-feed batches instead of a tenth: at
  a tenth, whether a redelivered batch held an event that shows twice (an item added) depends
  on how commits fell into batches, and a short run could miss the bug by chance.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any


def _projector_applies_everything() -> None:
    from eventstore import projection
    from eventstore.commit import EventRecord, JsonDict

    def project(definition: projection.ViewDefinition[Any], view: JsonDict | None,
                records: Iterable[EventRecord]) -> JsonDict | None:
        for record in records:  # no "already applied?" check: the bug
            event = definition.codec.decode(record.type, record.schema_version, record.data)
            view = definition.apply(view, event, record.version)
        return view

    projection.project = project

    from dataclasses import dataclass

    from devhost import chaos

    @dataclass(frozen=True)
    class MoreRedelivery(chaos.ChaosRates):
        feed_redelivery: float = 0.5

    chaos.ChaosRates = MoreRedelivery  # type: ignore[misc]


BUGS: dict[str, Callable[[], None]] = {"projector-no-skip": _projector_applies_everything}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BUGS:
        print(f"usage: python -m tests.soak.mutant {{{','.join(BUGS)}}} [devhost arguments]",
              file=sys.stderr)
        return 2
    BUGS[argv[0]]()
    from devhost.__main__ import main as devhost_main

    return devhost_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
