"""What the use cases need from outside their own service: the Payments API (for checkout) and
the acquirer (for authorizations). Adapters are in ``app.adapters``; tests pass fakes."""

from __future__ import annotations

from typing import Protocol

from domain.payments import CompletePayment, FailPayment
from eventstore.commands import CommandContext


class PaymentRefused(Exception):
    """Payments refused the payment (it exists with different data): a conflict (409)."""


class PaymentsMisconfigured(Exception):
    """Payments answered in a way that means this deployment is misconfigured or out of step
    with it (wrong URL, credentials or contract): not the client's fault (502)."""


class PaymentsGateway(Protocol):
    def create_payment(self, payment_id: str, reference_id: str, amount: int, currency: str,
                       context: CommandContext) -> None:
        """Idempotent: creating the same payment again succeeds. Raises PaymentRefused,
        PaymentsMisconfigured, or TransientError (unreachable, 5xx, 429)."""
        ...

    def close(self) -> None: ...


class Acquirer(Protocol):
    def authorize(self, payment_id: str, amount: int, currency: str
                  ) -> CompletePayment | FailPayment:
        """The acquirer's answer; the same payment always gets the same answer."""
        ...
