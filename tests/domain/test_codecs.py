"""Event codecs: the stored format is exact (camelCase, current schema version) and round-trips;
older stored versions are upcast through each event's chain."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from domain import orders, payments
from domain.codec import EncodedEvent, EventCodec, EventSchema, StreamCategory

from .helpers import bogus

# Every event type with the exact data it must be stored as.
ORDER_GOLDEN: list[tuple[orders.OrderEvent, dict[str, Any]]] = [
    (
        orders.OrderCreated("o-1", "c-1", "EUR"),
        {"orderId": "o-1", "customerId": "c-1", "currency": "EUR"},
    ),
    (
        orders.ItemAddedToCart("item-1", "sku-1", 2, 1500),
        {"cartItemId": "item-1", "productId": "sku-1", "quantity": 2, "unitPrice": 1500},
    ),
    (orders.ItemDeletedFromCart("item-1"), {"cartItemId": "item-1"}),
    (
        orders.OrderPreparedToPay("pay-1", 3000, "EUR"),
        {"paymentId": "pay-1", "amount": 3000, "currency": "EUR"},
    ),
    (orders.OrderPaid("pay-1"), {"paymentId": "pay-1"}),
    (orders.OrderPaymentFailed("pay-1", "declined"), {"paymentId": "pay-1", "reason": "declined"}),
    (orders.OrderCancelled("bye"), {"reason": "bye"}),
]

PAYMENT_GOLDEN: list[tuple[payments.PaymentEvent, dict[str, Any]]] = [
    (
        payments.PaymentCreated("pay-1", "o-1", 3000, "EUR"),
        {"paymentId": "pay-1", "referenceId": "o-1", "amount": 3000, "currency": "EUR"},
    ),
    (payments.PaymentStarted(), {}),
    (payments.PaymentCompleted("AUTH-1"), {"authorizationCode": "AUTH-1"}),
    (payments.PaymentFailed("declined", "unspecified"),
     {"reason": "declined", "reasonCode": "unspecified"}),
]

# Events whose stored shape changed since version 1 (all others are at version 1).
CURRENT_VERSIONS = {"PaymentFailed": 2}

GOLDEN: list[Any] = [
    pytest.param(orders.order_codec, event, data, id=type(event).__name__)
    for event, data in ORDER_GOLDEN
] + [
    pytest.param(payments.payment_codec, event, data, id=type(event).__name__)
    for event, data in PAYMENT_GOLDEN
]

CODECS: list[Any] = [
    pytest.param(orders.order_codec, ORDER_GOLDEN, id="order"),
    pytest.param(payments.payment_codec, PAYMENT_GOLDEN, id="payment"),
]


def test_every_event_type_has_a_golden_example() -> None:
    assert {type(e).__name__ for e, _ in ORDER_GOLDEN} == orders.order_codec.type_names
    assert {type(e).__name__ for e, _ in PAYMENT_GOLDEN} == payments.payment_codec.type_names
    assert len(orders.order_codec.type_names) == 7
    assert len(payments.payment_codec.type_names) == 4
    assert orders.order_codec.type_name(orders.OrderPaid) == "OrderPaid"


@pytest.mark.parametrize(("codec", "event", "data"), GOLDEN)
def test_encode_is_exact_and_decode_round_trips(
    codec: EventCodec[Any], event: Any, data: dict[str, Any]
) -> None:
    encoded = codec.encode(event)
    name = type(event).__name__
    assert encoded == EncodedEvent(type=name, schema_version=CURRENT_VERSIONS.get(name, 1),
                                   data=data)
    stored = json.loads(json.dumps(encoded.data))
    assert codec.decode(encoded.type, encoded.schema_version, stored) == event


@pytest.mark.parametrize(("codec", "golden"), CODECS)
def test_decode_ignores_unknown_fields(codec: EventCodec[Any], golden: Any) -> None:
    # Tolerant reader: a later writer may add optional fields without a new schema version.
    for event, data in golden:
        name = type(event).__name__
        assert codec.decode(name, CURRENT_VERSIONS.get(name, 1), {**data, "extra": True}) == event


@pytest.mark.parametrize(("codec", "golden"), CODECS)
def test_decode_rejects_unknown_types(codec: EventCodec[Any], golden: Any) -> None:
    with pytest.raises(ValueError, match=r"unknown .* event type 'NoSuchEvent'"):
        codec.decode("NoSuchEvent", 1, {})
    # Event types are per aggregate: a payment event is not an order event and vice versa.
    other = PAYMENT_GOLDEN if golden is ORDER_GOLDEN else ORDER_GOLDEN
    event, data = other[0]
    with pytest.raises(ValueError, match="unknown"):
        codec.decode(type(event).__name__, 1, data)


@pytest.mark.parametrize(("codec", "golden"), CODECS)
def test_decode_rejects_unknown_schema_versions(
    codec: EventCodec[Any], golden: Any
) -> None:
    for event, data in golden:
        name = type(event).__name__
        for version in (0, -1, CURRENT_VERSIONS.get(name, 1) + 1):
            with pytest.raises(ValueError, match=f"unsupported schema version {version} of "
                                                 f"{name}"):
                codec.decode(name, version, data)


@pytest.mark.parametrize(("codec", "event", "data"), GOLDEN)
def test_decode_rejects_missing_or_mistyped_fields(
    codec: EventCodec[Any], event: Any, data: dict[str, Any]
) -> None:
    name = type(event).__name__
    version = CURRENT_VERSIONS.get(name, 1)
    for key, value in data.items():
        missing = {k: v for k, v in data.items() if k != key}
        with pytest.raises(ValueError, match=f"'{key}'"):
            codec.decode(name, version, missing)
        # A string where an int belongs and vice versa; a bool is not an int either.
        wrong: object = True if isinstance(value, int) else 12
        with pytest.raises(ValueError, match=f"'{key}'"):
            codec.decode(name, version, {**data, key: wrong})


@pytest.mark.parametrize(("codec", "golden"), CODECS)
def test_decode_rejects_data_that_is_not_an_object(
    codec: EventCodec[Any], golden: Any
) -> None:
    event, _ = golden[0]
    not_a_mapping: Mapping[str, Any] = ["not", "an", "object"]  # type: ignore[assignment]
    with pytest.raises(ValueError, match="must be a JSON object, got list"):
        codec.decode(type(event).__name__, 1, not_a_mapping)


def test_encode_rejects_what_is_not_an_event() -> None:
    with pytest.raises(TypeError, match="not one of the order events"):
        orders.order_codec.encode(bogus())
    with pytest.raises(TypeError, match="not one of the payment events"):
        payments.payment_codec.encode(bogus())
    with pytest.raises(TypeError, match="is not one of the payment events"):
        payments.payment_codec.type_name(orders.OrderPaid)


def _schema(name: str, cls: type[Any]) -> EventSchema[Any]:
    return EventSchema(name, cls, version=1, encode=lambda e: {}, decode=lambda d: cls())


def test_a_codec_must_cover_its_event_union_exactly_once() -> None:
    union = payments.PaymentStarted | payments.PaymentFailed
    with pytest.raises(TypeError, match=r"missing \['PaymentFailed'\]"):
        EventCodec("payment", union, [_schema("PaymentStarted", payments.PaymentStarted)])
    with pytest.raises(TypeError, match=r"not in the union \['OrderPaid'\]"):
        EventCodec("payment", payments.PaymentStarted, [
            _schema("PaymentStarted", payments.PaymentStarted),
            _schema("OrderPaid", orders.OrderPaid)])
    with pytest.raises(TypeError, match="declared twice"):
        EventCodec("payment", payments.PaymentStarted, [
            _schema("PaymentStarted", payments.PaymentStarted),
            _schema("PaymentStarted", payments.PaymentStarted)])


def test_stream_categories_name_streams_and_read_them_back() -> None:
    assert orders.ORDER_STREAM.stream_id("o-1") == "order-o-1"
    assert payments.PAYMENT_STREAM.aggregate_id("payment-p-1") == "p-1"
    assert orders.ORDER_STREAM.owns("order-x") and not orders.ORDER_STREAM.owns("payment-x")
    with pytest.raises(ValueError, match="not in the order category"):
        StreamCategory("order").aggregate_id("payment-p-1")


# Upcasting ---------------------------------------------------------------------------------------


def test_versions_are_as_declared() -> None:
    versions = {schema.type_name: schema.version
                for codec in (orders.order_codec, payments.payment_codec)
                for schema in codec.schemas}
    assert {name: v for name, v in versions.items() if v != 1} == CURRENT_VERSIONS


@pytest.mark.parametrize(("reason", "code"), [
    ("declined by the acquirer: amount 7000 is above the limit 5000", "amount_above_limit"),
    ("declined by the acquirer: amount 1 is above the limit 0", "amount_above_limit"),
    ("declined by the acquirer: amount 7000 is above the limit 5000 (retry)", "unspecified"),
    ("insufficient funds", "unspecified"),
    ("", "unspecified"),
])
def test_payment_failed_v1_is_upcast_with_a_code_read_from_its_text(reason: str, code: str
                                                                    ) -> None:
    assert payments.payment_codec.decode("PaymentFailed", 1, {"reason": reason}) == \
        payments.PaymentFailed(reason=reason, reason_code=code)


def test_payment_failed_v1_upcaster_checks_what_it_reads() -> None:
    with pytest.raises(ValueError, match="'reason' must be a string"):
        payments.payment_codec.decode("PaymentFailed", 1, {"reason": 5})
    with pytest.raises(ValueError, match="'reason'"):
        payments.payment_codec.decode("PaymentFailed", 1, {})


def test_new_events_are_written_at_the_new_version() -> None:
    encoded = payments.payment_codec.encode(
        payments.PaymentFailed("declined", "amount_above_limit"))
    assert (encoded.schema_version, encoded.data) == (
        2, {"reason": "declined", "reasonCode": "amount_above_limit"})


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Named) and other.name == self.name

    __hash__ = None  # type: ignore[assignment]


def _three_version_codec(calls: list[str]) -> EventCodec[_Named]:
    # v1 {"n"} -> v2 {"first", "last"} -> v3 {"name"}: each step sees only the previous shape.
    def v1_to_v2(data: Mapping[str, Any]) -> dict[str, Any]:
        calls.append("1->2")
        first, _, last = str(data["n"]).partition(" ")
        return {"first": first, "last": last}

    def v2_to_v3(data: Mapping[str, Any]) -> dict[str, Any]:
        calls.append("2->3")
        return {"name": f"{data['first']} {data['last']}".strip()}

    return EventCodec("thing", _Named, [EventSchema(
        "Named", _Named, version=3, encode=lambda e: {"name": e.name},
        decode=lambda d: _Named(str(d["name"])), upcasters={1: v1_to_v2, 2: v2_to_v3})])


@pytest.mark.parametrize(("version", "data", "steps"), [
    (1, {"n": "Ada Lovelace"}, ["1->2", "2->3"]),
    (2, {"first": "Ada", "last": "Lovelace"}, ["2->3"]),
    (3, {"name": "Ada Lovelace"}, []),
])
def test_an_upcaster_chain_runs_from_the_stored_version_to_the_current_one(
        version: int, data: dict[str, Any], steps: list[str]) -> None:
    calls: list[str] = []
    codec = _three_version_codec(calls)
    assert codec.decode("Named", version, data) == _Named("Ada Lovelace")
    assert calls == steps
    assert codec.encode(_Named("Ada Lovelace")).schema_version == 3


@pytest.mark.parametrize(("version", "upcasters", "message"), [
    (2, {}, r"declare one upcaster from each older version \[1\], got \[\]"),
    (3, {1: dict}, r"older version \[1, 2\], got \[1\]"),
    (1, {1: dict}, r"older version \[\], got \[1\]"),
    (2, {2: dict}, r"older version \[1\], got \[2\]"),
    (0, {}, "schema versions start at 1, got 0"),
])
def test_a_schema_declares_exactly_one_upcaster_per_older_version(
        version: int, upcasters: dict[int, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        EventSchema("Named", _Named, version=version, encode=lambda e: {},
                    decode=lambda d: _Named(""), upcasters=upcasters)
