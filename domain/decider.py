"""The decider pattern: an aggregate is initial state + decide + evolve + an event codec."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")


@dataclass(frozen=True)
class EncodedEvent:
    """An event as stored: its type name, schema version and JSON-ready data (camelCase keys)."""

    type: str
    schema_version: int
    data: dict[str, Any]


def decode_event(
    decoders: Mapping[str, Callable[[Mapping[str, Any]], E]],
    aggregate: str,
    schema_version_read: int,
    event_type: str,
    schema_version: int,
    data: Mapping[str, Any],
) -> E:
    """Rebuild a stored event; ValueError for an unknown type or schema version or bad data."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{event_type} data must be a JSON object, got {type(data).__name__}")
    decoder = decoders.get(event_type)
    if decoder is None:
        raise ValueError(f"unknown {aggregate} event type {event_type!r}")
    if schema_version != schema_version_read:
        raise ValueError(
            f"unsupported schema version {schema_version} of {event_type} "
            f"(this code reads version {schema_version_read})"
        )
    return decoder(data)


@dataclass(frozen=True)
class Decider(Generic[C, E, S]):
    stream_type: str  # "order" / "payment"; streams are named f"{stream_type}-{id}"
    initial_state: S
    decide: Callable[[C, S], list[E]]
    evolve: Callable[[S, E], S]
    encode: Callable[[E], EncodedEvent]
    decode: Callable[[str, int, Mapping[str, Any]], E]

    def stream_id(self, aggregate_id: str) -> str:
        return f"{self.stream_type}-{aggregate_id}"

    def fold(self, events: list[E], state: S | None = None) -> S:
        current = self.initial_state if state is None else state
        for event in events:
            current = self.evolve(current, event)
        return current
