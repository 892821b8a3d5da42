"""Telling transient failures from poison, and parking poison in the dead-letter store."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from eventstore.clock import utc_now_iso
from eventstore.commit import Commit, EventRecord
from eventstore.errors import TransientError
from eventstore.ports import DeadLetter, DeadLetterStore, OutboundMessage

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)


def raise_if_transient(error: BaseException) -> None:
    """Re-raise errors worth retrying, so the host's retry policy runs and the checkpoint stays."""
    if is_transient(error):
        raise error


def park(
    dead_letters: DeadLetterStore,
    consumer: str,
    stream_id: str,
    record: EventRecord,
    commit: Commit | None,
    error: BaseException,
) -> None:
    log.error("parking %s v%d (%s) for %s: %r", stream_id, record.version, record.type,
              consumer, error)
    dead_letters.park(DeadLetter(
        id=f"{consumer}:{stream_id}:{record.version}",
        consumer=consumer,
        stream_id=stream_id,
        version=record.version,
        event_type=record.type,
        error=f"{type(error).__name__}: {error}",
        payload={
            "event": record.to_document(),
            "correlationId": commit.correlation_id if commit else None,
            "causationId": commit.causation_id if commit else None,
        },
        parked_at=utc_now_iso(),
    ))


def park_message(
    dead_letters: DeadLetterStore, consumer: str, message: OutboundMessage, error: BaseException
) -> None:
    stream_id, _, version = message.message_id.rpartition(":")
    log.error("parking message %s for %s: %r", message.message_id, consumer, error)
    dead_letters.park(DeadLetter(
        id=f"{consumer}:{message.message_id}",
        consumer=consumer,
        stream_id=stream_id,
        version=int(version) if version.isdigit() else 0,
        event_type=message.subject,
        error=f"{type(error).__name__}: {error}",
        payload={"destination": message.destination, "body": message.body,
                 "correlationId": message.correlation_id},
        parked_at=utc_now_iso(),
    ))


def parse_commits(
    documents: Iterable[Mapping[str, Any]], dead_letters: DeadLetterStore, consumer: str
) -> list[Commit]:
    """Change-feed documents to commits; a document that is not a valid commit is parked whole."""
    commits = []
    for doc in documents:
        try:
            commits.append(Commit.from_document(doc))
        except (KeyError, TypeError, ValueError) as error:
            doc_id = str(doc.get("id", "?"))
            log.error("parking malformed change-feed document %s for %s: %r", doc_id, consumer,
                      error)
            dead_letters.park(DeadLetter(
                id=f"{consumer}:{doc_id}",
                consumer=consumer,
                stream_id=str(doc.get("streamId", "?")),
                version=int(doc["version"]) if isinstance(doc.get("version"), int) else 0,
                event_type="(malformed commit)",
                error=f"{type(error).__name__}: {error}",
                payload={k: v for k, v in doc.items() if not k.startswith("_")},
                parked_at=utc_now_iso(),
            ))
    return commits
