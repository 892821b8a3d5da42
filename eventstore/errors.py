"""Errors the kernel and its adapters raise, independent of any backend."""


class ConcurrencyError(Exception):
    """A write lost an optimistic-concurrency race (stale expected version or ETag)."""


class TransientError(Exception):
    """A backend failed in a way that may succeed when retried (throttling, timeouts, outages).

    Change-feed and Service Bus handlers let it propagate so the host's retry policy runs and the
    checkpoint (or the message lock) does not move.
    """
