"""Code both blueprints share: change-feed handling, stream reads, view reads."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import azure.functions as func

from domain.decider import Decider
from eventstore.commands import CommandContext, CommandProcessor
from eventstore.poison import is_transient, parse_commits
from eventstore.ports import Commit, JsonDict
from eventstore.projection import ViewDefinition, projection_from_stream
from functions import runtime
from functions.http import ApiError, json_response, min_version

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

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

FEED_BATCH_SIZE = 100


TRANSIENT_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


def retry_transient(handler: Callable[[func.ServiceBusMessage], None]
                    ) -> Callable[[func.ServiceBusMessage], None]:
    """Retry a Service Bus handler in place on transient failures, with backoff, before letting
    the message go back to the broker. Without it a short Cosmos or network outage would burn
    through the max delivery count in seconds and dead-letter a perfectly good message."""

    @functools.wraps(handler)
    def wrapper(message: func.ServiceBusMessage) -> None:
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

    return wrapper


def commits_from(documents: func.DocumentList, dead_letters: Any, consumer: str) -> list[Commit]:
    return parse_commits((doc.to_dict() if hasattr(doc, "to_dict") else dict(doc)
                          for doc in documents), dead_letters, consumer)


def message_context(message: func.ServiceBusMessage) -> CommandContext:
    """A message's effects are correlated with its origin and caused by the message itself."""
    message_id = str(getattr(message, "message_id", None) or "")
    return CommandContext(correlation_id=message.correlation_id or message_id,
                          causation_id=message_id)


def events_response(service: str, decider: Decider[Any, Any, Any], aggregate_id: str,
                    what: str) -> func.HttpResponse:
    """The stream's events in order, each with its commit's metadata; 404 for no stream."""
    commits = runtime.stores(service).events.read_stream(decider.stream_id(aggregate_id))
    events = [
        {**record.to_document(), "streamId": commit.stream_id,
         "correlationId": commit.correlation_id, "causationId": commit.causation_id}
        for commit in commits for record in commit.events
    ]
    if not events:
        raise ApiError(404, f"{what.capitalize()} not found", f"no {what} with id {aggregate_id!r}")
    return json_response(events)


def view_response(req: func.HttpRequest, service: str, definition: ViewDefinition[Any],
                  processor: CommandProcessor[Any, Any, Any], aggregate_id: str, what: str
                  ) -> func.HttpResponse:
    """The view at least at ``?minVersion`` and at the newest version this instance wrote: from
    the projection when it has caught up, otherwise computed from the stream (projections lag,
    and clients must be able to read their own writes)."""
    stream_id = definition.decider.stream_id(aggregate_id)
    needed = max(min_version(req), processor.cached_version(stream_id))
    stores = runtime.stores(service)
    stored = stores.views.get(definition.view_id(stream_id))
    view: JsonDict | None
    if stored is not None and int(stored.document.get("version", 0)) >= needed:
        view, source = stored.document, "projection"
    else:
        view = projection_from_stream(definition, stores.events.read_stream(stream_id))
        source = "stream"
    if view is None:
        raise ApiError(404, f"{what.capitalize()} not found", f"no {what} with id {aggregate_id!r}")
    if int(view["version"]) < needed:
        raise ApiError(404, f"{what.capitalize()} version not found",
                       f"{what} {aggregate_id!r} has no version {needed} (its latest is "
                       f"{view['version']})")
    return json_response(_public(view), headers={"X-View-Source": source})


def _public(document: JsonDict) -> JsonDict:
    return {k: v for k, v in document.items() if not k.startswith("_") and k != "id"}
