"""Orders service triggers: the HTTP API, the change-feed projector and publisher, and the
payment-event consumer. Each parses its input, calls one use case (``app.orders``), and shapes
the response."""

from __future__ import annotations

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.orders import ORDERS_PROJECTOR, ORDERS_PUBLISHER, OrdersService
from contracts.headers import (
    CAUSATION_HEADER,
    CORRELATION_HEADER,
    IDEMPOTENCY_HEADER,
    VIEW_SOURCE_HEADER,
)
from domain.errors import DOCUMENT_KEY_PATTERN, ID_PATTERN, MAX_ID_LENGTH, MAX_REASON_LENGTH
from domain.orders import MAX_QUANTITY, MAX_UNIT_PRICE, OrderStatus
from domain.personal_data import (
    ADDRESS_SCHEMA_PATTERN,
    EMAIL_SCHEMA_PATTERN,
    MAX_ADDRESS_LENGTH,
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    CustomerDetails,
)
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
    idempotency_key,
    json_response,
    min_version,
    no_content,
    point_in_time,
    read_json,
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
api = ApiRoutes(bp, "orders", "Carts, checkout and the order's lifecycle (the Orders service)")

ORDER_ID: JsonDict = {**RESOURCE_ID_SCHEMA, "examples": ["5c1e6a8d-0b7f-4c31-9a47-2d9e4c315f0c"]}
CART_ITEM_ID: JsonDict = {**ID_SCHEMA, "examples": ["item-1"]}
COMMAND_HEADERS = (IDEMPOTENCY_HEADER, CORRELATION_HEADER, CAUSATION_HEADER)


# Bodies check shape and types only; the domain owns the limits (documented here from its
# constants, enforced there), so every rule has one home and one message.
class CustomerDetailsBody(BaseModel):
    """A customer's personal data: stored apart from the order's events, erasable."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(examples=["Ada Lovelace"], json_schema_extra={
        "minLength": 1, "maxLength": MAX_NAME_LENGTH, "pattern": ID_PATTERN})
    email: str = Field(examples=["ada@example.com"], json_schema_extra={
        "maxLength": MAX_EMAIL_LENGTH, "pattern": EMAIL_SCHEMA_PATTERN})
    shippingAddress: str = Field(default="", examples=["12 Analytical Row, London"],
                                 json_schema_extra={"maxLength": MAX_ADDRESS_LENGTH,
                                                    "pattern": ADDRESS_SCHEMA_PATTERN})

    def details(self) -> CustomerDetails:
        return CustomerDetails(self.name, self.email, self.shippingAddress)


CUSTOMER_ID: JsonDict = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
                         "pattern": DOCUMENT_KEY_PATTERN, "examples": ["customer-42"]}


class CreateOrderBody(BaseModel):
    # The example is what the docs page's "Try it out" sends (the details are optional).
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
        "examples": [{"customerId": "customer-42", "currency": "EUR"}]})
    customerId: str = Field(examples=["customer-42"], json_schema_extra=CUSTOMER_ID)
    currency: str = Field(examples=["EUR"], json_schema_extra=CURRENCY_SCHEMA)
    customer: CustomerDetailsBody | None = None


class AddItemBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    productId: str = Field(examples=["sku-1"], json_schema_extra=ID_SCHEMA)
    quantity: int = Field(examples=[2], json_schema_extra={"minimum": 1, "maximum": MAX_QUANTITY})
    unitPrice: int = Field(examples=[1250], json_schema_extra={
        "minimum": 0, "maximum": MAX_UNIT_PRICE, "description": "minor units (cents)"})


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str = Field(default="cancelled by customer", examples=["changed my mind"],
                        json_schema_extra={"maxLength": MAX_REASON_LENGTH})


# Responses are shaped by these models, so what the document promises is what is sent.
class OrderCreated(BaseModel):
    orderId: str
    version: int


class CartItemAdded(BaseModel):
    cartItemId: str
    version: int


class CheckoutStarted(BaseModel):
    paymentId: str = Field(description="the payment to authorize (Payments API)")
    amount: int = Field(description="minor units")
    currency: str
    version: int


class CartLine(BaseModel):
    cartItemId: str
    productId: str
    quantity: int
    unitPrice: int


class PaymentFailure(BaseModel):
    paymentId: str
    reason: str


class CustomerOnOrder(BaseModel):
    """The customer's details, looked up when the order is read (never in its events)."""

    name: str
    email: str
    shippingAddress: str


class ErasedCustomer(BaseModel):
    erased: bool
    erasedAt: str


class OrderView(BaseModel):
    orderId: str
    customerId: str
    status: OrderStatus
    items: list[CartLine]
    total: int = Field(description="minor units")
    currency: str
    paymentId: str | None = Field(description="the payment being waited for, if any")
    version: int
    lastPaymentFailure: PaymentFailure | None = None
    cancelReason: str | None = None
    customer: CustomerOnOrder | ErasedCustomer | None = Field(
        default=None, description="the customer's details, or that they were erased; null "
        "when none were given")


def _orders() -> OrdersService:
    return runtime.services().orders


def _order_id(req: func.HttpRequest) -> str:
    return route_id(req, "orderId", "order")


_ORDER_LINKS = {
    "addItem": Link("orders_add_item", {"orderId": "$response.body#/orderId"}),
    "getOrder": Link("orders_get", {"orderId": "$response.body#/orderId"}),
    "checkout": Link("orders_checkout", {"orderId": "$response.body#/orderId"}),
}


@api.route("orders_create", "POST", "orders", summary="Create an order (an empty cart)",
           body=CreateOrderBody, headers=COMMAND_HEADERS, problems=(400, 409, 422),
           replies={201: Reply("Created", OrderCreated, headers=("Location",),
                               links=_ORDER_LINKS)})
def create_order(req: func.HttpRequest) -> func.HttpResponse:
    body = read_json(req, CreateOrderBody)
    created = _orders().create_order(body.customerId, body.currency, command_context(req),
                                     idempotency_key(req),
                                     body.customer.details() if body.customer else None)
    location = req.url.split("?")[0].rstrip("/") + f"/{created.order_id}"
    return json_response(OrderCreated(orderId=created.order_id, version=created.version), 201,
                         {"Location": location})


@api.route("orders_add_item", "POST", "orders/{orderId}/items", summary="Add an item to the cart",
           path={"orderId": ORDER_ID}, body=AddItemBody, headers=COMMAND_HEADERS,
           problems=(400, 404, 409, 422),
           replies={201: Reply("Added", CartItemAdded, links={
               "checkout": Link("orders_checkout", {"orderId": "$request.path.orderId"}),
               "deleteItem": Link("orders_delete_item", {
                   "orderId": "$request.path.orderId",
                   "cartItemId": "$response.body#/cartItemId"}),
               "getOrder": Link("orders_get", {"orderId": "$request.path.orderId"}),
           })})
def add_item(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    body = read_json(req, AddItemBody)
    added = _orders().add_item(order_id, body.productId, body.quantity, body.unitPrice,
                               command_context(req))
    return json_response(CartItemAdded(cartItemId=added.cart_item_id, version=added.version), 201)


@api.route("orders_delete_item", "DELETE", "orders/{orderId}/items/{cartItemId}",
           summary="Remove an item from the cart (removing it again is a no-op)",
           path={"orderId": ORDER_ID, "cartItemId": CART_ITEM_ID}, headers=COMMAND_HEADERS,
           problems=(400, 404, 409, 422),
           replies={200: Reply("Removed (or removed before)", StreamVersion)})
def delete_item(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    cart_item_id = str(req.route_params.get("cartItemId", ""))
    version = _orders().delete_item(order_id, cart_item_id, command_context(req))
    return json_response(StreamVersion(version=version))


@api.route("orders_checkout", "POST", "orders/{orderId}/checkout",
           summary="Check out: create the payment in Payments and wait for it",
           description="Retried with the same Idempotency-Key it answers its first result. "
           "Authorize the payment next (`POST /payments/{paymentId}/authorize`).",
           path={"orderId": ORDER_ID}, headers=COMMAND_HEADERS, problems=(400, 404, 409, 422, 502),
           replies={200: Reply("Prepared to pay", CheckoutStarted, links={
               "getPayment": Link("payments_get", {"paymentId": "$response.body#/paymentId"}),
               "authorizePayment": Link("payments_authorize",
                                        {"paymentId": "$response.body#/paymentId"}),
               "getOrder": Link("orders_get", {"orderId": "$request.path.orderId"}),
           })})
def checkout(req: func.HttpRequest) -> func.HttpResponse:
    done = _orders().checkout(_order_id(req), command_context(req))
    return json_response(CheckoutStarted(paymentId=done.payment_id, amount=done.amount,
                                         currency=done.currency, version=done.version))


@api.route("orders_cancel", "POST", "orders/{orderId}/cancel", summary="Cancel the order",
           path={"orderId": ORDER_ID}, body=CancelBody, body_required=False,
           headers=COMMAND_HEADERS, problems=(400, 404, 409, 422),
           replies={200: Reply("Cancelled (or cancelled before)", StreamVersion)})
def cancel(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    body = read_json(req, CancelBody, optional=True)
    return json_response(StreamVersion(version=_orders().cancel(order_id, body.reason,
                                                                command_context(req))))


@api.route("orders_get", "GET", "orders/{orderId}", summary="Read the order (its view)",
           path={"orderId": ORDER_ID},
           query=(MIN_VERSION_PARAMETER, *POINT_IN_TIME_PARAMETERS),
           headers=(CORRELATION_HEADER,), problems=(400, 404),
           replies={200: Reply("The order", OrderView, headers=(VIEW_SOURCE_HEADER,))})
def get_order(req: func.HttpRequest) -> func.HttpResponse:
    order_id = _order_id(req)
    read = _orders().get_order(order_id, min_version(req), point_in_time(req))
    return json_response(OrderView.model_validate(read.document),
                         headers={VIEW_SOURCE_HEADER: read.source})


@api.route("orders_events", "GET", "orders/{orderId}/events",
           summary="The order's stream: every event, in order", path={"orderId": ORDER_ID},
           headers=(CORRELATION_HEADER,), problems=(404,),
           replies={200: Reply("The events", EventList)})
def get_order_events(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(EventList.model_validate(_orders().order_events(_order_id(req))))


def _customer_id(req: func.HttpRequest) -> str:
    # Checked by the use case with the domain's rule for ids that name documents (400).
    return str(req.route_params.get("customerId", ""))


@api.route("orders_put_personal_data", "PUT", "customers/{customerId}/personal-data",
           summary="Give or replace a customer's details (kept apart from the events)",
           path={"customerId": CUSTOMER_ID}, body=CustomerDetailsBody,
           headers=(CORRELATION_HEADER,), problems=(400,),
           replies={204: Reply("Stored: every order of the customer shows them")})
def put_personal_data(req: func.HttpRequest) -> func.HttpResponse:
    """Replace the customer's details; every order of the customer shows them (204)."""
    customer_id = _customer_id(req)
    body = read_json(req, CustomerDetailsBody)
    _orders().update_customer_details(customer_id, body.details())
    return no_content()


@api.route("orders_erase_personal_data", "DELETE", "customers/{customerId}/personal-data",
           summary="Erase a customer's personal data for good",
           description="Idempotent (204 also when there was none); the orders stay, their "
           "customer shown as erased.",
           path={"customerId": CUSTOMER_ID}, headers=(CORRELATION_HEADER,), problems=(400,),
           replies={204: Reply("Erased")})
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
