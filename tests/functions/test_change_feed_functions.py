"""The change-feed functions (projectors and publishers) invoked with real func.DocumentLists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

import azure.functions as func
import pytest

from app.settings import ServiceName
from contracts.messages import CAUSATION_ID_PROPERTY, CONTRACT_VERSION_PROPERTY
from eventstore.commit import Commit, EventRecord, JsonDict
from eventstore.embedded.bus import ReceivedMessage, subscription_path
from eventstore.errors import TransientError
from eventstore.ports import DeadLetter, FeedStore, OutboundMessage, StoredView
from functions import orders, payments, runtime
from tests.functions.conftest import Harness, documents_of
from tests.functions.test_http_functions import (
    add_ok,
    checkout,
    create_order,
    get_order,
    order_with_items,
)

NOW = "2024-05-01T12:00:00.000000Z"
TAP = "tap"  # a subscription the tests add to the orders topic to see what is published


def orders_topic_tap(app: Harness) -> str:
    app.bus().declare_subscription("orders", TAP)
    return subscription_path("orders", TAP)


def receive_all(app: Harness, path: str) -> list[ReceivedMessage]:
    bus = app.bus()
    received: list[ReceivedMessage] = bus.receive(path, max_messages=100, timeout=0)
    for message in received:
        bus.complete(message)
    return received


def letters(service: ServiceName) -> list[DeadLetter]:
    return runtime.services().stores(service).dead_letters.list_letters()


def view(service: ServiceName, view_id: str) -> JsonDict:
    stored = runtime.services().stores(service).views.get(view_id)
    assert stored is not None, f"no {service} view {view_id}"
    document = dict(stored.document)
    assert document.pop("_projector") == f"{service}-projector-v1"
    return document


def record(version: int, event_type: str, data: JsonDict) -> EventRecord:
    return EventRecord(version=version, event_id=f"evt-{version}", type=event_type,
                       schema_version=1, occurred_at=NOW, data=data)


def commit(stream_id: str, *records: EventRecord, stream_type: str = "order") -> Commit:
    return Commit(stream_id=stream_id, stream_type=stream_type, events=records,
                  correlation_id=f"corr-{stream_id}", causation_id="cause", committed_at=NOW)


def commit_of(app: Harness, service: ServiceName, stream_id: str, version: int) -> Commit:
    return next(c for c in app.feed(service)
                if c.stream_id == stream_id and c.first_version <= version <= c.version)


# -- projectors -----------------------------------------------------------------------------------


def test_projectors_build_both_views(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 150, 25)
    payment_id = checkout(embedded_app, order_id).json["paymentId"]
    embedded_app.http(payments.authorize_payment, "POST", f"/payments/{payment_id}/authorize",
                      route_params={"paymentId": payment_id})

    assert len(embedded_app.pump(orders.orders_projector, "orders")) == 4
    assert len(embedded_app.pump(payments.payments_projector, "payments")) == 2

    order_view = view("orders", order_id)
    assert {k: v for k, v in order_view.items() if k != "items"} == {
        "orderId": order_id, "customerId": "customer-1", "status": "PreparedToPay",
        "total": 350, "currency": "EUR", "paymentId": payment_id, "version": 4}
    assert [(i["productId"], i["quantity"], i["unitPrice"]) for i in order_view["items"]] == [
        ("p-1", 2, 150), ("p-2", 2, 25)]
    assert view("payments", payment_id) == {
        "paymentId": payment_id, "referenceId": order_id, "status": "Started", "amount": 350,
        "currency": "EUR", "version": 2}
    # The API now serves the same documents from the projections.
    served = get_order(embedded_app, order_id)
    assert served.headers["x-view-source"] == "projection"
    # Plus the customer's details, looked up when the order is read (none were given).
    assert served.json == {**{k: v for k, v in order_view.items() if k != "id"},
                           "customer": None}


def test_projector_ignores_other_stream_types(embedded_app: Harness) -> None:
    foreign = commit("payment-p1", record(1, "PaymentCreated", {
        "paymentId": "p1", "referenceId": "o", "amount": 1, "currency": "EUR"}),
        stream_type="payment")
    orders.orders_projector(documents_of([foreign]))
    assert runtime.services().stores("orders").views.get("p1") is None
    assert letters("orders") == []


def test_the_same_batch_twice_leaves_the_view_unchanged(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100, 200)
    documents = documents_of(embedded_app.feed("orders"))
    orders.orders_projector(documents)
    first = view("orders", order_id)
    orders.orders_projector(documents)
    orders.orders_projector(documents_of(embedded_app.feed("orders")[1:]))  # a partial replay
    assert view("orders", order_id) == first
    assert len(first["items"]) == 2 and first["total"] == 600 and first["version"] == 3


def test_cosmos_system_properties_on_documents_are_ignored(embedded_app: Harness) -> None:
    order_id = create_order(embedded_app)
    system = {"_rid": "AbC==", "_self": "dbs/x/colls/y/docs/z", "_etag": '"0000"',
              "_attachments": "attachments/", "_ts": 1714564800, "_lsn": 7}
    documents = func.DocumentList([func.Document.from_dict({**c.to_document(), **system})
                                   for c in embedded_app.feed("orders")])
    orders.orders_projector(documents)
    assert view("orders", order_id)["version"] == 1
    assert letters("orders") == []


def test_projector_parks_poison_and_applies_the_rest(embedded_app: Harness) -> None:
    stream = "order-o1"
    created = commit(stream, record(1, "OrderCreated", {
        "orderId": "o1", "customerId": "c1", "currency": "EUR"}))
    undecodable = commit(stream, record(2, "OrderTeleported", {"to": "mars"}))
    added = commit(stream, record(3, "ItemAddedToCart", {
        "cartItemId": "item-1", "productId": "p", "quantity": 2, "unitPrice": 5}))
    malformed = {"id": "order-o2:1", "streamId": "order-o2", "version": 1, "events": "nope"}
    documents = func.DocumentList([
        func.Document.from_dict(created.to_document()),
        func.Document.from_dict(malformed),
        func.Document.from_dict(undecodable.to_document()),
        func.Document.from_dict(added.to_document()),
    ])

    orders.orders_projector(documents)  # does not raise

    parked = {letter.id: letter for letter in letters("orders")}
    assert set(parked) == {"orders-projector-v1:order-o2:1", "orders-projector-v1:order-o1:2"}
    bad_event = parked["orders-projector-v1:order-o1:2"]
    assert (bad_event.consumer, bad_event.stream_id, bad_event.version, bad_event.event_type) == (
        "orders-projector-v1", stream, 2, "OrderTeleported")
    assert "OrderTeleported" in bad_event.error
    assert bad_event.payload["correlationId"] == f"corr-{stream}"
    assert parked["orders-projector-v1:order-o2:1"].payload["events"] == "nope"
    projected = view("orders", "o1")
    assert projected["version"] == 3
    assert projected["items"] == [{"cartItemId": "item-1", "productId": "p", "quantity": 2,
                                   "unitPrice": 5}]
    assert projected["total"] == 10


class FailingViews:
    def __init__(self, views: Any) -> None:
        self._views = views

    def get(self, view_id: str) -> StoredView | None:
        result: StoredView | None = self._views.get(view_id)
        return result

    def put(self, view_id: str, document: JsonDict, etag: str | None) -> str:
        raise TransientError("views container throttled (429)")


def test_a_transient_view_store_failure_raises_and_parks_nothing(
    embedded_app: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = create_order(embedded_app)
    embedded_app.start(wrap_stores=lambda real: replace(real, views=FailingViews(real.views)))
    with pytest.raises(TransientError):
        embedded_app.pump(orders.orders_projector, "orders")
    embedded_app.start()
    assert letters("orders") == []
    assert len(embedded_app.pump(orders.orders_projector, "orders")) == 1  # not checkpointed
    assert view("orders", order_id)["version"] == 1


# -- publishers -----------------------------------------------------------------------------------


CONTRACT_VERSIONS = {"PaymentFailed": 2}  # the others are at version 1


def assert_message(app: Harness, message: ReceivedMessage, service: ServiceName, stream_id: str,
                   version: int, subject: str, body: Mapping[str, Any]) -> None:
    source = commit_of(app, service, stream_id, version)
    event = next(e for e in source.events if e.version == version)
    assert message.message_id == f"{stream_id}:{version}"
    assert message.subject == subject
    assert message.body == dict(body)
    assert message.correlation_id == source.correlation_id
    assert message.application_properties[CONTRACT_VERSION_PROPERTY] == CONTRACT_VERSIONS.get(
        subject, 1)
    assert message.application_properties[CAUSATION_ID_PROPERTY] == event.event_id


def test_publishers_send_the_integration_events_to_their_entities(embedded_app: Harness) -> None:
    tap = orders_topic_tap(embedded_app)
    trace = {"X-Correlation-Id": "trace-paid"}
    paid = create_order(embedded_app, customer="c-paid", headers=trace)
    add_ok(embedded_app, paid, "p", 1, 700)
    paid_payment = checkout(embedded_app, paid, headers=trace).json["paymentId"]
    cancelled = create_order(embedded_app, customer="c-cancel")
    embedded_app.http(orders.cancel, "POST", f"/orders/{cancelled}/cancel",
                      {"reason": "too slow"}, route_params={"orderId": cancelled})
    declined = create_order(embedded_app, customer="c-declined")
    add_ok(embedded_app, declined, "p", 1, 200_000)
    declined_payment = checkout(embedded_app, declined).json["paymentId"]

    embedded_app.pump(orders.orders_publisher, "orders")
    by_id = {m.message_id: m for m in receive_all(embedded_app, tap)}
    assert set(by_id) == {f"order-{paid}:3", f"order-{cancelled}:2", f"order-{declined}:3"}
    assert_message(embedded_app, by_id[f"order-{paid}:3"], "orders", f"order-{paid}", 3,
                   "OrderPlaced", {"orderId": paid, "customerId": "c-paid",
                                   "paymentId": paid_payment, "amount": 700, "currency": "EUR"})
    assert by_id[f"order-{paid}:3"].correlation_id == "trace-paid"
    assert_message(embedded_app, by_id[f"order-{cancelled}:2"], "orders", f"order-{cancelled}", 2,
                   "OrderCancelled", {"orderId": cancelled, "customerId": "c-cancel",
                                      "reason": "too slow"})

    for payment_id in (paid_payment, declined_payment):
        embedded_app.http(payments.authorize_payment, "POST", f"/payments/{payment_id}/authorize",
                          route_params={"paymentId": payment_id}, headers=trace)
    embedded_app.pump(payments.payments_publisher, "payments")
    queued = {m.message_id: m for m in embedded_app.deliver(payments.payments_acquirer,
                                                            embedded_app.authorizations_queue())}
    assert set(queued) == {f"payment-{paid_payment}:2", f"payment-{declined_payment}:2"}
    assert_message(embedded_app, queued[f"payment-{paid_payment}:2"], "payments",
                   f"payment-{paid_payment}", 2, "AuthorizePayment",
                   {"paymentId": paid_payment, "referenceId": paid, "amount": 700,
                    "currency": "EUR"})

    embedded_app.pump(payments.payments_publisher, "payments")
    outcomes = {m.message_id: m for m in embedded_app.deliver(
        orders.on_payment_event, embedded_app.payment_events_path())}
    assert set(outcomes) == {f"payment-{paid_payment}:3", f"payment-{declined_payment}:3"}
    completed = outcomes[f"payment-{paid_payment}:3"]
    assert_message(embedded_app, completed, "payments", f"payment-{paid_payment}", 3,
                   "PaymentCompleted", {**completed.body, "paymentId": paid_payment,
                                        "orderId": paid, "amount": 700, "currency": "EUR"})
    assert str(completed.body["authorizationCode"]).startswith("AUTH-")
    failed = outcomes[f"payment-{declined_payment}:3"]
    assert_message(embedded_app, failed, "payments", f"payment-{declined_payment}", 3,
                   "PaymentFailed", {**failed.body, "paymentId": declined_payment,
                                     "orderId": declined, "amount": 200_000, "currency": "EUR"})
    assert "declined" in str(failed.body["reason"])
    assert failed.body["reasonCode"] == "amount_above_limit"

    embedded_app.pump(orders.orders_publisher, "orders")
    later = {m.message_id: m for m in receive_all(embedded_app, tap)}
    assert set(later) == {f"order-{paid}:4"}  # OrderPaymentFailed is not published
    assert_message(embedded_app, later[f"order-{paid}:4"], "orders", f"order-{paid}", 4,
                   "OrderPaid", {"orderId": paid, "customerId": "c-paid",
                                 "paymentId": paid_payment})
    assert get_order(embedded_app, declined).json["status"] == "Created"


def test_a_batch_published_twice_is_dropped_as_duplicate(embedded_app: Harness) -> None:
    tap = orders_topic_tap(embedded_app)
    for _ in range(2):
        order_id = create_order(embedded_app)
        embedded_app.http(orders.cancel, "POST", f"/orders/{order_id}/cancel",
                          route_params={"orderId": order_id})
    documents = documents_of(embedded_app.feed("orders"))
    orders.orders_publisher(documents)
    orders.orders_publisher(documents)  # the host retried the batch
    received = receive_all(embedded_app, tap)
    assert sorted(m.subject for m in received) == ["OrderCancelled", "OrderCancelled"]
    assert len({m.message_id for m in received}) == 2


def test_publisher_parks_poison_and_publishes_the_rest(embedded_app: Harness) -> None:
    tap = orders_topic_tap(embedded_app)
    order_id = order_with_items(embedded_app, 100)
    checkout(embedded_app, order_id)
    stream = f"order-{order_id}"
    bad_paid = commit(stream, record(4, "OrderPaid", {"paymentId": 42}))
    documents = func.DocumentList([
        func.Document.from_dict({"id": "junk", "streamId": stream}),
        *[func.Document.from_dict(c.to_document()) for c in embedded_app.feed("orders")],
        func.Document.from_dict(bad_paid.to_document()),
    ])

    orders.orders_publisher(documents)  # does not raise

    assert [m.subject for m in receive_all(embedded_app, tap)] == ["OrderPlaced"]
    parked = {letter.id: letter for letter in letters("orders")}
    assert set(parked) == {"orders-publisher-v1:junk", f"orders-publisher-v1:{stream}:4"}
    assert parked[f"orders-publisher-v1:{stream}:4"].event_type == "OrderPaid"
    assert parked["orders-publisher-v1:junk"].event_type == "(malformed commit)"


class TransientPublisher:
    def __init__(self) -> None:
        self.attempts = 0

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        self.attempts += 1
        raise TransientError("Service Bus unavailable")

    def close(self) -> None:
        pass


def test_a_transient_publish_failure_raises_and_parks_nothing(
    embedded_app: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    put = embedded_app.http(payments.put_payment, "PUT", "/payments/pay-1",
                            {"referenceId": "o-1", "amount": 10, "currency": "EUR"},
                            route_params={"paymentId": "pay-1"})
    assert put.status == 201
    embedded_app.http(payments.authorize_payment, "POST", "/payments/pay-1/authorize",
                      route_params={"paymentId": "pay-1"})
    broken = TransientPublisher()
    embedded_app.start(publisher=broken)
    with pytest.raises(TransientError):
        embedded_app.pump(payments.payments_publisher, "payments")
    embedded_app.start()
    assert broken.attempts == 1
    assert letters("payments") == []

    # The broker is back; the batch was not checkpointed, so it is delivered again.
    delivered = embedded_app.pump(payments.payments_publisher, "payments")
    assert [c.version for c in delivered] == [1, 2]
    queued = receive_all(embedded_app, embedded_app.authorizations_queue())
    assert [m.message_id for m in queued] == ["payment-pay-1:2"]


class UnreadableEvents:
    """The events store when it is throttling reads."""

    def __init__(self, inner: FeedStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        raise TransientError("events container throttled (429)")


def test_a_transient_failure_while_mapping_raises_and_parks_nothing(
    embedded_app: Harness,
) -> None:
    tap = orders_topic_tap(embedded_app)
    order_id = order_with_items(embedded_app, 100)
    embedded_app.pump(orders.orders_publisher, "orders")  # the order's creation is behind us
    checkout(embedded_app, order_id)  # OrderPreparedToPay: mapping it reads the creation event
    embedded_app.start(wrap_stores=lambda real: replace(
        real, events=cast(FeedStore, UnreadableEvents(real.events))))
    with pytest.raises(TransientError):
        embedded_app.pump(orders.orders_publisher, "orders")
    embedded_app.start()
    assert letters("orders") == []
    assert receive_all(embedded_app, tap) == []

    embedded_app.pump(orders.orders_publisher, "orders")  # retried: the batch comes again
    assert [m.subject for m in receive_all(embedded_app, tap)] == ["OrderPlaced"]
    assert letters("orders") == []
