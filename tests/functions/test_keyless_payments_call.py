"""Checkout calls Payments with an Entra ID token of the Orders identity; Payments accepts that
identity only. Tokens are signed here with a local RSA key standing in for Entra ID's."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives.asymmetric import rsa

from app.adapters import entra_auth as ea
from app.adapters.payments_http import HttpPaymentsGateway
from app.bootstrap import EmbeddedBackend, bootstrap
from app.settings import Settings
from eventstore.embedded import store as embedded_store
from functions import orders, payments, runtime
from tests.app.test_entra_auth import (
    KID,
    ORDERS_PRINCIPAL_ID,
    OTHER_PRINCIPAL_ID,
    PAYMENTS_API_APP_ID,
    TENANT,
    FakeJwks,
    claims,
    jwk,
    sign,
)
from tests.functions.conftest import FaultyBackend, Harness
from tests.functions.test_http_functions import add_ok, assert_problem, create_order

BODY = {"referenceId": "o-1", "amount": 100, "currency": "EUR"}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class OrdersIdentity:
    """What Orders' managed identity gets from Entra ID: a signed token for the Payments API."""

    def __init__(self, key: rsa.RSAPrivateKey, oid: str = ORDERS_PRINCIPAL_ID) -> None:
        self.key, self.oid = key, oid

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == (f"{PAYMENTS_API_APP_ID}/.default",)
        payload = claims(oid=self.oid)
        return AccessToken(sign(self.key, payload), payload["exp"])


def keyless(app: Harness, key: rsa.RSAPrivateKey, caller_oid: str) -> None:
    """Restart the app with the token check on, Orders signing in as ``caller_oid``."""
    runtime.shutdown()
    embedded_store.close_all()
    settings = Settings.from_environ({
        **os.environ, "PAYMENTS_API_AUTH": "entra", "PAYMENTS_API_AUDIENCE":
        PAYMENTS_API_APP_ID, "PAYMENTS_API_TENANT_ID": TENANT,
        "PAYMENTS_API_ALLOWED_CALLERS": ORDERS_PRINCIPAL_ID, "AZURE_CLIENT_ID": "orders-client"})
    tokens = ea.managed_identity_tokens(PAYMENTS_API_APP_ID, "orders-client",
                                        OrdersIdentity(key, caller_oid))
    gateway = HttpPaymentsGateway(settings.orders.payments_api_base_url, tokens,
                                  transport=httpx.MockTransport(app.payments_transport))
    validator = ea.EntraTokenValidator.for_tenant(TENANT, [PAYMENTS_API_APP_ID],
                                                  [ORDERS_PRINCIPAL_ID],
                                                  FakeJwks([jwk(key, KID)]))
    runtime.install(bootstrap(settings, backend=FaultyBackend(EmbeddedBackend(settings)),
                              payments_gateway=gateway, payments_api_callers=validator))




def put(app: Harness, headers: dict[str, str] | None = None) -> Any:
    return app.http(payments.put_payment, "PUT", "/payments/pay-k", BODY,
                    route_params={"paymentId": "pay-k"}, headers=headers)


def test_checkout_calls_payments_with_the_orders_identity_and_it_is_accepted(
        embedded_app: Harness, key: rsa.RSAPrivateKey) -> None:
    keyless(embedded_app, key, ORDERS_PRINCIPAL_ID)
    order_id = create_order(embedded_app)
    add_ok(embedded_app, order_id)
    result = embedded_app.http(orders.checkout, "POST", f"/orders/{order_id}/checkout",
                               route_params={"orderId": order_id})
    assert result.status == 200, result
    [call] = embedded_app.payments_calls
    assert call.headers["authorization"].startswith("Bearer ") and call.status == 201


def test_a_token_of_another_identity_is_refused_403(embedded_app: Harness,
                                                    key: rsa.RSAPrivateKey) -> None:
    keyless(embedded_app, key, OTHER_PRINCIPAL_ID)
    order_id = create_order(embedded_app)
    add_ok(embedded_app, order_id)
    result = embedded_app.http(orders.checkout, "POST", f"/orders/{order_id}/checkout",
                               route_params={"orderId": order_id})
    assert_problem(result, 502)  # this deployment's fault, not the client's
    assert [c.status for c in embedded_app.payments_calls] == [403]
    other_token = sign(key, claims(oid=OTHER_PRINCIPAL_ID))
    direct = put(embedded_app, {"Authorization": f"Bearer {other_token}"})
    assert_problem(direct, 403)


def test_no_token_is_401_with_the_bearer_challenge(embedded_app: Harness,
                                                  key: rsa.RSAPrivateKey) -> None:
    keyless(embedded_app, key, ORDERS_PRINCIPAL_ID)
    result = put(embedded_app)
    assert_problem(result, 401)
    assert result.headers["www-authenticate"].startswith("Bearer")


def test_locally_the_call_stays_anonymous(embedded_app: Harness) -> None:
    assert put(embedded_app).status == 201  # PAYMENTS_API_AUTH=none in the example settings
