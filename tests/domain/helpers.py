"""Given events / when command / then events or error: the shape of every domain test."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from domain.codec import EventCodec
from domain.decider import Decider
from domain.errors import DomainError
from domain.orders import OrderCommand, OrderEvent, OrderState, order_codec, order_decider
from domain.payments import (
    PaymentCommand,
    PaymentEvent,
    PaymentState,
    payment_codec,
    payment_decider,
)

C = TypeVar("C")
E = TypeVar("E")
S = TypeVar("S")


@dataclass(frozen=True)
class Outcome(Generic[C, E, S]):
    decider: Decider[C, E, S]
    codec: EventCodec[E]
    state: S
    events: list[E] | None
    error: DomainError | None

    def then(self, *expected: E) -> S:
        """Assert exactly these events were decided; return the state after applying them."""
        assert self.error is None, f"expected events {list(expected)}, got refusal {self.error!r}"
        assert self.events == list(expected)
        state = self.state
        for event in self.events:
            # Whatever decide emits must survive storage as JSON and still apply.
            encoded = self.codec.encode(event)
            data = json.loads(json.dumps(encoded.data))
            assert self.codec.decode(encoded.type, encoded.schema_version, data) == event
            state = self.decider.evolve(state, event)
        return state

    def then_nothing(self) -> None:
        """Assert the command was accepted as a no-op (an idempotent retry)."""
        self.then()

    def raises(self, error_type: type[DomainError], *fragments: str) -> DomainError:
        """Assert the command was refused with exactly this error type, naming each fragment."""
        assert self.error is not None, f"expected {error_type.__name__}, got events {self.events}"
        assert type(self.error) is error_type, f"expected {error_type.__name__}: {self.error!r}"
        assert str(self.error) == self.error.message
        for fragment in fragments:
            assert fragment in self.error.message, f"{fragment!r} not in {self.error.message!r}"
        return self.error


@dataclass(frozen=True)
class Given(Generic[C, E, S]):
    decider: Decider[C, E, S]
    codec: EventCodec[E]
    history: Sequence[E]

    @property
    def state(self) -> S:
        return self.decider.fold(list(self.history))

    def when(self, command: C) -> Outcome[C, E, S]:
        state = self.state
        try:
            events = self.decider.decide(command, state)
        except DomainError as error:
            return Outcome(self.decider, self.codec, state, None, error)
        return Outcome(self.decider, self.codec, state, events, None)


def given_order(*events: OrderEvent) -> Given[OrderCommand, OrderEvent, OrderState]:
    return Given(order_decider, order_codec, events)


def given_payment(*events: PaymentEvent) -> Given[PaymentCommand, PaymentEvent, PaymentState]:
    return Given(payment_decider, payment_codec, events)


def bogus() -> Any:
    """Something that is neither a command nor an event, for the defensive branches."""
    return object()
