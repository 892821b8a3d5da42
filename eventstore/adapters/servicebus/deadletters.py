"""The dead-letter sub-queues of Service Bus entities, for the operator CLI (``DeadLetterQueues``).

Listing receives the dead-lettered messages under peek-lock and abandons them at once, instead
of the SDK's ``peek_messages``: that works on every broker the project tests against, and costs
each listed message one more delivery count in its dead-letter queue, which has no maximum
there. Settling one receives until it finds the sequence number, abandons the others, and
completes it only after the handler returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from azure.servicebus import (
    ServiceBusClient,
    ServiceBusReceivedMessage,
    ServiceBusReceiver,
    ServiceBusSubQueue,
)

from eventstore.adapters.servicebus.connection import ServiceBusConnection
from eventstore.adapters.servicebus.errors import is_transient
from eventstore.adapters.servicebus.receiver import SUBSCRIPTIONS, _property
from eventstore.errors import TransientError
from eventstore.ports import QueuedDeadLetter

RECEIVE_BATCH = 50
RECEIVE_WAIT = 1.0


class ServiceBusDeadLetterQueues:
    def __init__(self, connection: ServiceBusConnection) -> None:
        self._connection = connection
        self._client: ServiceBusClient | None = None

    def peek_dead_letters(self, entity_path: str, max_messages: int = 100
                          ) -> list[QueuedDeadLetter]:
        listed: list[QueuedDeadLetter] = []
        with self._receiver(entity_path) as receiver:
            held: list[ServiceBusReceivedMessage] = []
            try:
                while len(listed) < max_messages:
                    batch = receiver.receive_messages(
                        max_message_count=min(RECEIVE_BATCH, max_messages - len(listed)),
                        max_wait_time=RECEIVE_WAIT)
                    if not batch:
                        break
                    held.extend(batch)
                    listed.extend(_dead_letter(m, entity_path) for m in batch)
            finally:
                for message in held:
                    with contextlib.suppress(Exception):
                        receiver.abandon_message(message)
        return sorted(listed, key=lambda m: m.sequence_number)

    def settle_dead_letter(self, entity_path: str, sequence_number: int,
                           handle: Callable[[QueuedDeadLetter], None]) -> bool:
        with self._receiver(entity_path) as receiver:
            passed: list[ServiceBusReceivedMessage] = []
            try:
                while True:
                    batch = receiver.receive_messages(max_message_count=RECEIVE_BATCH,
                                                      max_wait_time=RECEIVE_WAIT)
                    if not batch:
                        return False
                    found = next((m for m in batch if m.sequence_number == sequence_number),
                                 None)
                    passed.extend(m for m in batch if m is not found)
                    if found is None:
                        continue
                    try:
                        handle(_dead_letter(found, entity_path))
                    except BaseException:
                        receiver.abandon_message(found)
                        raise
                    receiver.complete_message(found)
                    return True
            finally:
                for other in passed:
                    with contextlib.suppress(Exception):
                        receiver.abandon_message(other)

    @contextmanager
    def _receiver(self, entity_path: str) -> Iterator[ServiceBusReceiver]:
        client = self._open()
        dead_letters = ServiceBusSubQueue.DEAD_LETTER
        try:
            if SUBSCRIPTIONS in entity_path:
                topic, subscription = entity_path.split(SUBSCRIPTIONS, 1)
                receiver = client.get_subscription_receiver(
                    topic, subscription, sub_queue=dead_letters, prefetch_count=0)
            else:
                receiver = client.get_queue_receiver(entity_path, sub_queue=dead_letters,
                                                     prefetch_count=0)
            with receiver:
                yield receiver
        except Exception as error:
            if is_transient(error):
                raise TransientError(f"Service Bus dead-letter queue of {entity_path!r}: "
                                     f"{error}") from error
            raise

    def _open(self) -> ServiceBusClient:
        if self._client is None:
            connection = self._connection
            if connection.connection_string is not None:
                self._client = ServiceBusClient.from_connection_string(
                    connection.connection_string)
            else:
                assert connection.fully_qualified_namespace is not None
                self._client = ServiceBusClient(connection.fully_qualified_namespace,
                                                connection.credential())
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _dead_letter(message: ServiceBusReceivedMessage, entity_path: str) -> QueuedDeadLetter:
    properties = {(k.decode() if isinstance(k, bytes) else str(k)): _property(v)
                  for k, v in (message.application_properties or {}).items()}
    return QueuedDeadLetter(
        entity_path=entity_path, sequence_number=int(message.sequence_number or 0),
        message_id=str(message.message_id or ""), subject=str(message.subject or ""),
        body=b"".join(message.body), correlation_id=str(message.correlation_id or ""),
        application_properties=properties, delivery_count=int(message.delivery_count or 0),
        reason=message.dead_letter_reason, description=message.dead_letter_error_description)
