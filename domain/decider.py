"""The decider pattern: an aggregate is an initial state, ``decide`` and ``evolve``.

Nothing else: how events are stored (codec) and how streams are named live beside the decider
(``domain.codec``), so a decision never depends on a storage format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")


@dataclass(frozen=True)
class Decider(Generic[C, E, S]):
    initial_state: S
    decide: Callable[[C, S], list[E]]
    evolve: Callable[[S, E], S]

    def fold(self, events: Iterable[E], state: S | None = None) -> S:
        current = self.initial_state if state is None else state
        for event in events:
            current = self.evolve(current, event)
        return current
