"""Declaring and feeding the non-HTTP triggers: change-feed functions and Service Bus messages."""

from __future__ import annotations

import functools
import logging
import time
from collections import UserDict
from collections.abc import Callable
from typing import Any, TypeVar

import azure.functions as func

from contracts.messages import IntegrationMessage, parse_message
from eventstore.commands import CommandContext
from eventstore.commit import JsonDict
from eventstore.poison import is_transient
from eventstore.tracing import SpanKind, span

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

FEED_BATCH_SIZE = 100
TRANSIENT_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


def change_feed_function(bp: func.Blueprint, name: str, database_setting: str,
                         lease_prefix: str) -> Callable[[F], F]:
    """Declare a change-feed function on the service's events container.

    Each consumer has its own lease prefix, so a broken Service Bus cannot stall projections, and
    bumping a prefix replays the feed from the beginning (a projection rebuild). It retries forever
    with backoff: with a bounded count the host would move the checkpoint past a batch that failed
    transiently. Poison is parked by the handlers, so only transient errors reach this policy.
    """
    named = bp.function_name(name)
    retry = bp.retry(strategy="exponential_backoff", max_retry_count="-1",
                     minimum_interval="00:00:01", maximum_interval="00:01:00")
    trigger = bp.cosmos_db_trigger(
        arg_name="documents", connection="COSMOS",
        database_name=f"%{database_setting}%", container_name="%EVENTS_CONTAINER%",
        lease_container_name="%LEASES_CONTAINER%", lease_container_prefix=lease_prefix,
        max_items_per_invocation=FEED_BATCH_SIZE,
        start_from_beginning=True,  # type: ignore[arg-type]  # the SDK annotates it as time
    )

    def decorate(function: F) -> F:
        return named(retry(trigger(function)))  # type: ignore[no-any-return]

    return decorate


def feed_documents(batch: func.DocumentList) -> list[JsonDict]:
    """The batch's documents as plain JSON objects, as the change feed delivered them.

    A ``func.Document`` is a ``UserDict``: its ``data`` is that object, read here without the
    copy ``to_dict()`` makes key by key (the consumers only read it)."""
    return [doc.data if isinstance(doc, UserDict) else dict(doc) for doc in batch]


def retry_transient(handler: Callable[[func.ServiceBusMessage], None]
                    ) -> Callable[[func.ServiceBusMessage], None]:
    """Retry a Service Bus handler in place on transient failures, with backoff, before letting
    the message go back to the broker. Without it a short Cosmos or network outage would burn
    through the max delivery count in seconds and dead-letter a perfectly good message."""

    @functools.wraps(handler)
    def wrapper(message: func.ServiceBusMessage) -> None:
        # The consuming function continues the trace the message carries (its publisher's).
        with span(handler.__name__, kind=SpanKind.CONSUMER,
                  parent=message.application_properties,
                  attributes={"messaging.message.id": str(message.message_id or "")}):
            _with_retries(handler, message)

    return wrapper


def _with_retries(handler: Callable[[func.ServiceBusMessage], None],
                  message: func.ServiceBusMessage) -> None:
    for delay in TRANSIENT_RETRY_DELAYS:
        try:
            return handler(message)
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("%s: transient failure (%r); retrying in %.1fs", handler.__name__,
                        error, delay)
            time.sleep(delay)
    return handler(message)


def contract_of(message: func.ServiceBusMessage) -> IntegrationMessage:
    """The integration message a Service Bus message carries; ContractError for poison."""
    subject = getattr(message, "subject", None) or getattr(message, "label", None)
    return parse_message(subject, message.application_properties, message.get_body())


def message_context(message: func.ServiceBusMessage) -> CommandContext:
    """A message's effects are correlated with its origin and caused by the message itself."""
    message_id = str(getattr(message, "message_id", None) or "")
    return CommandContext(correlation_id=message.correlation_id or message_id,
                          causation_id=message_id)
