"""Keyless service-to-service authentication between Orders and Payments with Entra ID tokens.

Orders calls `PUT /payments/{id}` with an access token that its managed identity obtains for the
Payments API application (an Entra app registration created by infra/entra/payments-api.bicep).
Payments validates the token in the function itself: signature against the tenant's published
signing keys (JWKS), issuer (v1 or v2 form of the tenant), audience (the app's client id), expiry
and not-before, tenant, and finally that the caller's object id (`oid`) is one of the allowed
callers, i.e. the Orders identity's principal id.

The composition root (app/bootstrap.py) builds both sides from the typed settings
(app/settings.py: ServiceAuthSettings); `PAYMENTS_API_AUTH=none` turns the check off, for
`func start` and the local host only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import httpx
import jwt
from azure.core.credentials import AccessToken, TokenCredential

JWKS_URL = "https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
# The two issuer forms of one tenant: v1 tokens (the default of an app registration) and v2
# tokens (requestedAccessTokenVersion 2, which infra/entra/payments-api.bicep sets).
ISSUER_V1 = "https://sts.windows.net/{tenant}/"
ISSUER_V2 = "https://login.microsoftonline.com/{tenant}/v2.0"
# Entra ID signs access tokens with RS256 only; accepting nothing else rules out alg confusion.
ALGORITHMS = ("RS256",)


class AuthConfigurationError(ValueError):
    """The auth settings are missing or contradictory (a deployment error, not a caller's)."""


class EntraAuthError(Exception):
    """A request the Payments API must refuse; `status_code` is the HTTP answer."""

    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        return {}


class UnauthenticatedError(EntraAuthError):
    """No token, or one that is not a valid token for this API: 401."""

    status_code = 401

    @property
    def headers(self) -> dict[str, str]:
        # RFC 6750: tell the client which scheme is expected; the message stays out of it.
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class ForbiddenCallerError(EntraAuthError):
    """A valid token of an identity that may not call this endpoint: 403."""

    status_code = 403


class SigningKeysUnavailableError(EntraAuthError):
    """The tenant's signing keys could not be fetched: 503, so that the caller retries."""

    status_code = 503


class TokenUnavailableError(RuntimeError):
    """Orders could not get a token for the Payments API (transient on the Orders side)."""


# ---------------------------------------------------------------------------- Orders side


class TokenProvider(Protocol):
    def authorization_header(self) -> str: ...


@dataclass
class CachedTokenProvider:
    """Bearer tokens for one scope from an azure-identity credential, kept until shortly before
    they expire. Thread-safe: concurrent callers share one refresh.

    If a refresh fails while the cached token is still valid, the cached token is used: an
    outage of the identity endpoint should not fail calls that a live token can still make.
    """

    credential: TokenCredential
    scope: str
    refresh_margin: timedelta = timedelta(minutes=5)
    clock: Callable[[], float] = time.time
    _token: AccessToken | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def authorization_header(self) -> str:
        return f"Bearer {self.token()}"

    def token(self) -> str:
        with self._lock:
            now = self.clock()
            cached = self._token
            if cached is not None and now < cached.expires_on - self.refresh_margin.total_seconds():
                return cached.token
            try:
                fresh = self.credential.get_token(self.scope)
            except Exception as error:  # azure-identity raises several types
                if cached is not None and now < cached.expires_on:
                    return cached.token
                raise TokenUnavailableError(
                    f"no Entra ID token for {self.scope!r}: {error}"
                ) from error
            self._token = fresh
            return fresh.token


def scope_for(audience: str) -> str:
    """The client-credentials scope of an API: its application (client) id plus `/.default`."""
    return f"{audience}/.default"


def managed_identity_tokens(audience: str, client_id: str,
                            credential: TokenCredential | None = None) -> CachedTokenProvider:
    """Tokens of the user-assigned managed identity ``client_id`` for the API ``audience``."""
    if credential is None:
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=client_id)
    return CachedTokenProvider(credential, scope_for(audience))


# ---------------------------------------------------------------------------- Payments side


class JwksSource(Protocol):
    """Returns a JWKS document ({"keys": [...]}); raises on failure."""

    def __call__(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class HttpJwksSource:
    url: str
    timeout: float = 10.0

    def __call__(self) -> Mapping[str, Any]:
        response = httpx.get(self.url, timeout=self.timeout)
        response.raise_for_status()
        document: Mapping[str, Any] = response.json()
        return document


@dataclass
class SigningKeys:
    """The signing keys by key id, fetched on first use, refreshed when a token names a key id
    that is not known (key rollover) and at least every `max_age`. Refreshes for unknown key ids
    happen at most once per `min_refresh_interval`, so tokens with made-up key ids cannot make
    the function hammer the JWKS endpoint."""

    source: JwksSource
    max_age: timedelta = timedelta(hours=24)
    min_refresh_interval: timedelta = timedelta(minutes=1)
    clock: Callable[[], float] = time.monotonic
    _keys: dict[str, jwt.PyJWK] = field(default_factory=dict, init=False, repr=False)
    _fetched_at: float | None = field(default=None, init=False, repr=False)
    _attempted_at: float | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def get(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = self.clock()
            if self._should_refresh(kid, now):
                self._refresh(now)
            key = self._keys.get(kid)
        if key is None:
            raise UnauthenticatedError(f"token signed with an unknown key (kid {kid!r})")
        return key

    def _should_refresh(self, kid: str, now: float) -> bool:
        if not self._keys:
            return True  # nothing to validate with: every request tries
        assert self._fetched_at is not None
        recently_tried = (
            self._attempted_at is not None
            and now - self._attempted_at < self.min_refresh_interval.total_seconds()
        )
        stale = now - self._fetched_at >= self.max_age.total_seconds()
        return not recently_tried and (stale or kid not in self._keys)

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            key_set = jwt.PyJWKSet.from_dict(dict(self.source()))
        except (httpx.HTTPError, jwt.PyJWKSetError, ValueError, KeyError, TypeError) as error:
            if self._keys:
                return  # keep the keys we have; the next interval tries again
            raise SigningKeysUnavailableError(f"cannot read the signing keys: {error}") from error
        self._keys = {key.key_id: key for key in key_set.keys if key.key_id}
        self._fetched_at = now


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of the Payments API."""

    object_id: str
    client_id: str | None
    tenant_id: str
    claims: Mapping[str, Any]


@dataclass
class EntraTokenValidator:
    tenant_id: str
    audiences: Collection[str]
    allowed_caller_object_ids: Collection[str]
    keys: SigningKeys
    leeway: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        if not self.tenant_id or not self.audiences or not self.allowed_caller_object_ids:
            raise AuthConfigurationError("tenant, audiences and allowed callers are required")
        self._issuers = frozenset(
            template.format(tenant=self.tenant_id) for template in (ISSUER_V1, ISSUER_V2)
        )
        self._allowed = frozenset(oid.lower() for oid in self.allowed_caller_object_ids)

    @classmethod
    def for_tenant(
        cls,
        tenant_id: str,
        audiences: Iterable[str],
        allowed_caller_object_ids: Iterable[str],
        source: JwksSource | None = None,
    ) -> EntraTokenValidator:
        keys = SigningKeys(source or HttpJwksSource(JWKS_URL.format(tenant=tenant_id)))
        return cls(tenant_id, tuple(audiences), tuple(allowed_caller_object_ids), keys)

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller of a request with this Authorization header value; raises
        UnauthenticatedError (401), ForbiddenCallerError (403) or
        SigningKeysUnavailableError (503)."""
        token = _bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"malformed token: {error}") from error
        if header.get("alg") not in ALGORITHMS:
            raise UnauthenticatedError(f"token algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnauthenticatedError("token names no signing key (kid)")
        key = self.keys.get(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=list(self.audiences),
                issuer=self._issuers,
                leeway=self.leeway,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "oid", "tid"]},
            )
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"invalid token: {error}") from error
        if str(claims["tid"]).lower() != self.tenant_id.lower():
            raise UnauthenticatedError("token of another tenant")
        object_id = str(claims["oid"])
        if object_id.lower() not in self._allowed:
            raise ForbiddenCallerError(f"identity {object_id} may not call this endpoint")
        client_id = claims.get("azp") or claims.get("appid")  # v2 / v1 name of the caller app
        return Caller(object_id, str(client_id) if client_id else None, str(claims["tid"]), claims)


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise UnauthenticatedError("missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError("Authorization header is not a bearer token")
    return token.strip()
