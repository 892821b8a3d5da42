"""Which Service Bus failures are transient (the host retries) and which are the message's fault."""

from __future__ import annotations

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
    ServiceBusQuotaExceededError,
    ServiceBusServerBusyError,
)

from eventstore.errors import UndeliverableMessageError
from eventstore.ports import OutboundMessage

# Errors worth retrying later whatever the SDK's own flag says. The SDK marks a full entity
# (quota exceeded) as non-retryable because an immediate retry will not help, but it drains as
# consumers catch up, so the host's delayed retry is right and the event is not poison.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ServiceBusConnectionError,
    ServiceBusCommunicationError,
    ServiceBusServerBusyError,
    OperationTimeoutError,
    ServiceBusQuotaExceededError,
    ServiceRequestError,  # azure-core: token or network request failed before reaching the service
    ServiceResponseError,
)


class MessageTooLargeError(UndeliverableMessageError):
    """One message does not fit in an empty batch: retrying can never succeed."""

    def __init__(self, message: OutboundMessage, limit: int) -> None:
        super().__init__(
            f"message {message.message_id!r} ({message.subject}) for {message.destination!r}"
            f" does not fit in an empty Service Bus batch of {limit} bytes",
            message,
        )


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, MessageSizeExceededError):
        return False
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    # The SDK records its own verdict per error (from the AMQP condition) in ``_retryable``;
    # there is no public accessor, so read it defensively.
    return isinstance(exc, ServiceBusError) and bool(getattr(exc, "_retryable", False))
