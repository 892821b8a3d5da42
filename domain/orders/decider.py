"""The Order aggregate's decider: commands, events, state, ``decide`` and ``evolve``.

States: Created -> PreparedToPay -> Paid; Created -> Cancelled; a failed payment takes the order
from PreparedToPay back to Created with its cart kept, so checkout can be retried.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Never

from domain.decider import Decider
from domain.errors import (
    AlreadyExists,
    CartChanged,
    CartItemNotFound,
    InvalidTransition,
    PaymentMismatch,
    StreamNotFound,
    require_document_key,
    require_id,
    require_int,
    require_resource_id,
    require_text,
)
from domain.money import MAX_AMOUNT, validate_currency

MAX_QUANTITY = 1000
MAX_UNIT_PRICE = 100_000_000  # minor units

# Fixed forever: changing it would give a retried checkout of an existing order a new payment id.
CHECKOUT_NAMESPACE = uuid.UUID("fa766fc9-0d98-560b-bdb5-b954f23201f3")


class OrderStatus(StrEnum):
    CREATED = "Created"
    PREPARED_TO_PAY = "PreparedToPay"
    PAID = "Paid"
    CANCELLED = "Cancelled"


TERMINAL_ORDER_STATUSES = frozenset({OrderStatus.PAID, OrderStatus.CANCELLED})


# Commands ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateOrder:
    order_id: str
    customer_id: str
    currency: str


@dataclass(frozen=True, slots=True)
class AddItemToCart:
    product_id: str
    quantity: int
    unit_price: int  # minor units


@dataclass(frozen=True, slots=True)
class DeleteItemFromCart:
    cart_item_id: str


@dataclass(frozen=True, slots=True)
class PrepareToPay:
    """Checkout: ``amount`` is the total the caller saw, so a cart changed meanwhile is caught."""

    payment_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class MarkOrderPaid:
    payment_id: str


@dataclass(frozen=True, slots=True)
class RecordPaymentFailure:
    payment_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CancelOrder:
    reason: str = ""


OrderCommand = (
    CreateOrder
    | AddItemToCart
    | DeleteItemFromCart
    | PrepareToPay
    | MarkOrderPaid
    | RecordPaymentFailure
    | CancelOrder
)


# Events -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderCreated:
    order_id: str
    customer_id: str
    currency: str


@dataclass(frozen=True, slots=True)
class ItemAddedToCart:
    cart_item_id: str
    product_id: str
    quantity: int
    unit_price: int


@dataclass(frozen=True, slots=True)
class ItemDeletedFromCart:
    cart_item_id: str


@dataclass(frozen=True, slots=True)
class OrderPreparedToPay:
    payment_id: str
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class OrderPaid:
    payment_id: str


@dataclass(frozen=True, slots=True)
class OrderPaymentFailed:
    payment_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    reason: str


OrderEvent = (
    OrderCreated
    | ItemAddedToCart
    | ItemDeletedFromCart
    | OrderPreparedToPay
    | OrderPaid
    | OrderPaymentFailed
    | OrderCancelled
)


# State ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CartItem:
    cart_item_id: str
    product_id: str
    quantity: int
    unit_price: int

    @property
    def subtotal(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True, slots=True)
class OrderState:
    status: OrderStatus | None = None  # None: the stream has no events yet
    order_id: str = ""
    customer_id: str = ""
    currency: str = ""
    items: tuple[CartItem, ...] = ()  # in the order they were added
    items_added: int = 0  # ever, deletes included: the source of fresh cart item ids
    payment_id: str | None = None  # the payment the order waits for (or was paid with)
    failed_payment_ids: frozenset[str] = frozenset()
    paid_payment_id: str | None = None
    cancel_reason: str | None = None

    @property
    def exists(self) -> bool:
        return self.status is not None

    @property
    def total(self) -> int:
        return sum(item.subtotal for item in self.items)

    def item(self, cart_item_id: str) -> CartItem | None:
        return next((i for i in self.items if i.cart_item_id == cart_item_id), None)


INITIAL_ORDER = OrderState()


def checkout_payment_id(order_id: str, version: int) -> str:
    """The payment id of a checkout decided at stream version ``version``.

    Derived, not random: a retried checkout of an unchanged order names the same payment, so it
    cannot create a second one; any later event (a failed payment, a cart change) moves the
    version and so yields a new id.
    """
    return str(uuid.uuid5(CHECKOUT_NAMESPACE, f"{order_id}:{version}"))


def checkout_command(state: OrderState, version: int) -> PrepareToPay:
    """The checkout command for an order loaded at ``version``.

    While the order is PreparedToPay, a retried checkout must name the payment already chosen
    (the version has moved past the one that payment id was derived from).
    """
    if state.status is OrderStatus.PREPARED_TO_PAY and state.payment_id is not None:
        return PrepareToPay(payment_id=state.payment_id, amount=state.total)
    return PrepareToPay(payment_id=checkout_payment_id(state.order_id, version), amount=state.total)


# Decide -----------------------------------------------------------------------------------------
# Order of checks: the command's own fields (400), then existence (404/409), then the state (409),
# so a malformed command gets the same answer whatever state the order is in.


def decide(command: OrderCommand, state: OrderState) -> list[OrderEvent]:
    match command:
        case CreateOrder():
            return _create(command, state)
        case AddItemToCart():
            return _add_item(command, state)
        case DeleteItemFromCart():
            return _delete_item(command, state)
        case PrepareToPay():
            return _prepare_to_pay(command, state)
        case MarkOrderPaid():
            return _mark_paid(command, state)
        case RecordPaymentFailure():
            return _record_failure(command, state)
        case CancelOrder():
            return _cancel(command, state)
        case _:
            _unexpected("command", command)


def _create(command: CreateOrder, state: OrderState) -> list[OrderEvent]:
    order_id = require_resource_id(command.order_id, "orderId")
    # The customer id also keys the customer's personal data (a document), given now or later.
    customer_id = require_document_key(command.customer_id, "customerId")
    currency = validate_currency(command.currency)
    if state.exists:
        raise AlreadyExists(f"CreateOrder refused: order {state.order_id} already exists")
    return [OrderCreated(order_id=order_id, customer_id=customer_id, currency=currency)]


def _add_item(command: AddItemToCart, state: OrderState) -> list[OrderEvent]:
    product_id = require_id(command.product_id, "productId")
    quantity = require_int(command.quantity, "quantity", 1, MAX_QUANTITY)
    unit_price = require_int(command.unit_price, "unitPrice", 0, MAX_UNIT_PRICE)
    status = _require_order(state, "AddItemToCart")
    if status is not OrderStatus.CREATED:
        raise _refused(state, "AddItemToCart", "items can only change while the order is Created")
    if state.total + quantity * unit_price > MAX_AMOUNT:
        raise _refused(
            state, "AddItemToCart", f"the cart total would exceed {MAX_AMOUNT} minor units"
        )
    return [
        ItemAddedToCart(
            # From the count of items ever added, so a deleted item's id is never reused.
            cart_item_id=f"item-{state.items_added + 1}",
            product_id=product_id,
            quantity=quantity,
            unit_price=unit_price,
        )
    ]


def _delete_item(command: DeleteItemFromCart, state: OrderState) -> list[OrderEvent]:
    cart_item_id = require_id(command.cart_item_id, "cartItemId")
    status = _require_order(state, "DeleteItemFromCart")
    if status is not OrderStatus.CREATED:
        raise _refused(
            state, "DeleteItemFromCart", "items can only change while the order is Created"
        )
    if state.item(cart_item_id) is None:
        if _was_issued(cart_item_id, state):
            return []  # deleted before: a retried delete
        raise CartItemNotFound(
            f"DeleteItemFromCart refused: order {state.order_id} has no cart item {cart_item_id}"
        )
    return [ItemDeletedFromCart(cart_item_id=cart_item_id)]


def _was_issued(cart_item_id: str, state: OrderState) -> bool:
    number = cart_item_id.removeprefix("item-")
    return number.isascii() and number.isdigit() and 0 < int(number) <= state.items_added


def _prepare_to_pay(command: PrepareToPay, state: OrderState) -> list[OrderEvent]:
    payment_id = require_resource_id(command.payment_id, "paymentId")
    amount = require_int(command.amount, "amount", 0, MAX_AMOUNT)
    status = _require_order(state, "PrepareToPay")
    if status is OrderStatus.PREPARED_TO_PAY:
        if payment_id != state.payment_id:
            raise _refused(
                state, "PrepareToPay", f"it already waits for payment {state.payment_id}"
            )
        if amount != state.total:
            raise CartChanged(
                f"PrepareToPay refused: order {state.order_id} waits for payment {payment_id} "
                f"of {state.total}, not {amount}"
            )
        return []  # a retried checkout: already done
    if status is not OrderStatus.CREATED:
        raise _refused(state, "PrepareToPay", "only a Created order can be checked out")
    if not state.items:
        raise _refused(state, "PrepareToPay", "the cart is empty")
    if state.total == 0:
        # Payments refuses an amount of 0: fail here, before a payment is asked for.
        raise _refused(state, "PrepareToPay", "the cart total is 0, there is nothing to pay")
    if payment_id in state.failed_payment_ids:
        raise PaymentMismatch(
            f"PrepareToPay refused: payment {payment_id} already failed for order "
            f"{state.order_id}; a new checkout needs a new payment id"
        )
    if amount != state.total:
        raise CartChanged(
            f"PrepareToPay refused: amount {amount} does not match the cart total {state.total} "
            f"of order {state.order_id}; the cart changed, check out again"
        )
    return [OrderPreparedToPay(payment_id=payment_id, amount=amount, currency=state.currency)]


def _mark_paid(command: MarkOrderPaid, state: OrderState) -> list[OrderEvent]:
    payment_id = require_resource_id(command.payment_id, "paymentId")
    status = _require_order(state, "MarkOrderPaid")
    if status is OrderStatus.PAID and payment_id == state.paid_payment_id:
        return []  # redelivered payment confirmation
    if status is OrderStatus.PREPARED_TO_PAY:
        if payment_id != state.payment_id:
            raise PaymentMismatch(
                f"MarkOrderPaid refused: order {state.order_id} waits for payment "
                f"{state.payment_id}, not {payment_id}"
            )
        return [OrderPaid(payment_id=payment_id)]
    if status is OrderStatus.PAID:
        raise _refused(
            state,
            "MarkOrderPaid",
            f"it was paid with payment {state.paid_payment_id}, not {payment_id}",
        )
    raise _refused(state, "MarkOrderPaid", f"it does not wait for payment {payment_id}")


def _record_failure(command: RecordPaymentFailure, state: OrderState) -> list[OrderEvent]:
    payment_id = require_resource_id(command.payment_id, "paymentId")
    reason = require_text(command.reason, "reason")
    status = _require_order(state, "RecordPaymentFailure")
    if payment_id in state.failed_payment_ids:
        return []  # redelivered payment failure
    if status is OrderStatus.PREPARED_TO_PAY:
        if payment_id != state.payment_id:
            raise PaymentMismatch(
                f"RecordPaymentFailure refused: order {state.order_id} waits for payment "
                f"{state.payment_id}, not {payment_id}"
            )
        return [OrderPaymentFailed(payment_id=payment_id, reason=reason)]
    raise _refused(state, "RecordPaymentFailure", f"it does not wait for payment {payment_id}")


def _cancel(command: CancelOrder, state: OrderState) -> list[OrderEvent]:
    reason = require_text(command.reason, "reason")
    status = _require_order(state, "CancelOrder")
    if status is OrderStatus.CANCELLED:
        return []  # a retried cancel
    if status is OrderStatus.CREATED:
        return [OrderCancelled(reason=reason)]
    why = "a payment is in progress" if status is OrderStatus.PREPARED_TO_PAY else "it is paid"
    raise _refused(state, "CancelOrder", f"only a Created order can be cancelled, and {why}")


def _require_order(state: OrderState, command: str) -> OrderStatus:
    if state.status is None:
        raise StreamNotFound(f"{command} refused: the order does not exist")
    return state.status


def _refused(state: OrderState, command: str, why: str) -> InvalidTransition:
    status = str(state.status)
    return InvalidTransition(
        f"{command} refused: order {state.order_id} is {status}; {why}",
        state=status,
        command=command,
    )


def _unexpected(kind: str, value: Never) -> Never:
    # Reached only when a caller ignores the type hints; mypy proves the matches exhaustive.
    raise TypeError(f"not an order {kind}: {value!r}")


# Evolve -----------------------------------------------------------------------------------------


def evolve(state: OrderState, event: OrderEvent) -> OrderState:
    """Apply one event. Never refuses: events are facts, already decided."""
    match event:
        case OrderCreated():
            return OrderState(
                status=OrderStatus.CREATED,
                order_id=event.order_id,
                customer_id=event.customer_id,
                currency=event.currency,
            )
        case ItemAddedToCart():
            item = CartItem(
                cart_item_id=event.cart_item_id,
                product_id=event.product_id,
                quantity=event.quantity,
                unit_price=event.unit_price,
            )
            return replace(state, items=(*state.items, item), items_added=state.items_added + 1)
        case ItemDeletedFromCart():
            items = tuple(i for i in state.items if i.cart_item_id != event.cart_item_id)
            return replace(state, items=items)
        case OrderPreparedToPay():
            return replace(state, status=OrderStatus.PREPARED_TO_PAY, payment_id=event.payment_id)
        case OrderPaid():
            return replace(
                state,
                status=OrderStatus.PAID,
                payment_id=event.payment_id,
                paid_payment_id=event.payment_id,
            )
        case OrderPaymentFailed():
            return replace(
                state,
                status=OrderStatus.CREATED,
                payment_id=None,
                failed_payment_ids=state.failed_payment_ids | {event.payment_id},
            )
        case OrderCancelled():
            return replace(state, status=OrderStatus.CANCELLED, cancel_reason=event.reason)
        case _:
            _unexpected("event", event)


order_decider: Decider[OrderCommand, OrderEvent, OrderState] = Decider(
    initial_state=INITIAL_ORDER, decide=decide, evolve=evolve
)
