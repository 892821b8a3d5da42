"""An in-process AMQP 1.0 broker that the real azure-servicebus SDK can send to and receive from."""

from tests.support.amqp_broker.server import (
    EMULATOR_KEY,
    EMULATOR_KEY_NAME,
    MAX_MESSAGE_SIZE,
    AmqpTestBroker,
    ReceivedAmqpMessage,
)

__all__ = [
    "EMULATOR_KEY",
    "EMULATOR_KEY_NAME",
    "MAX_MESSAGE_SIZE",
    "AmqpTestBroker",
    "ReceivedAmqpMessage",
]
