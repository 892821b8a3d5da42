"""Reading views so that clients read their own writes, reading the past, and reading streams.

Projections lag behind the writes. A reader asks for a view at least at some version (the one a
command returned, or the newest this process wrote); when the projection has not caught up, the
view is computed from the stream instead, with the same pure projection. A view as it was at an
earlier point (a version, or a moment) is always computed from the stream: the events up to that
point, through the same projection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, TypeVar

from eventstore.commit import Commit, EventRecord, JsonDict
from eventstore.errors import NotFound
from eventstore.ports import EventStore, ViewStore
from eventstore.projection import ViewDefinition, project, projection_from_stream

E = TypeVar("E")

ViewSource = Literal["projection", "stream"]


@dataclass(frozen=True)
class ViewRead:
    document: JsonDict  # the view as the API shows it (no storage fields)
    source: ViewSource


@dataclass(frozen=True)
class PointInTime:
    """A point in a stream's past: after its event ``version``, or at the moment ``at`` (an
    aware datetime; the events that occurred at or before it). Exactly one is set."""

    version: int | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        if (self.version is None) == (self.at is None):
            raise ValueError("a point in time is a version or a moment, exactly one of them")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("a moment needs a time zone")

    def __str__(self) -> str:
        if self.at is not None:
            return self.at.isoformat().replace("+00:00", "Z")
        return f"version {self.version}"

    def events_until(self, commits: Iterable[Commit]) -> Iterator[EventRecord]:
        """The stream's events up to this point: always a prefix of the stream, so the view is
        one the stream really went through, even if clocks put a later event earlier."""
        for commit in commits:
            for record in commit.events:
                if self.version is not None and record.version > self.version:
                    return
                if self.at is not None and _moment(record.occurred_at) > self.at:
                    return
                yield record


def _moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


class ViewReader(Generic[E]):
    def __init__(self, definition: ViewDefinition[E], views: ViewStore, events: EventStore,
                 newest_written: Callable[[str], int], what: str) -> None:
        self._definition = definition
        self._views = views
        self._events = events
        self._newest_written = newest_written  # aggregate id -> version this process wrote
        self._what = what

    def read(self, aggregate_id: str, min_version: int = 0) -> ViewRead:
        """The view at least at ``min_version`` and at the newest version this process wrote.
        Raises NotFound when the aggregate does not exist or has no such version."""
        needed = max(min_version, self._newest_written(aggregate_id))
        stored = self._views.get(aggregate_id)
        view: JsonDict | None
        source: ViewSource
        if stored is not None and int(stored.document.get("version", 0)) >= needed:
            view, source = stored.document, "projection"
        else:
            stream_id = self._definition.category.stream_id(aggregate_id)
            view = projection_from_stream(self._definition, self._events.read_stream(stream_id))
            source = "stream"
        if view is None:
            raise NotFound(self._what, aggregate_id)
        if int(view["version"]) < needed:
            raise NotFound(self._what, aggregate_id, version=needed, latest=int(view["version"]))
        return ViewRead(_public(view), source)

    def read_at(self, aggregate_id: str, point: PointInTime) -> ViewRead:
        """The view as it was at ``point``, from the stream. Raises NotFound when the aggregate
        did not exist then, or when the stream has no such version yet."""
        stream_id = self._definition.category.stream_id(aggregate_id)
        commits = self._events.read_stream(stream_id)
        view = project(self._definition, None, point.events_until(commits))
        if view is None:
            raise NotFound(self._what, aggregate_id, as_of=str(point))
        if point.version is not None and int(view["version"]) < point.version:
            raise NotFound(self._what, aggregate_id, version=point.version,
                           latest=int(view["version"]))
        return ViewRead(_public(view), "stream")


def stream_events(events: EventStore, stream_id: str, what: str, aggregate_id: str
                  ) -> list[JsonDict]:
    """The stream's events in order, each with its commit's metadata; NotFound for no stream."""
    listed = [
        {**record.to_document(), "streamId": commit.stream_id,
         "correlationId": commit.correlation_id, "causationId": commit.causation_id}
        for commit in events.read_stream(stream_id) for record in commit.events
    ]
    if not listed:
        raise NotFound(what, aggregate_id)
    return listed


def _public(document: JsonDict) -> JsonDict:
    return {k: v for k, v in document.items() if not k.startswith("_") and k != "id"}
