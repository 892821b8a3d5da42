"""Order aggregate: every transition and every refusal, given events / when command / then."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from domain.errors import (
    AlreadyExists,
    CartChanged,
    CartItemNotFound,
    InvalidCommand,
    InvalidTransition,
    PaymentMismatch,
    StreamNotFound,
)
from domain.money import MAX_AMOUNT
from domain.orders import (
    INITIAL_ORDER,
    ORDER_STREAM,
    AddItemToCart,
    CancelOrder,
    CartItem,
    CreateOrder,
    DeleteItemFromCart,
    ItemAddedToCart,
    ItemDeletedFromCart,
    MarkOrderPaid,
    OrderCancelled,
    OrderCreated,
    OrderEvent,
    OrderPaid,
    OrderPaymentFailed,
    OrderPreparedToPay,
    OrderState,
    OrderStatus,
    PrepareToPay,
    RecordPaymentFailure,
    checkout_command,
    checkout_payment_id,
    decide,
    evolve,
    order_decider,
)

from .helpers import bogus, given_order

CREATED = OrderCreated(order_id="o-1", customer_id="c-1", currency="EUR")
ADD_1 = ItemAddedToCart(cart_item_id="item-1", product_id="sku-1", quantity=2, unit_price=1500)
ADD_2 = ItemAddedToCart(cart_item_id="item-2", product_id="sku-2", quantity=1, unit_price=250)
TOTAL = 2 * 1500 + 250
PREPARED = OrderPreparedToPay(payment_id="pay-1", amount=TOTAL, currency="EUR")
PAID = OrderPaid(payment_id="pay-1")
FAILED = OrderPaymentFailed(payment_id="pay-1", reason="declined")
CANCELLED = OrderCancelled(reason="changed my mind")

H_CART = (CREATED, ADD_1, ADD_2)
H_PREPARED = (*H_CART, PREPARED)
H_PAID = (*H_PREPARED, PAID)
H_FAILED = (*H_PREPARED, FAILED)
H_CANCELLED = (CREATED, ADD_1, CANCELLED)

NOT_CREATED: list[Any] = [
    pytest.param("PreparedToPay", H_PREPARED, id="PreparedToPay"),
    pytest.param("Paid", H_PAID, id="Paid"),
    pytest.param("Cancelled", H_CANCELLED, id="Cancelled"),
]

EVERY_COMMAND: list[Any] = [
    AddItemToCart(product_id="sku-1", quantity=1, unit_price=100),
    DeleteItemFromCart(cart_item_id="item-1"),
    PrepareToPay(payment_id="pay-1", amount=100),
    MarkOrderPaid(payment_id="pay-1"),
    RecordPaymentFailure(payment_id="pay-1", reason="declined"),
    CancelOrder(reason=""),
]


# CreateOrder ------------------------------------------------------------------------------------


def test_create_order_on_a_new_stream() -> None:
    state = given_order().when(CreateOrder("o-1", "c-1", "EUR")).then(CREATED)
    assert state.status is OrderStatus.CREATED
    assert (state.order_id, state.customer_id, state.currency) == ("o-1", "c-1", "EUR")
    assert state.items == () and state.total == 0 and state.exists


def test_create_order_twice_is_refused() -> None:
    given_order(CREATED).when(CreateOrder("o-1", "c-1", "EUR")).raises(
        AlreadyExists, "CreateOrder", "o-1", "already exists"
    )


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (CreateOrder("", "c-1", "EUR"), "orderId"),
        (CreateOrder("o-1", "", "EUR"), "customerId"),
        (CreateOrder("o-1", "   ", "EUR"), "customerId"),
        (CreateOrder("o-1", "c" * 101, "EUR"), "customerId"),
        (CreateOrder("o-1", None, "EUR"), "customerId"),  # type: ignore[arg-type]
        # It keys the customer's personal data, so it cannot hold what a document id cannot.
        *[(CreateOrder("o-1", f"c{c}1", "EUR"), "customerId") for c in "/\\?#"],
        (CreateOrder("o-1", "c-1", "eur"), "currency"),
        (CreateOrder("o-1", "c-1", "ABC"), "currency"),
    ],
)
def test_create_order_validates_its_fields(command: CreateOrder, field: str) -> None:
    error = given_order().when(command).raises(InvalidCommand)
    assert isinstance(error, InvalidCommand) and error.field == field
    assert field in error.message


def test_create_order_accepts_ids_of_100_characters() -> None:
    event = OrderCreated(order_id="o" * 100, customer_id="c" * 100, currency="JPY")
    given_order().when(CreateOrder("o" * 100, "c" * 100, "JPY")).then(event)


def test_create_order_checks_fields_before_existence() -> None:
    given_order(CREATED).when(CreateOrder("o-1", "c-1", "eur")).raises(InvalidCommand)


# Commands on an order that does not exist -------------------------------------------------------


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: type(c).__name__)
def test_every_command_but_create_needs_an_existing_order(command: Any) -> None:
    given_order().when(command).raises(StreamNotFound, type(command).__name__, "does not exist")


# AddItemToCart ----------------------------------------------------------------------------------


def test_add_item_generates_the_next_cart_item_id() -> None:
    command = AddItemToCart(product_id="sku-1", quantity=2, unit_price=1500)
    state = given_order(CREATED).when(command).then(ADD_1)
    assert state.items == (CartItem("item-1", "sku-1", 2, 1500),)
    assert state.total == 3000 and state.items_added == 1


def test_add_item_never_reuses_the_id_of_a_deleted_item() -> None:
    history = (*H_CART, ItemDeletedFromCart("item-2"))
    given_order(*history).when(AddItemToCart("sku-9", 1, 10)).then(
        ItemAddedToCart(cart_item_id="item-3", product_id="sku-9", quantity=1, unit_price=10)
    )


def test_add_item_accepts_the_boundaries() -> None:
    given_order(CREATED).when(AddItemToCart("p" * 100, 1000, 100_000_000)).then(
        ItemAddedToCart("item-1", "p" * 100, 1000, 100_000_000)
    )
    given_order(CREATED).when(AddItemToCart("free-sample", 1, 0)).then(
        ItemAddedToCart("item-1", "free-sample", 1, 0)
    )


@pytest.mark.parametrize(
    ("command", "field", "detail"),
    [
        (AddItemToCart("", 1, 100), "productId", "must not be empty"),
        (AddItemToCart(" \t", 1, 100), "productId", "must not be empty"),
        (AddItemToCart("p" * 101, 1, 100), "productId", "at most 100 characters, got 101"),
        (AddItemToCart(42, 1, 100), "productId", "got int 42"),  # type: ignore[arg-type]
        (AddItemToCart("sku", 0, 100), "quantity", "between 1 and 1000, got 0"),
        (AddItemToCart("sku", 1001, 100), "quantity", "between 1 and 1000, got 1001"),
        (AddItemToCart("sku", -3, 100), "quantity", "got -3"),
        (AddItemToCart("sku", True, 100), "quantity", "got boolean true"),
        (AddItemToCart("sku", "2", 100), "quantity", "got str '2'"),  # type: ignore[arg-type]
        (AddItemToCart("sku", 1.5, 100), "quantity", "got float 1.5"),  # type: ignore[arg-type]
        (AddItemToCart("sku", None, 100), "quantity", "got null"),  # type: ignore[arg-type]
        (AddItemToCart("sku", [1], 100), "quantity", "got list"),  # type: ignore[arg-type]
        (AddItemToCart("sku", 1, -1), "unitPrice", "between 0 and 100000000, got -1"),
        (AddItemToCart("sku", 1, 100_000_001), "unitPrice", "got 100000001"),
        (AddItemToCart("sku", 1, False), "unitPrice", "got boolean false"),
    ],
)
def test_add_item_validates_its_fields(command: AddItemToCart, field: str, detail: str) -> None:
    error = given_order(CREATED).when(command).raises(InvalidCommand, field, detail)
    assert isinstance(error, InvalidCommand) and error.field == field


@pytest.mark.parametrize(("status", "history"), NOT_CREATED)
def test_add_item_only_while_created(status: str, history: tuple[OrderEvent, ...]) -> None:
    error = (
        given_order(*history)
        .when(AddItemToCart("sku", 1, 100))
        .raises(InvalidTransition, "AddItemToCart", "order o-1", f"is {status}", "only change")
    )
    assert isinstance(error, InvalidTransition)
    assert (error.state, error.command) == (status, "AddItemToCart")


def test_add_item_refuses_a_cart_total_beyond_the_safe_integer_range() -> None:
    # Reaching this through commands would take ~90,000 items; build the state directly.
    big = CartItem("item-1", "sku", 1, MAX_AMOUNT - 100)
    state = OrderState(
        status=OrderStatus.CREATED, order_id="o-1", currency="EUR", items=(big,), items_added=1
    )
    assert decide(AddItemToCart("sku", 1, 100), state) == [ItemAddedToCart("item-2", "sku", 1, 100)]
    with pytest.raises(InvalidTransition, match="would exceed 9007199254740991"):
        decide(AddItemToCart("sku", 1, 101), state)


# DeleteItemFromCart -----------------------------------------------------------------------------


def test_delete_item_removes_it_and_keeps_the_rest_in_order() -> None:
    history = (*H_CART, ItemAddedToCart("item-3", "sku-3", 1, 1))
    state = (
        given_order(*history).when(DeleteItemFromCart("item-2")).then(ItemDeletedFromCart("item-2"))
    )
    assert [i.cart_item_id for i in state.items] == ["item-1", "item-3"]
    assert state.total == 3001 and state.items_added == 3


@pytest.mark.parametrize("missing", ["item-7", "item-0", "item-x", "basket-1", "item-²"])
def test_delete_item_needs_an_item_the_order_ever_had(missing: str) -> None:
    given_order(*H_CART).when(DeleteItemFromCart(missing)).raises(
        CartItemNotFound, f"order o-1 has no cart item {missing}"
    )


def test_deleting_an_item_again_is_a_no_op() -> None:
    given_order(*H_CART, ItemDeletedFromCart("item-2")).when(DeleteItemFromCart("item-2")).then()


def test_delete_item_validates_the_id() -> None:
    error = given_order(*H_CART).when(DeleteItemFromCart("")).raises(InvalidCommand)
    assert isinstance(error, InvalidCommand) and error.field == "cartItemId"


@pytest.mark.parametrize(("status", "history"), NOT_CREATED)
def test_delete_item_only_while_created(status: str, history: tuple[OrderEvent, ...]) -> None:
    given_order(*history).when(DeleteItemFromCart("item-1")).raises(
        InvalidTransition, "DeleteItemFromCart", f"is {status}"
    )


# PrepareToPay (checkout) ------------------------------------------------------------------------


def test_checkout_prepares_the_payment_of_the_cart_total() -> None:
    state = given_order(*H_CART).when(PrepareToPay("pay-1", TOTAL)).then(PREPARED)
    assert state.status is OrderStatus.PREPARED_TO_PAY and state.payment_id == "pay-1"
    assert state.items == given_order(*H_CART).state.items


def test_checkout_of_a_changed_cart_is_refused() -> None:
    given_order(*H_CART).when(PrepareToPay("pay-1", 3000)).raises(
        CartChanged, "amount 3000", f"cart total {TOTAL}", "o-1"
    )


@pytest.mark.parametrize(
    "history", [(CREATED,), (CREATED, ADD_1, ItemDeletedFromCart("item-1"))], ids=["new", "emptied"]
)
def test_checkout_needs_a_non_empty_cart(history: tuple[OrderEvent, ...]) -> None:
    given_order(*history).when(PrepareToPay("pay-1", 0)).raises(
        InvalidTransition, "PrepareToPay", "is Created", "cart is empty"
    )


def test_checkout_of_a_free_cart_is_refused() -> None:
    given_order(CREATED, ItemAddedToCart("item-1", "gift", 3, 0)).when(
        PrepareToPay("pay-1", 0)
    ).raises(InvalidTransition, "cart total is 0")


def test_retried_checkout_is_a_no_op() -> None:
    given_order(*H_PREPARED).when(PrepareToPay("pay-1", TOTAL)).then_nothing()


def test_retried_checkout_with_another_amount_is_refused() -> None:
    given_order(*H_PREPARED).when(PrepareToPay("pay-1", TOTAL + 1)).raises(
        CartChanged, "waits for payment pay-1", f"of {TOTAL}, not {TOTAL + 1}"
    )


def test_checkout_with_another_payment_while_one_is_pending_is_refused() -> None:
    given_order(*H_PREPARED).when(PrepareToPay("pay-2", TOTAL)).raises(
        InvalidTransition, "is PreparedToPay", "already waits for payment pay-1"
    )


@pytest.mark.parametrize(("status", "history"), NOT_CREATED[1:])
def test_checkout_of_a_finished_order_is_refused(
    status: str, history: tuple[OrderEvent, ...]
) -> None:
    given_order(*history).when(PrepareToPay("pay-1", TOTAL)).raises(
        InvalidTransition, f"is {status}", "only a Created order can be checked out"
    )


def test_checkout_after_a_failed_payment_needs_a_new_payment_id() -> None:
    given_order(*H_FAILED).when(PrepareToPay("pay-1", TOTAL)).raises(
        PaymentMismatch, "payment pay-1 already failed", "new payment id"
    )
    given_order(*H_FAILED).when(PrepareToPay("pay-2", TOTAL)).then(
        OrderPreparedToPay(payment_id="pay-2", amount=TOTAL, currency="EUR")
    )


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (PrepareToPay("", TOTAL), "paymentId"),
        (PrepareToPay("pay-1", -1), "amount"),
        (PrepareToPay("pay-1", MAX_AMOUNT + 1), "amount"),
        (PrepareToPay("pay-1", True), "amount"),
        (PrepareToPay("pay-1", "3250"), "amount"),  # type: ignore[arg-type]
    ],
)
def test_checkout_validates_its_fields(command: PrepareToPay, field: str) -> None:
    error = given_order(*H_CART).when(command).raises(InvalidCommand, field)
    assert isinstance(error, InvalidCommand) and error.field == field


# MarkOrderPaid ----------------------------------------------------------------------------------


def test_mark_paid_for_the_current_payment() -> None:
    state = given_order(*H_PREPARED).when(MarkOrderPaid("pay-1")).then(PAID)
    assert state.status is OrderStatus.PAID and state.paid_payment_id == "pay-1"


def test_mark_paid_again_for_the_same_payment_is_a_no_op() -> None:
    given_order(*H_PAID).when(MarkOrderPaid("pay-1")).then_nothing()


def test_mark_paid_for_another_payment_is_a_mismatch() -> None:
    given_order(*H_PREPARED).when(MarkOrderPaid("pay-2")).raises(
        PaymentMismatch, "MarkOrderPaid", "waits for payment pay-1, not pay-2"
    )


def test_mark_paid_for_another_payment_of_a_paid_order_is_refused() -> None:
    given_order(*H_PAID).when(MarkOrderPaid("pay-2")).raises(
        InvalidTransition, "is Paid", "paid with payment pay-1, not pay-2"
    )


@pytest.mark.parametrize(
    ("status", "history"),
    [("Created", H_CART), ("Created", H_FAILED), ("Cancelled", H_CANCELLED)],
    ids=["never-checked-out", "payment-failed", "cancelled"],
)
def test_mark_paid_needs_a_pending_payment(status: str, history: tuple[OrderEvent, ...]) -> None:
    given_order(*history).when(MarkOrderPaid("pay-1")).raises(
        InvalidTransition, "MarkOrderPaid", f"is {status}", "does not wait for payment pay-1"
    )


def test_mark_paid_validates_the_payment_id() -> None:
    given_order(*H_PREPARED).when(MarkOrderPaid("x" * 101)).raises(InvalidCommand, "paymentId")


# RecordPaymentFailure ---------------------------------------------------------------------------


def test_payment_failure_returns_the_order_to_created_with_its_cart() -> None:
    state = given_order(*H_PREPARED).when(RecordPaymentFailure("pay-1", "declined")).then(FAILED)
    assert state.status is OrderStatus.CREATED and state.payment_id is None
    assert state.failed_payment_ids == frozenset({"pay-1"})
    assert state.items == given_order(*H_CART).state.items and state.total == TOTAL


@pytest.mark.parametrize(
    "history",
    [
        H_FAILED,
        (*H_FAILED, OrderPreparedToPay("pay-2", TOTAL, "EUR")),
        (*H_FAILED, OrderCancelled("gave up")),
    ],
    ids=["created", "next-checkout-pending", "cancelled"],
)
def test_payment_failure_redelivered_is_a_no_op(history: tuple[OrderEvent, ...]) -> None:
    given_order(*history).when(RecordPaymentFailure("pay-1", "declined")).then_nothing()


def test_payment_failure_for_another_payment_is_a_mismatch() -> None:
    given_order(*H_PREPARED).when(RecordPaymentFailure("pay-2", "declined")).raises(
        PaymentMismatch, "RecordPaymentFailure", "waits for payment pay-1, not pay-2"
    )


@pytest.mark.parametrize(
    ("status", "history"),
    [("Created", H_CART), ("Paid", H_PAID), ("Cancelled", H_CANCELLED)],
)
def test_payment_failure_needs_a_pending_payment(
    status: str, history: tuple[OrderEvent, ...]
) -> None:
    given_order(*history).when(RecordPaymentFailure("pay-1", "declined")).raises(
        InvalidTransition, f"is {status}", "does not wait for payment pay-1"
    )


def test_payment_failure_reason_is_bounded() -> None:
    given_order(*H_PREPARED).when(RecordPaymentFailure("pay-1", "r" * 500)).then(
        OrderPaymentFailed("pay-1", "r" * 500)
    )
    error = (
        given_order(*H_PREPARED)
        .when(RecordPaymentFailure("pay-1", "r" * 501))
        .raises(InvalidCommand, "reason", "at most 500 characters, got 501")
    )
    assert isinstance(error, InvalidCommand) and error.field == "reason"
    given_order(*H_PREPARED).when(RecordPaymentFailure("pay-1", 7)).raises(  # type: ignore[arg-type]
        InvalidCommand, "reason must be a string"
    )


# CancelOrder ------------------------------------------------------------------------------------


def test_cancel_a_created_order() -> None:
    state = given_order(CREATED, ADD_1).when(CancelOrder("changed my mind")).then(CANCELLED)
    assert state.status is OrderStatus.CANCELLED and state.cancel_reason == "changed my mind"
    given_order(CREATED).when(CancelOrder()).then(OrderCancelled(reason=""))


def test_cancel_after_a_failed_payment() -> None:
    given_order(*H_FAILED).when(CancelOrder("no money")).then(OrderCancelled("no money"))


def test_cancel_again_is_a_no_op() -> None:
    given_order(*H_CANCELLED).when(CancelOrder("again")).then_nothing()


@pytest.mark.parametrize(
    ("status", "history", "why"),
    [
        ("PreparedToPay", H_PREPARED, "a payment is in progress"),
        ("Paid", H_PAID, "it is paid"),
    ],
)
def test_cancel_only_a_created_order(
    status: str, history: tuple[OrderEvent, ...], why: str
) -> None:
    given_order(*history).when(CancelOrder()).raises(InvalidTransition, f"is {status}", why)


def test_cancel_reason_is_bounded() -> None:
    given_order(CREATED).when(CancelOrder("r" * 501)).raises(InvalidCommand, "reason")


# Evolve, checkout ids, the decider --------------------------------------------------------------


def test_evolve_is_total_over_events() -> None:
    # Deleting an id that is not in the cart changes nothing rather than raising.
    state = evolve(given_order(*H_CART).state, ItemDeletedFromCart("item-99"))
    assert state == given_order(*H_CART).state


def test_paid_order_keeps_its_payment_id() -> None:
    state = given_order(*H_PAID).state
    assert state.payment_id == state.paid_payment_id == "pay-1"


def test_checkout_payment_id_is_a_stable_uuid5() -> None:
    first = checkout_payment_id("o-1", 3)
    assert first == checkout_payment_id("o-1", 3)
    assert uuid.UUID(first).version == 5
    # Pinned: a changed namespace would re-create payments for retried checkouts after a deploy.
    assert first == "5bafe3f4-8167-5d39-bf13-7712f8026bd3"
    assert checkout_payment_id("o-1", 4) != first
    assert checkout_payment_id("o-2", 3) != first


def test_checkout_command_derives_the_id_from_the_version_while_created() -> None:
    state = given_order(*H_CART).state
    assert checkout_command(state, 3) == PrepareToPay(checkout_payment_id("o-1", 3), TOTAL)


def test_checkout_command_reuses_the_pending_payment() -> None:
    assert checkout_command(given_order(*H_PREPARED).state, 4) == PrepareToPay("pay-1", TOTAL)


def test_checkout_command_after_a_failure_gets_a_new_id() -> None:
    command = checkout_command(given_order(*H_FAILED).state, 5)
    assert command.payment_id == checkout_payment_id("o-1", 5) != "pay-1"
    given_order(*H_FAILED).when(command).then(OrderPreparedToPay(command.payment_id, TOTAL, "EUR"))


def test_order_decider_wiring() -> None:
    assert ORDER_STREAM.stream_id("o-1") == "order-o-1"
    assert order_decider.initial_state == INITIAL_ORDER and not INITIAL_ORDER.exists
    assert order_decider.fold(list(H_PAID)).status is OrderStatus.PAID


def test_status_values_are_the_api_names() -> None:
    assert [s.value for s in OrderStatus] == ["Created", "PreparedToPay", "Paid", "Cancelled"]


def test_unknown_commands_and_events_are_type_errors() -> None:
    with pytest.raises(TypeError, match="not an order command"):
        decide(bogus(), INITIAL_ORDER)
    with pytest.raises(TypeError, match="not an order event"):
        evolve(INITIAL_ORDER, bogus())
