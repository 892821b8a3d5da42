"""An in-process AMQP 1.0 broker that the real azure-servicebus SDK can send to and receive
from, with Service Bus semantics for declared queues, topics and subscriptions.

Use::

    with AmqpTestBroker() as broker:
        broker.declare_queue("orders", lock_duration=1.0, max_delivery_count=3)
        client = ServiceBusClient.from_connection_string(broker.connection_string)
        ...
        broker.counts("orders")            # MessageCounts(active, locked, dead_lettered, completed)
        broker.dead_lettered("orders")     # what is in orders/$DeadLetterQueue, and why

``server`` has the wire protocol (and what the broker does not do), ``entities`` the Service Bus
rules (locks, delivery counts, dead-lettering, duplicate detection), ``codec`` the message
encoding.
"""

from tests.support.amqp_broker.codec import ReceivedAmqpMessage
from tests.support.amqp_broker.entities import (
    DEFAULT_LOCK_DURATION,
    DEFAULT_MAX_DELIVERY_COUNT,
    MAX_DELIVERY_COUNT_EXCEEDED,
    EntityNotFoundError,
    MessageCounts,
)
from tests.support.amqp_broker.server import (
    EMULATOR_KEY,
    EMULATOR_KEY_NAME,
    MAX_MESSAGE_SIZE,
    AmqpTestBroker,
    DeadLetteredMessage,
)

__all__ = [
    "DEFAULT_LOCK_DURATION",
    "DEFAULT_MAX_DELIVERY_COUNT",
    "EMULATOR_KEY",
    "EMULATOR_KEY_NAME",
    "MAX_DELIVERY_COUNT_EXCEEDED",
    "MAX_MESSAGE_SIZE",
    "AmqpTestBroker",
    "DeadLetteredMessage",
    "EntityNotFoundError",
    "MessageCounts",
    "ReceivedAmqpMessage",
]
