"""Payments service triggers: the HTTP API, the change-feed projector and publisher, and the
acquirer worker. Each parses its input, calls one use case (``app.payments``), and shapes the
response."""

from __future__ import annotations

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.payments import PAYMENTS_PROJECTOR, PAYMENTS_PUBLISHER, PaymentsService
from contracts.headers import (
    CAUSATION_HEADER,
    CORRELATION_HEADER,
    IDEMPOTENCY_HEADER,
    VIEW_SOURCE_HEADER,
)
from domain.money import MAX_AMOUNT
from domain.payments import PaymentStatus
from functions import runtime
from functions.http import (
    CURRENCY_SCHEMA,
    ID_SCHEMA,
    MIN_VERSION_PARAMETER,
    POINT_IN_TIME_PARAMETERS,
    RESOURCE_ID_SCHEMA,
    EventList,
    StreamVersion,
    command_context,
    json_response,
    min_version,
    point_in_time,
    read_json,
    require_caller,
    route_id,
)
from functions.openapi import ApiRoutes, Link, Reply
from functions.triggers import (
    change_feed_function,
    contract_of,
    feed_documents,
    message_context,
    retry_transient,
)

bp = func.Blueprint()  # type: ignore[no-untyped-call]
api = ApiRoutes(bp, "payments", "Payments and their authorization (the Payments service)")

PAYMENT_ID: JsonDict = {**RESOURCE_ID_SCHEMA, "examples": ["pay-5c1e6a8d-2"]}
COMMAND_HEADERS = (IDEMPOTENCY_HEADER, CORRELATION_HEADER, CAUSATION_HEADER)


class PutPaymentBody(BaseModel):
    """Shape and types only; the domain owns the limits (documented from its constants)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    referenceId: str = Field(
        examples=["order-42"], description="what the payment is for (Orders: the order id)",
        json_schema_extra=ID_SCHEMA)
    amount: int = Field(examples=[2500], json_schema_extra={
        "minimum": 1, "maximum": MAX_AMOUNT, "description": "minor units (cents)"})
    currency: str = Field(examples=["EUR"], json_schema_extra=CURRENCY_SCHEMA)


class PaymentState(BaseModel):
    paymentId: str
    referenceId: str
    amount: int
    currency: str
    status: PaymentStatus
    version: int


class PaymentView(BaseModel):
    paymentId: str
    referenceId: str
    status: PaymentStatus
    amount: int
    currency: str
    version: int
    authorizationCode: str | None = None
    failureReason: str | None = None
    failureReasonCode: str | None = None


def _payments() -> PaymentsService:
    return runtime.services().payments


def _payment_id(req: func.HttpRequest) -> str:
    return route_id(req, "paymentId", "payment")


_PAYMENT_LINKS = {
    "authorizePayment": Link("payments_authorize", {"paymentId": "$request.path.paymentId"}),
    "getPayment": Link("payments_get", {"paymentId": "$request.path.paymentId"}),
}


@api.route("payments_put", "PUT", "payments/{paymentId}",
           summary="Create the payment (service-to-service: Orders' checkout calls it)",
           description="In Azure only the Orders identity may call it (an Entra ID bearer "
           "token, checked by the function; not checked locally). Idempotent: 201 when new, 200 "
           "when it exists with the same data (a retried PUT), 409 when it exists with "
           "different data.",
           path={"paymentId": PAYMENT_ID}, body=PutPaymentBody, headers=COMMAND_HEADERS,
           problems=(400, 401, 403, 409, 422), security="entraToken",
           replies={201: Reply("Created", PaymentState, links=_PAYMENT_LINKS),
                    200: Reply("It exists with the same data", PaymentState,
                               links=_PAYMENT_LINKS)})
def put_payment(req: func.HttpRequest) -> func.HttpResponse:
    require_caller(req, runtime.services().payments_api_callers)
    payment_id = _payment_id(req)
    body = read_json(req, PutPaymentBody)
    put = _payments().create_payment(payment_id, body.referenceId, body.amount, body.currency,
                                     command_context(req))
    state = put.state
    assert state.status is not None  # the payment exists: it was just created or found
    return json_response(
        PaymentState(paymentId=payment_id, referenceId=state.reference_id, amount=state.amount,
                     currency=state.currency, status=state.status, version=put.version),
        201 if put.created else 200)


@api.route("payments_authorize", "POST", "payments/{paymentId}/authorize",
           summary="Authorize the payment; the acquirer decides asynchronously",
           description="Poll `GET /payments/{paymentId}` (or the order) for the outcome.",
           path={"paymentId": PAYMENT_ID}, headers=COMMAND_HEADERS, problems=(400, 404, 409, 422),
           replies={202: Reply("Accepted: the acquirer is asked", StreamVersion, links={
               "getPayment": Link("payments_get", {"paymentId": "$request.path.paymentId"})})})
def authorize_payment(req: func.HttpRequest) -> func.HttpResponse:
    version = _payments().authorize(_payment_id(req), command_context(req))
    return json_response(StreamVersion(version=version), 202)


@api.route("payments_get", "GET", "payments/{paymentId}", summary="Read the payment (its view)",
           path={"paymentId": PAYMENT_ID},
           query=(MIN_VERSION_PARAMETER, *POINT_IN_TIME_PARAMETERS),
           headers=(CORRELATION_HEADER,), problems=(400, 404),
           replies={200: Reply("The payment", PaymentView, headers=(VIEW_SOURCE_HEADER,))})
def get_payment(req: func.HttpRequest) -> func.HttpResponse:
    payment_id = _payment_id(req)
    read = _payments().get_payment(payment_id, min_version(req), point_in_time(req))
    return json_response(PaymentView.model_validate(read.document),
                         headers={VIEW_SOURCE_HEADER: read.source})


@api.route("payments_events", "GET", "payments/{paymentId}/events",
           summary="The payment's stream: every event, in order", path={"paymentId": PAYMENT_ID},
           headers=(CORRELATION_HEADER,), problems=(404,),
           replies={200: Reply("The events", EventList)})
def get_payment_events(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(EventList.model_validate(_payments().payment_events(_payment_id(req))))


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
