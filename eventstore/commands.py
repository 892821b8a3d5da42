"""The command loop: load (or use the cached) state, decide, append one commit, retry on conflict.

A warm command costs exactly one write: the processor keeps (state, version) per stream in memory
and only reads the stream when it has nothing cached or lost a race. Commands on the same stream
within one process are serialized by a per-stream lock, so they never race each other; races
between processes (scaled-out hosts) are settled by the store's unique commit id, after which the
loser catches up from the version it knew and decides again.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from domain.codec import EventCodec, StreamCategory
from domain.decider import Decider
from domain.errors import DomainError
from eventstore.clock import new_id, utc_now_iso
from eventstore.commit import Commit, EventRecord
from eventstore.errors import ConcurrencyError, IdempotencyKeyReused
from eventstore.ports import CostMeter, EventStore
from eventstore.tracing import SpanKind, current_context, span, tracing_configured

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")

log = logging.getLogger(__name__)
_LOCK_STRIPES = 256
RECENT_COMMITS = 32  # how far back a retried command (same causation id) is recognised


@dataclass(frozen=True)
class CommandContext:
    """Where a command came from: carried into every event it produces.

    ``causation_id`` names the command: a client's idempotency key, a message id, or a new id. A
    command whose causation id is already on one of the stream's recent commits is a retry: it
    is answered with that commit's result, provided it asks the same (``fingerprint``: by
    default the command's type and content; a use case whose command is derived from state
    fingerprints its request instead).
    """

    correlation_id: str
    causation_id: str
    fingerprint: str | None = None


# The canonical form is stored (in each commit's fingerprint) and compared with later retries:
# it must never change. One encoder, as json.dumps() builds a new one per call for these options.
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              default=str).encode
_PLAIN = (str, int, float, bool, type(None))
_field_names: dict[type, tuple[str, ...]] = {}


def fingerprint(kind: str, *content: object) -> str:
    """A short, stable digest of what a request asks: its kind and its content."""
    digest = hashlib.sha256(_canonical([kind, *content]).encode("utf-8")).digest()[:15]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def command_fingerprint(command: object) -> str:
    kind = type(command)
    if not dataclasses.is_dataclass(command) or isinstance(command, type):
        return fingerprint(kind.__name__, repr(command))
    names = _field_names.get(kind)
    if names is None:
        names = _field_names[kind] = tuple(f.name for f in dataclasses.fields(command))
    fields = {name: getattr(command, name) for name in names}
    if not all(isinstance(value, _PLAIN) for value in fields.values()):
        fields = dataclasses.asdict(command)  # nested values: exactly what asdict makes of them
    return fingerprint(kind.__name__, fields)


@dataclass(frozen=True)
class CommandResult(Generic[S, E]):
    state: S
    version: int  # the stream version after the command (unchanged for a no-op)
    events: tuple[E, ...]  # what the command recorded; empty when it was a no-op


@dataclass(frozen=True)
class _Entry(Generic[S]):
    state: S
    version: int
    recent: tuple[Commit, ...] = ()  # the stream's latest commits, to recognise a retried command
    first: Commit | None = None  # the creation commit: a retried create is recognised forever

    def replay_of(self, causation_id: str) -> Commit | None:
        found = next((c for c in self.recent if c.causation_id == causation_id), None)
        if found is None and self.first is not None and self.first.causation_id == causation_id:
            found = self.first
        return found

    def advanced(self, state: S, commits: list[Commit]) -> _Entry[S]:
        version = commits[-1].version if commits else self.version
        first = self.first or next((c for c in commits if c.first_version == 1), None)
        return _Entry(state, version, (*self.recent, *commits)[-RECENT_COMMITS:], first)


class CommandProcessor(Generic[C, E, S]):
    """Runs commands against the streams of one category (one aggregate type).

    Addressed by aggregate id; the category names the stream, the codec stores the events.
    """

    def __init__(
        self,
        store: EventStore,
        category: StreamCategory,
        decider: Decider[C, E, S],
        codec: EventCodec[E],
        *,
        max_attempts: int = 5,
        cache_size: int = 10_000,
        clock: Callable[[], str] = utc_now_iso,
        id_factory: Callable[[], str] = new_id,
        meter: CostMeter | None = None,
    ) -> None:
        self._store = store
        self._category = category
        self._decider = decider
        self._codec = codec
        self._max_attempts = max_attempts
        self._cache_size = cache_size
        self._clock = clock
        self._new_id = id_factory
        self._meter = meter
        self._cache: OrderedDict[str, _Entry[S]] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Lock striping bounds memory: two streams may share a lock, which only costs a little
        # waiting, never correctness.
        self._stream_locks = tuple(threading.Lock() for _ in range(_LOCK_STRIPES))

    @property
    def category(self) -> StreamCategory:
        return self._category

    def load(self, aggregate_id: str, *, at_least: int = 0, refresh: bool = False
             ) -> tuple[S, int]:
        """The stream's state and version (0 = the stream does not exist).

        Served from the cache when it holds at least version ``at_least``, unless ``refresh``
        asks for the latest (before a side effect outside the stream, where a stale decision
        would be costly); either way only the commits after the cached version are read.
        """
        stream_id = self._category.stream_id(aggregate_id)
        with self._stream_lock(stream_id):
            entry = self._cached(stream_id)
            if entry is None or entry.version < at_least or refresh:
                entry = self._catch_up(stream_id, entry)
            return entry.state, entry.version

    def cached_version(self, aggregate_id: str) -> int:
        """The newest version this process knows of (a free hint for read-your-writes)."""
        entry = self._cached(self._category.stream_id(aggregate_id))
        return entry.version if entry else 0

    def execute(self, aggregate_id: str, command: C, context: CommandContext
                ) -> CommandResult[S, E]:
        stream_id = self._category.stream_id(aggregate_id)
        if not tracing_configured():  # checked once per command: the rest runs span-free
            return self._metered(stream_id, command, context, False)
        with span(f"{type(command).__name__} {self._category.name}",
                  attributes={"es.stream_id": stream_id}) as traced:
            result = self._metered(stream_id, command, context, True)
            traced.set_attribute("es.version", result.version)
            return result

    def _metered(self, stream_id: str, command: C, context: CommandContext, traced: bool
                 ) -> CommandResult[S, E]:
        if self._meter is None:
            return self._execute(stream_id, command, context, traced)
        with self._meter.measure() as cost:
            result = self._execute(stream_id, command, context, traced)
        # The cost of a command is what the pattern is judged by: make it visible per command.
        log.info("%s on %s -> version %d: %d request(s), %.2f RU", type(command).__name__,
                 stream_id, result.version, cost.requests, cost.request_charge)
        return result

    def recall(self, aggregate_id: str, context: CommandContext) -> CommandResult[S, E] | None:
        """The result of the command this context names, if the stream already holds it (a
        retry), read from the stream's latest state (so a ``load`` right after needs no
        refresh): for a use case that must know before it acts outside the stream. Raises
        IdempotencyKeyReused when the key was used for a different request."""
        if context.fingerprint is None:
            raise ValueError("recall needs the request's fingerprint in the context")
        stream_id = self._category.stream_id(aggregate_id)
        with self._stream_lock(stream_id):
            # Fresh: the first attempt may have run on another instance.
            entry = self._catch_up(stream_id, self._cached(stream_id))
            return self._replay(entry, context, context.fingerprint)

    def _replay(self, entry: _Entry[S], context: CommandContext, asked: str
                ) -> CommandResult[S, E] | None:
        replayed = entry.replay_of(context.causation_id)
        if replayed is None:
            return None
        if replayed.fingerprint and replayed.fingerprint != asked:
            raise IdempotencyKeyReused(
                f"the key {context.causation_id!r} was already used for another request on this "
                "stream; send a new key for a new request")
        # The same command (a client retry after a timeout, a redelivered message) was already
        # committed: answer what it did instead of doing it again.
        return CommandResult(entry.state, replayed.version, self._decoded(replayed))

    def _execute(self, stream_id: str, command: C, context: CommandContext, traced: bool
                 ) -> CommandResult[S, E]:
        asked = context.fingerprint or command_fingerprint(command)
        with self._stream_lock(stream_id):
            entry = self._cached(stream_id)
            current = entry is None  # is the state known to be the stream's latest?
            if entry is None:
                entry = self._catch_up(stream_id, None)
            attempts = 0
            while True:
                replayed = self._replay(entry, context, asked)
                if replayed is not None:
                    return replayed
                try:
                    events = self._decider.decide(command, entry.state)
                except DomainError:
                    if current:
                        raise
                    # Refused on cached state: another instance may have moved the stream on.
                    # Refuse only what the current state refuses.
                    current = True
                    entry = self._catch_up(stream_id, entry)
                    continue
                if not events:
                    return CommandResult(entry.state, entry.version, ())
                try:
                    commit = self._append(stream_id, entry.version, events, context, asked,
                                          traced)
                except ConcurrencyError:
                    attempts += 1
                    if attempts >= self._max_attempts:
                        raise ConcurrencyError(
                            f"stream {stream_id} kept changing while the command was decided; "
                            f"gave up after {attempts} attempts"
                        ) from None
                    # Another writer appended first: catch up from what we knew and re-decide.
                    log.info("conflict on %s at version %d (attempt %d)", stream_id,
                             entry.version + 1, attempts)
                    self._forget(stream_id)
                    if current:
                        # Spread out writers hammering one stream. A decision on cached state
                        # retries at once: its conflict says the cache was behind (another
                        # process wrote), not that writers collide.
                        time.sleep(0.005 * attempts)
                    current = True
                    entry = self._catch_up(stream_id, entry)
                    continue
                entry = entry.advanced(self._decider.fold(events, entry.state), [commit])
                self._remember(stream_id, entry)
                return CommandResult(entry.state, commit.version, tuple(events))

    def _append(self, stream_id: str, version: int, events: list[E], context: CommandContext,
                asked: str, traced: bool) -> Commit:
        """One commit, written in a span whose context the commit carries (when traced): the
        change-feed consumers continue the trace from it."""
        if not traced:
            commit = self._commit(stream_id, version, events, context, asked, None)
            self._store.append(commit)
            return commit
        with span(f"commit {self._category.name}", kind=SpanKind.CLIENT,
                  attributes={"es.stream_id": stream_id, "es.first_version": version + 1,
                              "es.events": len(events)}):
            commit = self._commit(stream_id, version, events, context, asked,
                                  current_context() or None)
            self._store.append(commit)
            return commit

    def _commit(self, stream_id: str, version: int, events: list[E], context: CommandContext,
                asked: str, trace_context: dict[str, str] | None) -> Commit:
        now = self._clock()
        records = []
        for offset, event in enumerate(events, start=1):
            encoded = self._codec.encode(event)
            records.append(EventRecord(
                version=version + offset,
                event_id=self._new_id(),
                type=encoded.type,
                schema_version=encoded.schema_version,
                occurred_at=now,
                data=encoded.data,
            ))
        return Commit(
            stream_id=stream_id,
            stream_type=self._category.name,
            events=tuple(records),
            correlation_id=context.correlation_id,
            causation_id=context.causation_id,
            committed_at=now,
            fingerprint=asked,
            trace_context=trace_context,
        )

    def _catch_up(self, stream_id: str, entry: _Entry[S] | None) -> _Entry[S]:
        known = entry or _Entry(self._decider.initial_state, 0)
        state, version = known.state, known.version
        commits = self._store.read_stream(stream_id, after_version=version)
        for commit in commits:
            for record in commit.events:
                if record.version <= version:
                    continue
                event = self._codec.decode(record.type, record.schema_version, record.data)
                state = self._decider.evolve(state, event)
                version = record.version
        fresh = known.advanced(state, commits)
        if fresh.version:
            self._remember(stream_id, fresh)
        return fresh

    def _decoded(self, commit: Commit) -> tuple[E, ...]:
        return tuple(self._codec.decode(r.type, r.schema_version, r.data) for r in commit.events)

    def _cached(self, stream_id: str) -> _Entry[S] | None:
        with self._cache_lock:
            entry = self._cache.get(stream_id)
            if entry is not None:
                self._cache.move_to_end(stream_id)
            return entry

    def _remember(self, stream_id: str, entry: _Entry[S]) -> None:
        with self._cache_lock:
            current = self._cache.get(stream_id)
            if current is None or current.version <= entry.version:
                self._cache[stream_id] = entry
                self._cache.move_to_end(stream_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _forget(self, stream_id: str) -> None:
        with self._cache_lock:
            self._cache.pop(stream_id, None)

    def _stream_lock(self, stream_id: str) -> threading.Lock:
        return self._stream_locks[hash(stream_id) % _LOCK_STRIPES]
