"""Reading views so that clients read their own writes, and reading streams.

Projections lag behind the writes. A reader asks for a view at least at some version (the one a
command returned, or the newest this process wrote); when the projection has not caught up, the
view is computed from the stream instead, with the same pure projection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from eventstore.commit import JsonDict
from eventstore.errors import NotFound
from eventstore.ports import EventStore, ViewStore
from eventstore.projection import ViewDefinition, projection_from_stream

E = TypeVar("E")

ViewSource = Literal["projection", "stream"]


@dataclass(frozen=True)
class ViewRead:
    document: JsonDict  # the view as the API shows it (no storage fields)
    source: ViewSource


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
