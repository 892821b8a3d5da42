"""Pure mapping from domain events to integration messages.

Domain events stay inside their service; only these contracts cross the boundary. The mapping gets
the aggregate state for the facts the event itself does not repeat (ids, amounts fixed at creation).
"""

from __future__ import annotations

from contracts.messages import (
    CAUSATION_ID_PROPERTY,
    CONTRACT_VERSION_PROPERTY,
    AuthorizePaymentV1,
    IntegrationMessage,
    OrderCancelledV1,
    OrderPaidV1,
    OrderPlacedV1,
    PaymentCompletedV1,
    PaymentFailedV1,
)
from domain import orders, payments
from eventstore.ports import Commit, EventRecord, OutboundMessage


def order_messages(state: orders.OrderState, event: orders.OrderEvent) -> list[IntegrationMessage]:
    order_id, customer_id = state.order_id, state.customer_id
    match event:
        case orders.OrderPreparedToPay():
            return [OrderPlacedV1(orderId=order_id, customerId=customer_id,
                                  paymentId=event.payment_id, amount=event.amount,
                                  currency=event.currency)]
        case orders.OrderPaid():
            return [OrderPaidV1(orderId=order_id, customerId=customer_id,
                                paymentId=event.payment_id)]
        case orders.OrderCancelled():
            return [OrderCancelledV1(orderId=order_id, customerId=customer_id,
                                     reason=event.reason)]
    return []


def payment_messages(
    state: payments.PaymentState, event: payments.PaymentEvent
) -> list[IntegrationMessage]:
    match event:
        case payments.PaymentStarted():
            return [AuthorizePaymentV1(paymentId=state.payment_id, referenceId=state.reference_id,
                                       amount=state.amount, currency=state.currency)]
        case payments.PaymentCompleted():
            return [PaymentCompletedV1(paymentId=state.payment_id, orderId=state.reference_id,
                                       amount=state.amount, currency=state.currency,
                                       authorizationCode=event.authorization_code)]
        case payments.PaymentFailed():
            return [PaymentFailedV1(paymentId=state.payment_id, orderId=state.reference_id,
                                    amount=state.amount, currency=state.currency,
                                    reason=event.reason)]
    return []


def outbound(
    message: IntegrationMessage, destination: str, commit: Commit, record: EventRecord
) -> OutboundMessage:
    return OutboundMessage(
        destination=destination,
        message_id=f"{commit.stream_id}:{record.version}",
        subject=message.name,
        body=message.model_dump(mode="json"),
        correlation_id=commit.correlation_id,
        application_properties={
            CONTRACT_VERSION_PROPERTY: message.version,
            CAUSATION_ID_PROPERTY: record.event_id,
        },
    )
