"""Payments service triggers: the HTTP API, the change-feed projector and publisher, and the
acquirer worker. Each parses its input, calls one use case (``app.payments``), and shapes the
response."""

from __future__ import annotations

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field

from app.payments import PAYMENTS_PROJECTOR, PAYMENTS_PUBLISHER, PaymentsService
from contracts.headers import VIEW_SOURCE_HEADER
from domain.errors import MAX_ID_LENGTH
from domain.money import MAX_AMOUNT
from functions import runtime
from functions.http import (
    command_context,
    http_endpoint,
    json_response,
    min_version,
    point_in_time,
    read_json,
    require_caller,
    route_id,
)
from functions.triggers import (
    change_feed_function,
    contract_of,
    feed_documents,
    message_context,
    retry_transient,
)

bp = func.Blueprint()  # type: ignore[no-untyped-call]


class PutPaymentBody(BaseModel):
    """Shape and types only; the domain owns the limits (documented from its constants)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    referenceId: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_ID_LENGTH})
    amount: int = Field(json_schema_extra={"minimum": 1, "maximum": MAX_AMOUNT})
    currency: str = Field(json_schema_extra={"description": "ISO-4217 code, e.g. EUR"})


def _payments() -> PaymentsService:
    return runtime.services().payments


def _payment_id(req: func.HttpRequest) -> str:
    return route_id(req, "paymentId", "payment")


@bp.function_name("payments_put")
@bp.route(route="payments/{paymentId}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def put_payment(req: func.HttpRequest) -> func.HttpResponse:
    """The service-to-service call of checkout: in Azure only the Orders identity may make it
    (an Entra ID token, checked here). 201 when new, 200 when it exists with the same data (a
    retried PUT), 409 when it exists with different data."""
    require_caller(req, runtime.services().payments_api_callers)
    payment_id = _payment_id(req)
    body = read_json(req, PutPaymentBody)
    put = _payments().create_payment(payment_id, body.referenceId, body.amount, body.currency,
                                     command_context(req))
    state = put.state
    return json_response(
        {"paymentId": payment_id, "referenceId": state.reference_id, "amount": state.amount,
         "currency": state.currency, "status": str(state.status), "version": put.version},
        201 if put.created else 200)


@bp.function_name("payments_authorize")
@bp.route(route="payments/{paymentId}/authorize", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def authorize_payment(req: func.HttpRequest) -> func.HttpResponse:
    """The customer authorizes the payment; the acquirer decides asynchronously (202)."""
    version = _payments().authorize(_payment_id(req), command_context(req))
    return json_response({"version": version}, 202)


@bp.function_name("payments_get")
@bp.route(route="payments/{paymentId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def get_payment(req: func.HttpRequest) -> func.HttpResponse:
    payment_id = _payment_id(req)
    read = _payments().get_payment(payment_id, min_version(req), point_in_time(req))
    return json_response(read.document, headers={VIEW_SOURCE_HEADER: read.source})


@bp.function_name("payments_events")
@bp.route(route="payments/{paymentId}/events", methods=["GET"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def get_payment_events(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(_payments().payment_events(_payment_id(req)))


@change_feed_function(bp, "payments_projector", "PAYMENTS_DATABASE", PAYMENTS_PROJECTOR)
def payments_projector(documents: func.DocumentList) -> None:
    _payments().project(feed_documents(documents))


@change_feed_function(bp, "payments_publisher", "PAYMENTS_DATABASE", PAYMENTS_PUBLISHER)
def payments_publisher(documents: func.DocumentList) -> None:
    _payments().publish(feed_documents(documents))


@bp.function_name("payments_acquirer")
@bp.service_bus_queue_trigger(arg_name="message", connection="SERVICEBUS",
                              queue_name="%AUTHORIZATIONS_QUEUE%")
@retry_transient
def payments_acquirer(message: func.ServiceBusMessage) -> None:
    """The acquirer worker: the slow call runs here, off the change feed."""
    _payments().process_authorization(contract_of(message), message_context(message))
