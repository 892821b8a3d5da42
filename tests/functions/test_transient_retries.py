"""Service Bus handlers ride out short outages in place instead of burning delivery counts."""

from __future__ import annotations

import azure.functions as func
import pytest
from azure.functions.servicebus import ServiceBusMessage

from eventstore.errors import TransientError
from functions import triggers
from functions.triggers import retry_transient


def message() -> ServiceBusMessage:
    return ServiceBusMessage(body=b"{}", message_id="m-1", application_properties={},
                             user_properties={})


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(triggers, "TRANSIENT_RETRY_DELAYS", (0.0, 0.0, 0.0))


def test_a_transient_failure_is_retried_in_place_until_it_succeeds() -> None:
    calls: list[str] = []

    @retry_transient
    def handler(msg: func.ServiceBusMessage) -> None:
        calls.append(str(msg.message_id))
        if len(calls) < 3:
            raise TransientError("cosmos 503")

    handler(message())
    assert calls == ["m-1"] * 3


def test_after_the_last_retry_the_failure_goes_back_to_the_broker() -> None:
    calls = 0

    @retry_transient
    def handler(msg: func.ServiceBusMessage) -> None:
        nonlocal calls
        calls += 1
        raise TransientError("still down")

    with pytest.raises(TransientError):
        handler(message())
    assert calls == 4  # the first try and three retries


def test_a_permanent_failure_is_not_retried() -> None:
    calls = 0

    @retry_transient
    def handler(msg: func.ServiceBusMessage) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("poison")

    with pytest.raises(ValueError, match="poison"):
        handler(message())
    assert calls == 1
