"""Service Bus adapters: connection settings, the publisher, and which failures are transient."""

from eventstore.adapters.servicebus.connection import (
    ServiceBusConfigurationError,
    ServiceBusConnection,
)
from eventstore.adapters.servicebus.errors import MessageTooLargeError, is_transient
from eventstore.adapters.servicebus.publisher import ServiceBusPublisher

__all__ = [
    "MessageTooLargeError",
    "ServiceBusConfigurationError",
    "ServiceBusConnection",
    "ServiceBusPublisher",
    "is_transient",
]
