"""Cost with scale on the embedded store: per-command latency with 1k and with 100k streams
(cold: the processor caches nothing, and the file is opened afresh), and a full replay (read
every commit from the change feed, decode, fold every stream) in events per second.

The streams are orders created with 2 events each (create, add an item), appended through the
store's own ``append`` from 8 threads (as concurrent commands would). The measured command adds
an item to a random existing order.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from domain.orders import (
    ORDER_STREAM,
    AddItemToCart,
    OrderState,
    order_codec,
    order_decider,
)
from eventstore.clock import new_id, utc_now_iso
from eventstore.commands import CommandContext, CommandProcessor
from eventstore.commit import Commit, EventRecord
from eventstore.embedded.store import EmbeddedDatabase

EVENTS_PER_STREAM = 2
Json = dict[str, Any]


def _stream_commits(order_id: str) -> list[Commit]:
    now = utc_now_iso()
    correlation = new_id()
    stream_id = ORDER_STREAM.stream_id(order_id)
    data: list[tuple[str, Json]] = [
        ("OrderCreated", {"orderId": order_id, "customerId": "customer-1", "currency": "EUR"}),
        ("ItemAddedToCart", {"cartItemId": "item-1", "productId": "product-1", "quantity": 1,
                             "unitPrice": 250})]
    return [Commit(stream_id, ORDER_STREAM.name,
                   (EventRecord(version, new_id(), kind, 1, now, body),), correlation, new_id(),
                   now)
            for version, (kind, body) in enumerate(data, start=1)]


def populate(db_path: Path, streams: int) -> list[str]:
    order_ids = [str(uuid.uuid4()) for _ in range(streams)]
    with EmbeddedDatabase(db_path) as database:
        def append(share: list[str]) -> None:
            for order_id in share:
                for commit in _stream_commits(order_id):
                    database.events.append(commit)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(append, [order_ids[n::8] for n in range(8)]))
    return order_ids


def command_latency(db_path: Path, order_ids: list[str], commands: int) -> dict[str, Any]:
    chosen = random.Random(7).sample(order_ids, min(commands, len(order_ids)))
    with EmbeddedDatabase(db_path) as database:
        processor = CommandProcessor(database.events, ORDER_STREAM, order_decider, order_codec,
                                     cache_size=0)
        latencies = []
        for order_id in chosen:
            started = time.perf_counter()
            processor.execute(order_id, AddItemToCart("product-2", 1, 100),
                              CommandContext(new_id(), new_id()))
            latencies.append(time.perf_counter() - started)
    return {"streams": len(order_ids), "commands": len(chosen),
            "p50_ms": round(statistics.median(latencies) * 1000, 3),
            "mean_ms": round(statistics.fmean(latencies) * 1000, 3)}


def replay(db_path: Path) -> dict[str, Any]:
    """Every commit through the change feed, decoded and folded into its stream's state."""
    states: dict[str, OrderState] = {}
    events = 0
    with EmbeddedDatabase(db_path) as database:
        started = time.perf_counter()
        checkpoint = None
        while True:
            page = database.events.read_feed(checkpoint, 1000)
            if not page.documents:
                break
            checkpoint = page.checkpoint
            for commit in page.commits:
                state = states.get(commit.stream_id, order_decider.initial_state)
                for record in commit.events:
                    state = order_decider.evolve(state, order_codec.decode(
                        record.type, record.schema_version, record.data))
                    events += 1
                states[commit.stream_id] = state
        seconds = time.perf_counter() - started
    return {"streams": len(states), "events": events, "seconds": round(seconds, 2),
            "events_per_second": round(events / seconds)}


def run(stream_counts: list[int], commands: int) -> dict[str, Any]:
    latencies = []
    replayed: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for streams in stream_counts:
            db_path = Path(tmp) / f"scale-{streams}.db"
            order_ids = populate(db_path, streams)
            latencies.append(command_latency(db_path, order_ids, commands))
            if streams == max(stream_counts):
                replayed = replay(db_path)
    smallest, largest = latencies[0], latencies[-1]
    return {"cold_command": latencies,
            "change_p50_percent": round(100 * (largest["p50_ms"] / smallest["p50_ms"] - 1), 1),
            "replay": replayed}


def print_figures(figures: dict[str, Any]) -> None:
    print("\ncold command (add-item on a random stream, nothing cached, synchronous=NORMAL):")
    for row in figures["cold_command"]:
        print(f"  {row['streams']:>7} streams: p50 {row['p50_ms']} ms, mean {row['mean_ms']} ms "
              f"({row['commands']} commands)")
    print(f"  p50 change from fewest to most streams: {figures['change_p50_percent']:+}%")
    r = figures["replay"]
    print(f"full replay (feed read, decode, fold): {r['events']} events of {r['streams']} "
          f"streams in {r['seconds']} s = {r['events_per_second']} events/s")
