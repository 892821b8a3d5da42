"""Orders' client for the Payments HTTP API (the checkout call of DESIGN §6)."""

from __future__ import annotations

import httpx

from eventstore.commands import CommandContext
from eventstore.errors import TransientError
from functions.http import CAUSATION_HEADER, CORRELATION_HEADER


class PaymentRejectedError(Exception):
    """Payments refused the payment (409: the id exists with different data)."""


class PaymentsApiError(Exception):
    """Payments answered in a way that means this service is misconfigured or out of step with
    it (wrong key, base URL or contract): not the client's fault, and not a state conflict."""


class PaymentsApi:
    def __init__(self, base_url: str, api_key: str = "", timeout: float = 10.0) -> None:
        headers = {"x-functions-key": api_key} if api_key else {}
        # One pooled client per process: connection reuse matters on the checkout path.
        self._client = httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers,
                                    timeout=timeout)

    def create_payment(self, payment_id: str, reference_id: str, amount: int, currency: str,
                       context: CommandContext) -> None:
        """Idempotent: PUT answers 201 (created) or 200 (already there with the same data)."""
        try:
            response = self._client.put(
                f"payments/{payment_id}",
                json={"referenceId": reference_id, "amount": amount, "currency": currency},
                headers={CORRELATION_HEADER: context.correlation_id,
                         CAUSATION_HEADER: context.causation_id},
            )
        except httpx.TransportError as error:
            raise TransientError(f"Payments API unreachable: {error}") from error
        if response.status_code in (200, 201):
            return
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"Payments API answered {response.status_code}")
        detail = f"Payments API answered {response.status_code} for payment {payment_id}: " \
            f"{response.text[:500]}"
        if response.status_code == 409:
            raise PaymentRejectedError(detail)
        raise PaymentsApiError(detail)

    def close(self) -> None:
        self._client.close()
