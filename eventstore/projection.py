"""Projections over the change feed: idempotent, ordered per stream, poison-tolerant.

The change feed delivers at least once, so a view stores the last stream version it applied and
events at or below it are skipped. An event that can never be applied is parked in the dead-letter
store and the view moves past it; transient failures propagate so the host retries the batch.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from domain.codec import EventCodec, StreamCategory
from eventstore.commit import Commit, EventRecord, JsonDict
from eventstore.errors import ConcurrencyError
from eventstore.poison import park, raise_if_transient
from eventstore.ports import DeadLetterStore, StoredView, ViewStore
from eventstore.tracing import SpanKind, span

E = TypeVar("E")

log = logging.getLogger(__name__)

PROJECTOR_FIELD = "_projector"  # which projector (lease prefix) built a view document
REMEMBERED_VIEWS = 1000  # views kept in memory per projector (see Projector._remembered)


@dataclass(frozen=True)
class ViewDefinition(Generic[E]):
    """How the streams of one category become one view document each, whose id is the
    aggregate id."""

    category: StreamCategory
    codec: EventCodec[E]
    apply: Callable[[JsonDict | None, E, int], JsonDict]

    def view_id(self, stream_id: str) -> str:
        return self.category.aggregate_id(stream_id)


def project(
    definition: ViewDefinition[E], view: JsonDict | None, records: Iterable[EventRecord]
) -> JsonDict | None:
    """Pure: apply the records newer than the view's version, in order."""
    for record in records:
        if view is not None and record.version <= int(view["version"]):
            continue
        event = definition.codec.decode(record.type, record.schema_version, record.data)
        view = definition.apply(view, event, record.version)
    return view


class Projector(Generic[E]):
    def __init__(
        self,
        definition: ViewDefinition[E],
        views: ViewStore,
        dead_letters: DeadLetterStore,
        consumer: str,
        max_conflicts: int = 5,
    ) -> None:
        self._definition = definition
        self._views = views
        self._dead_letters = dead_letters
        self._consumer = consumer
        self._max_conflicts = max_conflicts
        # The views as this projector last read or wrote them, with their ETags: a batch starts
        # from the remembered one and skips the read. Safe because the write is ETag-checked:
        # if anyone else wrote the view since, the write fails and the view is read again.
        self._remembered: OrderedDict[str, StoredView] = OrderedDict()
        self._remembered_lock = threading.Lock()  # one pump thread per feed range

    def handle(self, commits: Iterable[Commit]) -> None:
        batch = list(commits)
        by_stream: dict[str, list[Commit]] = {}
        for commit in batch:
            if commit.stream_type == self._definition.category.name:
                by_stream.setdefault(commit.stream_id, []).append(commit)
        with span(f"{self._consumer} batch", kind=SpanKind.CONSUMER,
                  links=[c.trace_context or {} for c in batch],
                  attributes={"es.consumer": self._consumer, "es.commits": len(batch)}):
            for stream_id, stream_commits in by_stream.items():
                self._project_stream(stream_id, sorted(stream_commits, key=lambda c: c.version))

    def _project_stream(self, stream_id: str, commits: list[Commit]) -> None:
        view_id = self._definition.view_id(stream_id)
        for attempt in range(self._max_conflicts):
            stored = self._recall(view_id) if attempt == 0 else None
            if stored is None:
                stored = self._views.get(view_id)
            view = stored.document if stored else None
            if view is not None and view.get(PROJECTOR_FIELD) != self._consumer:
                # Written by another projector version: a bumped lease prefix replays the feed
                # to rebuild the view from scratch, so start from nothing.
                view = None
            updated = self._apply_all(stream_id, view, commits)
            if updated is None or updated is view:
                if stored is not None:
                    self._remember(view_id, stored)
                return
            updated = {**updated, PROJECTOR_FIELD: self._consumer}
            try:
                etag = self._views.put(view_id, updated, stored.etag if stored else None)
            except ConcurrencyError:
                # Another writer (another projector instance, a rebuild) was first, or what was
                # remembered is stale: re-read and re-apply.
                self._forget(view_id)
                continue
            self._remember(view_id, StoredView(updated, etag))
            return
        raise ConcurrencyError(f"view {view_id} kept changing; giving up for this batch")

    def _recall(self, view_id: str) -> StoredView | None:
        with self._remembered_lock:
            stored = self._remembered.get(view_id)
            if stored is not None:
                self._remembered.move_to_end(view_id)
            return stored

    def _remember(self, view_id: str, stored: StoredView) -> None:
        with self._remembered_lock:
            self._remembered[view_id] = stored
            self._remembered.move_to_end(view_id)
            while len(self._remembered) > REMEMBERED_VIEWS:
                self._remembered.popitem(last=False)

    def _forget(self, view_id: str) -> None:
        with self._remembered_lock:
            self._remembered.pop(view_id, None)

    def rebuild_stream(self, stream_id: str, read_commits: Callable[[], list[Commit]]) -> int:
        """Recompute the stream's view from nothing, whatever the stored view says (a projection
        rebuild, a replayed dead letter). Safe beside the live projector: the stored view is
        read before the stream, and its ETag guards the write, so a concurrent update makes this
        read both again. Poison is parked as by ``handle``. Returns the version projected."""
        view_id = self._definition.view_id(stream_id)
        for _ in range(self._max_conflicts):
            stored = self._views.get(view_id)
            commits = sorted((c for c in read_commits()
                              if c.stream_type == self._definition.category.name),
                             key=lambda c: c.version)
            rebuilt = self._apply_all(stream_id, None, commits)
            if rebuilt is None:
                return 0
            self._forget(view_id)
            try:
                self._views.put(view_id, {**rebuilt, PROJECTOR_FIELD: self._consumer},
                                stored.etag if stored else None)
                return int(rebuilt["version"])
            except ConcurrencyError:
                continue  # the live projector wrote meanwhile: read both again
        raise ConcurrencyError(f"view {view_id} kept changing; rebuild it again later")

    @property
    def consumer(self) -> str:
        return self._consumer

    @property
    def definition(self) -> ViewDefinition[E]:
        return self._definition

    def _apply_all(
        self, stream_id: str, view: JsonDict | None, commits: list[Commit]
    ) -> JsonDict | None:
        current = view
        for commit in commits:
            for record in commit.events:
                try:
                    current = project(self._definition, current, [record]) or current
                except Exception as error:
                    raise_if_transient(error)
                    park(self._dead_letters, self._consumer, stream_id, record, commit, error)
                    if current is not None:
                        # Move past the poison event so later events still reach the view.
                        current = {**current, "version": record.version}
        return current


def projection_from_stream(
    definition: ViewDefinition[E], commits: Iterable[Commit]
) -> JsonDict | None:
    """The view computed straight from the stream: the read-your-writes path of the API."""
    view: JsonDict | None = None
    for commit in commits:
        view = project(definition, view, commit.events)
    return view
