"""The change feed on the Python SDK's pull model: whole (``CosmosChangeFeed``, one checkpoint
per consumer) and split into feed ranges (``CosmosPartitionedFeed``, for the lease-based
processor of ``eventstore.changefeed``).

Both keep their documents in the leases container, with ids the Functions trigger never uses
(its lease ids begin with the lease prefix and the account's host name):

- ``"checkpoint:{eventsContainerId}:{consumer}"``: a single reader's checkpoint, the SDK's
  continuation token for the whole container;
- ``"py:ranges:{eventsContainerId}"``: the container's feed ranges as the partitioned feed first
  saw them (``read_feed_ranges()``), kept so that a range's id, and so its leases, survive a
  partition split: the SDK reads a range across the partitions it came to span;
- ``"py:lease:..."`` documents of ``eventstore.adapters.cosmos.leases``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from eventstore.adapters.cosmos.errors import (
    raise_translated,
    read_or_none,
    retried_on_header_race,
    translated,
)
from eventstore.adapters.cosmos.metering import REQUEST_METER, RequestMeter
from eventstore.errors import TransientError
from eventstore.ports import FeedPage, FeedRange

RANGES_KIND = "py-feed-ranges"


def _is_change_feed_token(token: object) -> bool:
    """True for the SDK's pull-model continuation token (base64 JSON naming the container)."""
    if not isinstance(token, str) or not token:
        return False
    try:
        decoded = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "containerRid" in decoded


def _resumable(token: str) -> str:
    """The continuation token with every unread feed range's ``"token": null`` made ``""``.

    The SDK (azure-cosmos 4.17) writes null for the feed ranges (physical partitions) it has not
    read yet and then rejects such a token as a continuation ("Invalid composite token [Missing
    token]"). An empty token builds the same request (no If-None-Match: the range is read from
    the feed's start position) and is accepted. Other tokens are returned unchanged."""
    try:
        state = json.loads(base64.b64decode(token, validate=True))
        ranges = state["continuation"]["continuation"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        return token
    unread = [r for r in ranges if isinstance(r, dict) and r.get("token") is None] \
        if isinstance(ranges, list) else []
    if not unread:
        return token
    for feed_range in unread:
        feed_range["token"] = ""
    return base64.b64encode(json.dumps(state).encode()).decode()


def read_change_feed_page(events: ContainerProxy, meter: RequestMeter, operation: str,
                          continuation: str | None, max_items: int,
                          feed_range: Mapping[str, Any] | None = None) -> FeedPage:
    """One page of the change feed (latest-version mode) after ``continuation`` (None: from the
    beginning of ``feed_range``, or of the whole container). An empty page keeps the
    continuation as it was."""
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    # The page's continuation token: the pager's public ``continuation_token`` is read from the
    # client's shared ``last_response_headers``, which a request on another thread can overwrite
    # in between. The headers of this very response (handed to response_hook, into which the SDK
    # writes the composite token) are not shared, so they are preferred.
    def fetch() -> tuple[list[dict[str, Any]], object]:
        responses: list[Mapping[str, Any]] = []
        options: dict[str, Any] = {
            "max_item_count": max_items,
            "raw_response_hook": meter.response_hook(operation),
            "response_hook": lambda headers, _result: responses.append(headers),
        }
        if continuation is None:
            options["start_time"] = "Beginning"
            if feed_range is not None:
                options["feed_range"] = dict(feed_range)
        else:
            # The token names its feed range itself (the SDK ignores feed_range beside it).
            options["continuation"] = _resumable(continuation)
        pages = events.query_items_change_feed(**options).by_page()
        documents = list(next(pages, []))
        token = responses[-1].get("etag") if responses else None
        if not _is_change_feed_token(token):
            # by_page() is typed as a plain iterator; the object is the SDK's page iterator.
            token = getattr(pages, "continuation_token", None)
        return documents, token

    with translated(operation):
        documents, token = retried_on_header_race(fetch)  # a read: asking again is safe
    if not documents:
        return FeedPage(documents=[], checkpoint=continuation)
    if not isinstance(token, str):
        raise RuntimeError("the change feed returned items without a continuation token")
    return FeedPage(documents=[dict(document) for document in documents],
                    checkpoint=_resumable(token))


class CosmosChangeFeed:
    """``ChangeFeed`` and ``CheckpointStore`` over an events container and a leases container."""

    def __init__(
        self,
        events: ContainerProxy,
        leases: ContainerProxy,
        *,
        meter: RequestMeter | None = None,
    ) -> None:
        self._events = events
        self._leases = leases
        self._meter = meter or REQUEST_METER

    def read_feed(self, checkpoint: str | None, max_items: int) -> FeedPage:
        """One page of the change feed (latest-version mode) after ``checkpoint``.

        The checkpoint is the SDK's pull-model continuation token (it covers every feed range of
        the container). A page with no commits leaves the checkpoint as it was.
        """
        return read_change_feed_page(self._events, self._meter, "read_feed", checkpoint,
                                     max_items)

    def _checkpoint_id(self, consumer: str) -> str:
        return f"checkpoint:{self._events.id}:{consumer}"

    def load_checkpoint(self, consumer: str) -> str | None:
        document = read_or_none(self._leases, self._checkpoint_id(consumer), self._meter,
                                 "load_checkpoint")
        return None if document is None else str(document["checkpoint"])

    def save_checkpoint(self, consumer: str, checkpoint: str) -> None:
        if not checkpoint:
            raise ValueError("a checkpoint is a non-empty continuation token")
        document_id = self._checkpoint_id(consumer)
        with translated("save_checkpoint"):
            self._leases.upsert_item(
                {
                    "id": document_id,
                    "kind": "checkpoint",
                    "container": self._events.id,
                    "consumer": consumer,
                    "checkpoint": checkpoint,
                },
                raw_response_hook=self._meter.response_hook("save_checkpoint"),
            )


def feed_range_id(feed_range: Mapping[str, Any]) -> str:
    """A short, stable name for a feed range: a hash of its effective-partition-key bounds
    (``{"Range": {"min", "max", ...}}`` as the SDK writes it), or of its canonical JSON should a
    later SDK write another shape. 12 hex digits: ids of one container never meet by chance."""
    bounds = feed_range.get("Range")
    if isinstance(bounds, Mapping) and isinstance(bounds.get("min"), str) \
            and isinstance(bounds.get("max"), str):
        key = f"epk:{bounds['min']}-{bounds['max']}"
    else:
        key = json.dumps(feed_range, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


class CosmosPartitionedFeed:
    """``PartitionedFeed`` over an events container: its feed ranges, each read on its own.

    The ranges are those of ``read_feed_ranges()`` (one per physical partition) when the feed is
    first used on the container, recorded in the leases container (``py:ranges:...``) and kept:
    the leases of every consumer are named after them. A range that later spans several physical
    partitions (after a split) or part of one (after a merge) is still read whole by the SDK,
    with a continuation that covers it; the ranges are not re-spread, so a container that grew
    keeps its first number of ranges (the limit of parallel instances)."""

    def __init__(self, events: ContainerProxy, leases: ContainerProxy, *,
                 meter: RequestMeter | None = None) -> None:
        self._events = events
        self._leases = leases
        self._meter = meter or REQUEST_METER
        self._ranges: list[FeedRange] | None = None
        self._lock = threading.Lock()

    @property
    def layout_id(self) -> str:
        return f"py:ranges:{self._events.id}"

    def feed_ranges(self) -> list[FeedRange]:
        with self._lock:
            if self._ranges is None:
                self._ranges = self._load_ranges()
            return list(self._ranges)

    def read_range(self, feed_range: FeedRange, continuation: str | None,
                   max_items: int) -> FeedPage:
        scope: Mapping[str, Any] | None = None
        if continuation is None:
            try:
                scope = json.loads(feed_range.token)
            except ValueError:
                scope = None
            if not isinstance(scope, dict):
                raise ValueError(f"feed range {feed_range.id!r} has no feed range JSON as its "
                                 "token: take ranges from feed_ranges()")
        return read_change_feed_page(self._events, self._meter, "read_range", continuation,
                                     max_items, scope)

    def _load_ranges(self) -> list[FeedRange]:
        document = read_or_none(self._leases, self.layout_id, self._meter, "feed_ranges")
        if document is None:
            document = self._record_ranges()
        stored = document.get("ranges")
        if not isinstance(stored, list) or not stored \
                or not all(isinstance(r, dict) for r in stored):
            raise ValueError(f"the document {self.layout_id!r} in the leases container does not "
                             "list feed ranges; delete it to record the container's ranges anew "
                             "(with new lease prefixes: leases name their range)")
        ranges = [FeedRange(feed_range_id(r), json.dumps(r, sort_keys=True)) for r in stored]
        if len({r.id for r in ranges}) != len(ranges):
            raise ValueError(f"the feed ranges in {self.layout_id!r} are not distinct")
        return ranges

    def _record_ranges(self) -> dict[str, Any]:
        with translated("feed_ranges"):
            current = [dict(r) for r in self._events.read_feed_ranges()]
        document: dict[str, Any] = {"id": self.layout_id, "kind": RANGES_KIND,
                                    "container": self._events.id, "ranges": current}
        try:
            self._leases.create_item(document,
                                     raw_response_hook=self._meter.response_hook("feed_ranges"))
        except CosmosHttpResponseError as error:
            if error.status_code != 409:
                raise_translated("feed_ranges", error)
            # Another instance recorded them first: theirs are the ranges.
            existing = read_or_none(self._leases, self.layout_id, self._meter, "feed_ranges")
            if existing is None:
                raise TransientError(f"{self.layout_id!r} was created and deleted meanwhile; "
                                     "try again") from error
            return existing
        except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
            # Not retried by the SDK once sent; the next call reads it if it landed.
            raise_translated("feed_ranges", error)
        return document
