"""Errors the kernel and its adapters raise, independent of any backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventstore.ports import OutboundMessage


class ConcurrencyError(Exception):
    """A write lost an optimistic-concurrency race (stale expected version or ETag)."""


class IdempotencyKeyReused(Exception):
    """A retry key (Idempotency-Key, causation id) came back with a different request: it is
    refused, never replayed (HTTP 422)."""


class NotFound(Exception):
    """The aggregate (or the version of it) a read asked for does not exist."""

    def __init__(self, what: str, aggregate_id: str, *, version: int | None = None,
                 latest: int | None = None, as_of: str | None = None) -> None:
        if as_of is not None:
            detail = f"{what} {aggregate_id!r} did not exist at {as_of}"
        elif version is None:
            detail = f"no {what} with id {aggregate_id!r}"
        else:
            detail = f"{what} {aggregate_id!r} has no version {version} (its latest is {latest})"
        super().__init__(detail)
        self.what = what
        self.aggregate_id = aggregate_id
        self.version = version
        self.detail = detail


class TransientError(Exception):
    """A backend failed in a way that may succeed when retried (throttling, timeouts, outages).

    Change-feed and Service Bus handlers let it propagate so the host's retry policy runs and the
    checkpoint (or the message lock) does not move.
    """


class StorageUnavailableError(TransientError):
    """The storage itself failed (disk full, read-only, I/O error, a damaged file): not the
    request's fault. Clients get 503; change-feed handlers retry instead of parking the event."""


class UndeliverableMessageError(Exception):
    """The broker can never accept this message (e.g. it is too large): retrying cannot help.

    The publisher parks it in the dead-letter store and sends the rest of the batch.
    """

    def __init__(self, detail: str, outbound: OutboundMessage) -> None:
        super().__init__(detail)
        self.outbound = outbound
