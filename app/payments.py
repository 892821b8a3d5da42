"""The Payments service's use cases: one method per command or handler.

Triggers (``functions/payments.py``) parse their input, call one of these, and shape the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.ports import Acquirer
from contracts.messages import AuthorizePaymentV1, IntegrationMessage
from domain import payments as domain
from eventstore.commands import CommandContext, CommandProcessor
from eventstore.commit import JsonDict
from eventstore.poison import parse_commits
from eventstore.ports import DeadLetterStore, EventStore
from eventstore.projection import Projector
from eventstore.publishing import Publisher
from eventstore.reads import PointInTime, ViewRead, ViewReader, stream_events

log = logging.getLogger(__name__)

PAYMENTS_PROJECTOR = "payments-projector-v1"
PAYMENTS_PUBLISHER = "payments-publisher-v1"

PaymentProcessor = CommandProcessor[domain.PaymentCommand, domain.PaymentEvent,
                                    domain.PaymentState]


class NotAnAuthorization(ValueError):
    """A message on the authorizations queue that is not an authorization command (poison)."""


@dataclass(frozen=True)
class PaymentPut:
    state: domain.PaymentState
    version: int
    created: bool  # False: the same payment existed already (a retried PUT)


class PaymentsService:
    def __init__(self, processor: PaymentProcessor, events: EventStore,
                 dead_letters: DeadLetterStore, reader: ViewReader[domain.PaymentEvent],
                 projector: Projector[domain.PaymentEvent], publisher: Publisher,
                 acquirer: Acquirer) -> None:
        self._payments = processor
        self._events = events
        self._dead_letters = dead_letters
        self._reader = reader
        self._projector = projector
        self._publisher = publisher
        self._acquirer = acquirer

    # -- commands -------------------------------------------------------------------------------

    def create_payment(self, payment_id: str, reference_id: str, amount: int, currency: str,
                       context: CommandContext) -> PaymentPut:
        result = self._payments.execute(
            payment_id, domain.CreatePayment(payment_id, reference_id, amount, currency), context)
        return PaymentPut(result.state, result.version, created=bool(result.events))

    def authorize(self, payment_id: str, context: CommandContext) -> int:
        """The customer authorizes the payment; the acquirer decides asynchronously."""
        return self._payments.execute(payment_id, domain.AuthorizePayment(), context).version

    def process_authorization(self, message: IntegrationMessage, context: CommandContext
                              ) -> None:
        """Ask the acquirer and record its answer. A redelivered command for a payment already
        decided does nothing: no second acquirer call, no second event."""
        if not isinstance(message, AuthorizePaymentV1):
            raise NotAnAuthorization(f"{message.name} does not belong on the authorizations queue")
        # Fresh: the authorization may have run on another instance than the one that cached
        # this stream.
        state, _ = self._payments.load(message.paymentId, refresh=True)
        if state.status is not domain.PaymentStatus.STARTED:
            log.info("payment %s is %s; nothing to authorize", message.paymentId, state.status)
            return
        decision = self._acquirer.authorize(message.paymentId, message.amount, message.currency)
        result = self._payments.execute(message.paymentId, decision, context)
        log.info("payment %s -> %s (version %d)", message.paymentId, result.state.status,
                 result.version)

    # -- reads ----------------------------------------------------------------------------------

    def get_payment(self, payment_id: str, min_version: int = 0,
                    as_of: PointInTime | None = None) -> ViewRead:
        """The payment's view: fresh (at least ``min_version``), or as it was at ``as_of``."""
        if as_of is not None:
            return self._reader.read_at(payment_id, as_of)
        return self._reader.read(payment_id, min_version)

    def payment_events(self, payment_id: str) -> list[JsonDict]:
        return stream_events(self._events, domain.PAYMENT_STREAM.stream_id(payment_id),
                             "payment", payment_id)

    # -- change feed ----------------------------------------------------------------------------

    def project(self, documents: Iterable[Mapping[str, Any]]) -> None:
        self._projector.handle(parse_commits(documents, self._dead_letters, PAYMENTS_PROJECTOR))

    def publish(self, documents: Iterable[Mapping[str, Any]]) -> None:
        self._publisher.handle(parse_commits(documents, self._dead_letters, PAYMENTS_PUBLISHER))
