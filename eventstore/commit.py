"""The commit document: the 1..n events one command produced for one stream, stored as one
document with one write.

Its id ``"{streamId}:{firstVersion}"`` is the optimistic-concurrency check: a second writer that
decided from the same version collides on it. Every store adapter writes and reads exactly this
format; ``Commit.from_document`` is the one parser, and ``Commit`` refuses at construction what
could never be read back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

JsonDict = dict[str, Any]

# The trusted constructors set a frozen instance's fields directly, as its own __init__ does.
_T = TypeVar("_T")
_new = object.__new__
_set = object.__setattr__


def _unchecked(cls: type[_T], **fields: object) -> _T:
    """An instance of the frozen dataclass ``cls`` with ``fields`` set as given, without its
    constructor's conversions and checks: for values already checked."""
    instance = _new(cls)
    for name, value in fields.items():
        _set(instance, name, value)
    return instance


def commit_id(stream_id: str, first_version: int) -> str:
    return f"{stream_id}:{first_version}"


def message_id(stream_id: str, version: int) -> str:
    """The MessageId of what an event publishes: broker duplicate detection drops a resend."""
    return f"{stream_id}:{version}"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One stored event inside a commit."""

    version: int
    event_id: str
    type: str
    schema_version: int
    occurred_at: str
    data: JsonDict

    def __post_init__(self) -> None:
        # Checked at construction, so append refuses what no reader could decode later.
        if not isinstance(self.data, dict):
            raise ValueError(f"event data must be a JSON object, got {type(self.data).__name__}")
        if not isinstance(self.type, str) or not self.type:
            raise ValueError("an event needs a type name")
        if not isinstance(self.schema_version, int) or self.schema_version < 1:
            raise ValueError(f"schema version must be >= 1, got {self.schema_version!r}")

    def to_document(self) -> JsonDict:
        return {
            "version": self.version,
            "eventId": self.event_id,
            "type": self.type,
            "schemaVersion": self.schema_version,
            "occurredAt": self.occurred_at,
            "data": self.data,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> EventRecord:
        version, event_id, event_type = doc["version"], doc["eventId"], doc["type"]
        schema_version, occurred_at, data = doc["schemaVersion"], doc["occurredAt"], doc["data"]
        # What a JSON parser gives for a valid record is checked by type alone: every consumer
        # parses every commit it reads, so this is the change feed's hottest constructor.
        if (type(version) is int and type(event_id) is str and type(event_type) is str
                and event_type and type(schema_version) is int and schema_version >= 1
                and type(occurred_at) is str and type(data) is dict):
            return cls.trusted(version, event_id, event_type, schema_version, occurred_at,
                               dict(data))
        return cls(
            version=int(version),
            event_id=str(event_id),
            type=str(event_type),
            schema_version=int(schema_version),
            occurred_at=str(occurred_at),
            data=_object(data),
        )

    @classmethod
    def trusted(cls, version: int, event_id: str, event_type: str, schema_version: int,
                occurred_at: str, data: JsonDict) -> EventRecord:
        """A record from values the caller has already checked (as ``__post_init__`` would),
        built without the frozen constructor's per-field cost."""
        return _unchecked(cls, version=version, event_id=event_id, type=event_type,
                          schema_version=schema_version, occurred_at=occurred_at, data=data)


def _object(value: Any) -> JsonDict:
    if type(value) is dict:  # what JSON parsers give: no ABC check on the hot path
        return dict(value)
    if not isinstance(value, Mapping):
        raise ValueError(f"event data must be a JSON object, got {type(value).__name__}")
    return dict(value)


@dataclass(frozen=True, slots=True)
class Commit:
    stream_id: str
    stream_type: str
    events: tuple[EventRecord, ...]
    correlation_id: str
    causation_id: str  # the command's idempotency key, message id, or a new id
    committed_at: str
    fingerprint: str = ""  # what the command asked (see eventstore.commands.fingerprint)
    # W3C trace context of the command (traceparent, tracestate), so the change-feed consumers
    # continue its trace; optional: documents without it read as before.
    trace_context: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.stream_id or not self.stream_type:
            raise ValueError("a commit needs a stream id and a stream type")
        if not self.events:
            raise ValueError("a commit holds at least one event")
        if not _contiguous(self.events):
            versions = [e.version for e in self.events]
            raise ValueError(f"commit versions must be contiguous from >= 1, got {versions}")

    @property
    def first_version(self) -> int:
        return self.events[0].version

    @property
    def version(self) -> int:
        """The stream version after this commit (its last event's version)."""
        return self.events[-1].version

    @property
    def id(self) -> str:
        return commit_id(self.stream_id, self.first_version)

    def to_document(self) -> JsonDict:
        return {
            "id": self.id,
            "streamId": self.stream_id,
            "streamType": self.stream_type,
            "version": self.version,
            "events": [e.to_document() for e in self.events],
            "correlationId": self.correlation_id,
            "causationId": self.causation_id,
            "committedAt": self.committed_at,
            **({"fingerprint": self.fingerprint} if self.fingerprint else {}),
            **({"traceContext": dict(self.trace_context)} if self.trace_context else {}),
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Commit:
        """Parse a commit document; extra keys (Cosmos system properties) are ignored."""
        stream_id, stream_type = doc["streamId"], doc["streamType"]
        correlation_id, causation_id = doc["correlationId"], doc["causationId"]
        committed_at, fingerprint = doc["committedAt"], doc.get("fingerprint") or ""
        events = tuple(EventRecord.from_document(e) for e in doc["events"])
        trace_context = _trace_context(doc.get("traceContext"))
        if (type(stream_id) is str and stream_id and type(stream_type) is str and stream_type
                and type(correlation_id) is str and type(causation_id) is str
                and type(committed_at) is str and type(fingerprint) is str
                and _contiguous(events)):
            return cls.trusted(stream_id, stream_type, events, correlation_id, causation_id,
                               committed_at, fingerprint, trace_context)
        return cls(
            stream_id=str(stream_id),
            stream_type=str(stream_type),
            events=events,
            correlation_id=str(correlation_id),
            causation_id=str(causation_id),
            committed_at=str(committed_at),
            fingerprint=str(fingerprint),
            trace_context=trace_context,
        )

    @classmethod
    def trusted(cls, stream_id: str, stream_type: str, events: tuple[EventRecord, ...],
                correlation_id: str, causation_id: str, committed_at: str, fingerprint: str,
                trace_context: Mapping[str, str] | None) -> Commit:
        """A commit from values the caller has already checked (as ``__post_init__`` would:
        ids and type present, at least one event, versions contiguous from >= 1)."""
        return _unchecked(cls, stream_id=stream_id, stream_type=stream_type, events=events,
                          correlation_id=correlation_id, causation_id=causation_id,
                          committed_at=committed_at, fingerprint=fingerprint,
                          trace_context=trace_context)


def _contiguous(events: tuple[EventRecord, ...]) -> bool:
    """At least one event, versions contiguous from >= 1."""
    if not events or events[0].version < 1:
        return False
    first = events[0].version
    return all(record.version == first + offset for offset, record in enumerate(events))


def _trace_context(value: Any) -> dict[str, str] | None:
    """The stored trace context, if it is one; anything else is ignored, never a reason to
    refuse the commit (tracing is not data)."""
    if value is None or not isinstance(value, Mapping):
        return None
    kept = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return kept or None
