"""Receiving from a Service Bus queue or subscription with peek-lock, for a host that runs the
Service Bus-triggered functions outside the Functions host (the local host on the Azure backend).

One ``ServiceBusInbox`` per worker thread: the SDK's receivers are not safe to share between
threads. Messages come back as ``InboundMessage`` (the shape the embedded bus hands out too), so
the host delivers both the same way. The SDK's ``AutoLockRenewer`` keeps each received message
locked while its function runs, up to ``max_lock_renewal`` seconds, as the Service Bus extension
does with ``maxAutoLockRenewalDuration``.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import (
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiver,
)

from eventstore.adapters.servicebus.connection import ServiceBusConnection
from eventstore.adapters.servicebus.errors import is_transient
from eventstore.errors import TransientError
from eventstore.ports import InboundMessage

SUBSCRIPTIONS = "/Subscriptions/"


class ServiceBusInbox:
    renews_locks_itself = True  # the SDK's AutoLockRenewer does it

    def __init__(self, connection: ServiceBusConnection, entity_path: str,
                 max_lock_renewal: float = 300.0) -> None:
        self._connection = connection
        self._entity_path = entity_path
        self._max_lock_renewal = max_lock_renewal
        self._client: ServiceBusClient | None = None
        self._receiver: ServiceBusReceiver | None = None
        self._renewer: AutoLockRenewer | None = None
        self._lock = threading.Lock()
        self._in_flight: dict[str, ServiceBusReceivedMessage] = {}

    def receive(self, entity_path: str, max_messages: int = 1, timeout: float = 1.0
                ) -> list[InboundMessage]:
        if entity_path != self._entity_path:
            raise ValueError(f"this inbox receives from {self._entity_path!r}, not {entity_path!r}")
        try:
            received = self._open().receive_messages(max_message_count=max_messages,
                                                     max_wait_time=timeout)
        except Exception as error:
            self._reset()
            if is_transient(error):
                raise TransientError(f"Service Bus receive from {entity_path!r} failed: "
                                     f"{error}") from error
            raise
        inbound = []
        for message in received:
            converted = _inbound(message, entity_path)
            with self._lock:
                self._in_flight[converted.lock_token] = message
            inbound.append(converted)
        return inbound

    def complete(self, message: InboundMessage) -> None:
        self._settle(message, "complete_message")

    def abandon(self, message: InboundMessage) -> None:
        self._settle(message, "abandon_message")

    def _settle(self, message: InboundMessage, how: str) -> None:
        with self._lock:
            received = self._in_flight.pop(message.lock_token, None)
        if received is None or self._receiver is None:
            raise ValueError(f"message {message.message_id!r} was not received by this inbox")
        getattr(self._receiver, how)(received)

    def _open(self) -> ServiceBusReceiver:
        if self._receiver is not None:
            return self._receiver
        connection = self._connection
        if connection.connection_string is not None:
            self._client = ServiceBusClient.from_connection_string(connection.connection_string)
        else:
            assert connection.fully_qualified_namespace is not None
            self._client = ServiceBusClient(connection.fully_qualified_namespace,
                                            connection.credential())
        self._renewer = AutoLockRenewer(max_lock_renewal_duration=self._max_lock_renewal) \
            if self._max_lock_renewal > 0 else None
        options: dict[str, Any] = {"auto_lock_renewer": self._renewer, "prefetch_count": 0}
        if SUBSCRIPTIONS in self._entity_path:
            topic, subscription = self._entity_path.split(SUBSCRIPTIONS, 1)
            self._receiver = self._client.get_subscription_receiver(topic, subscription, **options)
        else:
            self._receiver = self._client.get_queue_receiver(self._entity_path, **options)
        return self._receiver

    def _reset(self) -> None:
        """Drop a receiver whose link may be broken; the next receive opens a fresh one (the
        locks of messages received on it are lost: they are redelivered)."""
        receiver, client, renewer = self._receiver, self._client, self._renewer
        self._receiver = self._client = self._renewer = None
        with self._lock:
            self._in_flight.clear()
        for closable in (renewer, receiver, client):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()

    def close(self) -> None:
        self._reset()


def _property(value: Any) -> str | int:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _inbound(message: ServiceBusReceivedMessage, entity_path: str) -> InboundMessage:
    properties = {(k.decode() if isinstance(k, bytes) else str(k)): _property(v)
                  for k, v in (message.application_properties or {}).items()}
    subject = message.subject
    return InboundMessage(
        message_id=str(message.message_id or ""),
        subject=str(subject or ""),
        body=b"".join(message.body),
        correlation_id=str(message.correlation_id or ""),
        application_properties=properties,
        # The wire count starts at 0; the Functions host (the .NET SDK) reports 1 for the first
        # delivery, and so does the embedded bus.
        delivery_count=(message.delivery_count or 0) + 1,
        enqueued_time=message.enqueued_time_utc or datetime.now(UTC),
        lock_token=str(message.lock_token),
        locked_until=message.locked_until_utc or datetime.now(UTC),
        entity_path=entity_path,
        sequence_number=int(message.sequence_number or 0),
    )
