"""Orders' client for the Payments HTTP API: the ``PaymentsGateway`` of checkout."""

from __future__ import annotations

import httpx

from app.adapters.entra_auth import TokenProvider, TokenUnavailableError
from app.ports import PaymentRefused, PaymentsMisconfigured
from contracts.headers import CAUSATION_HEADER, CORRELATION_HEADER
from eventstore.commands import CommandContext
from eventstore.errors import TransientError
from eventstore.tracing import current_context


class HttpPaymentsGateway:
    """Calls Payments with a token of this service's identity when ``tokens`` is given (Azure),
    anonymously otherwise (the local host and func start, where Payments checks nothing)."""

    def __init__(self, base_url: str, tokens: TokenProvider | None = None, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._tokens = tokens
        # One pooled client per process: connection reuse matters on the checkout path.
        self._client = httpx.Client(base_url=base_url.rstrip("/") + "/", timeout=timeout,
                                    transport=transport)

    def create_payment(self, payment_id: str, reference_id: str, amount: int, currency: str,
                       context: CommandContext) -> None:
        """Idempotent: PUT answers 201 (created) or 200 (already there with the same data)."""
        headers = {CORRELATION_HEADER: context.correlation_id,
                   CAUSATION_HEADER: context.causation_id,
                   **current_context()}  # Payments continues the checkout's trace
        if self._tokens is not None:
            try:
                headers["Authorization"] = self._tokens.authorization_header()
            except TokenUnavailableError as error:
                raise TransientError(f"no token for the Payments API: {error}") from error
        try:
            response = self._client.put(
                f"payments/{payment_id}",
                json={"referenceId": reference_id, "amount": amount, "currency": currency},
                headers=headers,
            )
        except httpx.TransportError as error:
            raise TransientError(f"Payments API unreachable: {error}") from error
        if response.status_code in (200, 201):
            return
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"Payments API answered {response.status_code}")
        detail = (f"Payments API answered {response.status_code} for payment {payment_id}: "
                  f"{response.text[:500]}")
        if response.status_code == 409:
            raise PaymentRefused(detail)
        raise PaymentsMisconfigured(detail)

    def close(self) -> None:
        self._client.close()
