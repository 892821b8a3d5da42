"""`python -m bench`: this project side by side with the Python ``eventsourcing`` library on the
same order lifecycle (``bench.compare``), the command loop, change feed and embedded bus, cost
with scale and a full replay (``bench.scale``), the whole order-to-paid flow over HTTP
(``bench.http_flow``) and the Cosmos DB requests of the pattern on the test peer
(``bench.cosmos_costs``). Prints every figure and writes them to bench/results/latest.json.

Figures depend on the machine; compare runs on the same one. Nothing here is asserted by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import cosmos_costs, http_flow
from bench import scale as bench_scale
from bench.compare import compare, print_table
from domain.orders import ORDER_STREAM, AddItemToCart, CreateOrder, order_codec, order_decider
from eventstore.commands import CommandContext, CommandProcessor
from eventstore.embedded.bus import EmbeddedBus
from eventstore.embedded.store import EmbeddedDatabase
from eventstore.ports import OutboundMessage


def ctx() -> CommandContext:
    return CommandContext("bench", str(uuid.uuid4()))
Result = dict[str, Any]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(label: str, count: int, run: Callable[[], list[float]]) -> Result:
    started = time.perf_counter()
    latencies = run()
    elapsed = time.perf_counter() - started
    return {"benchmark": label, "operations": count, "seconds": round(elapsed, 3),
            "per_second": round(count / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 3) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 3) if latencies else None}


def bench_commands(workdir: Path, count: int) -> list[Result]:
    results = []
    with EmbeddedDatabase(workdir / "commands.db") as db:
        processor = CommandProcessor(db.events, ORDER_STREAM, order_decider, order_codec)
        streams = [f"b{n}" for n in range(100)]
        for n, stream in enumerate(streams):
            processor.execute(stream, CreateOrder(f"b{n}", "c", "EUR"), ctx())

        def warm() -> list[float]:
            latencies = []
            for n in range(count):
                start = time.perf_counter()
                processor.execute(streams[n % len(streams)], AddItemToCart("p", 1, 100), ctx())
                latencies.append(time.perf_counter() - start)
            return latencies

        results.append(timed("warm command (embedded, 1 thread)", count, warm))

        def contended() -> list[float]:
            def one(n: int) -> float:
                start = time.perf_counter()
                processor.execute(streams[n % 4], AddItemToCart("p", 1, 100), ctx())
                return time.perf_counter() - start

            with ThreadPoolExecutor(8) as pool:
                return list(pool.map(one, range(count)))

        results.append(timed("command, 8 threads on 4 streams", count, contended))

        def feed() -> list[float]:
            checkpoint, seen = None, 0
            while True:
                page = db.events.read_feed(checkpoint, 100)
                if not page.commits:
                    return []
                seen += len(page.commits)
                checkpoint = page.checkpoint

        total = len(streams) + 2 * count
        results.append(timed("change feed read (pages of 100)", total, feed))
    return results


def bench_bus(workdir: Path, count: int) -> list[Result]:
    with EmbeddedBus(workdir / "bus.db") as bus:
        bus.declare_queue("q")
        messages = [OutboundMessage("q", f"m{n}", "Test", {"n": n}, "c") for n in range(count)]

        def send() -> list[float]:
            for start in range(0, count, 100):
                bus.send(messages[start:start + 100])
            return []

        def receive() -> list[float]:
            received = 0
            while received < count:
                batch = bus.receive("q", max_messages=50)
                for message in batch:
                    bus.complete(message)
                received += len(batch)
            return []

        return [timed("bus send (batches of 100)", count, send),
                timed("bus receive + complete (50 at a time)", count, receive)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--commands", type=int, default=5000, help="commands per run")
    parser.add_argument("--messages", type=int, default=5000, help="bus messages")
    parser.add_argument("--flow-clients", type=int, default=8, help="clients of the HTTP flow")
    parser.add_argument("--flow-seconds", type=float, default=60, help="length of the HTTP flow")
    parser.add_argument("--add-items", type=int, default=2000,
                        help="add-item requests timed with one client")
    parser.add_argument("--host-processes", default="1,2",
                        help="host processes (`--processes`) of each HTTP run (comma-separated)")
    parser.add_argument("--skip-http", action="store_true", help="skip the local-host flow")
    parser.add_argument("--scale-streams", default="1000,100000",
                        help="stream counts of the scale benchmark (comma-separated)")
    parser.add_argument("--skip-scale", action="store_true", help="skip the scale benchmark")
    parser.add_argument("--skip-cosmos", action="store_true",
                        help="skip the Cosmos DB request counts (needs `npm ci`)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the comparison")
    parser.add_argument("--compare-orders", type=int, default=400,
                        help="order lifecycles per comparison run")
    parser.add_argument("--compare-clients", default="1,8",
                        help="client threads of the comparison runs (comma-separated)")
    parser.add_argument("--skip-compare", action="store_true",
                        help="skip the comparison with the reference library")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[Result] = []
    comparisons: list[dict[str, Any]] = []
    if not args.skip_compare:
        for clients in (int(c) for c in args.compare_clients.split(",")):
            print(f"comparing with the reference library ({clients} client(s))...",
                  file=sys.stderr, flush=True)
            comparisons.append(compare(args.rounds, args.compare_orders, clients))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print("benchmarking the command loop...", file=sys.stderr, flush=True)
        results += bench_commands(workdir, args.commands)
        print("benchmarking the embedded bus...", file=sys.stderr, flush=True)
        results += bench_bus(workdir, args.messages)
    scale: dict[str, Any] | None = None
    if not args.skip_scale:
        print("benchmarking cost with scale and a full replay...", file=sys.stderr, flush=True)
        scale = bench_scale.run([int(n) for n in args.scale_streams.split(",")], 2000)
    flows: list[dict[str, Any]] = []
    if not args.skip_http:
        for processes in (int(n) for n in args.host_processes.split(",")):
            print(f"benchmarking the order flow over HTTP ({processes} host process(es))...",
                  file=sys.stderr, flush=True)
            flows.append(http_flow.run(args.flow_clients, args.flow_seconds, args.add_items,
                                       processes))
    cosmos: list[dict[str, Any]] | None = None
    if not args.skip_cosmos:
        print("counting Cosmos DB requests on the test peer...", file=sys.stderr, flush=True)
        cosmos = cosmos_costs.run()
    print(f"{'benchmark':52} {'ops':>7} {'ops/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for r in results:
        print(f"{r['benchmark']:52} {r['operations']:>7} {r['per_second']:>10} "
              f"{r['p50_ms'] if r['p50_ms'] is not None else '-':>9} "
              f"{r['p99_ms'] if r['p99_ms'] is not None else '-':>9}")
    for comparison in comparisons:
        print_table(comparison)
    if scale is not None:
        bench_scale.print_figures(scale)
    for flow in flows:
        http_flow.print_figures(flow)
    if cosmos is not None:
        cosmos_costs.print_figures(cosmos)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(
        {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
         "comparison": comparisons, "benchmarks": results, "scale": scale,
         "http_flow": flows, "cosmos": cosmos}, indent=2))
    print(f"\nevery figure: {out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
