"""Cosmos DB adapters: event store (+ change feed, checkpoints), views and dead letters.

Semantics are those of the ports (``eventstore.ports``) and of DESIGN.md §4-§5:

- ``CosmosEventStore.append`` is ONE ``create_item`` of the commit document, id
  ``"{streamId}:{firstVersion}"``, partition key ``/streamId``. A 409 means another writer
  decided from the same version: ``ConcurrencyError``.
- ``read_stream`` is ONE single-partition query ordered by version (more only for streams longer
  than a page, ``STREAM_PAGE_SIZE`` commits).
- ``read_feed`` uses the pull-model change feed; its checkpoint is the SDK's continuation token.
  Checkpoints are documents in the leases container (see ``CosmosEventStore``).
- Views are stored as ``{"id": viewId, "view": document}`` so ``get`` returns exactly the
  document that was put; ``put`` creates (409) or replaces with ``If-Match`` (412).
- Throttling (429) is retried by the SDK (``CosmosClientOptions``); what is still failing after
  that, and timeouts/unavailability/connection errors, becomes ``TransientError``.
- Every operation's request count and request charge (RU) go to a ``RequestMeter``, which a
  caller scopes per command: ``with REQUEST_METER.measure() as m: ...; m.requests``.

Containers are created by the infrastructure (Bicep) in Azure; ``ensure_containers`` creates
them for the emulator and tests.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import ipaddress
import json
import logging
import os
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineResponse
from azure.cosmos import ContainerProxy, CosmosClient, DatabaseProxy, PartitionKey
from azure.cosmos.exceptions import CosmosClientTimeoutError, CosmosHttpResponseError

from eventstore.errors import ConcurrencyError, TransientError
from eventstore.ports import Commit, DeadLetter, FeedPage, JsonDict, StoredView

__all__ = [
    "REQUEST_METER",
    "ContainerNames",
    "CosmosClientOptions",
    "CosmosConfigurationError",
    "CosmosDatabase",
    "CosmosDeadLetterStore",
    "CosmosEventStore",
    "CosmosViewStore",
    "Measurement",
    "RequestMeter",
    "close_cached_clients",
    "cosmos_client_from_settings",
    "create_cosmos_client",
    "ensure_containers",
    "is_loopback_endpoint",
    "is_transient_status",
    "open_cosmos_database",
]

logger = logging.getLogger(__name__)

TRANSIENT_STATUS_CODES = frozenset({408, 429, 449, 500, 502, 503, 504})
"""Statuses worth retrying later: request timeout, throttling (after the SDK's own retries),
retry-with (449), and server-side failures/unavailability."""

STREAM_PAGE_SIZE = 1000
"""Commits per page of ``read_stream``: a stream up to this many commits is one request."""


# --------------------------------------------------------------------------------------------
# Request metering
# --------------------------------------------------------------------------------------------


class Measurement:
    """Requests and request units counted while a ``RequestMeter.measure()`` scope was active.

    ``requests`` counts the HTTP responses Cosmos DB returned to operations of the stores,
    including SDK retries (a throttled create that succeeds on the second try is 2 requests) and
    failed ones (a 409 costs RUs too). Metadata reads the SDK makes once to warm its caches
    (account, container properties, partition key ranges) are not attributed to operations.
    """

    __slots__ = ("_lock", "_request_charge", "_requests")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0
        self._request_charge = 0.0

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def request_charge(self) -> float:
        with self._lock:
            return self._request_charge

    def add(self, request_charge: float) -> None:
        with self._lock:
            self._requests += 1
            self._request_charge += request_charge

    def __repr__(self) -> str:
        return f"Measurement(requests={self.requests}, request_charge={self.request_charge:g})"


_ACTIVE_SCOPES: contextvars.ContextVar[tuple[tuple[RequestMeter, Measurement], ...]] = (
    contextvars.ContextVar("cosmos_request_meter_scopes", default=())
)


class RequestMeter:
    """Thread-safe accumulator of Cosmos DB requests and request charges.

    ``measure()`` opens a scope in the current context (thread or task): every request the stores
    make in it is added to the scope's ``Measurement`` (and to any enclosing scope, and to
    ``total``). Scopes in other threads are not affected.
    """

    def __init__(self) -> None:
        self.total = Measurement()

    @contextmanager
    def measure(self) -> Iterator[Measurement]:
        measurement = Measurement()
        token = _ACTIVE_SCOPES.set((*_ACTIVE_SCOPES.get(), (self, measurement)))
        try:
            yield measurement
        finally:
            _ACTIVE_SCOPES.reset(token)

    def record(self, request_charge: float) -> None:
        """Count one request costing ``request_charge`` RU."""
        self.total.add(request_charge)
        for meter, measurement in _ACTIVE_SCOPES.get():
            if meter is self:
                measurement.add(request_charge)

    def response_hook(self, operation: str) -> Callable[[PipelineResponse[Any, Any]], None]:
        """A ``raw_response_hook`` for one SDK call: records every HTTP response it gets."""

        def hook(response: PipelineResponse[Any, Any]) -> None:
            http_response = response.http_response
            raw = http_response.headers.get("x-ms-request-charge")
            try:
                charge = float(raw) if raw is not None else 0.0
            except ValueError:
                charge = 0.0
            self.record(charge)
            logger.debug(
                "cosmos %s: status %s, %.2f RU", operation, http_response.status_code, charge
            )

        return hook


REQUEST_METER = RequestMeter()
"""The process-wide meter the stores use unless given another one."""


# --------------------------------------------------------------------------------------------
# Error translation
# --------------------------------------------------------------------------------------------


def is_transient_status(status_code: int | None) -> bool:
    return status_code is not None and status_code in TRANSIENT_STATUS_CODES


def _is_certificate_error(error: BaseException) -> bool:
    """True when an untrusted TLS certificate is somewhere in the error's chain: a permanent
    failure (configuration), not a transient one."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        pending.extend((current.__cause__, current.__context__))
        inner = getattr(current, "inner_exception", None)
        if isinstance(inner, BaseException):
            pending.append(inner)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return False


def _raise_translated(operation: str, error: Exception) -> NoReturn:
    """Raise ``TransientError`` for retryable failures; re-raise anything else unchanged."""
    if isinstance(error, CosmosHttpResponseError):
        if is_transient_status(error.status_code):
            raise TransientError(
                f"Cosmos DB {operation} failed with status {error.status_code} "
                f"(substatus {error.sub_status}): {error.message}"
            ) from error
        raise error
    if isinstance(
        error, ServiceRequestError | ServiceResponseError | CosmosClientTimeoutError
    ) and not _is_certificate_error(error):
        raise TransientError(f"Cosmos DB {operation} failed: {error}") from error
    raise error


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except (
        CosmosHttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
        CosmosClientTimeoutError,
    ) as error:
        _raise_translated(operation, error)


# --------------------------------------------------------------------------------------------
# Stores
# --------------------------------------------------------------------------------------------


def _is_change_feed_token(token: object) -> bool:
    """True for the SDK's pull-model continuation token (base64 JSON naming the container)."""
    if not isinstance(token, str) or not token:
        return False
    try:
        decoded = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "containerRid" in decoded


def _resumable(token: str) -> str:
    """The continuation token with every unread feed range's ``"token": null`` made ``""``.

    The SDK (azure-cosmos 4.17) writes null for the feed ranges (physical partitions) it has not
    read yet and then rejects such a token as a continuation ("Invalid composite token [Missing
    token]"). An empty token builds the same request (no If-None-Match: the range is read from
    the feed's start position) and is accepted. Other tokens are returned unchanged."""
    try:
        state = json.loads(base64.b64decode(token, validate=True))
        ranges = state["continuation"]["continuation"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        return token
    unread = [
        r for r in ranges if isinstance(r, dict) and r.get("token") is None
    ] if isinstance(ranges, list) else []
    if not unread:
        return token
    for feed_range in unread:
        feed_range["token"] = ""
    return base64.b64encode(json.dumps(state).encode()).decode()


def _read_or_none(
    container: ContainerProxy, item_id: str, meter: RequestMeter, operation: str
) -> dict[str, Any] | None:
    """Point read of an item whose partition key is its id; None when it does not exist."""
    try:
        return container.read_item(
            item_id, partition_key=item_id, raw_response_hook=meter.response_hook(operation)
        )
    except CosmosHttpResponseError as error:
        if error.status_code == 404:
            return None
        _raise_translated(operation, error)
    except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
        _raise_translated(operation, error)


class CosmosEventStore:
    """``EventStore``, ``ChangeFeed`` and ``CheckpointStore`` over an ``events`` container
    (partition key ``/streamId``) and a leases container (partition key ``/id``).

    Checkpoints live in the leases container as documents with id
    ``"checkpoint:{eventsContainerId}:{consumer}"``; they cannot collide with the Functions
    trigger's own lease documents, and two services sharing one leases container keep separate
    checkpoints for equally named consumers.
    """

    def __init__(
        self,
        events: ContainerProxy,
        leases: ContainerProxy,
        *,
        meter: RequestMeter | None = None,
    ) -> None:
        self._events = events
        self._leases = leases
        self._meter = meter or REQUEST_METER

    # -- EventStore ---------------------------------------------------------------------------

    def append(self, commit: Commit) -> None:
        try:
            self._events.create_item(
                commit.to_document(), raw_response_hook=self._meter.response_hook("append")
            )
        except CosmosHttpResponseError as error:
            if error.status_code == 409:
                raise ConcurrencyError(
                    f"commit {commit.id} already exists: stream {commit.stream_id!r} moved past "
                    f"version {commit.first_version - 1}"
                ) from error
            _raise_translated("append", error)
        except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
            # A create is not retried by the SDK once sent (not idempotent); the caller's retry
            # gets a 409 if the first attempt did land, and reloads the stream as on any conflict.
            _raise_translated("append", error)

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[Commit]:
        # The partition-key filter is in the WHERE clause as well as in partition_key: the
        # query stays single-partition in any case (and the test server requires it).
        with _translated("read_stream"):
            documents = list(
                self._events.query_items(
                    "SELECT * FROM c WHERE c.streamId = @streamId AND c.version > @after"
                    " ORDER BY c.version",
                    parameters=[
                        {"name": "@streamId", "value": stream_id},
                        {"name": "@after", "value": after_version},
                    ],
                    partition_key=stream_id,
                    max_item_count=STREAM_PAGE_SIZE,
                    raw_response_hook=self._meter.response_hook("read_stream"),
                )
            )
        return [Commit.from_document(document) for document in documents]

    # -- ChangeFeed ---------------------------------------------------------------------------

    def read_feed(self, checkpoint: str | None, max_items: int) -> FeedPage:
        """One page of the change feed (latest-version mode) after ``checkpoint``.

        The checkpoint is the SDK's pull-model continuation token (it covers every feed range of
        the container). A page with no commits leaves the checkpoint as it was.
        """
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        # The page's continuation token: the pager's public ``continuation_token`` is read from
        # the client's shared ``last_response_headers``, which a request on another thread can
        # overwrite in between. The headers of this very response (handed to response_hook, into
        # which the SDK writes the composite token) are not shared, so they are preferred.
        responses: list[Mapping[str, Any]] = []
        options: dict[str, Any] = {
            "max_item_count": max_items,
            "raw_response_hook": self._meter.response_hook("read_feed"),
            "response_hook": lambda headers, _result: responses.append(headers),
        }
        if checkpoint is None:
            options["start_time"] = "Beginning"
        else:
            options["continuation"] = _resumable(checkpoint)
        with _translated("read_feed"):
            pages = self._events.query_items_change_feed(**options).by_page()
            try:
                documents = list(next(pages))
            except StopIteration:
                documents = []
            token = responses[-1].get("etag") if responses else None
            if not _is_change_feed_token(token):
                # by_page() is typed as a plain iterator; the object is the SDK's page iterator.
                token = getattr(pages, "continuation_token", None)
        if not documents:
            return FeedPage(commits=[], checkpoint=checkpoint)
        if not isinstance(token, str):
            raise RuntimeError("the change feed returned items without a continuation token")
        return FeedPage(
            commits=[Commit.from_document(document) for document in documents],
            checkpoint=_resumable(token),
        )

    # -- CheckpointStore ----------------------------------------------------------------------

    def _checkpoint_id(self, consumer: str) -> str:
        return f"checkpoint:{self._events.id}:{consumer}"

    def load_checkpoint(self, consumer: str) -> str | None:
        document = _read_or_none(self._leases, self._checkpoint_id(consumer), self._meter,
                                 "load_checkpoint")
        return None if document is None else str(document["checkpoint"])

    def save_checkpoint(self, consumer: str, checkpoint: str) -> None:
        if not checkpoint:
            raise ValueError("a checkpoint is a non-empty continuation token")
        document_id = self._checkpoint_id(consumer)
        with _translated("save_checkpoint"):
            self._leases.upsert_item(
                {
                    "id": document_id,
                    "kind": "checkpoint",
                    "container": self._events.id,
                    "consumer": consumer,
                    "checkpoint": checkpoint,
                },
                raw_response_hook=self._meter.response_hook("save_checkpoint"),
            )


class CosmosViewStore:
    """``ViewStore`` over a ``views`` container (partition key ``/id``).

    A view is stored as ``{"id": viewId, "view": document}``: the document comes back exactly as
    it was put, whatever keys it has. The ETag is Cosmos's ``_etag``.
    """

    def __init__(self, views: ContainerProxy, *, meter: RequestMeter | None = None) -> None:
        self._views = views
        self._meter = meter or REQUEST_METER

    def get(self, view_id: str) -> StoredView | None:
        item = _read_or_none(self._views, view_id, self._meter, "view_get")
        if item is None:
            return None
        return StoredView(document=dict(item["view"]), etag=str(item["_etag"]))

    def put(self, view_id: str, document: JsonDict, etag: str | None) -> str:
        body = {"id": view_id, "view": document}
        try:
            if etag is None:
                item = self._views.create_item(
                    body, raw_response_hook=self._meter.response_hook("view_create")
                )
            else:
                item = self._views.replace_item(
                    view_id,
                    body,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                    raw_response_hook=self._meter.response_hook("view_replace"),
                )
        except CosmosHttpResponseError as error:
            if error.status_code == 409:
                raise ConcurrencyError(f"view {view_id!r} already exists") from error
            if error.status_code in (404, 412):
                raise ConcurrencyError(
                    f"view {view_id!r} does not exist or its ETag is no longer {etag!r}"
                ) from error
            _raise_translated("view_put", error)
        except (ServiceRequestError, ServiceResponseError, CosmosClientTimeoutError) as error:
            _raise_translated("view_put", error)
        return str(item["_etag"])


class CosmosDeadLetterStore:
    """``DeadLetterStore`` over a dead-letter container (partition key ``/id``).

    ``list_letters`` returns the oldest letters by (parkedAt, id), like the embedded store. The
    order is a single-field ``ORDER BY c.listOrder`` (``parkedAt + U+0001 + id``), which the
    default indexing policy serves without a composite index.
    """

    def __init__(self, letters: ContainerProxy, *, meter: RequestMeter | None = None) -> None:
        self._letters = letters
        self._meter = meter or REQUEST_METER

    def park(self, letter: DeadLetter) -> None:
        with _translated("park"):
            self._letters.upsert_item(
                {
                    "id": letter.id,
                    "consumer": letter.consumer,
                    "streamId": letter.stream_id,
                    "version": letter.version,
                    "eventType": letter.event_type,
                    "error": letter.error,
                    "payload": letter.payload,
                    "parkedAt": letter.parked_at,
                    "listOrder": f"{letter.parked_at}\u0001{letter.id}",
                },
                raw_response_hook=self._meter.response_hook("park"),
            )

    def list_letters(self, limit: int = 100) -> list[DeadLetter]:
        if limit < 1:
            return []
        with _translated("list_letters"):
            documents = list(
                self._letters.query_items(
                    "SELECT TOP @limit * FROM c ORDER BY c.listOrder",
                    parameters=[{"name": "@limit", "value": limit}],
                    enable_cross_partition_query=True,
                    raw_response_hook=self._meter.response_hook("list_letters"),
                )
            )
        return [
            DeadLetter(
                id=str(document["id"]),
                consumer=str(document["consumer"]),
                stream_id=str(document["streamId"]),
                version=int(document["version"]),
                event_type=str(document["eventType"]),
                error=str(document["error"]),
                payload=dict(document["payload"]),
                parked_at=str(document["parkedAt"]),
            )
            for document in documents
        ]


# --------------------------------------------------------------------------------------------
# Containers and the per-database factory
# --------------------------------------------------------------------------------------------


EVENTS_INDEXING_POLICY: JsonDict = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [{"path": "/streamId/?"}, {"path": "/version/?"}],
    "excludedPaths": [{"path": "/*"}],
}
"""As in infra/bicep (cosmos-database.bicep): the stream read filters on streamId and orders by
version; event bodies are not indexed."""


@dataclass(frozen=True)
class ContainerNames:
    events: str = "events"
    views: str = "views"
    deadletters: str = "deadletters"
    leases: str = "leases"


def ensure_containers(
    client: CosmosClient,
    database_name: str,
    *,
    events_container: str = "events",
    views_container: str = "views",
    deadletters_container: str = "deadletters",
    leases_container: str = "leases",
) -> DatabaseProxy:
    """Create the database and containers when missing (emulator, tests). In Azure, Bicep
    creates them; this function is not called there."""
    with _translated("ensure_containers"):
        database = client.create_database_if_not_exists(database_name)
        database.create_container_if_not_exists(
            events_container, PartitionKey("/streamId"), indexing_policy=EVENTS_INDEXING_POLICY
        )
        for name in (views_container, deadletters_container, leases_container):
            database.create_container_if_not_exists(name, PartitionKey("/id"))
    return database


class CosmosDatabase:
    """The stores of one service database: events (+ feed, checkpoints), views, dead letters."""

    def __init__(
        self,
        client: CosmosClient,
        database_name: str,
        *,
        events_container: str = "events",
        views_container: str = "views",
        deadletters_container: str = "deadletters",
        leases_container: str = "leases",
        meter: RequestMeter | None = None,
    ) -> None:
        self.client = client
        self.database_name = database_name
        self.names = ContainerNames(
            events=events_container,
            views=views_container,
            deadletters=deadletters_container,
            leases=leases_container,
        )
        self.meter = meter or REQUEST_METER
        database = client.get_database_client(database_name)
        self.events = CosmosEventStore(
            database.get_container_client(events_container),
            database.get_container_client(leases_container),
            meter=self.meter,
        )
        self.views = CosmosViewStore(
            database.get_container_client(views_container), meter=self.meter
        )
        self.dead_letters = CosmosDeadLetterStore(
            database.get_container_client(deadletters_container), meter=self.meter
        )

    def ensure_containers(self) -> None:
        """Create the database and its containers when missing (emulator, tests)."""
        ensure_containers(
            self.client,
            self.database_name,
            events_container=self.names.events,
            views_container=self.names.views,
            deadletters_container=self.names.deadletters,
            leases_container=self.names.leases,
        )

    def __repr__(self) -> str:
        return f"CosmosDatabase({self.database_name!r}, {self.names})"


# --------------------------------------------------------------------------------------------
# Client from settings
# --------------------------------------------------------------------------------------------


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
class _Connection:
    endpoint: str
    key: str | None  # account key (connection string) or None (identity)
    client_id: str | None  # user-assigned managed identity, identity mode only
    accept_emulator_cert: bool


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


def _connection_from_settings(settings: Mapping[str, str]) -> _Connection:
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
    return _Connection(endpoint, key, client_id, accept_emulator_cert)


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


def create_cosmos_client(
    settings: Mapping[str, str], options: CosmosClientOptions | None = None
) -> CosmosClient:
    """A new ``CosmosClient`` for the settings (not cached: see ``cosmos_client_from_settings``).

    Raises ``CosmosConfigurationError`` for missing or disallowed settings and ``TransientError``
    when the account cannot be reached (the SDK reads the account when the client is created).
    """
    connection = _connection_from_settings(settings)
    return _create_client(connection, options or CosmosClientOptions())


def _create_client(connection: _Connection, options: CosmosClientOptions) -> CosmosClient:
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
        if _is_certificate_error(error):
            raise CosmosConfigurationError(
                f"the TLS certificate of {connection.endpoint} is not trusted; for the local "
                f"emulator set {SETTING_ACCEPT_EMULATOR_CERT}=true (loopback endpoints only)"
            ) from error
        _raise_translated("connect", error)
    except (
        CosmosHttpResponseError,
        ServiceResponseError,
        CosmosClientTimeoutError,
    ) as error:
        _raise_translated("connect", error)


_clients: dict[tuple[_Connection, CosmosClientOptions], CosmosClient] = {}
_clients_lock = threading.Lock()


def cosmos_client_from_settings(
    settings: Mapping[str, str], options: CosmosClientOptions | None = None
) -> CosmosClient:
    """The process-wide ``CosmosClient`` for these settings, created on first use (thread-safe).

    Settings (Functions convention): ``COSMOS`` = ``AccountEndpoint=...;AccountKey=...;`` or
    ``COSMOS__accountEndpoint`` with ``DefaultAzureCredential`` (user-assigned identity from
    ``COSMOS__clientId`` or ``AZURE_CLIENT_ID`` when set). ``COSMOS_ACCEPT_EMULATOR_CERT=true``
    accepts the emulator's self-signed certificate, for loopback endpoints only.
    """
    connection = _connection_from_settings(settings)
    key = (connection, options or CosmosClientOptions())
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


def open_cosmos_database(
    *,
    database: str,
    events_container: str = "events",
    views_container: str = "views",
    deadletters_container: str = "deadletters",
    leases_container: str = "leases",
    settings: Mapping[str, str] | None = None,
    options: CosmosClientOptions | None = None,
    meter: RequestMeter | None = None,
) -> CosmosDatabase:
    """The stores of one service database, over the process-wide client for ``settings``
    (default: the environment, i.e. the app settings).

    Against a local emulator (loopback endpoint) the database and containers are created when
    missing, so ``func start`` works on a fresh emulator; in Azure, Bicep creates them and
    nothing is created here.
    """
    settings = os.environ if settings is None else settings
    client = cosmos_client_from_settings(settings, options)
    cosmos = CosmosDatabase(
        client,
        database,
        events_container=events_container,
        views_container=views_container,
        deadletters_container=deadletters_container,
        leases_container=leases_container,
        meter=meter,
    )
    if is_loopback_endpoint(_connection_from_settings(settings).endpoint):
        cosmos.ensure_containers()
    return cosmos
