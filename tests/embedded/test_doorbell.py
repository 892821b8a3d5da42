"""The embedded files' doorbells: a write through one handle (another process, as far as the
file is concerned) wakes the waits of the others at once instead of at their next poll.

Each test makes the poll interval an hour, so a wait that ends within the test's deadline can
only have been woken by the ring."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventstore.embedded import store as embedded_store
from eventstore.embedded.bus import EmbeddedBus, ReceivedMessage
from eventstore.embedded.doorbell import Doorbell, bells_folder
from eventstore.embedded.store import EmbeddedDatabase, close_all
from eventstore.ports import FeedRange, OutboundMessage
from tests.contract.conftest import make_commit
from tests.embedded.test_feed_ranges import stream_in_range

HOUR = 3600.0
pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")


@pytest.fixture(autouse=True)
def _close_shared_databases() -> Iterator[None]:
    yield
    close_all()


def wait_until(condition: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


@pytest.fixture
def handles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[EmbeddedDatabase, EmbeddedDatabase]]:
    """Two handles of one file (as two processes would have), polling once an hour."""
    monkeypatch.setattr(embedded_store, "POLL_INTERVAL", HOUR)
    path = tmp_path / "orders.db"
    waiting, writing = EmbeddedDatabase(path, 4), EmbeddedDatabase(path, 4)
    yield waiting, writing
    waiting.close()
    writing.close()


def test_an_append_through_another_handle_wakes_the_range_wait_at_once(
        handles: tuple[EmbeddedDatabase, EmbeddedDatabase]) -> None:
    waiting, writing = handles
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(
        waiting.events.wait_for_range(FeedRange("2"), None, timeout=HOUR)), daemon=True)
    waiter.start()
    wait_until(lambda: 2 in waiting.events._file_checked_at, "the wait's first read")
    writing.events.append(make_commit(stream_in_range(2, 4), 1))
    waiter.join(timeout=10)
    assert result == [True]
    # The whole-feed wait is woken too.
    assert waiting.events.wait_for_commits(None, timeout=10)


def test_a_ring_for_one_range_leaves_the_other_ranges_waiting(
        handles: tuple[EmbeddedDatabase, EmbeddedDatabase]) -> None:
    waiting, writing = handles
    assert not waiting.events.wait_for_range(FeedRange("3"), None, timeout=0)
    generation = waiting.events._range_generations[3]
    writing.events.append(make_commit(stream_in_range(1, 4), 1))
    wait_until(lambda: waiting.events._range_generations[1] == 1, "the ring of range 1")
    assert waiting.events._range_generations[3] == generation
    assert 3 in waiting.events._file_checked_at  # its last read still stands


def test_a_send_through_another_handle_wakes_a_blocked_receiver_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    with EmbeddedBus(path, poll_interval=HOUR) as receiving, \
            EmbeddedBus(path, poll_interval=HOUR) as sending:
        sending.declare_queue("q")
        result: list[ReceivedMessage] = []
        receiver = threading.Thread(
            target=lambda: result.extend(receiving.receive("q", timeout=HOUR)), daemon=True)
        receiver.start()
        wait_until(lambda: receiving._waiting_receivers == 1, "the receiver to wait")
        sending.send([OutboundMessage(destination="q", message_id="m-1", subject="s",
                                      body={}, correlation_id="c-1")])
        receiver.join(timeout=10)
        assert [m.message_id for m in result] == ["m-1"]
        receiving.complete(result[0])


def test_topics_arrive_whole_and_a_closed_handle_leaves_no_pipe(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    heard: list[set[str]] = []
    listening = Doorbell(path, heard.append)
    ringing = Doorbell(path, lambda topics: None)
    try:
        topics = [f"{n} topic/Subscriptions/{'s' * n}" for n in range(1, 200)]
        ringing.ring(topics)
        wait_until(lambda: set().union(*heard) == set(topics), "every topic")
    finally:
        listening.close()
        ringing.close()
    assert os.listdir(bells_folder(path)) == []


def test_the_pipe_of_a_handle_that_died_is_removed_by_the_next_ring(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    bell = Doorbell(path, lambda topics: None)
    try:
        dead = bells_folder(path) / "12345-deadbeef"  # a pipe nobody reads any more
        os.mkfifo(dead)
        bell.ring(["0"])
        assert not dead.exists()
        assert len(os.listdir(bells_folder(path))) == 1  # its own
    finally:
        bell.close()
