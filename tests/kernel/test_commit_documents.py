"""``Commit.from_document`` is the one parser of the commit document: every change-feed consumer
runs it on every commit. A document as a JSON parser gives it is read by a type check alone;
anything else goes through the converting constructor. Both must give the same commit, and both
must refuse what the constructor refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventstore.commit import Commit, EventRecord

texts = st.text(min_size=1, max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6)


@st.composite
def commits(draw: st.DrawFn) -> Commit:
    first = draw(st.integers(min_value=1, max_value=10_000))
    count = draw(st.integers(min_value=1, max_value=4))
    return Commit(
        stream_id=draw(texts),
        stream_type=draw(texts),
        events=tuple(EventRecord(first + n, draw(texts), draw(texts),
                                 draw(st.integers(min_value=1, max_value=5)), draw(texts),
                                 draw(st.dictionaries(st.text(max_size=6), json_values,
                                                      max_size=4)))
                     for n in range(count)),
        correlation_id=draw(texts),
        causation_id=draw(texts),
        committed_at=draw(texts),
        fingerprint=draw(st.text(max_size=20)),
        trace_context=draw(st.none() | st.just({"traceparent": "00-ab-cd-01"})),
    )


def constructed(doc: dict[str, Any]) -> Commit:
    """The converting constructor path, as the parser takes it for anything but exact types."""
    return Commit(
        stream_id=str(doc["streamId"]), stream_type=str(doc["streamType"]),
        events=tuple(EventRecord(int(e["version"]), str(e["eventId"]), str(e["type"]),
                                 int(e["schemaVersion"]), str(e["occurredAt"]), dict(e["data"]))
                     for e in doc["events"]),
        correlation_id=str(doc["correlationId"]), causation_id=str(doc["causationId"]),
        committed_at=str(doc["committedAt"]), fingerprint=str(doc.get("fingerprint") or ""),
        trace_context=doc.get("traceContext"))


@given(commits())
def test_a_document_reads_back_as_the_commit_it_came_from(commit: Commit) -> None:
    doc = commit.to_document()
    parsed = Commit.from_document(doc)
    assert parsed == commit == constructed(doc)
    assert parsed.to_document() == doc


def test_loosely_typed_values_are_converted_as_the_constructor_converts_them() -> None:
    doc = Commit(stream_id="order-1", stream_type="order",
                 events=(EventRecord(3, "e-1", "OrderPaid", 1, "t", {"paymentId": "p"}),),
                 correlation_id="c", causation_id="k", committed_at="t").to_document()
    doc["correlationId"] = 42
    doc["events"][0]["version"] = "3"
    doc["events"][0]["eventId"] = 7
    parsed = Commit.from_document(doc)
    assert parsed == constructed(doc)
    assert (parsed.correlation_id, parsed.version, parsed.events[0].event_id) == ("42", 3, "7")


def test_the_parsed_data_is_the_commits_own() -> None:
    doc = Commit(stream_id="order-1", stream_type="order",
                 events=(EventRecord(1, "e-1", "OrderPaid", 1, "t", {"paymentId": "p"}),),
                 correlation_id="c", causation_id="k", committed_at="t").to_document()
    parsed = Commit.from_document(doc)
    doc["events"][0]["data"]["paymentId"] = "changed"
    assert parsed.events[0].data == {"paymentId": "p"}


def valid_document() -> dict[str, Any]:
    return Commit(stream_id="order-1", stream_type="order",
                  events=(EventRecord(2, "e-2", "ItemAddedToCart", 1, "t", {"q": 1}),
                          EventRecord(3, "e-3", "ItemAddedToCart", 1, "t", {"q": 2})),
                  correlation_id="c", causation_id="k", committed_at="t").to_document()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: d["events"][1].update(version=5), "contiguous"),
    (lambda d: [e.update(version=e["version"] - 2) for e in d["events"]], "contiguous"),
    (lambda d: d.update(events=[]), "at least one event"),
    (lambda d: d.update(streamType=""), "stream type"),
    (lambda d: d.update(streamId=""), "stream id"),
    (lambda d: d["events"][0].update(data=[1, 2]), "JSON object"),
    (lambda d: d["events"][0].update(type=""), "type name"),
    (lambda d: d["events"][0].update(schemaVersion=0), "schema version"),
])
def test_what_the_constructor_refuses_the_parser_refuses(damage: Any, message: str) -> None:
    doc = valid_document()
    damage(doc)
    with pytest.raises(ValueError, match=message):
        Commit.from_document(doc)


def test_a_document_missing_a_field_is_refused() -> None:
    doc = valid_document()
    del doc["events"][0]["occurredAt"]
    with pytest.raises(KeyError):
        Commit.from_document(doc)
