"""How aggregates are stored: stream names, and the codec between events and stored records.

Kept apart from the deciders, as Equinox keeps ``Stream`` and ``Events.codec`` apart from
``decide``: renaming a Python attribute must never change what is stored, and a decision must
never depend on a storage format. Each event type is declared once, as an ``EventSchema``: its
stored name, schema version, the field-by-field encoder and decoder, and the upcasters that lift
data stored at an older version to the current one (v1 -> v2 -> ...), so stored events are never
rewritten and the decoder only ever reads the current shape.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E")

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamCategory:
    """Streams of one aggregate type are named ``"{name}-{aggregateId}"``."""

    name: str

    def stream_id(self, aggregate_id: str) -> str:
        return f"{self.name}-{aggregate_id}"

    def aggregate_id(self, stream_id: str) -> str:
        prefix = f"{self.name}-"
        if not stream_id.startswith(prefix):
            raise ValueError(f"stream {stream_id!r} is not in the {self.name} category")
        return stream_id[len(prefix):]

    def owns(self, stream_id: str) -> bool:
        return stream_id.startswith(f"{self.name}-")


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event as stored: its type name, schema version and JSON-ready data (camelCase keys)."""

    type: str
    schema_version: int
    data: JsonObject


Upcaster = Callable[[Mapping[str, Any]], JsonObject]
"""Turns the stored data of one schema version into the data of the next."""


@dataclass(frozen=True)  # no slots: EventSchema[X](...) sets __orig_class__
class EventSchema(Generic[T]):
    """One event type as stored. ``encode`` writes and ``decode`` reads data of the current
    ``version``; ``upcasters[n]`` turns data of version n into version n + 1, one for every
    version before the current one, so data of any stored version is read through the chain."""

    type_name: str
    event_class: type[T]
    version: int
    encode: Callable[[T], JsonObject]
    decode: Callable[[Mapping[str, Any]], T]
    upcasters: Mapping[int, Upcaster] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise TypeError(f"{self.type_name}: schema versions start at 1, got {self.version}")
        if set(self.upcasters) != set(range(1, self.version)):
            raise TypeError(
                f"{self.type_name} is at version {self.version}: declare one upcaster from each "
                f"older version {list(range(1, self.version))}, got {sorted(self.upcasters)}")

    def upcast(self, schema_version: int, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """The data of the current version, from data stored at ``schema_version``."""
        if not 1 <= schema_version <= self.version:
            raise ValueError(
                f"unsupported schema version {schema_version} of {self.type_name} "
                f"(this code reads versions 1 to {self.version})")
        for version in range(schema_version, self.version):
            data = self.upcasters[version](data)
        return data


class EventCodec(Generic[E]):
    """Encodes and decodes every event of one aggregate; refuses what it cannot read back.

    Built from one ``EventSchema`` per member of the aggregate's event union, and checked
    against that union when built, so an event added to the union without a schema fails at
    import instead of at the first write.
    """

    def __init__(self, aggregate: str, union: object, schemas: Iterable[EventSchema[Any]]) -> None:
        self.aggregate = aggregate
        self._by_name: dict[str, EventSchema[Any]] = {}
        self._by_class: dict[type[Any], EventSchema[Any]] = {}
        for schema in schemas:
            if schema.type_name in self._by_name or schema.event_class in self._by_class:
                raise TypeError(f"{aggregate} event {schema.type_name} is declared twice")
            self._by_name[schema.type_name] = schema
            self._by_class[schema.event_class] = schema
        members = set(typing.get_args(union)) or {union}
        if members != set(self._by_class):
            missing = sorted(c.__name__ for c in members - set(self._by_class))
            extra = sorted(c.__name__ for c in set(self._by_class) - members)
            raise TypeError(f"{aggregate} codec does not match its event union: "
                            f"missing {missing}, not in the union {extra}")

    @property
    def type_names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    @property
    def schemas(self) -> tuple[EventSchema[Any], ...]:
        return tuple(self._by_name.values())

    def type_name(self, event_class: type[Any]) -> str:
        schema = self._by_class.get(event_class)
        if schema is None:
            raise TypeError(f"{event_class.__name__} is not one of the {self.aggregate} events")
        return schema.type_name

    def encode(self, event: E) -> EncodedEvent:
        schema = self._by_class.get(type(event))
        if schema is None:
            raise TypeError(f"not one of the {self.aggregate} events: {event!r}")
        return EncodedEvent(schema.type_name, schema.version, schema.encode(event))

    def decode(self, event_type: str, schema_version: int, data: Mapping[str, Any]) -> E:
        """Rebuild a stored event of any schema version the codec knows (older ones are upcast);
        ValueError for an unknown type or schema version or bad data.

        Stored events are facts: a malformed one is corruption or a bug, never a user error."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{event_type} data must be a JSON object, got {type(data).__name__}")
        schema = self._by_name.get(event_type)
        if schema is None:
            raise ValueError(f"unknown {self.aggregate} event type {event_type!r}")
        if schema_version != schema.version:  # most events are stored at the current version
            data = schema.upcast(schema_version, data)
        event: E = schema.decode(data)
        return event


# Reading stored event data back. Stored events are facts: a malformed one is a bug or
# corruption, never a user error, hence ValueError rather than a DomainError.


def stored_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"event data field {key!r} must be a string, got {value!r}")
    return value


def stored_int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"event data field {key!r} must be an integer, got {value!r}")
    return value
