"""The original scenario and its variations over HTTP against `python -m devhost`."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.localhost import ROOT, LocalHost

pytestmark = pytest.mark.e2e


def create_order(host: LocalHost) -> str:
    response = host.request("POST", "/orders", json={"customerId": "c-1", "currency": "EUR"})
    assert response.status_code == 201, response.text
    order_id: str = response.json()["orderId"]
    assert response.headers["Location"].endswith(f"/api/orders/{order_id}")
    return order_id


def add_item(host: LocalHost, order_id: str, product: str, quantity: int, price: int
             ) -> dict[str, Any]:
    response = host.request("POST", f"/orders/{order_id}/items",
                            json={"productId": product, "quantity": quantity, "unitPrice": price})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def checkout(host: LocalHost, order_id: str) -> dict[str, Any]:
    response = host.request("POST", f"/orders/{order_id}/checkout")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def authorize(host: LocalHost, payment_id: str) -> None:
    response = host.request("POST", f"/payments/{payment_id}/authorize")
    assert response.status_code == 202, response.text


def event_types(host: LocalHost, kind: str, aggregate_id: str) -> list[str]:
    response = host.request("GET", f"/{kind}/{aggregate_id}/events")
    assert response.status_code == 200, response.text
    events = response.json()
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    return [e["type"] for e in events]


def test_original_scenario_reaches_paid(host: LocalHost) -> None:
    # A client tracing one purchase sends the same correlation id with each of its requests.
    host.client.headers["X-Correlation-Id"] = "trace-e2e-1"
    order_id = create_order(host)
    items = [add_item(host, order_id, f"product-{n}", n, 1250) for n in range(1, 5)]
    assert [i["version"] for i in items] == [2, 3, 4, 5]
    deleted = host.request("DELETE", f"/orders/{order_id}/items/{items[1]['cartItemId']}")
    assert deleted.status_code == 200 and deleted.json() == {"version": 6}

    payment = checkout(host, order_id)
    assert payment["amount"] == (1 + 3 + 4) * 1250 and payment["currency"] == "EUR"
    authorize(host, payment["paymentId"])

    order = host.wait_for_status("orders", order_id, "Paid")
    assert order["paymentId"] == payment["paymentId"]
    assert order["total"] == payment["amount"]
    assert [i["productId"] for i in order["items"]] == ["product-1", "product-3", "product-4"]
    assert host.wait_for_status("payments", payment["paymentId"], "Completed")["amount"] == \
        payment["amount"]
    assert event_types(host, "orders", order_id) == [
        "OrderCreated", "ItemAddedToCart", "ItemAddedToCart", "ItemAddedToCart",
        "ItemAddedToCart", "ItemDeletedFromCart", "OrderPreparedToPay", "OrderPaid"]
    assert event_types(host, "payments", payment["paymentId"]) == [
        "PaymentCreated", "PaymentStarted", "PaymentCompleted"]
    # One correlation id traces the order through both services.
    payment_events = host.request("GET", f"/payments/{payment['paymentId']}/events").json()
    order_events = host.request("GET", f"/orders/{order_id}/events").json()
    assert {e["correlationId"] for e in payment_events + order_events} == {"trace-e2e-1"}
    # The order's OrderPaid was caused by a Service Bus message, not by an HTTP request.
    assert order_events[-1]["causationId"] == f"payment-{payment['paymentId']}:3"
    assert "Executed 'Functions.orders_on_payment_event' (Succeeded" in host.log()


def test_declined_payment_returns_to_created_and_a_new_checkout_succeeds(tmp_path: Path) -> None:
    host = LocalHost(tmp_path / "data", env={"PAYMENTS_DECLINE_ABOVE": "5000"}).start()
    try:
        order_id = create_order(host)
        add_item(host, order_id, "cheap", 1, 3000)
        expensive = add_item(host, order_id, "expensive", 1, 4000)
        first = checkout(host, order_id)
        authorize(host, first["paymentId"])
        failed = host.wait_for_status("payments", first["paymentId"], "Failed")
        assert "5000" in failed["failureReason"]
        order = host.wait_for_status("orders", order_id, "Created")
        assert order["paymentId"] is None and order["version"] == 5

        assert host.request("DELETE", f"/orders/{order_id}/items/"
                                      f"{expensive['cartItemId']}").status_code == 200
        second = checkout(host, order_id)
        assert second["paymentId"] != first["paymentId"] and second["amount"] == 3000
        authorize(host, second["paymentId"])
        assert host.wait_for_status("orders", order_id, "Paid")["paymentId"] == \
            second["paymentId"]
        assert event_types(host, "orders", order_id)[-4:] == [
            "OrderPaymentFailed", "ItemDeletedFromCart", "OrderPreparedToPay", "OrderPaid"]
    finally:
        host.stop()


def test_cancel(host: LocalHost) -> None:
    order_id = create_order(host)
    add_item(host, order_id, "p", 2, 500)
    response = host.request("POST", f"/orders/{order_id}/cancel", json={"reason": "changed mind"})
    assert response.status_code == 200 and response.json() == {"version": 3}
    assert host.request("POST", f"/orders/{order_id}/cancel").json() == {"version": 3}
    assert host.request("GET", f"/orders/{order_id}").json()["status"] == "Cancelled"
    refused = host.request("POST", f"/orders/{order_id}/items",
                           json={"productId": "p", "quantity": 1, "unitPrice": 1})
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "Cancelled" in refused.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body", "status", "mentions"), [
    ("POST", "/orders", b"{not json", 400, "JSON"),
    ("POST", "/orders", b"[1, 2]", 400, "object"),
    ("POST", "/orders", b'{"currency": "EUR"}', 400, "customerId"),
    ("POST", "/orders", b'{"customerId": "c", "currency": "XYZ"}', 400, "currency"),
    ("POST", "/orders", b'{"customerId": "c", "currency": "EUR", "x": 1}', 400, "x"),
    ("POST", "/orders", b'{"customerId": "' + b"a" * 70_000 + b'", "currency": "EUR"}', 413,
     "65536"),
    ("GET", "/orders/no-such-order", None, 404, "no-such-order"),
    ("POST", "/orders/no-such-order/checkout", None, 404, "no-such-order"),
    ("GET", "/payments/no-such-payment", None, 404, "no-such-payment"),
    ("POST", "/payments/no-such-payment/authorize", None, 404, "no-such-payment"),
    ("PUT", "/payments/p-1", b'{"referenceId": "o", "amount": -5, "currency": "EUR"}', 400,
     "amount"),
    ("GET", "/nothing-here", None, 404, "/api/nothing-here"),
    ("DELETE", "/orders", None, 405, "DELETE"),
])
def test_client_errors_are_problem_documents(host: LocalHost, method: str, path: str,
                                             body: bytes | None, status: int, mentions: str
                                             ) -> None:
    response = host.request(method, path, content=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["title"]
    assert mentions in response.text


def test_item_validation_names_the_field(host: LocalHost) -> None:
    order_id = create_order(host)
    for body, field in [({"productId": "p", "quantity": 0, "unitPrice": 1}, "quantity"),
                        ({"productId": "p", "quantity": 1001, "unitPrice": 1}, "quantity"),
                        ({"productId": "p", "quantity": "2", "unitPrice": 1}, "quantity"),
                        ({"productId": "p", "quantity": 1, "unitPrice": -1}, "unitPrice"),
                        ({"quantity": 1, "unitPrice": 1}, "productId")]:
        response = host.request("POST", f"/orders/{order_id}/items", json=body)
        assert response.status_code == 400, (body, response.text)
        assert field in response.json()["detail"]
    missing = host.request("DELETE", f"/orders/{order_id}/items/item-99")
    assert missing.status_code == 404 and "item-99" in missing.json()["detail"]
    empty = host.request("POST", f"/orders/{order_id}/checkout")
    assert empty.status_code == 409


def test_parallel_adds_leave_a_contiguous_stream_with_exactly_the_accepted_items(
        host: LocalHost) -> None:
    order_id = create_order(host)

    def add(n: int) -> httpx.Response:
        with httpx.Client(base_url=host.base, timeout=60) as client:
            return client.post(f"/orders/{order_id}/items",
                               json={"productId": f"p-{n}", "quantity": 1, "unitPrice": n})

    with ThreadPoolExecutor(max_workers=40) as pool:
        responses = list(pool.map(add, range(40)))
    accepted = [r.json() for r in responses if r.status_code == 201]
    assert all(r.status_code in (201, 409) for r in responses), [r.text for r in responses]
    assert accepted, "no add was accepted"
    events = host.request("GET", f"/orders/{order_id}/events").json()
    assert [e["version"] for e in events] == list(range(1, len(accepted) + 2))
    added = [e for e in events if e["type"] == "ItemAddedToCart"]
    assert sorted(e["data"]["cartItemId"] for e in added) == \
        sorted(a["cartItemId"] for a in accepted)
    assert sorted(a["version"] for a in accepted) == list(range(2, len(accepted) + 2))
    view = host.request("GET", f"/orders/{order_id}").json()
    assert len(view["items"]) == len(accepted)


def test_restart_mid_flow_still_reaches_paid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"PAYMENTS_ACQUIRER_DELAY_MS": "300"}
    first = LocalHost(data, env).start()
    try:
        order_id = create_order(first)
        add_item(first, order_id, "p", 3, 700)
        payment = checkout(first, order_id)
        authorize(first, payment["paymentId"])
    finally:
        assert first.stop() == 0
    assert "Host stopped." in first.log()

    second = LocalHost(data, env).start()
    try:
        order = second.wait_for_status("orders", order_id, "Paid")
        assert order["paymentId"] == payment["paymentId"]
        assert event_types(second, "orders", order_id).count("OrderPaid") == 1
    finally:
        second.stop()


def test_a_second_host_on_a_busy_port_fails_with_a_clear_error(host: LocalHost,
                                                                tmp_path: Path) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "devhost", "--port", str(host.port), "--data-dir",
         str(tmp_path / "other")], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False)
    assert second.returncode != 0
    assert "address already in use" in second.stderr


def test_a_broken_settings_file_is_reported_not_a_traceback(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text("{not json")
    result = subprocess.run([sys.executable, "-m", "devhost", "--settings", str(settings)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr and "Traceback" not in result.stderr
