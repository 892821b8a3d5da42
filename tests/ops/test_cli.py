"""The operator CLI, each command run as an operator would (typer's runner, the embedded backend
of a function app driven by the harness): streams, a stream's commits, consumers' lag, a
resumable rebuild while the API runs, and dead letters of both kinds listed, replayed (failing
again and succeeding) and discarded."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from app.operations import RebuildProgress
from eventstore.commit import Commit, EventRecord
from eventstore.ports import DeadLetter, OutboundMessage
from functions import orders, payments, runtime
from ops.cli import app
from tests.functions.conftest import Harness
from tests.functions.test_http_functions import checkout, order_with_items

runner = CliRunner()


def ops(app_under_test: Harness, *args: str) -> Result:
    result = runner.invoke(app, ["--backend", "embedded", "--data-dir",
                                 str(app_under_test.data_dir), *args],
                           env={"COLUMNS": "240"}, catch_exceptions=False)
    # The CLI is its own process in real use: closing its Services closed the files this
    # process shares, so the app starts again over the same data.
    app_under_test.start()
    return result


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", [[], ["streams"], ["stream"], ["consumers"], ["rebuild"],
                                     ["deadletters"], ["deadletters", "list"],
                                     ["deadletters", "replay"], ["deadletters", "discard"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "--help" in result.output


def test_streams_and_one_streams_commits(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100, 200)
    listed = ok(ops(embedded_app, "streams", "orders"))
    assert re.search(rf"order-{order_id}\s+│\s+3\s+│\s+3", listed), listed
    shown = ok(ops(embedded_app, "stream", "orders", f"order-{order_id}"))
    assert "OrderCreated" in shown and shown.count("ItemAddedToCart") == 2
    assert ops(embedded_app, "stream", "orders", "order-none").exit_code == 1


def lag_rows(output: str, consumer: str) -> list[list[str]]:
    """The table's rows of one consumer, as cells (one row per feed range)."""
    return [[cell.strip() for cell in line.split("│")[1:-1]]
            for line in output.splitlines() if f" {consumer} " in line]


def test_consumers_show_their_checkpoint_and_lag_per_feed_range(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100, 200)  # 3 commits, 3 events, one stream
    events = stores("orders").events
    first = events.read_feed(None, 1)
    assert first.checkpoint is not None
    events.save_checkpoint("orders-projector-v1", first.checkpoint)
    # The publisher holds a lease of the stream's range, at its first commit.
    feed_range = events.feed_range_of(f"order-{order_id}")
    leases = stores("orders").leases
    lease = leases.create_lease("orders-publisher-v1", feed_range.id)
    assert lease is not None
    leases.replace_lease(replace(lease, owner="host-a", expires_at=2e9,
                                 continuation=f"{feed_range.id}:1"))

    shown = ok(ops(embedded_app, "consumers", "orders"))
    projector = lag_rows(shown, "orders-projector-v1")
    publisher = lag_rows(shown, "orders-publisher-v1")
    ranges = [r.id for r in events.feed_ranges()]
    assert [row[2] for row in projector] == ranges == [row[2] for row in publisher]
    assert sum(int(row[5]) for row in projector) == 2  # read one commit of three
    assert sum(int(row[6]) for row in projector) == 2
    (held,) = [row for row in publisher if row[2] == feed_range.id]
    assert (held[3], held[4], held[5], held[6]) == (f"{feed_range.id}:1", "host-a", "2", "2")
    assert all(row[4] == "-" for row in publisher if row is not held)


def stores(service: Any) -> Any:
    """The service's stores in the app process as it is now (the CLI restarts it)."""
    return runtime.services().stores(service)


def damage(service: Any, view_id: str) -> None:
    views = stores(service).views
    current = views.get(view_id)
    assert current is not None
    views.put(view_id, {**current.document, "items": [], "total": -1}, current.etag)


def stored_view(service: Any, view_id: str) -> dict[str, Any]:
    found = runtime.services().stores(service).views.get(view_id)
    assert found is not None
    return dict(found.document)


def test_rebuild_recomputes_every_view_and_resumes_after_an_interruption(
    embedded_app: Harness,
) -> None:
    order_ids = [order_with_items(embedded_app, 100 * n) for n in range(1, 5)]
    embedded_app.pump(orders.orders_projector, "orders")
    damage("orders", order_ids[0])

    # Interrupted after the second stream (position saved after each).
    operations = runtime.services().operations("orders")

    def interrupt(at: RebuildProgress) -> None:
        if at.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        operations.rebuild(interrupt, save_every=1)
    out = ok(ops(embedded_app, "rebuild", "orders"))
    assert "rebuilt 2 view(s)" in out and "resumed after order-" in out
    assert "streams/s" in out
    assert stored_view("orders", order_ids[0])["total"] == 200  # fixed by the first run

    # Done: the next rebuild starts over, every view from scratch.
    damage("orders", order_ids[3])
    out = ok(ops(embedded_app, "rebuild", "orders"))
    assert "rebuilt 4 view(s) of orders from 8 event(s)" in out and "resumed" not in out
    assert [stored_view("orders", o)["total"] for o in order_ids] == [200, 400, 600, 800]
    # The live projector goes on from the rebuilt views.
    embedded_app.pump(orders.orders_projector, "orders")
    assert stored_view("orders", order_ids[3])["version"] == 2


def poison_commit(stream_id: str, version: int) -> Commit:
    return Commit(stream_id=stream_id, stream_type="order", correlation_id="c",
                  causation_id=f"cmd-{version}", committed_at="2024-05-01T12:00:00+00:00",
                  events=(EventRecord(version, f"e-{version}", "OrderTeleported", 1,
                                      "2024-05-01T12:00:00+00:00", {"to": "mars"}),))


def test_parked_events_are_listed_replayed_and_discarded(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 100)
    stores("orders").events.append(poison_commit(f"order-{order_id}", 3))
    embedded_app.pump(orders.orders_projector, "orders")
    poison_id = f"orders-projector-v1:order-{order_id}:3"
    listed = ok(ops(embedded_app, "deadletters", "list", "orders"))
    assert poison_id in listed and "OrderTeleported" in listed and "parked" in listed

    # Still poison: it fails again and goes back with its new reason (nothing removed).
    before = stores("orders").dead_letters.get_letter(poison_id)
    failed = ops(embedded_app, "deadletters", "replay", "orders", poison_id)
    assert failed.exit_code == 1 and "FAILED" in failed.output, failed.output
    after = stores("orders").dead_letters.get_letter(poison_id)
    assert before is not None and after is not None and after.parked_at > before.parked_at

    # A letter whose cause is gone (the bug fixed): replayed into the view and removed.
    good = DeadLetter(id=f"orders-projector-v1:order-{order_id}:2", consumer="orders-projector-v1",
                      stream_id=f"order-{order_id}", version=2, event_type="ItemAddedToCart",
                      error="RuntimeError: a bug since fixed", payload={},
                      parked_at="2024-05-01T12:00:00+00:00")
    stores("orders").dead_letters.park(good)
    damage("orders", order_id)
    out = ok(ops(embedded_app, "deadletters", "replay", "orders", good.id))
    assert f"ok  {good.id}" in out
    assert stores("orders").dead_letters.get_letter(good.id) is None
    assert stored_view("orders", order_id)["total"] == 200

    out = ok(ops(embedded_app, "deadletters", "discard", "orders", "--all"))
    assert f"discarded  {poison_id}" in out
    assert "no dead letters" in ok(ops(embedded_app, "deadletters", "list", "orders"))
    assert ops(embedded_app, "deadletters", "discard", "orders", "nope").exit_code == 1


def dead_letter_on_the_bus(app_under_test: Harness, message: OutboundMessage) -> None:
    bus = app_under_test.bus()
    bus.send([message])
    (received,) = bus.receive(message.destination)
    bus.dead_letter(received, "MaxDeliveryCountExceeded", "gave up")


def test_broker_dead_letters_are_replayed_into_the_service(embedded_app: Harness) -> None:
    order_id = order_with_items(embedded_app, 500)
    payment_id = checkout(embedded_app, order_id).json["paymentId"]
    embedded_app.http(payments.authorize_payment, "POST", f"/payments/{payment_id}/authorize",
                      route_params={"paymentId": payment_id})
    embedded_app.pump(payments.payments_publisher, "payments")
    queue = embedded_app.authorizations_queue()
    # The acquirer's message was dead-lettered (its function kept failing back then).
    (authorize,) = embedded_app.bus().receive(queue)
    embedded_app.bus().dead_letter(authorize, "MaxDeliveryCountExceeded", "gave up")
    dead_letter_on_the_bus(embedded_app, OutboundMessage(
        queue, "payment-x:2", "AuthorizePayment", {"paymentId": "x"}, "c",
        {"contractVersion": 99}))  # poison for good: no such contract version

    listed = ok(ops(embedded_app, "deadletters", "list", "payments"))
    ids = re.findall(rf"({re.escape(queue)}#\d+)", listed)
    assert len(ids) == 2 and "MaxDeliveryCountExceeded" in listed, listed

    out = ops(embedded_app, "deadletters", "replay", "payments", "--all")
    assert out.exit_code == 1, out.output
    assert f"ok  {ids[0]}: replayed" in out.output
    assert "failed again, parked: ContractError" in out.output
    view = embedded_app.http(payments.get_payment, "GET", f"/payments/{payment_id}",
                             route_params={"paymentId": payment_id})
    assert view.json["status"] == "Completed"  # the replayed authorization went through
    assert embedded_app.bus().peek_dead_letters(queue) == []
    parked = stores("payments").dead_letters.list_letters()
    assert [(p.consumer, p.stream_id) for p in parked] == [(f"bus:{queue}", "payment-x")]
    assert "ContractError" in parked[0].error

    # The parked message can be replayed again from there (still poison: stays, new reason).
    again = ops(embedded_app, "deadletters", "replay", "payments", parked[0].id)
    assert again.exit_code == 1 and "failed again" in again.output
    assert stores("payments").dead_letters.get_letter(parked[0].id)


def test_bad_settings_are_a_clear_error(embedded_app: Harness, tmp_path: Path) -> None:
    broken = tmp_path / "settings.json"
    broken.write_text("{not json")
    result = runner.invoke(app, ["--settings", str(broken), "consumers"])
    assert result.exit_code == 2 and "cannot read the settings file" in result.output
