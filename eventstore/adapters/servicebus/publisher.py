"""MessagePublisher on Azure Service Bus (azure-servicebus SDK, sync API).

Messages are sent in ``ServiceBusMessageBatch``es, one destination (topic or queue) after the
other, in the order given. ``MessageId`` is the OutboundMessage's ``"{streamId}:{version}"``, so
duplicate detection on the entity drops what a retried publish sends again: a failure half-way
(one destination sent, the next not) is repaired by retrying the whole call.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageBatch,
    ServiceBusSender,
)
from azure.servicebus.exceptions import MessageSizeExceededError

from eventstore.adapters.servicebus.connection import ServiceBusConnection
from eventstore.adapters.servicebus.errors import MessageTooLargeError, is_transient
from eventstore.errors import TransientError
from eventstore.ports import OutboundMessage

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

@dataclass
class _CachedSender:
    sender: ServiceBusSender
    # The SDK sender is not thread-safe: one send (or batch creation) at a time per sender.
    lock: threading.Lock = field(default_factory=threading.Lock)


class ServiceBusPublisher:
    """Publishes OutboundMessages; thread-safe; one client (and connection per sender) per
    publisher, opened on first use. Use ``from_settings`` in the app."""

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        fully_qualified_namespace: str | None = None,
        credential: TokenCredential | None = None,
        owns_credential: bool = False,
        send_timeout: float = 30.0,
        **client_options: Any,
    ) -> None:
        """``client_options`` go to ``ServiceBusClient`` (e.g. ``retry_total``: the SDK retries
        each send itself before we report a TransientError; the host then retries again)."""
        if connection_string is None and (fully_qualified_namespace is None or credential is None):
            raise ValueError("give a connection string or a namespace and a credential")
        self._connection_string = connection_string
        self._namespace = fully_qualified_namespace
        self._credential = credential
        self._owns_credential = owns_credential
        self._send_timeout = send_timeout
        self._client_options = client_options
        self._client: ServiceBusClient | None = None
        self._senders: dict[str, _CachedSender] = {}
        self._lock = threading.Lock()  # guards _client, _senders and _closed
        self._closed = False

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, str] | ServiceBusConnection, **options: Any
    ) -> ServiceBusPublisher:
        """From app settings (see ``ServiceBusConnection``); ``options`` go to the client."""
        connection = (settings if isinstance(settings, ServiceBusConnection)
                      else ServiceBusConnection.from_settings(settings))
        if connection.connection_string is not None:
            return cls(connection_string=connection.connection_string, **options)
        return cls(fully_qualified_namespace=connection.fully_qualified_namespace,
                   credential=connection.credential(), owns_credential=True, **options)

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        by_destination: dict[str, list[OutboundMessage]] = {}
        for message in messages:
            by_destination.setdefault(message.destination, []).append(message)
        for destination, group in by_destination.items():
            cached = self._sender(destination)
            try:
                with cached.lock:
                    self._send(cached.sender, group)
            except MessageTooLargeError:
                raise  # the event's fault, not the link's
            except Exception as exc:
                # Whatever else failed, this link may be broken: the next call opens a fresh one.
                self._drop(destination, cached)
                if is_transient(exc):
                    raise TransientError(
                        f"Service Bus send to {destination!r} failed: {exc}"
                    ) from exc
                raise

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            senders, self._senders = list(self._senders.values()), {}
            client, self._client = self._client, None
        for cached in senders:
            with cached.lock, contextlib.suppress(Exception):
                cached.sender.close()
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if self._owns_credential and self._credential is not None:
            close = getattr(self._credential, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()

    # -- internals --------------------------------------------------------------------------

    def _sender(self, destination: str) -> _CachedSender:
        with self._lock:
            if self._closed:
                raise RuntimeError("the Service Bus publisher is closed")
            cached = self._senders.get(destination)
            if cached is None:
                if self._client is None:
                    self._client = self._new_client()
                # A queue sender and a topic sender are the same AMQP link to the entity.
                sender = self._client.get_queue_sender(queue_name=destination)
                cached = self._senders[destination] = _CachedSender(sender)
            return cached

    def _new_client(self) -> ServiceBusClient:
        if self._connection_string is not None:
            return ServiceBusClient.from_connection_string(
                self._connection_string, **self._client_options
            )
        assert self._namespace is not None and self._credential is not None
        return ServiceBusClient(self._namespace, self._credential, **self._client_options)

    def _drop(self, destination: str, cached: _CachedSender) -> None:
        with self._lock:
            if self._senders.get(destination) is cached:
                del self._senders[destination]
        with cached.lock, contextlib.suppress(Exception):
            cached.sender.close()

    def _send(self, sender: ServiceBusSender, messages: list[OutboundMessage]) -> None:
        batch = sender.create_message_batch()
        for message in messages:
            if _try_add(batch, message):
                continue
            if len(batch) == 0:
                raise MessageTooLargeError(message, batch.max_size_in_bytes)
            # The batch is full: send it and start the next one with this message.
            sender.send_messages(batch, timeout=self._send_timeout)
            batch = sender.create_message_batch()
            if not _try_add(batch, message):
                raise MessageTooLargeError(message, batch.max_size_in_bytes)
        if len(batch):
            sender.send_messages(batch, timeout=self._send_timeout)


def _try_add(batch: ServiceBusMessageBatch, message: OutboundMessage) -> bool:
    try:
        batch.add_message(_to_servicebus_message(message))
    except MessageSizeExceededError:
        return False  # the batch is left as it was
    return True


def _to_servicebus_message(message: OutboundMessage) -> ServiceBusMessage:
    body = json.dumps(message.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    properties: dict[str | bytes, Any] = {k: v for k, v in message.application_properties.items()}
    return ServiceBusMessage(
        body,
        message_id=message.message_id,
        subject=message.subject,
        content_type="application/json",
        correlation_id=message.correlation_id,
        application_properties=properties,
    )
