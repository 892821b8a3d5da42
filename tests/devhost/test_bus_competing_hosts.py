"""Two local hosts on one bus file never run one message under the same lock at once: each
message is handled once, by one process, even when it takes longer than its lock (the lock is
renewed). The control shows what the test catches: without renewal, a slow message runs twice
at the same time."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost.bus import BusOptions, BusWorker
from devhost.indexing import BusSpec
from eventstore.embedded.bus import EmbeddedBus
from eventstore.ports import OutboundMessage
from tests.e2e.localhost import poll

LOCK_SECONDS = 0.6
SLOW_SECONDS = 1.5  # longer than the lock: only renewal keeps it
WORKERS_PER_HOST = 4
HOSTS = 2


def _record(log: Path, entry: dict[str, Any]) -> None:
    with log.open("a", encoding="utf-8") as out:  # one short append per line: not interleaved
        out.write(json.dumps(entry) + "\n")


def _host(bus_path: str, log_path: str, stop_path: str, renewal: float) -> None:
    """One local host's bus workers, in their own process."""
    import devhost.bus as devhost_bus

    devhost_bus.RECEIVE_WAIT_SECONDS = 0.05
    log, stop_file = Path(log_path), Path(stop_path)

    def handle(message: func.ServiceBusMessage) -> None:
        body = json.loads(message.get_body())
        started = time.time()
        time.sleep(body["seconds"])
        _record(log, {"id": message.message_id, "token": message.lock_token, "pid": os.getpid(),
                      "start": started, "end": time.time()})

    stop = threading.Event()
    with EmbeddedBus(bus_path) as bus:
        spec = BusSpec(name="worker", call=handle, arg_name="message", raw={}, entity_path="q")
        options = BusOptions(max_concurrent_calls=WORKERS_PER_HOST,
                             max_auto_lock_renewal=renewal)
        workers = [BusWorker(spec, bus, stop, i, options) for i in range(WORKERS_PER_HOST)]
        # Both start together: a host that took long to spawn would otherwise find nothing left.
        (log.parent / f"ready-{os.getpid()}").touch()
        ready_by = time.monotonic() + 30
        while len(list(log.parent.glob("ready-*"))) < HOSTS and time.monotonic() < ready_by:
            time.sleep(0.01)
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 60
        while not stop_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for worker in workers:
            worker.join(timeout=10)


def runs(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


def overlapping(entries: list[dict[str, Any]]) -> list[str]:
    """Messages that ran twice at the same time."""
    found = []
    by_id: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_id.setdefault(entry["id"], []).append(entry)
    for message_id, same in by_id.items():
        same.sort(key=lambda e: e["start"])
        if any(later["start"] < earlier["end"] for earlier, later in pairwise(same)):
            found.append(message_id)
    return found


def run_two_hosts(tmp_path: Path, renewal: float, until: Any) -> list[dict[str, Any]]:
    bus_path, log, stop = tmp_path / "bus.db", tmp_path / "runs.jsonl", tmp_path / "stop"
    with EmbeddedBus(bus_path) as bus:
        bus.declare_queue("q", lock_duration=LOCK_SECONDS, max_delivery_count=10)
        bus.send([OutboundMessage(destination="q", message_id=f"m-{n:02}", subject="Work",
                                  body={"seconds": SLOW_SECONDS if n % 4 == 0 else 0.05},
                                  correlation_id="c") for n in range(24)])
    context = multiprocessing.get_context("spawn")
    hosts = [context.Process(target=_host, args=(str(bus_path), str(log), str(stop), renewal))
             for _ in range(HOSTS)]
    for host in hosts:
        host.start()
    try:
        poll(lambda: until(runs(log)), 45, "the hosts to handle the messages")
    finally:
        stop.touch()
        for host in hosts:
            host.join(timeout=30)
            if host.is_alive():
                host.kill()
    return runs(log)


def test_two_hosts_run_each_message_once_even_past_its_lock(tmp_path: Path) -> None:
    entries = run_two_hosts(tmp_path, renewal=300.0,
                            until=lambda done: len({e["id"] for e in done}) == 24)

    assert sorted(e["id"] for e in entries) == [f"m-{n:02}" for n in range(24)]  # once each
    assert overlapping(entries) == []
    assert len({e["pid"] for e in entries}) == 2  # both hosts took part
    with EmbeddedBus(tmp_path / "bus.db") as bus:
        assert bus.receive("q", timeout=0) == []
        assert bus.peek_dead_letters("q") == []


def test_control_without_renewal_a_slow_message_runs_twice_at_once(tmp_path: Path) -> None:
    entries = run_two_hosts(tmp_path, renewal=0.0,
                            until=lambda done: overlapping(done) != [])
    assert overlapping(entries)
