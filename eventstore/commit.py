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
from typing import Any

JsonDict = dict[str, Any]


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
        return cls(
            version=int(doc["version"]),
            event_id=str(doc["eventId"]),
            type=str(doc["type"]),
            schema_version=int(doc["schemaVersion"]),
            occurred_at=str(doc["occurredAt"]),
            data=_object(doc["data"]),
        )


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
        versions = [e.version for e in self.events]
        if versions != list(range(versions[0], versions[0] + len(versions))) or versions[0] < 1:
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
        return cls(
            stream_id=str(doc["streamId"]),
            stream_type=str(doc["streamType"]),
            events=tuple(EventRecord.from_document(e) for e in doc["events"]),
            correlation_id=str(doc["correlationId"]),
            causation_id=str(doc["causationId"]),
            committed_at=str(doc["committedAt"]),
            fingerprint=str(doc.get("fingerprint") or ""),
            trace_context=_trace_context(doc.get("traceContext")),
        )


def _trace_context(value: Any) -> dict[str, str] | None:
    """The stored trace context, if it is one; anything else is ignored, never a reason to
    refuse the commit (tracing is not data)."""
    if value is None or not isinstance(value, Mapping):
        return None
    kept = {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
    return kept or None
