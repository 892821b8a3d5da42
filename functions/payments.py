"""Payments service: HTTP API, change-feed projector and publisher, the acquirer worker."""

from __future__ import annotations

import logging
import time

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field

from contracts.mapping import outbound, payment_messages
from contracts.messages import AuthorizePaymentV1, parse_message
from domain import payments as domain
from domain.money import MAX_AMOUNT
from domain.views import apply_payment_event
from eventstore.ports import Commit, EventRecord, OutboundMessage
from eventstore.projection import Projector, ViewDefinition
from eventstore.publishing import Publisher
from functions import runtime
from functions.common import (
    change_feed_function,
    commits_from,
    events_response,
    message_context,
    retry_transient,
    view_response,
)
from functions.http import (
    command_context,
    http_endpoint,
    json_response,
    read_json,
    route_id,
)
from functions.settings import int_setting, setting

log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]

PROJECTOR = "payments-projector-v1"
PUBLISHER = "payments-publisher-v1"

PAYMENT_VIEW = ViewDefinition(
    decider=domain.payment_decider,
    view_id=lambda stream_id: stream_id.removeprefix("payment-"),
    apply=apply_payment_event,
)


class PutPaymentBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    referenceId: str = Field(min_length=1, max_length=100)
    amount: int = Field(ge=1, le=MAX_AMOUNT)
    currency: str = Field(min_length=1, max_length=10)


def _stream(payment_id: str) -> str:
    return domain.payment_decider.stream_id(payment_id)


def _payment_id(req: func.HttpRequest) -> str:
    return route_id(req, "paymentId", "payment")


@bp.function_name("payments_put")
@bp.route(route="payments/{paymentId}", methods=["PUT"], auth_level=func.AuthLevel.FUNCTION)
@http_endpoint
def put_payment(req: func.HttpRequest) -> func.HttpResponse:
    """Create the payment: 201 when new, 200 when it exists with the same data (a retried PUT),
    409 when it exists with different data."""
    payment_id = _payment_id(req)
    body = read_json(req, PutPaymentBody)
    result = runtime.payments().execute(
        _stream(payment_id),
        domain.CreatePayment(payment_id, body.referenceId, body.amount, body.currency),
        command_context(req))
    state = result.state
    return json_response(
        {"paymentId": payment_id, "referenceId": state.reference_id, "amount": state.amount,
         "currency": state.currency, "status": str(state.status), "version": result.version},
        201 if result.appended else 200)


@bp.function_name("payments_authorize")
@bp.route(route="payments/{paymentId}/authorize", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def authorize_payment(req: func.HttpRequest) -> func.HttpResponse:
    """The customer authorizes the payment; the acquirer decides asynchronously (202)."""
    payment_id = _payment_id(req)
    result = runtime.payments().execute(_stream(payment_id), domain.AuthorizePayment(),
                                 command_context(req))
    return json_response({"version": result.version}, 202)


@bp.function_name("payments_get")
@bp.route(route="payments/{paymentId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def get_payment(req: func.HttpRequest) -> func.HttpResponse:
    return view_response(req, "payments", PAYMENT_VIEW, runtime.payments(), _payment_id(req),
                         "payment")


@bp.function_name("payments_events")
@bp.route(route="payments/{paymentId}/events", methods=["GET"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def get_payment_events(req: func.HttpRequest) -> func.HttpResponse:
    return events_response("payments", domain.payment_decider, _payment_id(req), "payment")


@change_feed_function(bp, "payments_projector", "PAYMENTS_DATABASE", PROJECTOR)
def payments_projector(documents: func.DocumentList) -> None:
    stores = runtime.stores("payments")
    projector = Projector(PAYMENT_VIEW, stores.views, stores.dead_letters, PROJECTOR)
    projector.handle(commits_from(documents, stores.dead_letters, PROJECTOR))


def map_payment_event(commit: Commit, record: EventRecord) -> list[OutboundMessage]:
    """PaymentStarted becomes a queue command (the slow acquirer call must not run inside the
    change feed, where it would block every later event of the partition); the outcomes become
    integration events for Orders."""
    destinations = {
        "PaymentStarted": "AUTHORIZATIONS_QUEUE",
        "PaymentCompleted": "PAYMENTS_TOPIC",
        "PaymentFailed": "PAYMENTS_TOPIC",
    }
    if record.type not in destinations:
        return []
    event = domain.payment_decider.decode(record.type, record.schema_version, record.data)
    state, _ = runtime.payments().load(commit.stream_id, at_least=record.version)
    destination = setting(destinations[record.type])
    return [outbound(m, destination, commit, record) for m in payment_messages(state, event)]


@change_feed_function(bp, "payments_publisher", "PAYMENTS_DATABASE", PUBLISHER)
def payments_publisher(documents: func.DocumentList) -> None:
    stores = runtime.stores("payments")
    publisher = Publisher(map_payment_event, runtime.publisher(), stores.dead_letters, PUBLISHER)
    publisher.handle(commits_from(documents, stores.dead_letters, PUBLISHER))


@bp.function_name("payments_acquirer")
@bp.service_bus_queue_trigger(arg_name="message", connection="SERVICEBUS",
                              queue_name="%AUTHORIZATIONS_QUEUE%")
@retry_transient
def payments_acquirer(message: func.ServiceBusMessage) -> None:
    """The simulated acquirer: waits PAYMENTS_ACQUIRER_DELAY_MS, then completes or declines.

    A redelivered command for a payment that is already decided does nothing (no second call to
    the acquirer, no second event).
    """
    contract = parse_message(getattr(message, "subject", None) or getattr(message, "label", None),
                             message.application_properties, message.get_body())
    if not isinstance(contract, AuthorizePaymentV1):
        raise ValueError(f"{contract.name} does not belong on the authorizations queue")
    stream_id = _stream(contract.paymentId)
    # Fresh: the authorize may have run on another instance than the one that cached this stream.
    state, _ = runtime.payments().load(stream_id, refresh=True)
    if state.status != domain.PaymentStatus.STARTED:
        log.info("payment %s is %s; nothing to authorize", contract.paymentId, state.status)
        return
    time.sleep(int_setting("PAYMENTS_ACQUIRER_DELAY_MS", 1000) / 1000)  # the acquirer's latency
    decision = domain.acquirer_decision(contract.paymentId, contract.amount,
                                        int_setting("PAYMENTS_DECLINE_ABOVE", 100_000))
    result = runtime.payments().execute(stream_id, decision, message_context(message))
    log.info("payment %s -> %s (version %d)", contract.paymentId, result.state.status,
             result.version)
