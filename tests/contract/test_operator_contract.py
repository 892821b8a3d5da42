"""Contract of what the operator CLI needs from the stores: streams listed in pages, a consumer's
lag behind the change feed, dead letters read and removed one by one."""

from __future__ import annotations

import uuid

from eventstore.ports import DeadLetter
from tests.contract.conftest import Backend, make_commit


def test_streams_are_listed_in_id_order_in_pages_with_their_version(backend: Backend) -> None:
    prefix = f"order-{uuid.uuid4().hex[:8]}"
    streams = [f"{prefix}-{n}" for n in (3, 1, 2)]
    for count, stream in zip((1, 3, 2), streams, strict=True):
        for version in range(1, count + 1):
            backend.events.append(make_commit(stream, version))
    backend.events.append(make_commit(f"{prefix}-1", 4, count=2))  # a multi-event commit

    listed = [s for s in backend.events.list_streams() if s.stream_id.startswith(prefix)]
    assert [(s.stream_id, s.version, s.commits) for s in listed] == [
        (f"{prefix}-1", 5, 4), (f"{prefix}-2", 2, 2), (f"{prefix}-3", 1, 1)]
    first = backend.events.list_streams(limit=1, after=f"{prefix}-0")
    second = backend.events.list_streams(limit=1, after=first[0].stream_id)
    assert [s.stream_id for s in first + second] == [f"{prefix}-1", f"{prefix}-2"]
    assert backend.events.list_streams(after=f"{prefix}-3", limit=5) == []


def behind(backend: Backend, consumer: str) -> tuple[int, int]:
    ranges = backend.events.consumer_lag(consumer)
    assert ranges and len({r.feed_range for r in ranges}) == len(ranges)
    return sum(r.commits_behind for r in ranges), sum(r.events_behind for r in ranges)


def test_a_consumer_lags_by_what_it_has_yet_to_read(backend: Backend) -> None:
    """Summed over the feed ranges (one on Cosmos' pull-model token, several embedded)."""
    stream = f"order-{uuid.uuid4().hex}"
    backend.events.append(make_commit(stream, 1))
    backend.events.append(make_commit(stream, 2, count=3))
    consumer = f"lag-{uuid.uuid4().hex[:8]}"

    assert all(r.checkpoint is None for r in backend.events.consumer_lag(consumer))
    assert behind(backend, consumer) == (2, 4)

    page = backend.events.read_feed(None, 1)
    assert page.checkpoint is not None
    backend.events.save_checkpoint(consumer, page.checkpoint)
    assert behind(backend, consumer) == (1, 3)

    rest = backend.events.read_feed(page.checkpoint, 10)
    assert rest.checkpoint is not None
    backend.events.save_checkpoint(consumer, rest.checkpoint)
    assert behind(backend, consumer) == (0, 0)


def letter(letter_id: str) -> DeadLetter:
    return DeadLetter(id=letter_id, consumer="orders-projector-v1", stream_id="order-1",
                      version=2, event_type="ItemAddedToCart", error="ValueError: bad",
                      payload={"event": {"version": 2}}, parked_at="2024-05-01T12:00:00+00:00")


def test_a_dead_letter_is_read_by_id_and_removed_once(backend: Backend) -> None:
    letter_id = f"orders-projector-v1:order-{uuid.uuid4().hex}:2"
    assert backend.dead_letters.get_letter(letter_id) is None
    backend.dead_letters.park(letter(letter_id))
    assert backend.dead_letters.get_letter(letter_id) == letter(letter_id)

    assert backend.dead_letters.remove(letter_id) is True
    assert backend.dead_letters.get_letter(letter_id) is None
    assert backend.dead_letters.remove(letter_id) is False
    assert letter_id not in {d.id for d in backend.dead_letters.list_letters(1000)}
