"""The simulated acquirer: takes its time, then answers as the domain's pure rule says."""

from __future__ import annotations

import time
from collections.abc import Callable

from domain.payments import CompletePayment, FailPayment, acquirer_decision


class SimulatedAcquirer:
    def __init__(self, delay_ms: int, decline_above: int,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._delay = delay_ms / 1000
        self._decline_above = decline_above
        self._sleep = sleep

    def authorize(self, payment_id: str, amount: int, currency: str
                  ) -> CompletePayment | FailPayment:
        self._sleep(self._delay)  # the acquirer's latency
        return acquirer_decision(payment_id, amount, self._decline_above)
