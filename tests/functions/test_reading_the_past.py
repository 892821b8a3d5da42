"""Reading the past: ``GET /orders/{id}?asOfVersion=N`` and ``?asOf=<UTC timestamp>`` (and the
same on payments) answer the view as it was then, computed from the stream."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from functions import orders, payments
from tests.functions.conftest import Harness, HttpResult
from tests.functions.test_http_functions import (
    add_ok,
    assert_problem,
    checkout,
    create_order,
    get_order,
    order_events,
    payment_events,
)


def get_payment(app: Harness, payment_id: str, params: dict[str, str]) -> HttpResult:
    return app.http(payments.get_payment, "GET", f"/payments/{payment_id}",
                    route_params={"paymentId": payment_id}, params=params)


def shifted(timestamp: str, microseconds: int) -> str:
    moment = datetime.fromisoformat(timestamp) + timedelta(microseconds=microseconds)
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def history(embedded_app: Harness) -> dict[str, Any]:
    """An order at version 4: created, two items added, the first deleted."""
    order_id = create_order(embedded_app, customer="c-past")
    first = add_ok(embedded_app, order_id, "p-1", 1, 100)
    add_ok(embedded_app, order_id, "p-2", 2, 250)
    embedded_app.http(orders.delete_item, "DELETE", f"/orders/{order_id}/items/{first}",
                      route_params={"orderId": order_id, "cartItemId": first})
    embedded_app.pump(orders.orders_projector, "orders")
    events = order_events(embedded_app, order_id).json
    return {"orderId": order_id, "events": events, "at": [e["occurredAt"] for e in events]}


def test_as_of_version_is_the_view_after_that_event(embedded_app: Harness,
                                                    history: dict[str, Any]) -> None:
    order_id = history["orderId"]
    views = {n: get_order(embedded_app, order_id, {"asOfVersion": str(n)}) for n in range(1, 5)}
    assert all(v.status == 200 and v.headers["x-view-source"] == "stream"
               for v in views.values())
    assert [v.json["version"] for v in views.values()] == [1, 2, 3, 4]
    assert [len(v.json["items"]) for v in views.values()] == [0, 1, 2, 1]
    assert [v.json["total"] for v in views.values()] == [0, 100, 600, 500]
    # The latest version is the current view, as the projection has it.
    current = get_order(embedded_app, order_id)
    assert current.headers["x-view-source"] == "projection"
    assert views[4].json == current.json


def test_as_of_a_moment_is_the_view_of_the_events_until_then(embedded_app: Harness,
                                                             history: dict[str, Any]) -> None:
    order_id, at = history["orderId"], history["at"]
    for version in (1, 2, 3, 4):
        exactly = get_order(embedded_app, order_id, {"asOf": at[version - 1]})
        assert exactly.status == 200 and exactly.json["version"] == version
    just_before = get_order(embedded_app, order_id, {"asOf": shifted(at[2], -1)})
    assert just_before.json["version"] == 2
    later = get_order(embedded_app, order_id, {"asOf": "2999-01-01T00:00:00Z"})
    assert later.json == get_order(embedded_app, order_id).json
    # Any explicit offset names the same moment.
    elsewhere = datetime.fromisoformat(at[1]).astimezone(timezone(timedelta(hours=2)))
    assert elsewhere.isoformat().endswith("+02:00")
    assert get_order(embedded_app, order_id, {"asOf": elsewhere.isoformat()}).json["version"] == 2


def test_before_the_stream_existed_is_404(embedded_app: Harness,
                                          history: dict[str, Any]) -> None:
    order_id, at = history["orderId"], history["at"]
    before = get_order(embedded_app, order_id, {"asOf": shifted(at[0], -1)})
    assert_problem(before, 404)
    assert "did not exist at" in before.json["detail"] and order_id in before.json["detail"]
    zero = get_order(embedded_app, order_id, {"asOfVersion": "0"})
    assert_problem(zero, 404)
    assert "did not exist at version 0" in zero.json["detail"]


def test_a_version_the_stream_does_not_have_yet_is_404(embedded_app: Harness,
                                                       history: dict[str, Any]) -> None:
    result = get_order(embedded_app, history["orderId"], {"asOfVersion": "5"})
    assert_problem(result, 404)
    assert "has no version 5 (its latest is 4)" in result.json["detail"]


def test_an_unknown_order_is_404_at_any_point(embedded_app: Harness) -> None:
    for params in ({"asOfVersion": "1"}, {"asOf": "2026-01-05T10:00:00Z"}):
        assert_problem(get_order(embedded_app, "no-such-order", params), 404)


@pytest.mark.parametrize(("params", "field"), [
    ({"asOfVersion": "abc"}, "asOfVersion"),
    ({"asOfVersion": "-1"}, "asOfVersion"),
    ({"asOfVersion": "1.5"}, "asOfVersion"),
    ({"asOfVersion": ""}, "asOfVersion"),
    ({"asOfVersion": "9" * 19}, "asOfVersion"),
    ({"asOf": "yesterday"}, "asOf"),
    ({"asOf": "2026-01-05"}, "asOf"),  # a date: midnight where?
    ({"asOf": "2026-01-05T10:00:00"}, "asOf"),  # no offset
    ({"asOf": "2026-01-05T10:00:00 00:00"}, "asOf"),  # '+' sent unencoded
    ({"asOf": "2026-13-05T10:00:00Z"}, "asOf"),
    ({"asOf": ""}, "asOf"),
    ({"asOf": "0001-01-01T00:00:00+01:00"}, "asOf"),  # before year 1 in UTC
    ({"asOf": "9999-12-31T23:59:59-01:00"}, "asOf"),
    ({"asOf": "2026-01-05T10:00:00Z" + "0" * 60}, "asOf"),
    ({"asOf": "2026-01-05T10:00:00Z", "asOfVersion": "1"}, "asOf"),
    ({"asOfVersion": "1", "minVersion": "1"}, "minVersion"),
])
def test_malformed_or_combined_points_are_400_naming_the_parameter(
        embedded_app: Harness, history: dict[str, Any], params: dict[str, str],
        field: str) -> None:
    result = get_order(embedded_app, history["orderId"], params)
    assert_problem(result, 400, field)


def test_the_past_of_a_payment(embedded_app: Harness) -> None:
    app = embedded_app
    order_id = create_order(app)
    add_ok(app, order_id, "p", 1, 200_000)  # declined
    payment_id = checkout(app, order_id).json["paymentId"]
    app.authorize_and_settle(payment_id)
    events = payment_events(app, payment_id).json
    statuses = [get_payment(app, payment_id, {"asOfVersion": str(n)}).json["status"]
                for n in (1, 2, 3)]
    assert statuses == ["Created", "Started", "Failed"]
    failed = get_payment(app, payment_id, {"asOf": events[2]["occurredAt"]}).json
    assert failed["failureReasonCode"] == "amount_above_limit"
    started = get_payment(app, payment_id, {"asOf": shifted(events[2]["occurredAt"], -1)})
    assert started.json["status"] == "Started" and "failureReason" not in started.json
    assert_problem(get_payment(app, payment_id, {"asOfVersion": "4"}), 404)
    assert_problem(get_payment(app, payment_id, {"asOf": "soon"}), 400, "asOf")
    assert_problem(get_payment(app, payment_id, {"asOf": shifted(events[0]["occurredAt"], -1)}),
                   404)
