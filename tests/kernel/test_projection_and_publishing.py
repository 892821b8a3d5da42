"""Projections skip what they applied, park poison and move on; publishing maps and parks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from domain.orders import ORDER_STREAM, apply_order_event, order_codec
from eventstore.commit import Commit, EventRecord, message_id
from eventstore.embedded.store import EmbeddedDatabase
from eventstore.errors import TransientError
from eventstore.ports import OutboundMessage, StoredView
from eventstore.projection import (
    PROJECTOR_FIELD,
    Projector,
    ViewDefinition,
    project,
    projection_from_stream,
)
from eventstore.publishing import Publisher

VIEW = ViewDefinition(ORDER_STREAM, order_codec, apply_order_event)


def record(version: int, type_: str, data: dict[str, Any]) -> EventRecord:
    return EventRecord(version=version, event_id=f"e{version}", type=type_, schema_version=1,
                       occurred_at="2026-01-01T00:00:00Z", data=data)


def commit(*records: EventRecord, stream: str = "order-o1") -> Commit:
    return Commit(stream_id=stream, stream_type="order", events=records, correlation_id="c",
                  causation_id="k", committed_at="2026-01-01T00:00:00Z")


CREATED = record(1, "OrderCreated", {"orderId": "o1", "customerId": "c1", "currency": "EUR"})
ADDED = record(2, "ItemAddedToCart", {"cartItemId": "item-1", "productId": "p", "quantity": 2,
                                      "unitPrice": 150})
PAID_TOO_EARLY = record(3, "NoSuchEvent", {})
CANCELLED = record(4, "OrderCancelled", {"reason": "r"})


@pytest.fixture
def database(tmp_path: Path) -> Iterator[EmbeddedDatabase]:
    with EmbeddedDatabase(tmp_path / "orders.db") as db:
        yield db


def test_project_skips_versions_already_applied() -> None:
    view = project(VIEW, None, [CREATED, ADDED])
    assert view is not None and view["total"] == 300 and view["version"] == 2
    assert project(VIEW, view, [CREATED, ADDED]) == view


def test_projector_is_idempotent_and_parks_poison(database: EmbeddedDatabase) -> None:
    projector = Projector(VIEW, database.views, database.dead_letters, "test-projector")
    batch = [commit(CREATED), commit(ADDED, PAID_TOO_EARLY), commit(CANCELLED)]
    projector.handle(batch)
    stored = database.views.get("o1")
    assert stored is not None
    assert stored.document["status"] == "Cancelled" and stored.document["version"] == 4
    letters = database.dead_letters.list_letters()
    assert [(d.stream_id, d.version, d.event_type) for d in letters] == [
        ("order-o1", 3, "NoSuchEvent")]

    projector.handle(batch)  # redelivery: nothing changes, nothing parked twice
    again = database.views.get("o1")
    assert again is not None and again.etag == stored.etag
    assert len(database.dead_letters.list_letters()) == 1


def test_projection_from_stream_equals_the_projector_result(database: EmbeddedDatabase) -> None:
    commits = [commit(CREATED), commit(ADDED)]
    Projector(VIEW, database.views, database.dead_letters, "p").handle(commits)
    stored = database.views.get("o1")
    assert stored is not None
    assert projection_from_stream(VIEW, commits) == {
        k: v for k, v in stored.document.items() if k != PROJECTOR_FIELD}


def test_a_new_projector_version_rebuilds_views_from_scratch(database: EmbeddedDatabase) -> None:
    def buggy(view: dict[str, Any] | None, event: Any, version: int) -> dict[str, Any]:
        return {**apply_order_event(view, event, version), "total": -1}

    v1 = ViewDefinition(ORDER_STREAM, order_codec, buggy)
    commits = [commit(CREATED), commit(ADDED)]
    Projector(v1, database.views, database.dead_letters, "orders-projector-v1").handle(commits)
    Projector(VIEW, database.views, database.dead_letters, "orders-projector-v1").handle(commits)
    stale = database.views.get("o1")
    assert stale is not None and stale.document["total"] == -1  # same version: nothing re-applied

    Projector(VIEW, database.views, database.dead_letters, "orders-projector-v2").handle(commits)
    rebuilt = database.views.get("o1")
    assert rebuilt is not None and rebuilt.document["total"] == 300
    assert rebuilt.document[PROJECTOR_FIELD] == "orders-projector-v2"


class CountingViews:
    """The database's views, counting reads."""

    def __init__(self, database: EmbeddedDatabase) -> None:
        self._views = database.views
        self.reads = 0

    def get(self, view_id: str) -> StoredView | None:
        self.reads += 1
        return self._views.get(view_id)

    def put(self, view_id: str, document: dict[str, Any], etag: str | None) -> str:
        return self._views.put(view_id, document, etag)


ADDED_AGAIN = record(3, "ItemAddedToCart", {"cartItemId": "item-2", "productId": "q",
                                            "quantity": 1, "unitPrice": 100})


def test_the_projector_reads_a_view_it_wrote_last_only_once(database: EmbeddedDatabase) -> None:
    views = CountingViews(database)
    projector = Projector(VIEW, views, database.dead_letters, "p")
    projector.handle([commit(CREATED)])
    projector.handle([commit(ADDED)])
    projector.handle([commit(ADDED_AGAIN)])
    assert views.reads == 1  # the first batch's; the others start from what it wrote
    stored = database.views.get("o1")
    assert stored is not None and stored.document["total"] == 400


def test_a_view_written_by_another_since_is_read_again_and_nothing_is_lost(
        database: EmbeddedDatabase) -> None:
    views = CountingViews(database)
    projector = Projector(VIEW, views, database.dead_letters, "p")
    projector.handle([commit(CREATED)])
    # Another instance of the same projector applies the next commit meanwhile.
    Projector(VIEW, database.views, database.dead_letters, "p").handle([commit(ADDED)])
    projector.handle([commit(ADDED), commit(ADDED_AGAIN)])
    assert views.reads == 2  # the remembered ETag was stale: its write failed, it read again
    stored = database.views.get("o1")
    assert stored is not None
    assert stored.document["version"] == 3 and stored.document["total"] == 400
    assert [i["cartItemId"] for i in stored.document["items"]] == ["item-1", "item-2"]


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[OutboundMessage] = []
        self.fail = fail

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if self.fail:
            raise TransientError("broker down")
        self.sent.extend(messages)

    def close(self) -> None:
        pass


def map_event(c: Commit, r: EventRecord) -> list[OutboundMessage]:
    if r.type == "NoSuchEvent":
        raise ValueError("cannot map")
    if r.type == "OrderCancelled":
        return [OutboundMessage(destination="orders", message_id=message_id(c.stream_id, r.version),
                                subject="OrderCancelled", body={"orderId": "o1"},
                                correlation_id=c.correlation_id,
                                application_properties={"contractVersion": 1})]
    return []


def test_publisher_sends_one_batch_with_stream_version_ids_and_parks_poison(
        database: EmbeddedDatabase) -> None:
    sink = RecordingPublisher()
    Publisher(map_event, sink, database.dead_letters, "pub").handle(
        [commit(CREATED), commit(ADDED, PAID_TOO_EARLY), commit(CANCELLED)])
    assert [(m.message_id, m.subject, m.destination) for m in sink.sent] == [
        ("order-o1:4", "OrderCancelled", "orders")]
    assert sink.sent[0].application_properties["contractVersion"] == 1
    assert [d.version for d in database.dead_letters.list_letters()] == [3]


def test_publisher_raises_transient_errors_so_the_host_retries(
        database: EmbeddedDatabase) -> None:
    with pytest.raises(TransientError):
        Publisher(map_event, RecordingPublisher(fail=True), database.dead_letters, "pub").handle(
            [commit(CANCELLED)])
    assert database.dead_letters.list_letters() == []


def test_publisher_parks_an_undeliverable_message_and_sends_the_rest(
        database: EmbeddedDatabase) -> None:
    from eventstore.errors import UndeliverableMessageError

    class RejectsOne(RecordingPublisher):
        def publish(self, messages: Sequence[OutboundMessage]) -> None:
            for message in messages:
                if message.message_id == "order-o2:4":
                    raise UndeliverableMessageError("too large", message)
            self.sent.extend(messages)

    sink = RejectsOne()
    Publisher(map_event, sink, database.dead_letters, "pub").handle(
        [commit(CANCELLED), commit(CANCELLED, stream="order-o2")])
    assert [m.message_id for m in sink.sent] == ["order-o1:4"]
    assert [(d.stream_id, d.version, d.event_type) for d in
            database.dead_letters.list_letters()] == [("order-o2", 4, "OrderCancelled")]
