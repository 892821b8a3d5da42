"""The command loop: cache, one write per warm command, conflicts settled by re-deciding."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.errors import InvalidTransition
from domain.orders import (
    ORDER_STREAM,
    AddItemToCart,
    CancelOrder,
    CreateOrder,
    ItemAddedToCart,
    OrderCommand,
    OrderCreated,
    OrderEvent,
    OrderState,
    OrderStatus,
    order_codec,
    order_decider,
)
from eventstore.commands import CommandContext, CommandProcessor, fingerprint
from eventstore.commit import Commit
from eventstore.embedded.store import EmbeddedDatabase
from eventstore.errors import ConcurrencyError, IdempotencyKeyReused, TransientError
from eventstore.ports import EventStore


def ctx() -> CommandContext:
    """A new command's context: every command has its own causation id."""
    return CommandContext(correlation_id="corr-1", causation_id=f"cause-{next(_CAUSES)}")


_CAUSES = itertools.count(1)
ORDER = "o1"
STREAM = ORDER_STREAM.stream_id(ORDER)


def orders(store: EventStore, **options: Any
           ) -> CommandProcessor[OrderCommand, OrderEvent, OrderState]:
    return CommandProcessor(store, ORDER_STREAM, order_decider, order_codec, **options)


class CountingStore:
    """Wraps a store and counts the requests the command loop makes."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.appends = 0
        self.reads = 0

    def append(self, commit: Commit) -> None:
        self.appends += 1
        self.inner.append(commit)

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        self.reads += 1
        return self.inner.read_stream(stream_id, after_version)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[EmbeddedDatabase]:
    with EmbeddedDatabase(tmp_path / "orders.db") as db:
        yield db


def test_cold_command_reads_once_and_writes_once_warm_command_only_writes(
        database: EmbeddedDatabase) -> None:
    orders(database.events).execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    store = CountingStore(database.events)
    processor = orders(store)

    processor.execute(ORDER, AddItemToCart("p1", 1, 100), ctx())
    assert (store.reads, store.appends) == (1, 1)
    result = processor.execute(ORDER, AddItemToCart("p2", 2, 100), ctx())
    assert (store.reads, store.appends) == (1, 2)
    assert result.version == 3 and result.state.total == 300


def test_commit_carries_metadata_and_contiguous_versions(database: EmbeddedDatabase) -> None:
    ids = iter(f"event-{n}" for n in range(100))
    processor = orders(database.events, clock=lambda: "2026-01-01T00:00Z",
                                 id_factory=lambda: next(ids))
    processor.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    processor.execute(ORDER, AddItemToCart("p1", 1, 100), ctx())
    commits = database.events.read_stream(STREAM)
    assert [c.id for c in commits] == ["order-o1:1", "order-o1:2"]
    assert [e.event_id for c in commits for e in c.events] == ["event-0", "event-1"]
    assert {(c.correlation_id, c.committed_at) for c in commits} == {
        ("corr-1", "2026-01-01T00:00Z")}
    assert len({c.causation_id for c in commits}) == 2


def test_no_op_command_writes_nothing(database: EmbeddedDatabase) -> None:
    store = CountingStore(database.events)
    processor = orders(store)
    processor.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    first = processor.execute(ORDER, CancelOrder("no"), ctx())
    again = processor.execute(ORDER, CancelOrder("no"), ctx())
    assert again.events == () and again.version == first.version == 2
    assert store.appends == 2


def test_stale_cache_after_another_writer_re_decides_from_the_new_state(
        database: EmbeddedDatabase) -> None:
    mine = orders(database.events)
    theirs = orders(database.events)
    mine.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    theirs.execute(ORDER, AddItemToCart("p1", 1, 100), ctx())  # mine's cache is now stale

    result = mine.execute(ORDER, AddItemToCart("p2", 1, 100), ctx())
    assert result.version == 3
    assert [i.cart_item_id for i in result.state.items] == ["item-1", "item-2"]

    theirs.execute(ORDER, CancelOrder("gone"), ctx())
    with pytest.raises(InvalidTransition):  # re-decided against Cancelled, not the stale Created
        mine.execute(ORDER, AddItemToCart("p3", 1, 100), ctx())


def test_a_conflict_on_cached_state_retries_at_once_a_conflict_on_read_state_backs_off(
        database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr("eventstore.commands.time.sleep", pauses.append)
    mine, theirs = orders(database.events), orders(database.events)
    mine.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    theirs.execute(ORDER, AddItemToCart("p1", 1, 100), ctx())  # mine's cache is behind
    assert mine.execute(ORDER, AddItemToCart("p2", 1, 100), ctx()).version == 3
    assert pauses == []  # the cache was behind (another process wrote): no back-off

    class ConflictingOnce(CountingStore):
        def append(self, commit: Commit) -> None:
            self.appends += 1
            if self.appends == 1:
                raise ConcurrencyError("a writer won the race")
            self.inner.append(commit)

    cold = orders(ConflictingOnce(database.events), cache_size=0)
    assert cold.execute(ORDER, AddItemToCart("p3", 1, 100), ctx()).version == 4
    assert pauses == [0.005]  # decided on state just read: writers collide, so spread out


def test_gives_up_with_a_conflict_error_after_the_bound(database: EmbeddedDatabase) -> None:
    class AlwaysConflicting(CountingStore):
        def append(self, commit: Commit) -> None:
            self.appends += 1
            raise ConcurrencyError("somebody else won")

    orders(database.events).execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    store = AlwaysConflicting(database.events)
    processor = orders(store, max_attempts=3)
    with pytest.raises(ConcurrencyError, match="3 attempts"):
        processor.execute(ORDER, AddItemToCart("p", 1, 1), ctx())
    assert store.appends == 3


def test_writers_in_separate_processors_never_lose_an_accepted_command(tmp_path: Path) -> None:
    """Separate processors (think: scaled-out hosts) on one file race for each version."""
    path = tmp_path / "orders.db"
    with EmbeddedDatabase(path) as setup:
        orders(setup.events).execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    accepted: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        with EmbeddedDatabase(path) as db:
            processor = orders(db.events, max_attempts=50)
            for k in range(5):
                result = processor.execute(ORDER, AddItemToCart(f"p{n}-{k}", 1, 1), ctx())
                with lock:
                    added = result.events[0]
                    assert isinstance(added, ItemAddedToCart)
                    accepted.append(added.cart_item_id)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with EmbeddedDatabase(path) as db:
        state, version = orders(db.events).load(ORDER)
    assert version == 21 and len(accepted) == 20
    assert sorted(i.cart_item_id for i in state.items) == sorted(accepted)
    assert state.status == OrderStatus.CREATED


def test_load_at_least_catches_up_only_when_needed(database: EmbeddedDatabase) -> None:
    writer = orders(database.events)
    writer.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    store = CountingStore(database.events)
    reader = orders(store)
    assert reader.load(ORDER)[1] == 1 and store.reads == 1
    writer.execute(ORDER, AddItemToCart("p", 1, 1), ctx())
    assert reader.load(ORDER)[1] == 1 and store.reads == 1  # cached is enough
    assert reader.load(ORDER, at_least=2)[1] == 2 and store.reads == 2
    assert reader.cached_version(ORDER) == 2


def test_a_refusal_on_cached_state_is_re_decided_on_the_current_state(
        database: EmbeddedDatabase) -> None:
    """Scale-out: this instance cached the order before another one checked it out; a payment
    confirmation arriving here must not be refused on the stale state."""
    from domain.orders import MarkOrderPaid, PrepareToPay

    here = orders(database.events)
    there = orders(database.events)
    here.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    here.execute(ORDER, AddItemToCart("p", 1, 100), ctx())  # cached here at version 2
    there.execute(ORDER, PrepareToPay("pay-1", 100), ctx())

    result = here.execute(ORDER, MarkOrderPaid("pay-1"), ctx())
    assert result.version == 4 and result.state.status == OrderStatus.PAID
    with pytest.raises(InvalidTransition):  # refused on the current state, still refused
        here.execute(ORDER, AddItemToCart("p", 1, 100), ctx())


def test_load_refresh_reads_what_other_instances_wrote(database: EmbeddedDatabase) -> None:
    here = orders(database.events)
    there = orders(database.events)
    here.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    there.execute(ORDER, AddItemToCart("p", 1, 100), ctx())
    assert here.load(ORDER)[1] == 1
    assert here.load(ORDER, refresh=True)[1] == 2


def test_a_retried_command_is_answered_with_its_original_result(
        database: EmbeddedDatabase) -> None:
    processor = orders(database.events)
    processor.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    retry = CommandContext("corr-1", "client-command-7")
    first = processor.execute(ORDER, AddItemToCart("p", 1, 100), retry)
    again = processor.execute(ORDER, AddItemToCart("p", 1, 100), retry)
    assert again.version == first.version == 2 and again.events == first.events
    assert len(database.events.read_stream(STREAM)) == 2


def test_a_write_that_landed_unseen_is_recognised_when_the_command_is_retried(
        database: EmbeddedDatabase) -> None:
    """The store accepted the commit but the caller saw a timeout; the retry (same causation id)
    must not add the item a second time, also on an instance whose cache never saw the write."""

    class TimesOutAfterWriting(CountingStore):
        def append(self, commit: Commit) -> None:
            self.inner.append(commit)
            raise TransientError("timed out waiting for the response")

    processor = orders(database.events)
    processor.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    flaky = orders(TimesOutAfterWriting(database.events))
    flaky.load(ORDER)
    retry = CommandContext("corr-1", "client-command-8")
    with pytest.raises(TransientError):
        flaky.execute(ORDER, AddItemToCart("p", 1, 100), retry)
    again = processor.execute(ORDER, AddItemToCart("p", 1, 100), retry)  # cache at version 1
    assert again.version == 2 and again.events == (ItemAddedToCart("item-1", "p", 1, 100),)
    assert [c.version for c in database.events.read_stream(STREAM)] == [1, 2]


def test_a_key_reused_for_another_command_is_refused_not_replayed(
        database: EmbeddedDatabase) -> None:
    processor = orders(database.events)
    processor.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    key = CommandContext("corr-1", "client-key-1")
    processor.execute(ORDER, AddItemToCart("p", 1, 100), key)
    with pytest.raises(IdempotencyKeyReused, match="client-key-1"):
        processor.execute(ORDER, AddItemToCart("p", 2, 100), key)  # same kind, other content
    with pytest.raises(IdempotencyKeyReused):
        orders(database.events).execute(ORDER, CancelOrder("x"), key)  # another instance too
    assert len(database.events.read_stream(STREAM)) == 2


def test_a_retried_create_is_recognised_however_long_the_stream_grew(
        database: EmbeddedDatabase) -> None:
    key = CommandContext("corr-1", "create-key")
    orders(database.events).execute(ORDER, CreateOrder("o1", "c1", "EUR"), key)
    writer = orders(database.events)
    for n in range(40):  # beyond the window of recent commits
        writer.execute(ORDER, AddItemToCart(f"p{n}", 1, 1), ctx())
    again = orders(database.events).execute(ORDER, CreateOrder("o1", "c1", "EUR"), key)
    assert again.version == 1 and again.events == (OrderCreated("o1", "c1", "EUR"),)


def test_recall_finds_a_command_committed_by_another_instance(database: EmbeddedDatabase) -> None:
    key = CommandContext("corr-1", "checkout-key", fingerprint=fingerprint("Checkout", ORDER))
    here, there = orders(database.events), orders(database.events)
    here.execute(ORDER, CreateOrder("o1", "c1", "EUR"), ctx())
    assert here.recall(ORDER, key) is None
    there.execute(ORDER, AddItemToCart("p", 1, 1), key)
    recalled = here.recall(ORDER, key)
    assert recalled is not None and recalled.version == 2
    other = CommandContext("corr-1", "checkout-key", fingerprint=fingerprint("Cancel", ORDER))
    with pytest.raises(IdempotencyKeyReused):
        here.recall(ORDER, other)
