"""Contract of ViewStore (create / replace with ETags) and DeadLetterStore (idempotent park)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from eventstore.commit import JsonDict
from eventstore.errors import ConcurrencyError
from eventstore.ports import DeadLetter
from tests.contract.conftest import Backend

CONTENDERS = 8
ROUNDS = 5


def new_view_id() -> str:
    return f"order-{uuid.uuid4().hex}"


def view_document(view_id: str, **fields: object) -> JsonDict:
    return {"id": view_id, "status": "Cart", "lines": [], "version": 0, **fields}


# -- views ---------------------------------------------------------------------------------------


def test_get_missing_view_returns_none(backend: Backend) -> None:
    assert backend.views.get(new_view_id()) is None


def test_create_then_get_returns_document_and_etag(backend: Backend) -> None:
    view_id = new_view_id()
    document = view_document(
        view_id, lines=[{"sku": "A", "qty": 2, "price": "9.99"}], note="Grüße \u2603"
    )

    etag = backend.views.put(view_id, document, None)

    stored = backend.views.get(view_id)
    assert stored is not None
    assert stored.document == document
    assert stored.etag == etag
    assert etag


def test_create_existing_view_conflicts_and_keeps_it(backend: Backend) -> None:
    view_id = new_view_id()
    first = view_document(view_id, status="Cart")
    etag = backend.views.put(view_id, first, None)

    with pytest.raises(ConcurrencyError):
        backend.views.put(view_id, view_document(view_id, status="Other"), None)

    stored = backend.views.get(view_id)
    assert stored is not None
    assert (stored.document, stored.etag) == (first, etag)


def test_replace_with_current_etag_returns_new_etag(backend: Backend) -> None:
    view_id = new_view_id()
    etag_1 = backend.views.put(view_id, view_document(view_id, version=1), None)

    etag_2 = backend.views.put(view_id, view_document(view_id, version=2), etag_1)
    etag_3 = backend.views.put(view_id, view_document(view_id, version=3), etag_2)

    assert len({etag_1, etag_2, etag_3}) == 3
    stored = backend.views.get(view_id)
    assert stored is not None
    assert stored.document == view_document(view_id, version=3)
    assert stored.etag == etag_3


def test_replace_with_stale_etag_conflicts_and_keeps_view(backend: Backend) -> None:
    view_id = new_view_id()
    stale = backend.views.put(view_id, view_document(view_id, version=1), None)
    current = backend.views.put(view_id, view_document(view_id, version=2), stale)

    with pytest.raises(ConcurrencyError):
        backend.views.put(view_id, view_document(view_id, version=99), stale)

    stored = backend.views.get(view_id)
    assert stored is not None
    assert (stored.document, stored.etag) == (view_document(view_id, version=2), current)


def test_replace_missing_view_conflicts(backend: Backend) -> None:
    other_id = new_view_id()
    some_etag = backend.views.put(other_id, view_document(other_id), None)
    view_id = new_view_id()

    with pytest.raises(ConcurrencyError):
        backend.views.put(view_id, view_document(view_id), some_etag)

    assert backend.views.get(view_id) is None


def test_concurrent_creators_exactly_one_wins(backend: Backend) -> None:
    view_id = new_view_id()
    start = threading.Barrier(CONTENDERS)

    def create(contender: int) -> str | None:
        start.wait()
        try:
            return backend.views.put(view_id, view_document(view_id, by=contender), None)
        except ConcurrencyError:
            return None

    with ThreadPoolExecutor(max_workers=CONTENDERS) as pool:
        results = list(pool.map(create, range(CONTENDERS)))

    winners = [(i, etag) for i, etag in enumerate(results) if etag is not None]
    assert len(winners) == 1
    stored = backend.views.get(view_id)
    assert stored is not None
    assert (stored.document["by"], stored.etag) == winners[0]


def test_concurrent_replacers_exactly_one_wins_per_etag(backend: Backend) -> None:
    view_id = new_view_id()
    etag = backend.views.put(view_id, view_document(view_id, round=0, by=-1), None)
    start = threading.Barrier(CONTENDERS)

    for round_ in range(1, ROUNDS + 1):
        read_etag = etag

        def replace(contender: int, round_: int = round_, read_etag: str = read_etag) -> str | None:
            start.wait()
            document = view_document(view_id, round=round_, by=contender)
            try:
                return backend.views.put(view_id, document, read_etag)
            except ConcurrencyError:
                return None

        with ThreadPoolExecutor(max_workers=CONTENDERS) as pool:
            results = list(pool.map(replace, range(CONTENDERS)))

        winners = [(i, new_etag) for i, new_etag in enumerate(results) if new_etag is not None]
        assert len(winners) == 1, f"round {round_}: {len(winners)} writers won the same ETag"
        stored = backend.views.get(view_id)
        assert stored is not None
        assert stored.document == view_document(view_id, round=round_, by=winners[0][0])
        assert stored.etag == winners[0][1] != read_etag
        etag = stored.etag


def test_views_survive_reopen(backend: Backend) -> None:
    view_id = new_view_id()
    etag = backend.views.put(view_id, view_document(view_id, version=7), None)

    reopened = backend.reopen()

    stored = reopened.views.get(view_id)
    assert stored is not None
    assert (stored.document, stored.etag) == (view_document(view_id, version=7), etag)
    assert reopened.views.put(view_id, view_document(view_id, version=8), etag) != etag


# -- dead letters --------------------------------------------------------------------------------


def make_letter(
    consumer: str, stream_id: str, version: int, error: str = "KeyError: 'sku'"
) -> DeadLetter:
    return DeadLetter(
        id=f"{consumer}:{stream_id}:{version}",
        consumer=consumer,
        stream_id=stream_id,
        version=version,
        event_type="ItemAddedToCart",
        error=error,
        payload={"version": version, "data": {"qty": "three", "nested": [1, {"a": None}]}},
        parked_at=f"2024-05-01T12:00:0{version}.000000+00:00",
    )


def test_no_dead_letters_initially(backend: Backend) -> None:
    assert backend.dead_letters.list_letters() == []


def test_parked_letters_are_listed_as_parked(backend: Backend) -> None:
    stream = f"order-{uuid.uuid4().hex}"
    letters = [
        make_letter("projector-v1", stream, 1),
        make_letter("projector-v1", stream, 2),
        make_letter("publisher-v1", stream, 1, error="ValueError: unknown event"),
    ]
    for letter in letters:
        backend.dead_letters.park(letter)

    listed = backend.dead_letters.list_letters()

    assert sorted(listed, key=lambda d: d.id) == sorted(letters, key=lambda d: d.id)


def test_parking_the_same_id_again_updates_the_one_letter(backend: Backend) -> None:
    stream = f"order-{uuid.uuid4().hex}"
    other = make_letter("projector-v1", stream, 2)
    backend.dead_letters.park(make_letter("projector-v1", stream, 1, error="first failure"))
    backend.dead_letters.park(other)

    updated = make_letter("projector-v1", stream, 1, error="second failure")
    backend.dead_letters.park(updated)

    listed = sorted(backend.dead_letters.list_letters(), key=lambda d: d.id)
    assert listed == sorted([updated, other], key=lambda d: d.id)


def test_list_letters_respects_limit(backend: Backend) -> None:
    stream = f"order-{uuid.uuid4().hex}"
    for version in range(1, 6):
        backend.dead_letters.park(make_letter("publisher-v1", stream, version))

    assert len(backend.dead_letters.list_letters(limit=2)) == 2
    assert len(backend.dead_letters.list_letters(limit=100)) == 5


def test_dead_letters_survive_reopen(backend: Backend) -> None:
    letter = make_letter("projector-v1", f"order-{uuid.uuid4().hex}", 3)
    backend.dead_letters.park(letter)

    reopened = backend.reopen()

    assert reopened.dead_letters.list_letters() == [letter]
