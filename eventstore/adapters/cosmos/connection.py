"""The Cosmos DB client from connection settings (Functions convention), created once per
process per connection and reused.

``COSMOS`` = ``AccountEndpoint=...;AccountKey=...;`` (the emulator's well-known public key in the
example settings), or ``COSMOS__accountEndpoint`` with ``DefaultAzureCredential`` (a user-assigned
identity from ``COSMOS__clientId`` or ``AZURE_CLIENT_ID``). ``COSMOS_ACCEPT_EMULATOR_CERT=true``
accepts the emulator's self-signed certificate, for loopback endpoints only.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.cosmos import CosmosClient
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from eventstore.adapters.cosmos.errors import is_certificate_error, raise_translated

logger = logging.getLogger("eventstore.adapters.cosmos")


class CosmosConfigurationError(ValueError):
    """The Cosmos DB connection settings are missing or not allowed."""


@dataclass(frozen=True)
class CosmosClientOptions:
    """Client-wide SDK settings. The SDK retries 429 itself, honouring the service's
    retry-after, up to ``retry_total`` attempts and ``retry_backoff_max`` seconds of waiting;
    connection failures are retried up to ``retry_total`` times too (reads only once sent)."""

    retry_total: int = 6
    retry_backoff_max: int = 15
    connection_timeout: float = 10.0
    read_timeout: float = 30.0
    user_agent_suffix: str = "es-orders-payments"


SETTING_CONNECTION_STRING = "COSMOS"
SETTING_ENDPOINT = "COSMOS__accountEndpoint"
SETTING_CLIENT_ID = "COSMOS__clientId"
SETTING_AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
SETTING_ACCEPT_EMULATOR_CERT = "COSMOS_ACCEPT_EMULATOR_CERT"


@dataclass(frozen=True)
class CosmosConnection:
    """A parsed Cosmos DB connection, validated as the Functions extension validates its own:
    ``COSMOS`` holds a connection string, or ``COSMOS__accountEndpoint`` (with optional
    ``COSMOS__clientId``) selects identity-based access."""

    endpoint: str
    key: str | None = field(repr=False)  # account key (connection string) or None (identity)
    client_id: str | None  # user-assigned managed identity, identity mode only
    accept_emulator_cert: bool

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> CosmosConnection:
        """Raises CosmosConfigurationError naming the missing or disallowed setting."""
        return _connection_from_settings(settings)

    @property
    def is_loopback(self) -> bool:
        return is_loopback_endpoint(self.endpoint)


def _parse_connection_string(value: str) -> tuple[str, str]:
    parts: dict[str, str] = {}
    for segment in value.split(";"):
        if not segment.strip():
            continue
        name, sep, val = segment.partition("=")
        if not sep:
            raise CosmosConfigurationError(
                f"{SETTING_CONNECTION_STRING} is not a connection string "
                "'AccountEndpoint=...;AccountKey=...;'"
            )
        parts[name.strip().lower()] = val.strip()
    endpoint, key = parts.get("accountendpoint"), parts.get("accountkey")
    if not endpoint or not key:
        raise CosmosConfigurationError(
            f"{SETTING_CONNECTION_STRING} must contain AccountEndpoint=...;AccountKey=...;"
        )
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise CosmosConfigurationError(
            f"the AccountKey in {SETTING_CONNECTION_STRING} is not a base64 account key"
        ) from None
    return endpoint, key


def is_loopback_endpoint(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connection_from_settings(settings: Mapping[str, str]) -> CosmosConnection:
    connection_string = (settings.get(SETTING_CONNECTION_STRING) or "").strip()
    account_endpoint = (settings.get(SETTING_ENDPOINT) or "").strip()
    if connection_string:
        endpoint, key = _parse_connection_string(connection_string)
        client_id = None
    elif account_endpoint:
        endpoint, key = account_endpoint, None
        client_id = (
            settings.get(SETTING_CLIENT_ID) or settings.get(SETTING_AZURE_CLIENT_ID) or ""
        ).strip() or None
    else:
        raise CosmosConfigurationError(
            f"no Cosmos DB connection configured: set {SETTING_CONNECTION_STRING} (connection "
            f"string 'AccountEndpoint=...;AccountKey=...;') or {SETTING_ENDPOINT} "
            "(managed identity)"
        )
    parsed = urlsplit(endpoint)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise CosmosConfigurationError(f"the Cosmos DB endpoint {endpoint!r} is not a URL")
    flag = (settings.get(SETTING_ACCEPT_EMULATOR_CERT) or "").strip().lower()
    accept_emulator_cert = flag == "true"
    if accept_emulator_cert and not is_loopback_endpoint(endpoint):
        raise CosmosConfigurationError(
            f"{SETTING_ACCEPT_EMULATOR_CERT}=true turns off TLS certificate verification and is "
            f"only allowed for a loopback emulator endpoint (localhost, 127.x, ::1), not for "
            f"{parsed.hostname!r}"
        )
    return CosmosConnection(endpoint, key, client_id, accept_emulator_cert)


def _ignore_emulator_certificate_warnings() -> None:
    # urllib3 warns on every unverified request; for an explicitly accepted loopback emulator
    # that is noise. The filter only matches loopback hosts.
    try:
        from urllib3.exceptions import InsecureRequestWarning
    except ImportError:  # pragma: no cover - urllib3 is a dependency of azure-core
        return
    warnings.filterwarnings(
        "ignore",
        message=r"Unverified HTTPS request is being made to host "
        r"'(localhost|127\.[0-9.]+|::1|\[::1\])'",
        category=InsecureRequestWarning,
    )


def _connection(settings: Mapping[str, str] | CosmosConnection) -> CosmosConnection:
    if isinstance(settings, CosmosConnection):
        return settings
    return _connection_from_settings(settings)


def create_cosmos_client(
    settings: Mapping[str, str] | CosmosConnection, options: CosmosClientOptions | None = None
) -> CosmosClient:
    """A new ``CosmosClient`` for the settings (not cached: see ``cosmos_client_from_settings``).

    Raises ``CosmosConfigurationError`` for missing or disallowed settings and ``TransientError``
    when the account cannot be reached (the SDK reads the account when the client is created).
    """
    return _create_client(_connection(settings), options or CosmosClientOptions())


def _create_client(connection: CosmosConnection, options: CosmosClientOptions) -> CosmosClient:
    credential: Any
    if connection.key is not None:
        credential = connection.key
    else:
        from azure.identity import DefaultAzureCredential

        if connection.client_id:
            credential = DefaultAzureCredential(managed_identity_client_id=connection.client_id)
        else:
            credential = DefaultAzureCredential()
    kwargs: dict[str, Any] = {
        "retry_total": options.retry_total,
        "retry_backoff_max": options.retry_backoff_max,
        "connection_timeout": options.connection_timeout,
        "read_timeout": options.read_timeout,
        "user_agent_suffix": options.user_agent_suffix,
    }
    if connection.accept_emulator_cert:
        logger.info(
            "accepting the self-signed certificate of the Cosmos DB emulator at %s",
            connection.endpoint,
        )
        _ignore_emulator_certificate_warnings()
        kwargs["connection_verify"] = False
    try:
        return CosmosClient(connection.endpoint, credential, **kwargs)
    except ServiceRequestError as error:
        if is_certificate_error(error):
            raise CosmosConfigurationError(
                f"the TLS certificate of {connection.endpoint} is not trusted; for the local "
                f"emulator set {SETTING_ACCEPT_EMULATOR_CERT}=true (loopback endpoints only)"
            ) from error
        raise_translated("connect", error)
    except (
        CosmosHttpResponseError,
        ServiceResponseError,
        CosmosClientTimeoutError,
    ) as error:
        raise_translated("connect", error)


_clients: dict[tuple[CosmosConnection, CosmosClientOptions], CosmosClient] = {}
_clients_lock = threading.Lock()


def cosmos_client_from_settings(
    settings: Mapping[str, str] | CosmosConnection, options: CosmosClientOptions | None = None
) -> CosmosClient:
    """The process-wide ``CosmosClient`` for these settings, created on first use (thread-safe).

    Settings (Functions convention): ``COSMOS`` = ``AccountEndpoint=...;AccountKey=...;`` or
    ``COSMOS__accountEndpoint`` with ``DefaultAzureCredential`` (user-assigned identity from
    ``COSMOS__clientId`` or ``AZURE_CLIENT_ID`` when set). ``COSMOS_ACCEPT_EMULATOR_CERT=true``
    accepts the emulator's self-signed certificate, for loopback endpoints only.
    """
    key = (_connection(settings), options or CosmosClientOptions())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # Created under the lock: one client per settings even when threads race; a failed
            # creation (TransientError) is not cached and the next call tries again.
            client = _create_client(*key)
            _clients[key] = client
        return client


def close_cached_clients() -> None:
    """Close and forget every cached client (shutdown, tests)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()
