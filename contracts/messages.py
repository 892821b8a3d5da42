"""The integration events and the queue command, as pydantic models, one class per version.

Wire format: the JSON body is the model (camelCase field names); the Service Bus `subject` is the
contract name and the application property `contractVersion` its version. A consumer rejects an
unknown name or version instead of guessing.

A contract's version is its own, not the version of the domain event behind it: an event's
stored shape may change without the contract changing, and the other way round. A new contract
version is a new class beside the old one; consumers accept both for a transition period (until
no message of the old version can still be in flight), producers publish the new one once every
consumer is deployed with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONTRACT_VERSION_PROPERTY = "contractVersion"
CAUSATION_ID_PROPERTY = "causationId"


class Channel(StrEnum):
    """Where a contract travels. Each deployment names the entity behind a channel in its
    settings (ORDERS_TOPIC, PAYMENTS_TOPIC, AUTHORIZATIONS_QUEUE)."""

    ORDERS_TOPIC = "orders-topic"
    PAYMENTS_TOPIC = "payments-topic"
    AUTHORIZATIONS_QUEUE = "authorizations-queue"


class IntegrationMessage(BaseModel):
    """Base of every contract: immutable, strict, and tolerant of fields added by newer
    producers of the same major version (consumers ignore what they do not know)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)
    name: ClassVar[str]
    version: ClassVar[int] = 1
    channel: ClassVar[Channel]


class PaymentCompletedV1(IntegrationMessage):
    name = "PaymentCompleted"
    channel = Channel.PAYMENTS_TOPIC
    paymentId: str = Field(min_length=1)
    orderId: str = Field(min_length=1)
    amount: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    authorizationCode: str = Field(min_length=1)


class PaymentFailedV1(IntegrationMessage):
    name = "PaymentFailed"
    channel = Channel.PAYMENTS_TOPIC
    paymentId: str = Field(min_length=1)
    orderId: str = Field(min_length=1)
    amount: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    reason: str


class PaymentFailedV2(IntegrationMessage):
    """Version 2 adds a machine-readable ``reasonCode`` beside the text."""

    name = "PaymentFailed"
    version = 2
    channel = Channel.PAYMENTS_TOPIC
    paymentId: str = Field(min_length=1)
    orderId: str = Field(min_length=1)
    amount: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    reason: str
    reasonCode: str = Field(min_length=1)


class OrderPlacedV1(IntegrationMessage):
    name = "OrderPlaced"
    channel = Channel.ORDERS_TOPIC
    orderId: str = Field(min_length=1)
    customerId: str = Field(min_length=1)
    paymentId: str = Field(min_length=1)
    amount: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)


class OrderPaidV1(IntegrationMessage):
    name = "OrderPaid"
    channel = Channel.ORDERS_TOPIC
    orderId: str = Field(min_length=1)
    customerId: str = Field(min_length=1)
    paymentId: str = Field(min_length=1)


class OrderCancelledV1(IntegrationMessage):
    name = "OrderCancelled"
    channel = Channel.ORDERS_TOPIC
    orderId: str = Field(min_length=1)
    customerId: str = Field(min_length=1)
    reason: str


class AuthorizePaymentV1(IntegrationMessage):
    """Queue command: ask the acquirer worker to authorize a started payment."""

    name = "AuthorizePayment"
    channel = Channel.AUTHORIZATIONS_QUEUE
    paymentId: str = Field(min_length=1)
    referenceId: str = Field(min_length=1)
    amount: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)


CONTRACTS: dict[tuple[str, int], type[IntegrationMessage]] = {
    (c.name, c.version): c
    for c in (
        PaymentCompletedV1,
        PaymentFailedV1,  # still accepted: messages published before version 2 may be in flight
        PaymentFailedV2,
        OrderPlacedV1,
        OrderPaidV1,
        OrderCancelledV1,
        AuthorizePaymentV1,
    )
}


class ContractError(ValueError):
    """A message that no version of this consumer can understand (a poison message)."""


def parse_message(
    subject: str | None, application_properties: Mapping[str, Any], body: bytes
) -> IntegrationMessage:
    raw_version = application_properties.get(CONTRACT_VERSION_PROPERTY)
    if isinstance(raw_version, bytes):
        raw_version = raw_version.decode(errors="replace")
    try:
        version = int(str(raw_version))
    except ValueError:
        raise ContractError(
            f"message {subject!r} has no valid {CONTRACT_VERSION_PROPERTY!r} property"
        ) from None
    contract = CONTRACTS.get((subject or "", version))
    if contract is None:
        raise ContractError(f"unknown contract {subject!r} version {version}")
    try:
        return contract.model_validate_json(body)
    except ValidationError as error:
        raise ContractError(f"invalid {subject} v{version} body: {error}") from error
