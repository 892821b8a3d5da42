"""Orders service triggers: the HTTP API, the change-feed projector and publisher, and the
payment-event consumer. Each parses its input, calls one use case (``app.orders``), and shapes
the response."""

from __future__ import annotations

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field

from app.orders import ORDERS_PROJECTOR, ORDERS_PUBLISHER, OrdersService
from contracts.headers import VIEW_SOURCE_HEADER
from domain.errors import MAX_ID_LENGTH, MAX_REASON_LENGTH
from domain.orders import MAX_QUANTITY, MAX_UNIT_PRICE
from domain.personal_data import (
    MAX_ADDRESS_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    CustomerDetails,
)
from functions import runtime
from functions.http import (
    command_context,
    http_endpoint,
    idempotency_key,
    json_response,
    min_version,
    no_content,
    point_in_time,
    read_json,
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


# Bodies check shape and types only; the domain owns the limits (documented here from its
# constants, enforced there), so every rule has one home and one message.
class CustomerDetailsBody(BaseModel):
    """A customer's personal data: stored apart from the order's events, erasable."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_NAME_LENGTH})
    email: str = Field(json_schema_extra={"format": "email", "maxLength": MAX_EMAIL_LENGTH})
    shippingAddress: str = Field(default="",
                                 json_schema_extra={"maxLength": MAX_ADDRESS_LENGTH})

    def details(self) -> CustomerDetails:
        return CustomerDetails(self.name, self.email, self.shippingAddress)


class CreateOrderBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    customerId: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_ID_LENGTH})
    currency: str = Field(json_schema_extra={"description": "ISO-4217 code, e.g. EUR"})
    customer: CustomerDetailsBody | None = None


class AddItemBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    productId: str = Field(json_schema_extra={"minLength": 1, "maxLength": MAX_ID_LENGTH})
    quantity: int = Field(json_schema_extra={"minimum": 1, "maximum": MAX_QUANTITY})
    unitPrice: int = Field(json_schema_extra={"minimum": 0, "maximum": MAX_UNIT_PRICE})


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field(default="cancelled by customer",
                        json_schema_extra={"maxLength": MAX_REASON_LENGTH})


def _orders() -> OrdersService:
    return runtime.services().orders


def _order_id(req: func.HttpRequest) -> str:
    return route_id(req, "orderId", "order")


@bp.function_name("orders_create")
@bp.route(route="orders", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def create_order(req: func.HttpRequest) -> func.HttpResponse:
    body = read_json(req, CreateOrderBody)
    created = _orders().create_order(body.customerId, body.currency, command_context(req),
                                     idempotency_key(req),
                                     body.customer.details() if body.customer else None)
    location = req.url.split("?")[0].rstrip("/") + f"/{created.order_id}"
    return json_response({"orderId": created.order_id, "version": created.version}, 201,
                         {"Location": location})


@bp.function_name("orders_add_item")
@bp.route(route="orders/{orderId}/items", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def add_item(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    body = read_json(req, AddItemBody)
    added = _orders().add_item(order_id, body.productId, body.quantity, body.unitPrice,
                               command_context(req))
    return json_response({"cartItemId": added.cart_item_id, "version": added.version}, 201)


@bp.function_name("orders_delete_item")
@bp.route(route="orders/{orderId}/items/{cartItemId}", methods=["DELETE"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def delete_item(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    cart_item_id = str(req.route_params.get("cartItemId", ""))
    version = _orders().delete_item(order_id, cart_item_id, command_context(req))
    return json_response({"version": version})


@bp.function_name("orders_checkout")
@bp.route(route="orders/{orderId}/checkout", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def checkout(req: func.HttpRequest) -> func.HttpResponse:
    done = _orders().checkout(_order_id(req), command_context(req))
    return json_response({"paymentId": done.payment_id, "amount": done.amount,
                          "currency": done.currency, "version": done.version})


@bp.function_name("orders_cancel")
@bp.route(route="orders/{orderId}/cancel", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def cancel(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    body = read_json(req, CancelBody, optional=True)
    return json_response({"version": _orders().cancel(order_id, body.reason,
                                                      command_context(req))})


@bp.function_name("orders_get")
@bp.route(route="orders/{orderId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def get_order(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    read = _orders().get_order(order_id, min_version(req), point_in_time(req))
    return json_response(read.document, headers={VIEW_SOURCE_HEADER: read.source})


@bp.function_name("orders_events")
@bp.route(route="orders/{orderId}/events", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def get_order_events(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(_orders().order_events(_order_id(req)))


def _customer_id(req: func.HttpRequest) -> str:
    # Checked by the use case with the domain's rule for ids that name documents (400).
    return str(req.route_params.get("customerId", ""))


@bp.function_name("orders_put_personal_data")
@bp.route(route="customers/{customerId}/personal-data", methods=["PUT"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def put_personal_data(req: func.HttpRequest) -> func.HttpResponse:
    """Replace the customer's details; every order of the customer shows them (204)."""
    customer_id = _customer_id(req)
    body = read_json(req, CustomerDetailsBody)
    _orders().update_customer_details(customer_id, body.details())
    return no_content()


@bp.function_name("orders_erase_personal_data")
@bp.route(route="customers/{customerId}/personal-data", methods=["DELETE"],
          auth_level=func.AuthLevel.ANONYMOUS)
@http_endpoint
def erase_personal_data(req: func.HttpRequest) -> func.HttpResponse:
    """Erase the customer's personal data for good (204, also when there was none); orders
    then show their customer as erased."""
    _orders().erase_customer_data(_customer_id(req))
    return no_content()


@change_feed_function(bp, "orders_projector", "ORDERS_DATABASE", ORDERS_PROJECTOR)
def orders_projector(documents: func.DocumentList) -> None:
    _orders().project(feed_documents(documents))


@change_feed_function(bp, "orders_publisher", "ORDERS_DATABASE", ORDERS_PUBLISHER)
def orders_publisher(documents: func.DocumentList) -> None:
    _orders().publish(feed_documents(documents))


@bp.function_name("orders_on_payment_event")
@bp.service_bus_topic_trigger(arg_name="message", connection="SERVICEBUS",
                              topic_name="%PAYMENTS_TOPIC%",
                              subscription_name="%PAYMENTS_SUBSCRIPTION%")
@retry_transient
def on_payment_event(message: func.ServiceBusMessage) -> None:
    """Anything that cannot be handled raises: the message is abandoned and, after the
    subscription's max delivery count, dead-lettered by the broker; nothing is lost silently."""
    _orders().record_payment_outcome(contract_of(message), message_context(message))
