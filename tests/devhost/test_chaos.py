"""Chaos mode's wrappers: faults are reproducible from the seed, raised as the adapters raise
theirs, counted, and each does what it claims (a landed write landed, a redelivered batch comes
again, an early lock expiry lets another receiver in)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.chaos import Chaos, ChaosBus, ChaosEventStore, ChaosRates, ChaosViewStore
from eventstore.embedded.bus import EmbeddedBus, MessageLockLostError
from eventstore.embedded.store import EmbeddedDatabase
from eventstore.errors import TransientError
from eventstore.poison import is_transient
from eventstore.ports import OutboundMessage
from tests.contract.conftest import make_commit, new_stream

NONE = ChaosRates(transient=0, feed_redelivery=0, bus_redelivery=0, lock_expiry=0, delay=0)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[EmbeddedBus]:
    opened = EmbeddedBus(tmp_path / "bus.db")
    opened.declare_queue("q", lock_duration=30)
    yield opened
    opened.close()


def quiet(seed: int, rates: ChaosRates) -> tuple[Chaos, list[str]]:
    lines: list[str] = []
    return Chaos(seed, rates, report=lines.append), lines


def faulted_appends(seed: int, commit_ids: list[str], tmp_path: Path) -> dict[str, str]:
    """Which appends fail, and how, in a fresh store."""
    chaos, _ = quiet(seed, ChaosRates(transient=0.2))
    database = EmbeddedDatabase(tmp_path / f"chaos-{seed}-{random.random()}.db")
    store = ChaosEventStore(database.events, chaos)
    outcome: dict[str, str] = {}
    try:
        for commit_id in commit_ids:
            stream, _, version = commit_id.rpartition(":")
            try:
                store.append(make_commit(stream, int(version)))
            except TransientError as error:
                outcome[commit_id] = "landed" if "after it landed" in str(error) else "failed"
    finally:
        database.close()
    return outcome


def test_the_same_seed_faults_the_same_operations_whatever_their_order(tmp_path: Path) -> None:
    ids = [f"order-{n}:1" for n in range(300)]
    shuffled = random.Random(5).sample(ids, len(ids))

    first = faulted_appends(42, ids, tmp_path)
    again = faulted_appends(42, shuffled, tmp_path)
    other = faulted_appends(43, ids, tmp_path)

    assert first == again
    assert 30 < len(first) < 90  # about 20 % of 300
    assert {"landed", "failed"} == set(first.values())
    assert first != other


def test_faults_are_transient_errors_counted_and_printed(database: EmbeddedDatabase) -> None:
    chaos, lines = quiet(1, ChaosRates(transient=1.0, landed=0.0))
    views = ChaosViewStore(database.views, chaos)

    with pytest.raises(TransientError) as raised:
        views.get("order-1")
    with pytest.raises(TransientError):
        views.put("order-1", {"version": 1}, None)

    assert is_transient(raised.value)
    assert database.views.get("order-1") is None  # failed before the write
    assert chaos.faults == {"view.read": 1, "view.write": 1}
    assert chaos.summary() == "faults injected: 2 (view.read 1, view.write 1)"
    assert lines == ["chaos fault #1 view.read (order-1)",
                     "chaos fault #2 view.write (order-1:None)"]


def test_a_write_that_fails_after_landing_has_landed(database: EmbeddedDatabase) -> None:
    chaos, _ = quiet(1, ChaosRates(transient=1.0, landed=1.0))
    store = ChaosEventStore(database.events, chaos)
    commit = make_commit(new_stream(), 1)

    with pytest.raises(TransientError, match="after it landed"):
        store.append(commit)

    assert database.events.read_stream(commit.stream_id) == [commit]
    assert chaos.faults == {"store.append-landed": 1}


def test_without_rates_nothing_is_injected(database: EmbeddedDatabase) -> None:
    chaos, lines = quiet(1, NONE)
    store = ChaosEventStore(database.events, chaos)
    stream = new_stream()
    for version in range(1, 30):
        store.append(make_commit(stream, version))
    assert len(store.read_stream(stream)) == 29
    assert chaos.summary() == "faults injected: 0" and lines == []


def test_a_redelivered_batch_is_the_one_that_was_checkpointed(database: EmbeddedDatabase) -> None:
    chaos, _ = quiet(1, ChaosRates(transient=0, feed_redelivery=1.0, delay=0))
    store = ChaosEventStore(database.events, chaos)
    stream = new_stream()
    home = database.events.feed_range_of(stream)
    for version in (1, 2, 3):
        database.events.append(make_commit(stream, version))

    first = store.read_range(home, None, 2)
    again = store.read_range(home, first.checkpoint, 2)  # "checkpointed", and asked for more

    assert [c.version for c in first.commits] == [1, 2]
    assert [c.version for c in again.commits] == [1, 2]  # the lost checkpoint: delivered again
    assert chaos.faults == {"feed.redeliver": 1}
    # Once delivered again, it goes on from there: the unseen commit comes, nothing is skipped.
    after = store.read_range(home, again.checkpoint, 2)
    assert [c.version for c in after.commits] == [3]
    assert database.events.read_range(home, after.checkpoint, 10).documents == []


def message(n: int) -> OutboundMessage:
    return OutboundMessage(destination="q", message_id=f"m-{n}", subject="S", body={"n": n},
                           correlation_id="c")


def test_an_early_lock_expiry_lets_another_receiver_in_while_the_first_runs(
    bus: EmbeddedBus,
) -> None:
    chaos, _ = quiet(1, ChaosRates(transient=0, lock_expiry=1.0, delay=0, bus_redelivery=0))
    chaotic = ChaosBus(bus, chaos)
    bus.send([message(1)])

    (held,) = chaotic.receive("q", timeout=0)
    (again,) = bus.receive("q", timeout=0)  # at once, not after the 30 s lock

    assert again.message_id == held.message_id and again.lock_token != held.lock_token
    assert again.delivery_count == 2
    with pytest.raises(MessageLockLostError):
        bus.complete(held)
    bus.complete(again)
    assert chaos.faults == {"bus.lock-expiry": 1}


def test_a_lost_completion_brings_the_message_back(bus: EmbeddedBus) -> None:
    chaos, _ = quiet(1, ChaosRates(transient=0, lock_expiry=0, delay=0, bus_redelivery=1.0))
    chaotic = ChaosBus(bus, chaos)
    bus.send([message(1)])

    (first,) = chaotic.receive("q", timeout=0)
    chaotic.complete(first)
    (second,) = bus.receive("q", timeout=0)

    assert second.message_id == "m-1" and second.delivery_count == 2
    assert chaos.faults == {"bus.redeliver": 1}
