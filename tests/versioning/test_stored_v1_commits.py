"""Commits stored by the version-1 code replay into the current state and views.

``fixtures/v1-*-commits.jsonl`` are commit documents exactly as the local host stored them (the
``commits`` table's text, one per line) before PaymentFailed moved to schema version 2: a paid
order with a declined first payment, a cancelled order, and an open order whose payment was
declined. ``fixtures/v1-views.json`` is what that code answered for ``GET /orders/{id}`` and
``GET /payments/{id}``. The current code must read the same facts, adding only what the upcaster
derives (the failure code).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.bootstrap import ORDER_VIEW, PAYMENT_VIEW
from domain import orders, payments
from eventstore.commands import CommandContext, CommandProcessor
from eventstore.commit import Commit, JsonDict
from eventstore.embedded.store import EmbeddedDatabase
from eventstore.projection import ViewDefinition, projection_from_stream

FIXTURES = Path(__file__).with_name("fixtures")


def stored_documents(service: str) -> list[JsonDict]:
    lines = (FIXTURES / f"v1-{service}-commits.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def v1_views() -> dict[str, JsonDict]:
    views: dict[str, JsonDict] = json.loads((FIXTURES / "v1-views.json").read_text("utf-8"))
    return views


@pytest.fixture
def database(tmp_path: Path) -> Any:
    with EmbeddedDatabase(tmp_path / "replay.db") as db:
        for service in ("orders", "payments"):
            for document in stored_documents(service):
                db.events.append(Commit.from_document(document))
        yield db


def test_the_fixtures_are_version_1_commits_as_stored() -> None:
    documents = stored_documents("orders") + stored_documents("payments")
    events = [event for document in documents for event in document["events"]]
    assert {e["schemaVersion"] for e in events} == {1}
    failed = [e for e in events if e["type"] == "PaymentFailed"]
    assert len(failed) == 2 and all(set(e["data"]) == {"reason"} for e in failed)
    assert len(v1_views()) == 6


def _definition(kind: str) -> ViewDefinition[Any]:
    return ORDER_VIEW if kind == "orders" else PAYMENT_VIEW


def test_v1_commits_project_into_the_views_the_v1_code_showed_plus_the_upcast_code(
        database: EmbeddedDatabase) -> None:
    for key, shown in v1_views().items():
        kind, aggregate_id = key.split("/")
        definition = _definition(kind)
        stream = database.events.read_stream(definition.category.stream_id(aggregate_id))
        view = projection_from_stream(definition, stream)
        assert view is not None
        expected = dict(shown)
        if shown.get("status") == "Failed":
            # Derived from the v1 text by the upcaster: the only new information.
            expected["failureReasonCode"] = "amount_above_limit"
        assert view == expected, key


def test_v1_commits_fold_into_the_current_states(database: EmbeddedDatabase) -> None:
    for key, shown in v1_views().items():
        kind, aggregate_id = key.split("/")
        definition = _definition(kind)
        stream = database.events.read_stream(definition.category.stream_id(aggregate_id))
        events = [definition.codec.decode(r.type, r.schema_version, r.data)
                  for commit in stream for r in commit.events]
        if kind == "payments":
            state = payments.payment_decider.fold(events)
            assert (state.status, state.amount) == (shown["status"], shown["amount"])
            if state.status is payments.PaymentStatus.FAILED:
                assert state.failure_reason == shown["failureReason"]
                assert state.failure_code == payments.FailureCode.AMOUNT_ABOVE_LIMIT
        else:
            order = orders.order_decider.fold(events)
            assert (order.status, order.total, order.payment_id) == (
                shown["status"], shown["total"], shown["paymentId"])


def test_the_current_code_carries_on_with_v1_streams(database: EmbeddedDatabase) -> None:
    context = CommandContext(correlation_id="replay", causation_id="replay-1")
    processor = CommandProcessor(database.events, payments.PAYMENT_STREAM,
                                 payments.payment_decider, payments.payment_codec)
    (open_order,) = [v for v in v1_views().values() if v.get("status") == "Created"]
    retry_id = "retry-of-" + open_order["orderId"]
    processor.execute(retry_id, payments.CreatePayment(retry_id, open_order["orderId"], 7500,
                                                       "EUR"), context)
    processor.execute(retry_id, payments.AuthorizePayment(),
                      CommandContext("replay", "replay-2"))
    processor.execute(retry_id, payments.acquirer_decision(retry_id, 7500, 5000),
                      CommandContext("replay", "replay-3"))
    (written,) = database.events.read_stream(payments.PAYMENT_STREAM.stream_id(retry_id),
                                             after_version=2)
    assert (written.events[0].type, written.events[0].schema_version) == ("PaymentFailed", 2)
    assert written.events[0].data["reasonCode"] == "amount_above_limit"

    # An order stream written by v1 goes on: checkout again, and the payment outcome lands.
    order_processor = CommandProcessor(database.events, orders.ORDER_STREAM,
                                       orders.order_decider, orders.order_codec)
    state, version = order_processor.load(open_order["orderId"])
    assert state.status is orders.OrderStatus.CREATED and version == open_order["version"]
    checkout = orders.checkout_command(state, version)
    order_processor.execute(open_order["orderId"], checkout, CommandContext("replay", "c-1"))
    paid = order_processor.execute(open_order["orderId"], orders.MarkOrderPaid(
        checkout.payment_id), CommandContext("replay", "c-2"))
    assert paid.state.status is orders.OrderStatus.PAID
    assert paid.version == open_order["version"] + 2
