"""The Entra ID token check between Orders and Payments, with tokens signed by a local RSA key.

The tokens carry the claims Entra ID puts in an app-only access token of a managed identity:
`oid` (the identity's principal id), `azp`/`appid` (its client id), `tid`, `aud` (the Payments
API app's client id), `iss` in its v1 or v2 form, `iat`/`nbf`/`exp`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from azure.core.credentials import AccessToken
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from app.adapters import entra_auth as ea
from app.bootstrap import payments_api_tokens, payments_api_validator
from app.settings import Settings, SettingsError
from tests.functions.conftest import example_settings

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER_TENANT = "99999999-8888-7777-6666-555555555555"
PAYMENTS_API_APP_ID = "aaaaaaaa-0000-0000-0000-000000000001"
ORDERS_PRINCIPAL_ID = "bbbbbbbb-0000-0000-0000-000000000002"
ORDERS_CLIENT_ID = "cccccccc-0000-0000-0000-000000000003"
OTHER_PRINCIPAL_ID = "dddddddd-0000-0000-0000-000000000004"
KID = "test-key-1"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public: dict[str, Any] = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid, "use": "sig"}


@dataclass
class FakeJwks:
    """A JWKS endpoint that counts its fetches and can be switched to other keys or to fail."""

    keys: list[dict[str, Any]]
    fetches: int = 0
    failure: Exception | None = None

    def __call__(self) -> Mapping[str, Any]:
        self.fetches += 1
        if self.failure is not None:
            raise self.failure
        return {"keys": list(self.keys)}


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "aud": PAYMENTS_API_APP_ID,
        "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 3600,
        "oid": ORDERS_PRINCIPAL_ID,
        "sub": ORDERS_PRINCIPAL_ID,
        "azp": ORDERS_CLIENT_ID,
        "tid": TENANT,
        "ver": "2.0",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: rsa.RSAPrivateKey, payload: dict[str, Any], kid: str = KID) -> str:
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def jwks(signing_key: rsa.RSAPrivateKey) -> FakeJwks:
    return FakeJwks([jwk(signing_key, KID)])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def validator(jwks: FakeJwks, clock: FakeClock) -> ea.EntraTokenValidator:
    keys = ea.SigningKeys(jwks, clock=clock)
    return ea.EntraTokenValidator(TENANT, [PAYMENTS_API_APP_ID], [ORDERS_PRINCIPAL_ID], keys)


def bearer(token: str) -> str:
    return f"Bearer {token}"


# ---------------------------------------------------------------------------- accepted


def test_a_v2_token_of_the_orders_identity_is_accepted(
    validator: ea.EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    caller = validator.authenticate(bearer(sign(signing_key, claims())))
    assert caller.object_id == ORDERS_PRINCIPAL_ID
    assert caller.client_id == ORDERS_CLIENT_ID
    assert caller.tenant_id == TENANT


def test_a_v1_token_of_the_orders_identity_is_accepted(
    validator: ea.EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    v1 = claims(iss=f"https://sts.windows.net/{TENANT}/", ver="1.0", azp=None,
                appid=ORDERS_CLIENT_ID)
    caller = validator.authenticate(bearer(sign(signing_key, v1)))
    assert (caller.object_id, caller.client_id) == (ORDERS_PRINCIPAL_ID, ORDERS_CLIENT_ID)


def test_object_ids_compare_case_insensitively(
    validator: ea.EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    token = sign(signing_key, claims(oid=ORDERS_PRINCIPAL_ID.upper()))
    assert validator.authenticate(f"bearer  {token} ").object_id == ORDERS_PRINCIPAL_ID.upper()


def test_keys_are_fetched_once_and_reused(
    validator: ea.EntraTokenValidator, signing_key: rsa.RSAPrivateKey, jwks: FakeJwks
) -> None:
    for _ in range(5):
        validator.authenticate(bearer(sign(signing_key, claims())))
    assert jwks.fetches == 1


# ---------------------------------------------------------------------------- refused


def test_another_identity_is_forbidden(
    validator: ea.EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    token = sign(signing_key, claims(oid=OTHER_PRINCIPAL_ID, sub=OTHER_PRINCIPAL_ID))
    with pytest.raises(ea.ForbiddenCallerError) as refused:
        validator.authenticate(bearer(token))
    assert refused.value.status_code == 403
    assert OTHER_PRINCIPAL_ID in refused.value.message


def test_the_orders_client_id_in_oid_is_not_the_principal_id(
    validator: ea.EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    # The check compares the object (principal) id: a token whose oid is some other object
    # that merely shares the Orders client id in azp is refused.
    token = sign(signing_key, claims(oid=ORDERS_CLIENT_ID))
    with pytest.raises(ea.ForbiddenCallerError):
        validator.authenticate(bearer(token))


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"aud": "api://some-other-api"}, "wrong audience"),
        ({"iss": "https://login.microsoftonline.com/common/v2.0"}, "wrong issuer"),
        ({"iss": f"https://sts.windows.net/{OTHER_TENANT}/"}, "issuer of another tenant"),
        ({"tid": OTHER_TENANT}, "tenant claim of another tenant"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200,
          "nbf": int(time.time()) - 7200}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not yet valid"),
        ({"oid": None}, "no oid"),
        ({"exp": None}, "no expiry"),
    ],
)
def test_invalid_tokens_are_unauthenticated(
    validator: ea.EntraTokenValidator,
    signing_key: rsa.RSAPrivateKey,
    overrides: dict[str, Any],
    why: str,
) -> None:
    with pytest.raises(ea.UnauthenticatedError) as refused:
        validator.authenticate(bearer(sign(signing_key, claims(**overrides))))
    assert refused.value.status_code == 401, why
    assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_expiry_allows_the_configured_clock_skew(
    jwks: FakeJwks, clock: FakeClock, signing_key: rsa.RSAPrivateKey
) -> None:
    keys = ea.SigningKeys(jwks, clock=clock)
    lenient = ea.EntraTokenValidator(TENANT, [PAYMENTS_API_APP_ID], [ORDERS_PRINCIPAL_ID], keys,
                                     leeway=timedelta(minutes=5))
    just_expired = claims(exp=int(time.time()) - 60)
    assert lenient.authenticate(bearer(sign(signing_key, just_expired))).object_id
    strict = ea.EntraTokenValidator(TENANT, [PAYMENTS_API_APP_ID], [ORDERS_PRINCIPAL_ID], keys,
                                    leeway=timedelta(0))
    with pytest.raises(ea.UnauthenticatedError):
        strict.authenticate(bearer(sign(signing_key, just_expired)))


def test_a_bad_signature_is_unauthenticated(
    validator: ea.EntraTokenValidator, other_key: rsa.RSAPrivateKey
) -> None:
    # Signed by another key that claims the published key id.
    with pytest.raises(ea.UnauthenticatedError, match="invalid token"):
        validator.authenticate(bearer(sign(other_key, claims())))


def test_a_tampered_payload_is_unauthenticated(
    validator: ea.EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    header, _, signature = sign(signing_key, claims(oid=OTHER_PRINCIPAL_ID)).split(".")
    forged_payload = sign(signing_key, claims()).split(".")[1]
    with pytest.raises(ea.UnauthenticatedError):
        validator.authenticate(bearer(f"{header}.{forged_payload}.{signature}"))


def test_an_unknown_key_id_is_unauthenticated_after_one_refresh(
    validator: ea.EntraTokenValidator, other_key: rsa.RSAPrivateKey, jwks: FakeJwks,
    signing_key: rsa.RSAPrivateKey, clock: FakeClock,
) -> None:
    validator.authenticate(bearer(sign(signing_key, claims())))
    assert jwks.fetches == 1
    clock.now += 61
    with pytest.raises(ea.UnauthenticatedError, match="unknown key"):
        validator.authenticate(bearer(sign(other_key, claims(), kid="not-published")))
    # One refresh in case the tenant rolled its keys over; none for the next made-up kid
    # within the refresh interval.
    with pytest.raises(ea.UnauthenticatedError, match="unknown key"):
        validator.authenticate(bearer(sign(other_key, claims(), kid="also-not-published")))
    assert jwks.fetches == 2


def test_a_rolled_over_key_is_found_by_refreshing(
    validator: ea.EntraTokenValidator, jwks: FakeJwks, clock: FakeClock,
    signing_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey,
) -> None:
    validator.authenticate(bearer(sign(signing_key, claims())))
    jwks.keys.append(jwk(other_key, "test-key-2"))
    clock.now += 61
    caller = validator.authenticate(bearer(sign(other_key, claims(), kid="test-key-2")))
    assert caller.object_id == ORDERS_PRINCIPAL_ID
    assert jwks.fetches == 2


def test_keys_are_refreshed_after_their_maximum_age(
    validator: ea.EntraTokenValidator, jwks: FakeJwks, clock: FakeClock,
    signing_key: rsa.RSAPrivateKey,
) -> None:
    validator.authenticate(bearer(sign(signing_key, claims())))
    clock.now += timedelta(hours=25).total_seconds()
    validator.authenticate(bearer(sign(signing_key, claims())))
    assert jwks.fetches == 2


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "x-functions-key abc",
     "Bearer not-a-jwt"],
)
def test_a_missing_or_malformed_header_is_unauthenticated(
    validator: ea.EntraTokenValidator, header: str | None
) -> None:
    with pytest.raises(ea.UnauthenticatedError) as refused:
        validator.authenticate(header)
    assert refused.value.status_code == 401


def test_symmetric_and_unsigned_tokens_are_refused(validator: ea.EntraTokenValidator) -> None:
    hs256 = jwt.encode(claims(), "shared-secret-of-at-least-32-bytes!!", algorithm="HS256",
                       headers={"kid": KID})
    unsigned = jwt.encode(claims(), "", algorithm="none", headers={"kid": KID})
    for token in (hs256, unsigned):
        with pytest.raises(ea.UnauthenticatedError, match="algorithm"):
            validator.authenticate(bearer(token))


def test_a_token_without_key_id_is_refused(
    validator: ea.EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(claims(), signing_key, algorithm="RS256")
    with pytest.raises(ea.UnauthenticatedError, match="kid"):
        validator.authenticate(bearer(token))


# ---------------------------------------------------------------------------- key source failures


def test_unreachable_keys_answer_503_so_the_caller_retries(
    clock: FakeClock, signing_key: rsa.RSAPrivateKey
) -> None:
    down = FakeJwks([], failure=httpx.ConnectError("no route"))
    keys = ea.SigningKeys(down, clock=clock)
    validator = ea.EntraTokenValidator(TENANT, [PAYMENTS_API_APP_ID], [ORDERS_PRINCIPAL_ID], keys)
    with pytest.raises(ea.SigningKeysUnavailableError) as unavailable:
        validator.authenticate(bearer(sign(signing_key, claims())))
    assert unavailable.value.status_code == 503
    down.failure = None
    down.keys = [jwk(signing_key, KID)]
    assert validator.authenticate(bearer(sign(signing_key, claims()))).object_id


def test_known_keys_keep_working_when_a_refresh_fails(
    validator: ea.EntraTokenValidator, jwks: FakeJwks, clock: FakeClock,
    signing_key: rsa.RSAPrivateKey,
) -> None:
    validator.authenticate(bearer(sign(signing_key, claims())))
    jwks.failure = httpx.ConnectError("no route")
    clock.now += timedelta(hours=25).total_seconds()
    assert validator.authenticate(bearer(sign(signing_key, claims()))).object_id
    assert jwks.fetches == 2


def test_the_http_source_reads_a_jwks_document(
    signing_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != f"/{TENANT}/discovery/v2.0/keys":
            return httpx.Response(404)
        return httpx.Response(200, json={"keys": [jwk(signing_key, KID)]})

    def get(url: str, **kwargs: Any) -> httpx.Response:
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            return client.get(url, timeout=kwargs.get("timeout"))

    monkeypatch.setattr(httpx, "get", get)
    document = ea.HttpJwksSource(ea.JWKS_URL.format(tenant=TENANT))()
    assert document["keys"][0]["kid"] == KID
    with pytest.raises(httpx.HTTPStatusError):
        ea.HttpJwksSource("https://login.microsoftonline.com/elsewhere")()


# ---------------------------------------------------------------------------- settings

ENTRA = {"PAYMENTS_API_AUTH": "entra", "PAYMENTS_API_TENANT_ID": TENANT,
         "PAYMENTS_API_AUDIENCE": PAYMENTS_API_APP_ID,
         "PAYMENTS_API_ALLOWED_CALLERS": f" {ORDERS_PRINCIPAL_ID} ,",
         "AZURE_CLIENT_ID": "orders-client-id"}


def settings_with(**changes: str) -> Settings:
    return Settings.from_environ({**example_settings(), **changes})


def test_the_validator_is_built_from_the_payments_app_settings(
    jwks: FakeJwks, signing_key: rsa.RSAPrivateKey
) -> None:
    validator = payments_api_validator(settings_with(**ENTRA), source=jwks)
    assert validator is not None
    assert validator.authenticate(bearer(sign(signing_key, claims()))).object_id
    with pytest.raises(ea.ForbiddenCallerError):
        validator.authenticate(bearer(sign(signing_key, claims(oid=OTHER_PRINCIPAL_ID))))


def test_orders_tokens_are_for_the_payments_api_as_its_own_identity() -> None:
    credential = FakeCredential()
    provider = payments_api_tokens(settings_with(**ENTRA), credential)
    assert isinstance(provider, ea.CachedTokenProvider)
    assert provider.scope == f"{PAYMENTS_API_APP_ID}/.default"


def test_no_check_only_when_the_mode_says_none() -> None:
    assert payments_api_validator(settings_with(PAYMENTS_API_AUTH="none")) is None
    assert payments_api_tokens(settings_with(PAYMENTS_API_AUTH="None")) is None


@pytest.mark.parametrize("mode", [None, "", "off", "function"])
def test_a_missing_or_unknown_mode_is_a_settings_error(mode: str | None) -> None:
    values = {k: v for k, v in example_settings().items() if k != "PAYMENTS_API_AUTH"}
    if mode is not None:
        values["PAYMENTS_API_AUTH"] = mode
    with pytest.raises(SettingsError, match="PAYMENTS_API_AUTH"):
        Settings.from_environ(values)


@pytest.mark.parametrize(("missing", "services"), [
    ("PAYMENTS_API_TENANT_ID", "payments"), ("PAYMENTS_API_AUDIENCE", "payments"),
    ("PAYMENTS_API_ALLOWED_CALLERS", "payments"), ("PAYMENTS_API_AUDIENCE", "orders"),
    ("AZURE_CLIENT_ID", "orders")])
def test_entra_mode_needs_every_setting_of_its_side(missing: str, services: str) -> None:
    with pytest.raises(SettingsError, match=missing):
        settings_with(**{**ENTRA, "SERVICES": services, missing: "  "})
    if missing == "PAYMENTS_API_ALLOWED_CALLERS":
        with pytest.raises(SettingsError, match=missing):
            settings_with(**{**ENTRA, "SERVICES": services, missing: " , ,"})


def test_each_side_needs_only_its_own_settings() -> None:
    orders_only = {k: v for k, v in ENTRA.items() if "TENANT" not in k and "CALLERS" not in k}
    assert settings_with(**orders_only, SERVICES="orders").auth.mode == "entra"
    payments_only = {k: v for k, v in ENTRA.items() if k != "AZURE_CLIENT_ID"}
    assert settings_with(**payments_only, SERVICES="payments").auth.allowed_callers == (
        ORDERS_PRINCIPAL_ID,)


# ---------------------------------------------------------------------------- Orders' tokens


@dataclass
class FakeCredential:
    lifetime: float = 3600.0
    clock: FakeClock = field(default_factory=FakeClock)
    calls: list[str] = field(default_factory=list)
    failure: Exception | None = None
    delay: float = 0.0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.extend(scopes)
        if self.delay:
            time.sleep(self.delay)  # widens the race window in the concurrency test
        if self.failure is not None:
            raise self.failure
        return AccessToken(f"token-{len(self.calls)}", int(self.clock.now + self.lifetime))


def test_the_provider_asks_for_the_payments_api_scope_and_caches_the_token() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock=clock)
    provider = ea.CachedTokenProvider(credential, ea.scope_for(PAYMENTS_API_APP_ID), clock=clock)
    assert provider.authorization_header() == "Bearer token-1"
    clock.now += 3600 - 301
    assert provider.authorization_header() == "Bearer token-1"
    assert credential.calls == [f"{PAYMENTS_API_APP_ID}/.default"]


def test_the_provider_refreshes_shortly_before_expiry() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock=clock)
    provider = ea.CachedTokenProvider(credential, "api/.default", clock=clock)
    provider.token()
    clock.now += 3600 - 299
    assert provider.token() == "token-2"


def test_a_failed_refresh_keeps_the_still_valid_token() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock=clock)
    provider = ea.CachedTokenProvider(credential, "api/.default", clock=clock)
    provider.token()
    credential.failure = RuntimeError("IMDS unavailable")
    clock.now += 3600 - 60
    assert provider.token() == "token-1"
    clock.now += 120
    with pytest.raises(ea.TokenUnavailableError, match="IMDS unavailable"):
        provider.token()


def test_no_token_at_all_is_token_unavailable() -> None:
    credential = FakeCredential(failure=RuntimeError("no identity"))
    provider = ea.CachedTokenProvider(credential, "api/.default", clock=credential.clock)
    with pytest.raises(ea.TokenUnavailableError, match="no identity"):
        provider.authorization_header()


def test_concurrent_callers_share_one_token_request() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock=clock, delay=0.05)
    provider = ea.CachedTokenProvider(credential, "api/.default", clock=clock)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(provider.token()))
               for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == ["token-1"] * 16
    assert len(credential.calls) == 1


def test_managed_identity_tokens_use_the_audience_as_scope() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock=clock)
    provider = ea.managed_identity_tokens(PAYMENTS_API_APP_ID, ORDERS_CLIENT_ID, credential)
    assert provider.authorization_header() == "Bearer token-1"
    assert credential.calls == [f"{PAYMENTS_API_APP_ID}/.default"]


def test_managed_identity_tokens_build_a_managed_identity_credential() -> None:
    from azure.identity import ManagedIdentityCredential

    provider = ea.managed_identity_tokens(PAYMENTS_API_APP_ID, ORDERS_CLIENT_ID)
    assert isinstance(provider.credential, ManagedIdentityCredential)


def test_round_trip_provider_to_validator(
    validator: ea.EntraTokenValidator, signing_key: rsa.RSAPrivateKey
) -> None:
    # What Orders sends is what Payments accepts: the provider's header goes straight in.
    class SigningCredential:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            assert scopes == (f"{PAYMENTS_API_APP_ID}/.default",)
            payload = claims(jti=str(uuid.uuid4()))
            return AccessToken(sign(signing_key, payload), payload["exp"])

    provider = ea.CachedTokenProvider(SigningCredential(), ea.scope_for(PAYMENTS_API_APP_ID))
    assert validator.authenticate(provider.authorization_header()).object_id == ORDERS_PRINCIPAL_ID
