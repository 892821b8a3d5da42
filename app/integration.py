"""Turning a service's committed events into outbound integration messages.

The mapping (``contracts.mapping``) decides what is published; this resolves each contract's
channel to the entity this deployment uses, names the message (``message_id``: broker duplicate
detection drops a redelivered batch's resend) and carries correlation and causation onward.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Generic, TypeVar

from contracts.mapping import Publications
from contracts.messages import (
    CAUSATION_ID_PROPERTY,
    CONTRACT_VERSION_PROPERTY,
    Channel,
    IntegrationMessage,
)
from domain.codec import EventCodec
from eventstore.commit import Commit, EventRecord, message_id
from eventstore.ports import EventStore, OutboundMessage
from eventstore.tracing import message_properties

E = TypeVar("E")
Origin = TypeVar("Origin")


class IntegrationEvents(Generic[E, Origin]):
    """The ``EventMapper`` of one service's publisher: (commit, record) -> outbound messages.

    Decodes only the events that are published, and for those only the stream's creation event
    besides (cached: it never changes)."""

    def __init__(self, publications: Publications[Origin], codec: EventCodec[E], events: EventStore,
                 destinations: Mapping[Channel, str], origin_cache_size: int = 10_000) -> None:
        self._publications = publications
        self._codec = codec
        self._events = events
        self._destinations = dict(destinations)
        self._published = frozenset(codec.type_name(c) for c in publications.event_classes)
        self._origin_type_name = codec.type_name(publications.origin)
        self._origins: OrderedDict[str, Origin] = OrderedDict()
        self._origins_lock = threading.Lock()
        self._origin_cache_size = origin_cache_size

    def __call__(self, commit: Commit, record: EventRecord) -> list[OutboundMessage]:
        if record.type not in self._published:
            return []
        event = self._codec.decode(record.type, record.schema_version, record.data)
        origin = self._origin(commit)
        return [self._outbound(m, commit, record)
                for m in self._publications.messages(origin, event)]

    def _origin(self, commit: Commit) -> Origin:
        with self._origins_lock:
            cached = self._origins.get(commit.stream_id)
        if cached is not None:
            return cached
        first = commit if commit.first_version == 1 else None
        if first is None:
            stream = self._events.read_stream(commit.stream_id)
            first = stream[0] if stream and stream[0].first_version == 1 else None
        if first is None:
            raise ValueError(f"stream {commit.stream_id} has no creation event")
        record = first.events[0]
        if record.type != self._origin_type_name:
            raise ValueError(f"stream {commit.stream_id} starts with {record.type}, not "
                             f"{self._origin_type_name}")
        origin = self._codec.decode(record.type, record.schema_version, record.data)
        if not isinstance(origin, self._publications.origin):
            raise ValueError(f"stream {commit.stream_id} starts with {origin!r}")
        with self._origins_lock:
            self._origins[commit.stream_id] = origin
            while len(self._origins) > self._origin_cache_size:
                self._origins.popitem(last=False)
        return origin

    def _outbound(self, message: IntegrationMessage, commit: Commit, record: EventRecord
                  ) -> OutboundMessage:
        return OutboundMessage(
            destination=self._destinations[message.channel],
            message_id=message_id(commit.stream_id, record.version),
            subject=message.name,
            body=message.model_dump(mode="json"),
            correlation_id=commit.correlation_id,
            application_properties={
                CONTRACT_VERSION_PROPERTY: message.version,
                CAUSATION_ID_PROPERTY: record.event_id,
                # The publisher makes each commit's messages in a span of the commit's trace:
                # the consuming function continues it.
                **message_properties(),
            },
        )
