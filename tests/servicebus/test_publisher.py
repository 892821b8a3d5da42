"""ServiceBusPublisher over the real azure-servicebus SDK and a real AMQP connection to the
in-process test broker (tests/support/amqp_broker/)."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from eventstore.adapters.servicebus import MessageTooLargeError, ServiceBusPublisher
from eventstore.errors import TransientError
from eventstore.ports import OutboundMessage
from tests.support.amqp_broker import AmqpTestBroker

pytestmark = pytest.mark.servicebus


@pytest.fixture(scope="session")
def broker() -> Iterator[AmqpTestBroker]:
    with AmqpTestBroker() as running:
        yield running


@pytest.fixture(autouse=True)
def _broker_stays_healthy(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "broker" in request.fixturenames:
        running: AmqpTestBroker = request.getfixturevalue("broker")
        assert running.errors == []
        running.clear()  # drops failures a test injected but did not consume


@pytest.fixture
def publisher(broker: AmqpTestBroker) -> Iterator[ServiceBusPublisher]:
    # retry_total=0: report failures at once instead of after the SDK's own backoff.
    created = ServiceBusPublisher.from_settings(
        {"SERVICEBUS": broker.connection_string}, retry_total=0
    )
    yield created
    created.close()


def entity(name: str) -> str:
    """A fresh entity name per test: the broker is shared by the whole session."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def message(destination: str, stream: str, version: int, **body: Any) -> OutboundMessage:
    return OutboundMessage(
        destination=destination,
        message_id=f"{stream}:{version}",
        subject=body.pop("subject", "OrderPlaced"),
        body={"streamId": stream, "version": version, **body},
        correlation_id=f"corr-{stream}",
        application_properties={"contractVersion": 1, "source": "orders"},
    )


def test_publish_to_a_topic_and_a_queue_round_trips_every_field_in_order(
    broker: AmqpTestBroker, publisher: ServiceBusPublisher
) -> None:
    topic, queue = entity("orders"), entity("payment-authorizations")
    sent = [
        message(topic, "order-1", 1, total=12.5),
        message(queue, "pay-1", 3, subject="AuthorizePayment", amount={"value": 12.5}),
        message(topic, "order-1", 2, note="crème brûlée"),
        message(queue, "pay-2", 1, subject="AuthorizePayment"),
        message(topic, "order-2", 1),
    ]

    publisher.publish(sent)

    for destination in (topic, queue):
        expected = [m for m in sent if m.destination == destination]
        received = broker.wait_for(destination, len(expected))
        assert len(received) == len(expected)
        for got, want in zip(received, expected, strict=True):
            assert got.entity == destination
            assert got.message_id == want.message_id
            assert got.subject == want.subject
            assert got.content_type == "application/json"
            assert got.correlation_id == want.correlation_id
            assert got.application_properties == {"contractVersion": 1, "source": "orders"}
            assert got.json() == want.body
    # Compact UTF-8 JSON, not ASCII-escaped.
    note = broker.received(topic)[1].body
    assert note == json.dumps(sent[2].body, separators=(",", ":"), ensure_ascii=False).encode()
    # The emulator-style connection string was honoured: plain AMQP to the custom port, and a
    # SAS token signed with its key accepted by CBS for each entity.
    audiences = broker.token_audiences()
    for destination in (topic, queue):
        assert f"sb://127.0.0.1:{broker.port}/{destination}" in audiences


def test_a_publish_larger_than_one_batch_is_split_and_arrives_once_in_order(
    broker: AmqpTestBroker, publisher: ServiceBusPublisher
) -> None:
    topic = entity("orders")
    sent = [message(topic, f"order-{i:03}", 1, padding="x" * 2048) for i in range(300)]

    publisher.publish(sent)

    received = broker.wait_for(topic, 300)
    assert [m.message_id for m in received] == [m.message_id for m in sent]
    # ~660 KB against the 256 KB batch limit the broker advertises (Standard tier).
    assert broker.transfers(topic) == 3


def test_a_message_that_cannot_fit_an_empty_batch_is_a_clear_non_transient_error(
    broker: AmqpTestBroker, publisher: ServiceBusPublisher
) -> None:
    topic = entity("orders")
    huge = message(topic, "order-9", 4, padding="x" * 300_000)

    with pytest.raises(MessageTooLargeError, match="order-9:4") as raised:
        publisher.publish([huge])
    assert raised.value.outbound == huge

    publisher.publish([message(topic, "order-9", 5)])  # the link is still fine
    assert [m.message_id for m in broker.wait_for(topic, 1)] == ["order-9:5"]


@pytest.mark.parametrize(
    ("condition", "detach"),
    [
        ("com.microsoft:server-busy", False),
        ("amqp:resource-limit-exceeded", False),  # entity full: the SDK itself would not retry
        ("amqp:link:detach-forced", True),
    ],
)
def test_a_failed_send_raises_transient_error_and_the_next_publish_reconnects(
    broker: AmqpTestBroker, publisher: ServiceBusPublisher, condition: str, detach: bool
) -> None:
    topic = entity("orders")
    publisher.publish([message(topic, "order-1", 1)])
    broker.fail_next_sends(1, condition, detach=detach)

    with pytest.raises(TransientError) as raised:
        publisher.publish([message(topic, "order-1", 2)])
    assert raised.value.__cause__ is not None

    connections_before = broker.token_audiences().count(f"sb://127.0.0.1:{broker.port}/{topic}")
    publisher.publish([message(topic, "order-1", 2)])  # the caller's retry
    assert [m.message_id for m in broker.wait_for(topic, 2)] == ["order-1:1", "order-1:2"]
    connections_after = broker.token_audiences().count(f"sb://127.0.0.1:{broker.port}/{topic}")
    assert connections_after == connections_before + 1  # the broken sender was replaced


def test_with_the_sdk_retries_on_a_detached_link_is_absorbed(broker: AmqpTestBroker) -> None:
    topic = entity("orders")
    publisher = ServiceBusPublisher.from_settings(
        {"SERVICEBUS": broker.connection_string}, retry_backoff_factor=0.01
    )
    try:
        broker.fail_next_sends(1, "amqp:link:detach-forced", detach=True)
        publisher.publish([message(topic, "order-1", 1)])
    finally:
        publisher.close()
    assert [m.message_id for m in broker.wait_for(topic, 1)] == ["order-1:1"]


def test_an_unreachable_broker_is_a_transient_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    publisher = ServiceBusPublisher.from_settings(
        {
            "SERVICEBUS": f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=k;"
            "SharedAccessKey=v;UseDevelopmentEmulator=true"
        },
        retry_total=0,
    )
    try:
        with pytest.raises(TransientError):
            publisher.publish([message("orders", "order-1", 1)])
    finally:
        publisher.close()


def test_a_wrong_key_is_refused_by_cbs(broker: AmqpTestBroker) -> None:
    topic = entity("orders")
    wrong = broker.connection_string.replace("SharedAccessKey=", "SharedAccessKey=not-")
    publisher = ServiceBusPublisher.from_settings({"SERVICEBUS": wrong}, retry_total=0)
    try:
        # The SDK counts authentication failures as retryable; so do we (it is not the event's
        # fault, so it must not be parked as poison).
        with pytest.raises(TransientError):
            publisher.publish([message(topic, "order-1", 1)])
    finally:
        publisher.close()
    assert broker.received(topic) == []
    assert f"sb://127.0.0.1:{broker.port}/{topic}" not in broker.token_audiences()


def test_concurrent_publishes_share_one_sender_safely(
    broker: AmqpTestBroker, publisher: ServiceBusPublisher
) -> None:
    topic = entity("orders")
    errors: list[BaseException] = []

    def publish_stream(stream: str) -> None:
        try:
            for version in range(1, 11):
                publisher.publish([message(topic, stream, version)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish_stream, args=(f"s{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert errors == []
    received = broker.wait_for(topic, 40)
    assert len(received) == 40
    for stream in ("s0", "s1", "s2", "s3"):
        versions = [m.json()["version"] for m in received if m.json()["streamId"] == stream]
        assert versions == list(range(1, 11))
    # One sender per destination: a single authenticated connection for this topic.
    assert broker.token_audiences().count(f"sb://127.0.0.1:{broker.port}/{topic}") == 1


def test_close_is_idempotent_and_final(broker: AmqpTestBroker) -> None:
    unused = ServiceBusPublisher.from_settings({"SERVICEBUS": broker.connection_string})
    unused.close()
    unused.close()

    topic = entity("orders")
    used = ServiceBusPublisher.from_settings({"SERVICEBUS": broker.connection_string})
    used.publish([message(topic, "order-1", 1)])
    used.close()
    used.close()
    with pytest.raises(RuntimeError, match="closed"):
        used.publish([message(topic, "order-1", 2)])
    assert [m.message_id for m in broker.wait_for(topic, 1)] == ["order-1:1"]


@pytest.mark.parametrize(
    "settings",
    [{}, {"SERVICEBUS": "  ", "SERVICEBUS__fullyQualifiedNamespace": ""}, {"OTHER": "x"}],
)
def test_missing_settings_name_both_options(settings: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"SERVICEBUS \(.*SERVICEBUS__fullyQualifiedNamespace"):
        ServiceBusPublisher.from_settings(settings)


def test_a_malformed_connection_string_fails_at_construction() -> None:
    with pytest.raises(ValueError):
        ServiceBusPublisher.from_settings({"SERVICEBUS": "Endpoint=sb://x;nonsense"})


@pytest.mark.parametrize(
    ("settings", "expected_kwargs"),
    [
        ({}, {}),
        ({"AZURE_CLIENT_ID": "from-env"}, {"managed_identity_client_id": "from-env"}),
        (
            {"AZURE_CLIENT_ID": "from-env", "SERVICEBUS__clientId": "from-setting"},
            {"managed_identity_client_id": "from-setting"},
        ),
    ],
)
def test_a_namespace_uses_default_azure_credential(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], expected_kwargs: dict[str, str]
) -> None:
    created: list[dict[str, Any]] = []

    class FakeCredential:
        def __init__(self, **kwargs: Any) -> None:
            created.append(kwargs)
            self.closed = False

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr("azure.identity.DefaultAzureCredential", FakeCredential)
    namespace = {"SERVICEBUS__fullyQualifiedNamespace": "sb-demo.servicebus.windows.net"}

    publisher = ServiceBusPublisher.from_settings({**namespace, **settings})
    publisher.close()

    assert created == [expected_kwargs]
