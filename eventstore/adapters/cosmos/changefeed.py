"""The change feed on the Python SDK's pull model, with checkpoints in the leases container.

The checkpoint is the SDK's continuation token (it covers every feed range of the container).
Checkpoint documents have ids ``"checkpoint:{eventsContainerId}:{consumer}"``: they cannot
collide with the Functions trigger's own lease documents, and two services sharing one leases
container keep separate checkpoints for equally named consumers.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from azure.cosmos import ContainerProxy

from eventstore.adapters.cosmos.errors import read_or_none, translated
from eventstore.adapters.cosmos.metering import REQUEST_METER, RequestMeter
from eventstore.ports import FeedPage, RangeLag

LAG_PAGE_SIZE = 1000
ALL_RANGES = "all"  # the pull-model token covers every feed range of the container


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
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        # The page's continuation token: the pager's public ``continuation_token`` is read from
        # the client's shared ``last_response_headers``, which a request on another thread can
        # overwrite in between. The headers of this very response (handed to response_hook, into
        # which the SDK writes the composite token) are not shared, so they are preferred.
        responses: list[Mapping[str, Any]] = []
        options: dict[str, Any] = {
            "max_item_count": max_items,
            "raw_response_hook": self._meter.response_hook("read_feed"),
            "response_hook": lambda headers, _result: responses.append(headers),
        }
        if checkpoint is None:
            options["start_time"] = "Beginning"
        else:
            options["continuation"] = _resumable(checkpoint)
        with translated("read_feed"):
            pages = self._events.query_items_change_feed(**options).by_page()
            try:
                documents = list(next(pages))
            except StopIteration:
                documents = []
            token = responses[-1].get("etag") if responses else None
            if not _is_change_feed_token(token):
                # by_page() is typed as a plain iterator; the object is the SDK's page iterator.
                token = getattr(pages, "continuation_token", None)
        if not documents:
            return FeedPage(documents=[], checkpoint=checkpoint)
        if not isinstance(token, str):
            raise RuntimeError("the change feed returned items without a continuation token")
        return FeedPage(documents=[dict(document) for document in documents],
                        checkpoint=_resumable(token))

    def consumer_lag(self, consumer: str) -> list[RangeLag]:
        """Counted by reading the feed from the consumer's checkpoint to its end (commits are
        never replaced, so each change is one commit): exact, and it costs reads in proportion
        to the lag. An operator's tool, not a health probe to run every second."""
        checkpoint = position = self.load_checkpoint(consumer)
        commits = events = 0
        while True:
            page = self.read_feed(position, LAG_PAGE_SIZE)
            if not page.documents:
                break
            commits += len(page.documents)
            events += sum(len(d["events"]) if isinstance(d.get("events"), list) else 1
                          for d in page.documents)
            position = page.checkpoint
        return [RangeLag(ALL_RANGES, checkpoint, commits, events)]

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
