"""Errors the kernel and its adapters raise, independent of any backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventstore.ports import OutboundMessage


class ConcurrencyError(Exception):
    """A write lost an optimistic-concurrency race (stale expected version or ETag)."""


class TransientError(Exception):
    """A backend failed in a way that may succeed when retried (throttling, timeouts, outages).

    Change-feed and Service Bus handlers let it propagate so the host's retry policy runs and the
    checkpoint (or the message lock) does not move.
    """


class UndeliverableMessageError(Exception):
    """The broker can never accept this message (e.g. it is too large): retrying cannot help.

    The publisher parks it in the dead-letter store and sends the rest of the batch.
    """

    def __init__(self, detail: str, outbound: OutboundMessage) -> None:
        super().__init__(detail)
        self.outbound = outbound
