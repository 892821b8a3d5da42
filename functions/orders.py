"""Orders service: HTTP API, change-feed projector and publisher, payment-event consumer."""

from __future__ import annotations

import logging

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field

from contracts.mapping import order_messages, outbound
from contracts.messages import PaymentCompletedV1, PaymentFailedV1, parse_message
from domain import orders as domain
from domain.views import apply_order_event
from eventstore.clock import new_id
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
    ApiError,
    command_context,
    http_endpoint,
    json_response,
    read_json,
    route_id,
)
from functions.payments_api import PaymentRejectedError, PaymentsApiError
from functions.settings import setting

log = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]

PROJECTOR = "orders-projector-v1"
PUBLISHER = "orders-publisher-v1"

ORDER_VIEW = ViewDefinition(
    decider=domain.order_decider,
    view_id=lambda stream_id: stream_id.removeprefix("order-"),
    apply=apply_order_event,
)


class CreateOrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    customerId: str = Field(min_length=1, max_length=100)
    currency: str = Field(min_length=1, max_length=10)


class AddItemBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    productId: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=1000)
    unitPrice: int = Field(ge=0, le=100_000_000)


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field(default="cancelled by customer", max_length=500)


def _stream(order_id: str) -> str:
    return domain.order_decider.stream_id(order_id)


def _order_id(req: func.HttpRequest) -> str:
    return route_id(req, "orderId", "order")


@bp.function_name("orders_create")
@bp.route(route="orders", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def create_order(req: func.HttpRequest) -> func.HttpResponse:
    body = read_json(req, CreateOrderBody)
    order_id = new_id()
    result = runtime.orders().execute(
        _stream(order_id), domain.CreateOrder(order_id, body.customerId, body.currency),
        command_context(req))
    location = req.url.split("?")[0].rstrip("/") + f"/{order_id}"
    return json_response({"orderId": order_id, "version": result.version}, 201,
                         {"Location": location})


@bp.function_name("orders_add_item")
@bp.route(route="orders/{orderId}/items", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def add_item(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    body = read_json(req, AddItemBody)
    result = runtime.orders().execute(
        _stream(order_id), domain.AddItemToCart(body.productId, body.quantity, body.unitPrice),
        command_context(req))
    added = next(e for e in result.appended if e.type == "ItemAddedToCart")
    return json_response({"cartItemId": added.data["cartItemId"], "version": result.version}, 201)


@bp.function_name("orders_delete_item")
@bp.route(route="orders/{orderId}/items/{cartItemId}", methods=["DELETE"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def delete_item(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    cart_item_id = req.route_params.get("cartItemId", "")
    result = runtime.orders().execute(_stream(order_id), domain.DeleteItemFromCart(cart_item_id),
                               command_context(req))
    return json_response({"version": result.version})


@bp.function_name("orders_checkout")
@bp.route(route="orders/{orderId}/checkout", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def checkout(req: func.HttpRequest) -> func.HttpResponse:
    """Create the payment in Payments (idempotent PUT), then record OrderPreparedToPay.

    The payment id is derived from the order id and the stream version the checkout is decided
    at, so a retried checkout reuses the payment and a new attempt (after a failed payment or a
    cart change) gets a new one.
    """
    order_id = _order_id(req)
    stream_id = _stream(order_id)
    context = command_context(req)
    # Fresh, not cached: another instance may have changed or checked out the order, and a
    # payment id derived from a stale version would create a second payment.
    state, version = runtime.orders().load(stream_id, refresh=True)
    command = domain.checkout_command(state, version)
    first_attempt = bool(domain.order_decider.decide(command, state))  # refusals: before Payments
    if first_attempt:
        try:
            runtime.payments_api().create_payment(command.payment_id, order_id, command.amount,
                                                  state.currency, context)
        except PaymentRejectedError as error:
            raise ApiError(409, "Payment refused", str(error)) from error
        except PaymentsApiError as error:
            log.error("checkout of %s: %s", order_id, error)
            raise ApiError(502, "Payments unavailable",
                           "the payment service could not be called; retry later") from error
    result = runtime.orders().execute(stream_id, command, context)
    return json_response({"paymentId": command.payment_id, "amount": command.amount,
                          "currency": result.state.currency, "version": result.version})


@bp.function_name("orders_cancel")
@bp.route(route="orders/{orderId}/cancel", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def cancel(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    body = read_json(req, CancelBody, optional=True)
    result = runtime.orders().execute(_stream(order_id), domain.CancelOrder(body.reason),
                               command_context(req))
    return json_response({"version": result.version})


@bp.function_name("orders_get")
@bp.route(route="orders/{orderId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def get_order(req: func.HttpRequest) -> func.HttpResponse:
    return view_response(req, "orders", ORDER_VIEW, runtime.orders(), _order_id(req), "order")


@bp.function_name("orders_events")
@bp.route(route="orders/{orderId}/events", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def get_order_events(req: func.HttpRequest) -> func.HttpResponse:
    return events_response("orders", domain.order_decider, _order_id(req), "order")


@change_feed_function(bp, "orders_projector", "ORDERS_DATABASE", PROJECTOR)
def orders_projector(documents: func.DocumentList) -> None:
    stores = runtime.stores("orders")
    projector = Projector(ORDER_VIEW, stores.views, stores.dead_letters, PROJECTOR)
    projector.handle(commits_from(documents, stores.dead_letters, PROJECTOR))


def map_order_event(commit: Commit, record: EventRecord) -> list[OutboundMessage]:
    if record.type not in ("OrderPreparedToPay", "OrderPaid", "OrderCancelled"):
        return []
    event = domain.order_decider.decode(record.type, record.schema_version, record.data)
    state, _ = runtime.orders().load(commit.stream_id, at_least=record.version)
    topic = setting("ORDERS_TOPIC")
    return [outbound(m, topic, commit, record) for m in order_messages(state, event)]


@change_feed_function(bp, "orders_publisher", "ORDERS_DATABASE", PUBLISHER)
def orders_publisher(documents: func.DocumentList) -> None:
    stores = runtime.stores("orders")
    publisher = Publisher(map_order_event, runtime.publisher(), stores.dead_letters, PUBLISHER)
    publisher.handle(commits_from(documents, stores.dead_letters, PUBLISHER))


@bp.function_name("orders_on_payment_event")
@bp.service_bus_topic_trigger(arg_name="message", connection="SERVICEBUS",
                              topic_name="%PAYMENTS_TOPIC%",
                              subscription_name="%PAYMENTS_SUBSCRIPTION%")
@retry_transient
def on_payment_event(message: func.ServiceBusMessage) -> None:
    """PaymentCompleted → OrderPaid, PaymentFailed → OrderPaymentFailed; redelivery is a no-op.

    Anything else raises: the message is abandoned and, after the subscription's max delivery
    count, dead-lettered by the broker, so nothing is lost silently.
    """
    contract = parse_message(getattr(message, "subject", None) or getattr(message, "label", None),
                             message.application_properties, message.get_body())
    context = message_context(message)
    if isinstance(contract, PaymentCompletedV1):
        command: domain.OrderCommand = domain.MarkOrderPaid(contract.paymentId)
    elif isinstance(contract, PaymentFailedV1):
        command = domain.RecordPaymentFailure(contract.paymentId, contract.reason)
    else:
        log.info("ignoring %s: Orders does not consume it", contract.name)
        return
    result = runtime.orders().execute(_stream(contract.orderId), command, context)
    log.info("%s for order %s -> version %d%s", contract.name, contract.orderId, result.version,
             "" if result.appended else " (already applied)")
