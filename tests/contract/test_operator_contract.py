"""Contract of what the operator CLI needs from the stores: streams listed in pages, a consumer's
lag behind the change feed, dead letters read and removed one by one."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

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



def test_streams_named_by_uuid_are_listed_by_their_own_ids_page_by_page(backend: Backend) -> None:
    """The usual "{category}-{uuid}" ids, which a store may keep in a compact form."""
    streams = sorted(f"order-{uuid.uuid4()}" for _ in range(3))
    for stream in streams:
        backend.events.append(make_commit(stream, 1))
    seen: list[str] = []
    after: str | None = None
    while page := backend.events.list_streams(after=after, limit=2):
        seen += [s.stream_id for s in page]
        after = page[-1].stream_id
    assert [s for s in seen if s in streams] == streams
    assert len(seen) == len(set(seen))


def behind(backend: Backend, consumer: str) -> tuple[int, int]:
    ranges = backend.events.consumer_lag(consumer)
    assert ranges and len({r.feed_range for r in ranges}) == len(ranges)
    return sum(r.commits_behind for r in ranges), sum(r.events_behind for r in ranges)


def test_a_consumer_lags_by_what_it_has_yet_to_read(backend: Backend) -> None:
    """Per feed range, from the consumer's leases; summed here."""
    stream = f"order-{uuid.uuid4().hex}"
    backend.events.append(make_commit(stream, 1))
    backend.events.append(make_commit(stream, 2, count=3))
    consumer = f"lag-{uuid.uuid4().hex[:8]}"

    lags = backend.events.consumer_lag(consumer)
    assert lags and all(r.checkpoint is None and r.owner is None for r in lags)
    assert behind(backend, consumer) == (2, 4)

    def move_to(max_items: int) -> None:
        """The consumer checkpoints the range holding the stream after ``max_items`` commits."""
        for feed_range in backend.feed.feed_ranges():
            page = backend.feed.read_range(feed_range, None, max_items)
            if any(d.get("streamId") == stream for d in page.documents):
                lease = backend.leases.read_lease(consumer, feed_range.id) or \
                    backend.leases.create_lease(consumer, feed_range.id)
                assert lease is not None
                backend.leases.replace_lease(
                    replace(lease, owner="host-1", continuation=page.checkpoint,
                            expires_at=time.time() + 60))

    move_to(1)
    assert behind(backend, consumer) == (1, 3)
    assert any(r.owner == "host-1" for r in backend.events.consumer_lag(consumer))
    move_to(10)
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
