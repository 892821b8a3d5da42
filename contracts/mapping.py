"""Pure mapping from domain events to integration messages: the one place that decides what
each service publishes (and, through each contract's channel, where).

Domain events stay inside their service; only these contracts cross the boundary. A mapping
gets the event and the stream's creation event (the ids and amounts fixed when the aggregate
was created), nothing else, so an undecodable event elsewhere in a stream never stops the
others. Events without a mapping here are not published, and the publisher does not even decode
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from contracts.messages import (
    AuthorizePaymentV1,
    IntegrationMessage,
    OrderCancelledV1,
    OrderPaidV1,
    OrderPlacedV1,
    PaymentCompletedV1,
    PaymentFailedV2,
)
from domain import orders, payments

Origin = TypeVar("Origin")  # the creation event of the stream
T = TypeVar("T")

Mapping = Callable[[Origin, T], IntegrationMessage]


class Publications(Generic[Origin]):
    """The events of one aggregate that are published, each with the message it becomes."""

    def __init__(self, origin: type[Origin]) -> None:
        self.origin = origin
        self._mappings: dict[type[Any], Callable[[Origin, Any], IntegrationMessage]] = {}

    def on(self, event_class: type[T]) -> Callable[[Mapping[Origin, T]], Mapping[Origin, T]]:
        def register(mapping: Mapping[Origin, T]) -> Mapping[Origin, T]:
            if event_class in self._mappings:
                raise TypeError(f"{event_class.__name__} is already published")
            self._mappings[event_class] = mapping
            return mapping

        return register

    @property
    def event_classes(self) -> frozenset[type[Any]]:
        return frozenset(self._mappings)

    def messages(self, origin: Origin, event: object) -> list[IntegrationMessage]:
        mapping = self._mappings.get(type(event))
        return [] if mapping is None else [mapping(origin, event)]


order_publications = Publications(orders.OrderCreated)
payment_publications = Publications(payments.PaymentCreated)


@order_publications.on(orders.OrderPreparedToPay)
def _order_placed(created: orders.OrderCreated, event: orders.OrderPreparedToPay
                  ) -> IntegrationMessage:
    return OrderPlacedV1(orderId=created.order_id, customerId=created.customer_id,
                         paymentId=event.payment_id, amount=event.amount,
                         currency=event.currency)


@order_publications.on(orders.OrderPaid)
def _order_paid(created: orders.OrderCreated, event: orders.OrderPaid) -> IntegrationMessage:
    return OrderPaidV1(orderId=created.order_id, customerId=created.customer_id,
                       paymentId=event.payment_id)


@order_publications.on(orders.OrderCancelled)
def _order_cancelled(created: orders.OrderCreated, event: orders.OrderCancelled
                     ) -> IntegrationMessage:
    return OrderCancelledV1(orderId=created.order_id, customerId=created.customer_id,
                            reason=event.reason)


@payment_publications.on(payments.PaymentStarted)
def _authorize_payment(created: payments.PaymentCreated, event: payments.PaymentStarted
                       ) -> IntegrationMessage:
    # A command, not an event: the slow acquirer call must not run inside the change feed,
    # where it would block every later event of the partition.
    return AuthorizePaymentV1(paymentId=created.payment_id, referenceId=created.reference_id,
                              amount=created.amount, currency=created.currency)


@payment_publications.on(payments.PaymentCompleted)
def _payment_completed(created: payments.PaymentCreated, event: payments.PaymentCompleted
                       ) -> IntegrationMessage:
    return PaymentCompletedV1(paymentId=created.payment_id, orderId=created.reference_id,
                              amount=created.amount, currency=created.currency,
                              authorizationCode=event.authorization_code)


@payment_publications.on(payments.PaymentFailed)
def _payment_failed(created: payments.PaymentCreated, event: payments.PaymentFailed
                    ) -> IntegrationMessage:
    return PaymentFailedV2(paymentId=created.payment_id, orderId=created.reference_id,
                           amount=created.amount, currency=created.currency,
                           reason=event.reason, reasonCode=event.reason_code)
