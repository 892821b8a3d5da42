"""What an operator does to one service, over the kernel's ports (the ``ops`` CLI calls these):
list streams and their commits, see each change-feed consumer's lag, rebuild the projection, and
replay or discard dead letters of both kinds: events (or messages) the service's own consumers
parked in its dead-letter store, and messages the broker dead-lettered on the entity the
service consumes.

Nothing is lost on the way: a letter is removed only after its replay succeeded; a replay that
fails for good parks it again with its new reason; a transient failure leaves it as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from app.settings import ServiceName
from contracts.messages import IntegrationMessage, parse_message
from eventstore.clock import utc_now_iso
from eventstore.commands import CommandContext
from eventstore.commit import Commit
from eventstore.errors import ConcurrencyError
from eventstore.poison import is_transient, parse_commits
from eventstore.ports import (
    DeadLetter,
    DeadLetterQueues,
    DeadLetterStore,
    FeedStore,
    QueuedDeadLetter,
    RangeLag,
    StreamInfo,
    ViewStore,
)
from eventstore.projection import Projector
from eventstore.publishing import Publisher

log = logging.getLogger(__name__)

MessageHandler = Callable[[IntegrationMessage, CommandContext], None]
BUS_CONSUMER_PREFIX = "bus:"  # the consumer of a parked message a dead-letter replay failed
REBUILD_PREFIX = "_rebuild:"  # view id of a rebuild's progress: no aggregate id starts with "_"
STREAM_PAGE = 200


@dataclass(frozen=True)
class ConsumerLag:
    consumer: str
    ranges: list[RangeLag]


@dataclass(frozen=True)
class Letter:
    """A dead letter of either kind, as the operator lists and addresses it."""

    id: str  # a parked letter's id, or "{entity}#{sequence number}" for a broker's
    kind: Literal["parked", "queue"]
    consumer: str  # the consumer that parked it, or the entity it was dead-lettered from
    subject: str  # the event type or message subject
    stream_id: str
    reason: str
    at: str


@dataclass(frozen=True)
class Replayed:
    letter_id: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class RebuildProgress:
    done: int
    total: int
    events: int
    resumed_after: str | None


class ServiceOperations:
    def __init__(self, service: ServiceName, events: FeedStore, views: ViewStore,
                 dead_letters: DeadLetterStore, projector: Projector[Any],
                 publisher: Publisher, queues: DeadLetterQueues, consumed_entity: str,
                 handle_message: MessageHandler) -> None:
        self.service = service
        self._events = events
        self._views = views
        self._dead_letters = dead_letters
        self._projector = projector
        self._publisher = publisher
        self._queues = queues
        self.consumed_entity = consumed_entity
        self._handle_message = handle_message

    @property
    def consumers(self) -> tuple[str, ...]:
        return (self._projector.consumer, self._publisher.consumer)

    # -- streams ----------------------------------------------------------------------------

    def streams(self, after: str | None = None, limit: int = 100) -> list[StreamInfo]:
        return self._events.list_streams(after, limit)

    def all_streams(self, after: str | None = None) -> Iterator[StreamInfo]:
        while True:
            page = self._events.list_streams(after, STREAM_PAGE)
            yield from page
            if len(page) < STREAM_PAGE:
                return
            after = page[-1].stream_id

    def commits(self, stream_id: str) -> list[Commit]:
        return self._events.read_stream(stream_id)

    def lag(self) -> list[ConsumerLag]:
        return [ConsumerLag(c, self._events.consumer_lag(c)) for c in self.consumers]

    # -- projection rebuild ------------------------------------------------------------------

    def rebuild(self, on_progress: Callable[[RebuildProgress], None], *,
                restart: bool = False, save_every: int = 50) -> RebuildProgress:
        """Recompute every view of the service from its stream while the API runs (see
        ``Projector.rebuild_stream``). Its position is saved every ``save_every`` streams: an
        interrupted rebuild resumes after the last saved stream (``restart`` starts over)."""
        marker_id = REBUILD_PREFIX + self._projector.consumer
        marker = self._views.get(marker_id)
        running = marker is not None and marker.document.get("state") == "running"
        after = marker.document.get("after") if running and not restart and marker else None
        etag = marker.etag if marker else None
        streams = [s.stream_id for s in self.all_streams(after)]
        progress = RebuildProgress(0, len(streams), 0, after)
        etag = self._mark(marker_id, etag, "running", after)
        on_progress(progress)
        for index, stream_id in enumerate(streams, start=1):
            version = self._projector.rebuild_stream(
                stream_id, lambda s=stream_id: self._events.read_stream(s))  # type: ignore[misc]
            progress = RebuildProgress(index, len(streams), progress.events + version, after)
            if index % save_every == 0:
                etag = self._mark(marker_id, etag, "running", stream_id)
            on_progress(progress)
        self._mark(marker_id, etag, "done", None)
        return progress

    def _mark(self, marker_id: str, etag: str | None, state: str, after: str | None) -> str:
        document = {"state": state, "after": after, "at": utc_now_iso()}
        try:
            return self._views.put(marker_id, document, etag)
        except ConcurrencyError:
            raise ConcurrencyError("another rebuild of this projection is running") from None

    # -- dead letters ------------------------------------------------------------------------

    def letters(self, limit: int = 100) -> list[Letter]:
        parked = [Letter(d.id, "parked", d.consumer, d.event_type, d.stream_id, d.error,
                         d.parked_at) for d in self._dead_letters.list_letters(limit)]
        queued = [Letter(f"{q.entity_path}#{q.sequence_number}", "queue", q.entity_path,
                         q.subject, q.message_id.rpartition(":")[0], _reason(q), "")
                  for q in self._queues.peek_dead_letters(self.consumed_entity, limit)]
        return parked + queued

    def replay(self, letter_id: str) -> Replayed:
        entity, sequence = _queue_address(letter_id)
        if entity is not None:
            return self._replay_queued(letter_id, entity, sequence)
        letter = self._dead_letters.get_letter(letter_id)
        if letter is None:
            return Replayed(letter_id, False, "no such dead letter")
        try:
            self._replay_parked(letter)
        except Exception as error:
            if is_transient(error):
                return Replayed(letter_id, False, f"transient failure, left as it was: {error!r}")
            # The replay failed for good outside the consumers' own parking: keep it, newly.
            self._dead_letters.park(_with_reason(letter, error))
            return Replayed(letter_id, False, f"failed again: {type(error).__name__}: {error}")
        again = self._dead_letters.get_letter(letter_id)
        if again is not None and (again.parked_at, again.error) != (letter.parked_at,
                                                                    letter.error):
            return Replayed(letter_id, False, f"failed again: {again.error}")
        self._dead_letters.remove(letter_id)
        return Replayed(letter_id, True, "replayed")

    def discard(self, letter_id: str) -> bool:
        entity, sequence = _queue_address(letter_id)
        if entity is not None:
            return self._queues.settle_dead_letter(entity, sequence, lambda _message: None)
        return self._dead_letters.remove(letter_id)

    def _replay_parked(self, letter: DeadLetter) -> None:
        if letter.consumer.startswith(BUS_CONSUMER_PREFIX):
            self._handle(_message_of(letter.payload), letter.payload)
        elif letter.event_type == "(malformed commit)":
            self._consume_documents(letter.consumer, [letter.payload])
        elif letter.consumer == self._projector.consumer:
            self._projector.rebuild_stream(letter.stream_id,
                                           lambda: self._events.read_stream(letter.stream_id))
        elif letter.consumer == self._publisher.consumer:
            commit = next((c for c in self._events.read_stream(letter.stream_id)
                           if c.first_version <= letter.version <= c.version), None)
            if commit is None:
                raise LookupError(f"stream {letter.stream_id} has no version {letter.version}")
            self._publisher.replay(commit, letter.version)
        else:
            raise LookupError(f"no consumer {letter.consumer!r} in the {self.service} service")

    def _consume_documents(self, consumer: str, documents: list[Mapping[str, Any]]) -> None:
        commits = parse_commits(documents, self._dead_letters, consumer)
        if consumer == self._projector.consumer:
            self._projector.handle(commits)
        else:
            self._publisher.handle(commits)

    def _replay_queued(self, letter_id: str, entity: str, sequence: int) -> Replayed:
        outcome: list[str] = []

        def handle(message: QueuedDeadLetter) -> None:
            payload = _payload_of(message)
            try:
                self._handle(_message_of(payload), payload)
                outcome.append("replayed")
            except Exception as error:
                if is_transient(error):
                    raise  # the message stays in the dead-letter queue, as it was
                # Poison again: parked with its new reason before the broker's copy goes.
                self._dead_letters.park(DeadLetter(
                    id=f"{BUS_CONSUMER_PREFIX}{entity}:{message.message_id}",
                    consumer=f"{BUS_CONSUMER_PREFIX}{entity}",
                    stream_id=message.message_id.rpartition(":")[0],
                    version=_version_of(message.message_id), event_type=message.subject,
                    error=f"{type(error).__name__}: {error}", payload=payload,
                    parked_at=utc_now_iso()))
                outcome.append(f"failed again, parked: {type(error).__name__}: {error}")

        try:
            found = self._queues.settle_dead_letter(entity, sequence, handle)
        except Exception as error:
            return Replayed(letter_id, False, f"transient failure, left as it was: {error!r}")
        if not found:
            return Replayed(letter_id, False, "no such message in the dead-letter queue")
        return Replayed(letter_id, outcome == ["replayed"], outcome[0])

    def _handle(self, message: IntegrationMessage, payload: Mapping[str, Any]) -> None:
        message_id = str(payload.get("messageId") or "")
        self._handle_message(message, CommandContext(
            correlation_id=str(payload.get("correlationId") or message_id),
            causation_id=message_id))


def _queue_address(letter_id: str) -> tuple[str | None, int]:
    entity, hash_, sequence = letter_id.rpartition("#")
    if hash_ and entity and sequence.isdigit():
        return entity, int(sequence)
    return None, 0


def _reason(message: QueuedDeadLetter) -> str:
    return ": ".join(p for p in (message.reason, message.description) if p) or "(no reason)"


def _payload_of(message: QueuedDeadLetter) -> dict[str, Any]:
    return {"entity": message.entity_path, "messageId": message.message_id,
            "subject": message.subject, "correlationId": message.correlation_id,
            "applicationProperties": dict(message.application_properties),
            "body": message.body.decode("utf-8", errors="replace")}


def _message_of(payload: Mapping[str, Any]) -> IntegrationMessage:
    return parse_message(str(payload.get("subject") or ""),
                         dict(payload.get("applicationProperties") or {}),
                         str(payload.get("body") or "").encode())


def _version_of(message_id: str) -> int:
    version = message_id.rpartition(":")[2]
    return int(version) if version.isdigit() else 0


def _with_reason(letter: DeadLetter, error: BaseException) -> DeadLetter:
    return DeadLetter(id=letter.id, consumer=letter.consumer, stream_id=letter.stream_id,
                      version=letter.version, event_type=letter.event_type,
                      error=f"{type(error).__name__}: {error}", payload=letter.payload,
                      parked_at=datetime.now(UTC).isoformat())
