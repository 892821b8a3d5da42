"""The Orders service's use cases: one method per command or handler.

Triggers (``functions/orders.py``) parse their input, call one of these, and shape the answer;
every decision is made here or in the domain.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.ports import PaymentsGateway
from contracts.messages import (
    IntegrationMessage,
    PaymentCompletedV1,
    PaymentFailedV1,
    PaymentFailedV2,
)
from domain import orders as domain
from domain import personal_data
from domain.errors import is_document_key, require_document_key
from eventstore.clock import new_id
from eventstore.commands import CommandContext, CommandProcessor, fingerprint
from eventstore.commit import JsonDict
from eventstore.poison import parse_commits
from eventstore.ports import DeadLetterStore, EventStore, PersonalDataStore
from eventstore.projection import Projector
from eventstore.publishing import Publisher
from eventstore.reads import PointInTime, ViewRead, ViewReader, stream_events

log = logging.getLogger(__name__)

# Lease prefixes of the change-feed functions, and the consumer names their dead letters carry.
# Bumping a prefix replays the feed from the beginning (a projection rebuild).
ORDERS_PROJECTOR = "orders-projector-v1"
ORDERS_PUBLISHER = "orders-publisher-v1"

# Fixed forever: an order created with an Idempotency-Key gets the id derived from the key, so a
# retried create names the same order and cannot create a second one.
ORDER_ID_NAMESPACE = uuid.UUID("5f0c3b2e-6a8d-5c1e-9a47-0b7f2d9e4c31")

OrderProcessor = CommandProcessor[domain.OrderCommand, domain.OrderEvent, domain.OrderState]


@dataclass(frozen=True)
class Created:
    order_id: str
    version: int


@dataclass(frozen=True)
class ItemAdded:
    cart_item_id: str
    version: int


@dataclass(frozen=True)
class CheckedOut:
    payment_id: str
    amount: int
    currency: str
    version: int


class OrdersService:
    def __init__(self, processor: OrderProcessor, events: EventStore, dead_letters: DeadLetterStore,
                 reader: ViewReader[domain.OrderEvent], projector: Projector[domain.OrderEvent],
                 publisher: Publisher, payments: PaymentsGateway,
                 customers: PersonalDataStore) -> None:
        self._orders = processor
        self._events = events
        self._dead_letters = dead_letters
        self._reader = reader
        self._projector = projector
        self._publisher = publisher
        self._payments = payments
        self._customers = customers

    # -- commands -------------------------------------------------------------------------------

    def create_order(self, customer_id: str, currency: str, context: CommandContext,
                     idempotency_key: str | None = None,
                     customer: personal_data.CustomerDetails | None = None) -> Created:
        """The order's events name the customer by ``customer_id`` only; the details, when
        given, go to the personal-data store (first, so no order ever lacks the details it was
        created with; storing them again on a retry changes nothing)."""
        order_id = (str(uuid.uuid5(ORDER_ID_NAMESPACE, idempotency_key)) if idempotency_key
                    else new_id())
        command = domain.CreateOrder(order_id, customer_id, currency)
        if customer is not None:
            # Every refusal comes before anything is stored.
            domain.order_decider.decide(command, domain.INITIAL_ORDER)
            self._store_details(customer_id, customer, field_prefix="customer.")
        result = self._orders.execute(order_id, command, context)
        return Created(order_id, result.version)

    def update_customer_details(self, customer_id: str,
                                details: personal_data.CustomerDetails) -> None:
        """Replace the customer's details (also after an erasure: given anew); every order of
        the customer shows them from now on."""
        self._store_details(customer_id, details)

    def erase_customer_data(self, customer_id: str) -> None:
        """Erase the customer's personal data for good (idempotent). The events and orders stay
        as they were: they only ever held the opaque customer id."""
        self._customers.erase(require_document_key(customer_id, "customerId"))
        log.info("erased the personal data of customer %s", customer_id)

    def _store_details(self, customer_id: str, details: personal_data.CustomerDetails,
                       field_prefix: str = "") -> None:
        key = require_document_key(customer_id, "customerId")
        checked = personal_data.customer_details(details.name, details.email,
                                                 details.shipping_address, field_prefix)
        self._customers.put(key, personal_data.details_document(checked))

    def add_item(self, order_id: str, product_id: str, quantity: int, unit_price: int,
                 context: CommandContext) -> ItemAdded:
        result = self._orders.execute(
            order_id, domain.AddItemToCart(product_id, quantity, unit_price), context)
        added = next(e for e in result.events if isinstance(e, domain.ItemAddedToCart))
        return ItemAdded(added.cart_item_id, result.version)

    def delete_item(self, order_id: str, cart_item_id: str, context: CommandContext) -> int:
        return self._orders.execute(order_id, domain.DeleteItemFromCart(cart_item_id),
                                    context).version

    def checkout(self, order_id: str, context: CommandContext) -> CheckedOut:
        """Create the payment in Payments (an idempotent PUT), then record OrderPreparedToPay.

        The payment id is derived from the order id and the stream version the checkout is
        decided at, so a retried checkout reuses the payment and a new attempt (after a failed
        payment or a cart change) gets a new one.
        """
        # A retried checkout (same key, committed already, maybe elsewhere) gets its first
        # answer, whatever happened to the order since.
        context = replace(context, fingerprint=fingerprint("Checkout", order_id))
        replayed = self._orders.recall(order_id, context)
        if replayed is not None:
            prepared = next(e for e in replayed.events
                            if isinstance(e, domain.OrderPreparedToPay))
            return CheckedOut(prepared.payment_id, prepared.amount, prepared.currency,
                              replayed.version)
        # recall read the latest state: another instance may have changed or checked out the
        # order, and a payment id derived from a stale version would create a second payment.
        state, version = self._orders.load(order_id)
        command = domain.checkout_command(state, version)
        # Refusals happen before Payments is called; a retried checkout calls it no more.
        if domain.order_decider.decide(command, state):
            self._payments.create_payment(command.payment_id, order_id, command.amount,
                                          state.currency, context)
        result = self._orders.execute(order_id, command, context)
        return CheckedOut(command.payment_id, command.amount, result.state.currency,
                          result.version)

    def cancel(self, order_id: str, reason: str, context: CommandContext) -> int:
        return self._orders.execute(order_id, domain.CancelOrder(reason), context).version

    def record_payment_outcome(self, message: IntegrationMessage, context: CommandContext
                               ) -> None:
        """PaymentCompleted -> OrderPaid, PaymentFailed -> OrderPaymentFailed; a redelivery is a
        no-op. Other contracts on the topic are not Orders' business."""
        command: domain.OrderCommand
        match message:
            case PaymentCompletedV1():
                command = domain.MarkOrderPaid(message.paymentId)
            case PaymentFailedV1() | PaymentFailedV2():  # both during the transition to v2
                command = domain.RecordPaymentFailure(message.paymentId, message.reason)
            case _:
                log.info("ignoring %s: Orders does not consume it", message.name)
                return
        result = self._orders.execute(message.orderId, command, context)
        log.info("%s for order %s -> version %d%s", message.name, message.orderId,
                 result.version, "" if result.events else " (already applied)")

    # -- reads ----------------------------------------------------------------------------------

    def get_order(self, order_id: str, min_version: int = 0,
                  as_of: PointInTime | None = None) -> ViewRead:
        """The order's view: fresh (at least ``min_version``) or as it was at ``as_of``, with
        the customer's details looked up now (or shown as erased)."""
        read = (self._reader.read_at(order_id, as_of) if as_of is not None
                else self._reader.read(order_id, min_version))
        return ViewRead({**read.document, "customer": self._customer_of(read.document)},
                        read.source)

    def _customer_of(self, view: JsonDict) -> JsonDict | None:
        customer_id = view.get("customerId")
        if not isinstance(customer_id, str) or not is_document_key(customer_id):
            return None  # an id that can key no details (allowed before details existed)
        stored = self._customers.get(customer_id)
        if stored is None:
            return None
        details = None if stored.data is None else \
            personal_data.details_from_document(stored.data)
        return personal_data.customer_view(details, stored.erased_at)

    def order_events(self, order_id: str) -> list[JsonDict]:
        return stream_events(self._events, domain.ORDER_STREAM.stream_id(order_id), "order",
                             order_id)

    # -- change feed ----------------------------------------------------------------------------

    def project(self, documents: Iterable[Mapping[str, Any]]) -> None:
        self._projector.handle(parse_commits(documents, self._dead_letters, ORDERS_PROJECTOR))

    def publish(self, documents: Iterable[Mapping[str, Any]]) -> None:
        self._publisher.handle(parse_commits(documents, self._dead_letters, ORDERS_PUBLISHER))
