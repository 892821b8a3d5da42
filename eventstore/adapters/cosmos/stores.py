"""The Cosmos DB stores: events (one ``create_item`` per commit), views and dead letters.

- ``append`` is ONE ``create_item`` of the commit document, id ``"{streamId}:{firstVersion}"``,
  partition key ``/streamId``. A 409 means another writer decided from the same version:
  ``ConcurrencyError``.
- ``read_stream`` is ONE single-partition query ordered by version (more only for streams longer
  than a page, ``STREAM_PAGE_SIZE`` commits).
- Views are stored as ``{"id": viewId, "view": document}`` so ``get`` returns exactly the
  document that was put; ``put`` creates (409) or replaces with ``If-Match`` (412).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import ContainerProxy
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from eventstore.adapters.cosmos.changefeed import CosmosChangeFeed
from eventstore.adapters.cosmos.errors import (
    raise_translated,
    read_or_none,
    retried_on_header_race,
    translated,
)
from eventstore.adapters.cosmos.metering import REQUEST_METER, RequestMeter
from eventstore.changefeed import lag_from_leases
from eventstore.commit import Commit, JsonDict
from eventstore.errors import ConcurrencyError
from eventstore.ports import (
    DeadLetter,
    LeaseStore,
    PartitionedFeed,
    RangeLag,
    StoredView,
    StreamInfo,
)

STREAM_PAGE_SIZE = 1000
"""Commits per page of ``read_stream``: a stream up to this many commits is one request."""


class CosmosEventStore:
    """``EventStore`` over an ``events`` container (partition key ``/streamId``); its change
    feed and checkpoints (``changefeed.CosmosChangeFeed``, over the leases container) are served
    through it, so one object is the service's ``FeedStore`` as in the embedded backend."""

    def __init__(
        self,
        events: ContainerProxy,
        leases: ContainerProxy,
        *,
        meter: RequestMeter | None = None,
    ) -> None:
        self._events = events
        self._meter = meter or REQUEST_METER
        self._feed = CosmosChangeFeed(events, leases, meter=self._meter)
        self.read_feed = self._feed.read_feed
        self.load_checkpoint = self._feed.load_checkpoint
        self.save_checkpoint = self._feed.save_checkpoint
        # The lease-based view of the feed, for consumer_lag (set by CosmosDatabase).
        self._ranges: tuple[PartitionedFeed, LeaseStore] | None = None

    def attach_ranges(self, feed: PartitionedFeed, leases: LeaseStore) -> None:
        self._ranges = (feed, leases)

    def consumer_lag(self, consumer: str) -> list[RangeLag]:
        """Per feed range, from the consumer's leases (its lease prefix)."""
        if self._ranges is None:
            raise RuntimeError("the feed ranges of this event store are not attached")
        return lag_from_leases(*self._ranges, consumer)

    # -- EventStore ---------------------------------------------------------------------------

    def append(self, commit: Commit) -> None:
        try:
            self._events.create_item(
                commit.to_document(), raw_response_hook=self._meter.response_hook("append")
            )
        except CosmosHttpResponseError as error:
            if error.status_code == 409:
                raise ConcurrencyError(
                    f"commit {commit.id} already exists: stream {commit.stream_id!r} moved past "
                    f"version {commit.first_version - 1}"
                ) from error
            raise_translated("append", error)
        except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
            # A create is not retried by the SDK once sent (not idempotent); the caller's retry
            # gets a 409 if the first attempt did land, and reloads the stream as on any conflict.
            raise_translated("append", error)

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        # The partition-key filter is in the WHERE clause as well as in partition_key: the
        # query stays single-partition in any case (and the test server requires it).
        def query() -> list[JsonDict]:
            return list(
                self._events.query_items(
                    "SELECT * FROM c WHERE c.streamId = @streamId AND c.version > @after"
                    " ORDER BY c.version",
                    parameters=[
                        {"name": "@streamId", "value": stream_id},
                        {"name": "@after", "value": after_version},
                    ],
                    partition_key=stream_id,
                    max_item_count=STREAM_PAGE_SIZE,
                    raw_response_hook=self._meter.response_hook("read_stream"),
                )
            )

        with translated("read_stream"):
            documents = retried_on_header_race(query)
        return [Commit.from_document(document) for document in documents]


    # -- StreamCatalog --------------------------------------------------------------------------

    def list_streams(self, after: str | None = None, limit: int = 100) -> list[StreamInfo]:
        """One cross-partition query ordered by streamId (indexed), aggregated here: it reads
        one small row per commit of the streams listed, and stops after the page."""
        if limit < 1:
            return []
        found: dict[str, list[int]] = {}
        with translated("list_streams"):
            rows = self._events.query_items(
                "SELECT c.streamId, c.version FROM c WHERE c.streamId > @after"
                " ORDER BY c.streamId",
                parameters=[{"name": "@after", "value": after or ""}],
                enable_cross_partition_query=True, max_item_count=STREAM_PAGE_SIZE,
                raw_response_hook=self._meter.response_hook("list_streams"))
            for row in rows:
                stream_id = str(row["streamId"])
                if stream_id not in found and len(found) == limit:
                    break  # the page is complete: its last stream has no more rows
                found.setdefault(stream_id, []).append(int(row["version"]))
        return [StreamInfo(stream_id, max(versions), len(versions))
                for stream_id, versions in found.items()]


class CosmosViewStore:
    """``ViewStore`` over a ``views`` container (partition key ``/id``).

    A view is stored as ``{"id": viewId, "view": document}``: the document comes back exactly as
    it was put, whatever keys it has. The ETag is Cosmos's ``_etag``.
    """

    def __init__(self, views: ContainerProxy, *, meter: RequestMeter | None = None) -> None:
        self._views = views
        self._meter = meter or REQUEST_METER

    def get(self, view_id: str) -> StoredView | None:
        item = read_or_none(self._views, view_id, self._meter, "view_get")
        if item is None:
            return None
        return StoredView(document=dict(item["view"]), etag=str(item["_etag"]))

    def put(self, view_id: str, document: JsonDict, etag: str | None) -> str:
        body = {"id": view_id, "view": document}
        try:
            if etag is None:
                item = self._views.create_item(
                    body, raw_response_hook=self._meter.response_hook("view_create")
                )
            else:
                item = self._views.replace_item(
                    view_id,
                    body,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                    raw_response_hook=self._meter.response_hook("view_replace"),
                )
        except CosmosHttpResponseError as error:
            if error.status_code == 409:
                raise ConcurrencyError(f"view {view_id!r} already exists") from error
            if error.status_code in (404, 412):
                raise ConcurrencyError(
                    f"view {view_id!r} does not exist or its ETag is no longer {etag!r}"
                ) from error
            raise_translated("view_put", error)
        except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
            raise_translated("view_put", error)
        return str(item["_etag"])


class CosmosDeadLetterStore:
    """``DeadLetterStore`` over a dead-letter container (partition key ``/id``).

    ``list_letters`` returns the oldest letters by (parkedAt, id), like the embedded store. The
    order is a single-field ``ORDER BY c.listOrder`` (``parkedAt + U+0001 + id``), which the
    default indexing policy serves without a composite index.
    """

    def __init__(self, letters: ContainerProxy, *, meter: RequestMeter | None = None) -> None:
        self._letters = letters
        self._meter = meter or REQUEST_METER

    def park(self, letter: DeadLetter) -> None:
        with translated("park"):
            self._letters.upsert_item(
                {
                    "id": letter.id,
                    "consumer": letter.consumer,
                    "streamId": letter.stream_id,
                    "version": letter.version,
                    "eventType": letter.event_type,
                    "error": letter.error,
                    "payload": letter.payload,
                    "parkedAt": letter.parked_at,
                    "listOrder": f"{letter.parked_at}\u0001{letter.id}",
                },
                raw_response_hook=self._meter.response_hook("park"),
            )

    def get_letter(self, letter_id: str) -> DeadLetter | None:
        document = read_or_none(self._letters, letter_id, self._meter, "get_letter")
        return None if document is None else _letter(document)

    def remove(self, letter_id: str) -> bool:
        try:
            self._letters.delete_item(letter_id, partition_key=letter_id,
                                      raw_response_hook=self._meter.response_hook("remove"))
        except CosmosHttpResponseError as error:
            if error.status_code == 404:
                return False
            raise_translated("remove", error)
        except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
            raise_translated("remove", error)
        return True

    def list_letters(self, limit: int = 100) -> list[DeadLetter]:
        if limit < 1:
            return []
        with translated("list_letters"):
            documents = list(
                self._letters.query_items(
                    "SELECT TOP @limit * FROM c ORDER BY c.listOrder",
                    parameters=[{"name": "@limit", "value": limit}],
                    enable_cross_partition_query=True,
                    raw_response_hook=self._meter.response_hook("list_letters"),
                )
            )
        return [_letter(document) for document in documents]


def _letter(document: Mapping[str, Any]) -> DeadLetter:
    return DeadLetter(
        id=str(document["id"]),
        consumer=str(document["consumer"]),
        stream_id=str(document["streamId"]),
        version=int(document["version"]),
        event_type=str(document["eventType"]),
        error=str(document["error"]),
        payload=dict(document["payload"]),
        parked_at=str(document["parkedAt"]),
    )
