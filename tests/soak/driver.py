"""The convergence soak: orders over HTTP against two local hosts in chaos mode on one data
folder, one of them killed with SIGKILL a quarter of the way through and restarted half-way,
then proof that everything converged exactly once.

The workload is fixed by the seed: paid orders (some with a deleted item, some with a checkout
retried under the same key or sent again under a new one), orders whose first payment is
declined and whose second checkout is paid, and cancelled orders (some cancelled twice). Every
command carries an Idempotency-Key and is retried, on either host, after a 503, a lost
connection or a lost race, as a client should. Two poison messages and one unreadable commit are
injected on purpose.

Once every flow is done, the soak waits (polling, with a deadline) until the hosts have settled:
every lease of every consumer at the head of its range, no message left on the bus but the
poison, and every view equal to the fold of its stream. Then it stops the hosts and checks, from
the data files, per order: the designed terminal state, exactly one ``OrderPaid`` (or one
``OrderPaymentFailed`` per failed attempt), exactly the items added, contiguous versions, the view
equal to the fold; per payment: one ``PaymentCreated``, one ``PaymentStarted``, one outcome; no
payment nobody asked for; every integration message applied exactly once (the effect's causation
is the message); and no dead letters but the poison. ``SoakFailure`` lists what did not hold.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.bootstrap import ORDER_VIEW, PAYMENT_VIEW
from domain import orders, payments
from eventstore.commit import Commit, message_id
from eventstore.embedded.bus import EmbeddedBus, subscription_path
from eventstore.embedded.packing import unpack_stream_id
from eventstore.embedded.store import EmbeddedDatabase, feed_range_of
from eventstore.ports import OutboundMessage
from eventstore.projection import PROJECTOR_FIELD, projection_from_stream
from tests.e2e.localhost import LocalHost

DECLINE_ABOVE = 100_000
RETRYABLE = {429, 500, 502, 503, 504}
CONSUMERS = {"orders": ("orders-projector-v1", "orders-publisher-v1"),
             "payments": ("payments-projector-v1", "payments-publisher-v1")}
AUTHORIZATIONS = "payment-authorizations"
ORDERS_SUBSCRIPTION = subscription_path("payments", "orders")
POISON_MESSAGES = {AUTHORIZATIONS: "soak-poison-command", "payments": "soak-poison-event"}
POISON_STREAM = "order-soak-poison"


class SoakFailure(AssertionError):
    """What did not converge, or did not hold after it did."""


@dataclass(frozen=True)
class SoakConfig:
    paid: int = 100
    declined: int = 10  # a declined payment, then a second checkout that is paid
    cancelled: int = 10
    seed: int = 1
    clients: int = 8
    kill: bool = True  # SIGKILL the second host after a quarter of the flows, restart it later
    feed_ranges: int = 4
    lease_seconds: float = 2.0
    bus_lock_seconds: float = 3.0
    acquirer_delay_ms: int = 50
    deadline: float = 150.0  # for the flows, then again for convergence
    bug: str | None = None  # a seeded bug (tests/soak/mutant.py) the soak must catch

    @property
    def orders(self) -> int:
        return self.paid + self.declined + self.cancelled


@dataclass
class Flow:
    index: int
    kind: str  # "paid" | "declined" | "cancelled"
    order_id: str = ""
    adds: int = 0
    deletes: int = 0
    checkouts: int = 0  # distinct checkouts (OrderPreparedToPay events)
    payments: list[tuple[str, str]] = field(default_factory=list)  # (payment id, outcome)


@dataclass
class SoakReport:
    config: SoakConfig
    flows: Counter[str]
    requests: int
    http_retries: Counter[str]
    faults: Counter[str]
    bus_redeliveries: int
    takeovers: int
    rebalances: int
    flow_seconds: float
    convergence_seconds: float
    total_seconds: float

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        retries = ", ".join(f"{k} {v}" for k, v in sorted(self.http_retries.items())) or "none"
        redelivered = self.faults["feed.redeliver"]
        return [
            f"soak (seed {self.config.seed}): {self.config.orders} orders "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.flows.items()))}), "
            f"{self.requests} HTTP requests, retried: {retries}",
            f"faults injected: {sum(self.faults.values())} ({faults})",
            f"redeliveries absorbed: {redelivered} change-feed batches, "
            f"{self.bus_redeliveries} bus deliveries after the first; "
            f"takeovers {self.takeovers}, rebalancing moves {self.rebalances}",
            f"flows done in {self.flow_seconds:.1f}s, converged {self.convergence_seconds:.1f}s "
            f"after the last command, {self.total_seconds:.1f}s in all",
        ]


class Client:
    """One simulated client: retries what a client may retry, on whichever host is up."""

    def __init__(self, hosts: list[LocalHost], up: list[threading.Event], rng: random.Random,
                 stats: Stats, deadline: float) -> None:
        self._hosts = hosts
        self._up = up
        self._rng = rng
        self._stats = stats
        self._deadline = deadline
        self._http = httpx.Client(timeout=15)

    def close(self) -> None:
        self._http.close()

    def send(self, method: str, path: str, body: Any = None, key: str | None = None,
             ok: tuple[int, ...] = (200, 201, 202)) -> dict[str, Any]:
        headers = {"Idempotency-Key": key} if key else {}
        while True:
            if time.monotonic() > self._deadline:
                raise SoakFailure(f"{method} {path} did not succeed before the deadline")
            candidates = [h for h, up in zip(self._hosts, self._up, strict=True) if up.is_set()]
            host = self._rng.choice(candidates or self._hosts)
            self._stats.count_request()
            try:
                response = self._http.request(method, host.base + path, json=body,
                                              headers=headers)
            except httpx.TransportError:
                self._stats.retried("connection")
                time.sleep(0.05)  # a back-off before retrying, not a wait for async work
                continue
            if response.status_code in ok:
                result: dict[str, Any] = response.json()
                return result
            if response.status_code in RETRYABLE or (
                    response.status_code == 409
                    and response.json().get("title") == "Concurrent modification"):
                self._stats.retried(str(response.status_code))
                time.sleep(0.05 + self._rng.random() * 0.1)
                continue
            raise SoakFailure(f"{method} {path} -> {response.status_code}: {response.text}")

    def wait_order(self, order_id: str, min_version: int, what: str,
                   done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            view = self.send("GET", f"/orders/{order_id}?minVersion={min_version}")
            if done(view):
                return view
            if time.monotonic() > self._deadline:
                raise SoakFailure(f"order {order_id} never {what}: {view}")
            time.sleep(0.1)  # polling the order, with the deadline above


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries: Counter[str] = Counter()
        self.finished = 0

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def retried(self, why: str) -> None:
        with self._lock:
            self.retries[why] += 1

    def flow_done(self) -> None:
        with self._lock:
            self.finished += 1


def plan(config: SoakConfig) -> list[Flow]:
    kinds = ["paid"] * config.paid + ["declined"] * config.declined + \
        ["cancelled"] * config.cancelled
    random.Random(config.seed).shuffle(kinds)
    return [Flow(index, kind) for index, kind in enumerate(kinds)]


def run_flow(flow: Flow, client: Client, rng: random.Random, seed: int) -> None:
    keys = (f"soak-{seed}-{flow.index}-{step}" for step in range(1000))
    created = client.send("POST", "/orders", {"customerId": f"customer-{flow.index}",
                                              "currency": "EUR"}, next(keys))
    order_id = flow.order_id = created["orderId"]
    items = []
    for _ in range(1 if flow.kind == "cancelled" else rng.randint(2, 3)):
        added = client.send("POST", f"/orders/{order_id}/items",
                            {"productId": f"p-{rng.randint(1, 50)}", "quantity": rng.randint(1, 3),
                             "unitPrice": rng.randint(100, 5000)}, next(keys))
        items.append(added["cartItemId"])
        flow.adds += 1
    if flow.kind == "cancelled":
        client.send("POST", f"/orders/{order_id}/cancel", {"reason": "changed my mind"},
                    next(keys))
        if rng.random() < 0.5:  # a second cancel, under a new key: a no-op
            client.send("POST", f"/orders/{order_id}/cancel", None, next(keys))
        return
    if rng.random() < 0.4:
        client.send("DELETE", f"/orders/{order_id}/items/{items.pop(0)}", None, next(keys))
        flow.deletes += 1
    expensive = None
    if flow.kind == "declined":
        added = client.send("POST", f"/orders/{order_id}/items",
                            {"productId": "p-expensive", "quantity": 1,
                             "unitPrice": DECLINE_ABOVE + 1}, next(keys))
        expensive = added["cartItemId"]
        flow.adds += 1
        first = checkout(flow, client, rng, next(keys), next(keys))
        authorize(client, first["paymentId"], next(keys))
        flow.payments.append((first["paymentId"], "Failed"))
        client.wait_order(order_id, first["version"], "had its payment declined",
                          lambda v: v["status"] == "Created"
                          and (v.get("lastPaymentFailure") or {}).get("paymentId")
                          == first["paymentId"])
        client.send("DELETE", f"/orders/{order_id}/items/{expensive}", None, next(keys))
        flow.deletes += 1
    paid = checkout(flow, client, rng, next(keys), next(keys))
    authorize(client, paid["paymentId"], next(keys))
    flow.payments.append((paid["paymentId"], "Completed"))
    client.wait_order(order_id, paid["version"], "was paid", lambda v: v["status"] == "Paid")


def checkout(flow: Flow, client: Client, rng: random.Random, key: str,
             other_key: str) -> dict[str, Any]:
    path = f"/orders/{flow.order_id}/checkout"
    done = client.send("POST", path, None, key)
    flow.checkouts += 1
    if rng.random() < 0.3:  # the client retries (its answer got lost): the same key
        again = client.send("POST", path, None, key)
        if again["paymentId"] != done["paymentId"] or again["version"] != done["version"]:
            raise SoakFailure(f"a retried checkout answered {again}, not {done}")
    if rng.random() < 0.2:  # a second tab checks out again: the same payment, nothing new
        other = client.send("POST", path, None, other_key)
        if other["paymentId"] != done["paymentId"]:
            raise SoakFailure(f"a repeated checkout created payment {other['paymentId']}")
    return done


def authorize(client: Client, payment_id: str, key: str) -> None:
    client.send("POST", f"/payments/{payment_id}/authorize", None, key)


# -- running it ----------------------------------------------------------------------------------


def start_hosts(config: SoakConfig, work: Path) -> list[LocalHost]:
    env = {"PAYMENTS_ACQUIRER_DELAY_MS": str(config.acquirer_delay_ms),
           "PAYMENTS_DECLINE_ABOVE": str(DECLINE_ABOVE),
           "EMBEDDED_FEED_RANGES": str(config.feed_ranges),
           "EMBEDDED_BUS_LOCK_SECONDS": str(config.bus_lock_seconds)}
    launcher = ("-m", "tests.soak.mutant", config.bug) if config.bug else ("-m", "devhost")
    hosts = []
    for name in ("soak-a", "soak-b-1"):
        args = ("--chaos", str(config.seed), "--instance-id", name,
                "--lease-seconds", str(config.lease_seconds))
        hosts.append(LocalHost(work / "data", env, args=args, launcher=launcher))
    hosts[0].start()
    hosts[1].start()
    return hosts


def inject_poison(data: Path, feed_ranges: int) -> str:
    """Two messages no function can handle, and a commit document no consumer can read."""
    with EmbeddedBus(data / "bus.db") as bus:
        bus.send([OutboundMessage(destination=destination, message_id=poison,
                                  subject="NotAContract", body={"poison": True},
                                  correlation_id="soak-poison")
                  for destination, poison in POISON_MESSAGES.items()])
    document_id = f"{POISON_STREAM}:1"
    with sqlite3.connect(data / "orders.db") as conn:
        conn.execute("INSERT INTO commits (stream_id, first_version, last_version, document,"
                     " feed_range) VALUES (?, 1, 1, ?, ?)",
                     (POISON_STREAM, json.dumps({"id": document_id, "streamId": POISON_STREAM,
                                                 "nonsense": True}),
                      feed_range_of(POISON_STREAM, feed_ranges)))
    conn.close()
    return document_id


def run_soak(config: SoakConfig, work: Path, say: Callable[[str], None] = print) -> SoakReport:
    started = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    hosts = start_hosts(config, work)
    try:
        poison_document = inject_poison(work / "data", config.feed_ranges)
        flows, stats, flow_seconds = drive(config, hosts, say)
        last_command = time.monotonic()
        settle(config, work / "data", flows, time.monotonic() + config.deadline)
        convergence = time.monotonic() - last_command
    except BaseException:
        for host in hosts:
            host.kill()
        raise
    for host in hosts:
        if host.stop() != 0:
            raise SoakFailure(f"host on port {host.port} did not stop cleanly:\n{host.log()}")
    problems = verify(config, work / "data", flows, poison_document)
    logs = "\n".join(host.log() for host in hosts)
    if problems:
        raise SoakFailure("the soak found:\n- " + "\n- ".join(problems[:40]))
    return SoakReport(
        config=config, flows=Counter(f.kind for f in flows), requests=stats.requests,
        http_retries=stats.retries,
        faults=Counter(re.findall(r"chaos fault #\d+ (\S+) \(", logs)),
        bus_redeliveries=len(re.findall(r"\(message [^,]+, delivery ([2-9]|\d\d+)\)", logs)),
        takeovers=logs.count(" taken over by "), rebalances=logs.count("(balancing)"),
        flow_seconds=flow_seconds, convergence_seconds=convergence,
        total_seconds=time.monotonic() - started)


def drive(config: SoakConfig, hosts: list[LocalHost], say: Callable[[str], None]
          ) -> tuple[list[Flow], Stats, float]:
    flows = plan(config)
    stats = Stats()
    up = [threading.Event(), threading.Event()]
    for event in up:
        event.set()
    deadline = time.monotonic() + config.deadline
    pending = list(flows)
    lock = threading.Lock()
    failures: list[BaseException] = []
    began = time.monotonic()

    def worker(number: int) -> None:
        rng = random.Random(f"{config.seed}-client-{number}")
        client = Client(hosts, up, rng, stats, deadline)
        try:
            while not failures:
                with lock:
                    if not pending:
                        return
                    flow = pending.pop(0)
                run_flow(flow, client, random.Random(f"{config.seed}-flow-{flow.index}"),
                         config.seed)
                stats.flow_done()
        except BaseException as error:
            failures.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True)
               for n in range(config.clients)]
    for thread in threads:
        thread.start()
    if config.kill:
        chaos_monkey(config, hosts, up, stats, failures, say)
    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic() + 5))
    if failures:
        raise failures[0]
    if any(thread.is_alive() for thread in threads):
        raise SoakFailure("clients still running after the deadline")
    return flows, stats, time.monotonic() - began


def chaos_monkey(config: SoakConfig, hosts: list[LocalHost], up: list[threading.Event],
                 stats: Stats, failures: list[BaseException], say: Callable[[str], None]) -> None:
    """SIGKILL the second host once a quarter of the flows are done; restart it (as a new
    instance) at half."""
    deadline = time.monotonic() + config.deadline

    def reached(fraction: float) -> bool:
        while stats.finished < config.orders * fraction:
            if failures or time.monotonic() > deadline:
                return False
            time.sleep(0.05)  # polling the clients' progress
        return True

    if not reached(1 / 4):
        return
    up[1].clear()
    hosts[1].kill()
    say(f"soak: SIGKILL host soak-b-1 after {stats.finished} orders")
    if not reached(1 / 2):
        return
    say(f"soak: restarting it as soak-b-2 after {stats.finished} orders")
    hosts[1].args = tuple("soak-b-2" if a == "soak-b-1" else a for a in hosts[1].args)
    hosts[1].start()
    up[1].set()
    say(f"soak: soak-b-2 serves again after {stats.finished} orders")


# -- convergence ---------------------------------------------------------------------------------


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def unsettled(data: Path) -> list[str]:
    """What the hosts still have to do: ranges behind their heads, messages on the bus."""
    behind = []
    for service, consumers in CONSUMERS.items():
        path = data / f"{service}.db"
        heads = dict(_rows(path, "SELECT feed_range, max(seq) FROM commits GROUP BY feed_range"))
        leases = {(p, r): c for p, r, c in _rows(
            path, "SELECT prefix, range_id, continuation FROM leases")}
        for consumer in consumers:
            for range_id, head in heads.items():
                continuation = leases.get((consumer, str(range_id)))
                at = int(continuation.split(":")[1]) if continuation else 0
                if at < head:
                    behind.append(f"{consumer} range {range_id} at {at} of {head}")
    live = _rows(data / "bus.db", "SELECT entity, message_id FROM bus_messages"
                 " WHERE entity NOT LIKE '%$DeadLetterQueue'")
    behind.extend(f"message {m} on {e}" for e, m in live)
    return behind


def view_mismatches(database: EmbeddedDatabase, definition: Any, aggregate_ids: list[str]
                    ) -> list[str]:
    found = []
    for aggregate_id in aggregate_ids:
        commits = database.events.read_stream(definition.category.stream_id(aggregate_id))
        folded = projection_from_stream(definition, commits)
        stored = database.views.get(aggregate_id)
        view = None if stored is None else {k: v for k, v in stored.document.items()
                                            if k != PROJECTOR_FIELD}
        if view != folded:
            found.append(f"view {aggregate_id} is {view}, its stream folds to {folded}")
    return found


def settle(config: SoakConfig, data: Path, flows: list[Flow], deadline: float) -> None:
    """Poll until the hosts settled with every view equal to its fold. Settled with a view that
    differs fails at once: nothing is left that could still fix it."""
    order_ids = [f.order_id for f in flows]
    payment_ids = [p for f in flows for p, _ in f.payments]
    while True:
        behind = unsettled(data)
        with EmbeddedDatabase(data / "orders.db") as orders_db, \
                EmbeddedDatabase(data / "payments.db") as payments_db:
            wrong = view_mismatches(orders_db, ORDER_VIEW, order_ids) + \
                view_mismatches(payments_db, PAYMENT_VIEW, payment_ids)
        if not behind and not wrong:
            return
        if not behind:
            raise SoakFailure("settled, but views differ from their streams:\n- "
                              + "\n- ".join(wrong[:20]))
        if time.monotonic() > deadline:
            raise SoakFailure("did not converge before the deadline; still: "
                              + "; ".join((behind + wrong)[:20]))
        time.sleep(0.25)  # polling the data files, with the deadline above


# -- the checks ----------------------------------------------------------------------------------


def contiguous(commits: list[Commit]) -> bool:
    versions = [r.version for c in commits for r in c.events]
    return versions == list(range(1, len(versions) + 1))


def verify(config: SoakConfig, data: Path, flows: list[Flow], poison_document: str
           ) -> list[str]:
    problems: list[str] = []
    with EmbeddedDatabase(data / "orders.db") as orders_db, \
            EmbeddedDatabase(data / "payments.db") as payments_db:
        for flow in flows:
            problems.extend(verify_flow(flow, orders_db, payments_db))
        problems.extend(view_mismatches(orders_db, ORDER_VIEW, [f.order_id for f in flows]))
        problems.extend(view_mismatches(payments_db, PAYMENT_VIEW,
                                        [p for f in flows for p, _ in f.payments]))
        asked = {payments.PAYMENT_STREAM.stream_id(p) for f in flows for p, _ in f.payments}
        stored = {unpack_stream_id(s) for (s,) in _rows(data / "payments.db",
                                                        "SELECT DISTINCT stream_id FROM commits")}
        if stored != asked:
            problems.append(f"payments nobody asked for: {sorted(stored - asked)}; "
                            f"missing: {sorted(asked - stored)}")
        letters = {letter.id for letter in orders_db.dead_letters.list_letters(1000)}
        expected = {f"{consumer}:{poison_document}" for consumer in CONSUMERS["orders"]}
        if letters != expected:
            problems.append(f"orders dead letters {sorted(letters)}, expected {sorted(expected)}")
        if payments_db.dead_letters.list_letters(1000):
            problems.append(f"payments dead letters: {payments_db.dead_letters.list_letters()}")
    with EmbeddedBus(data / "bus.db") as bus:
        for entity, poison in ((AUTHORIZATIONS, POISON_MESSAGES[AUTHORIZATIONS]),
                               (ORDERS_SUBSCRIPTION, POISON_MESSAGES["payments"])):
            dead = [m.message_id for m in bus.peek_dead_letters(entity, 1000)]
            if dead != [poison]:
                problems.append(f"dead-lettered on {entity}: {dead}, expected only {poison}")
    return problems


def _decoded(commits: list[Commit], codec: Any) -> list[tuple[Commit, int, Any]]:
    return [(c, r.version, codec.decode(r.type, r.schema_version, r.data))
            for c in commits for r in c.events]


def verify_flow(flow: Flow, orders_db: EmbeddedDatabase, payments_db: EmbeddedDatabase
                ) -> list[str]:
    problems = []
    what = f"order {flow.order_id} ({flow.kind})"
    commits = orders_db.events.read_stream(orders.ORDER_STREAM.stream_id(flow.order_id))
    if not contiguous(commits):
        problems.append(f"{what}: versions are not contiguous")
    events = _decoded(commits, orders.order_codec)
    counts = Counter(type(e).__name__ for _, _, e in events)
    state = orders.order_decider.fold([e for _, _, e in events],
                                      orders.order_decider.initial_state)
    paid = flow.kind != "cancelled"
    expected = {
        "OrderCreated": 1, "ItemAddedToCart": flow.adds, "ItemDeletedFromCart": flow.deletes,
        "OrderPreparedToPay": flow.checkouts, "OrderPaid": int(paid),
        "OrderPaymentFailed": int(flow.kind == "declined"),
        "OrderCancelled": int(not paid),
    }
    if {k: counts.get(k, 0) for k in expected} != expected:
        problems.append(f"{what}: events {dict(counts)}, designed {expected}")
    designed = orders.OrderStatus.PAID if paid else orders.OrderStatus.CANCELLED
    if state.status is not designed:
        problems.append(f"{what}: ends {state.status}, designed {designed}")
    prepared = [e.payment_id for _, _, e in events if isinstance(e, orders.OrderPreparedToPay)]
    if prepared != [p for p, _ in flow.payments]:
        problems.append(f"{what}: checked out with {prepared}, the client got {flow.payments}")
    for payment_id, outcome in flow.payments:
        problems.extend(verify_payment(what, payment_id, outcome, events, payments_db))
    return problems


def verify_payment(what: str, payment_id: str, outcome: str,
                   order_events: list[tuple[Commit, int, Any]],
                   payments_db: EmbeddedDatabase) -> list[str]:
    problems = []
    stream = payments.PAYMENT_STREAM.stream_id(payment_id)
    commits = payments_db.events.read_stream(stream)
    if not contiguous(commits):
        problems.append(f"{what}: payment {payment_id} versions are not contiguous")
    events = _decoded(commits, payments.payment_codec)
    names = [type(e).__name__ for _, _, e in events]
    if names != ["PaymentCreated", "PaymentStarted", f"Payment{outcome}"]:
        problems.append(f"{what}: payment {payment_id} has {names}")
        return problems
    # Across the bus, exactly once: each effect was caused by the message of its cause.
    (_, started_version, _), (outcome_commit, outcome_version, _) = events[1], events[2]
    if outcome_commit.causation_id != message_id(stream, started_version):
        problems.append(f"{what}: payment {payment_id}'s outcome was caused by "
                        f"{outcome_commit.causation_id}, not its authorization command")
    effect = orders.OrderPaid if outcome == "Completed" else orders.OrderPaymentFailed
    effects = [c for c, _, e in order_events if isinstance(e, effect)
               and e.payment_id == payment_id]
    if [c.causation_id for c in effects] != [message_id(stream, outcome_version)]:
        problems.append(f"{what}: {effect.__name__} for {payment_id} caused by "
                        f"{[c.causation_id for c in effects]}, expected exactly one from "
                        f"{message_id(stream, outcome_version)}")
    return problems


def new_work_dir(base: Path) -> Path:
    return base / f"soak-{uuid.uuid4().hex[:8]}"
