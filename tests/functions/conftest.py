"""Fixtures for invoking the function app's functions in-process with real `azure.functions`
input objects, against the embedded backend (SQLite store, embedded bus) in a temporary folder.

`embedded_app` wires everything the way the local host does, except that nothing runs by itself:
a test pumps the change feed (`pump`) and delivers bus messages (`deliver`) explicitly, so every
step of the asynchronous flow is visible and deterministic. Checkout's call to Payments goes to
the real `payments_put` function through an `httpx.MockTransport`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

import azure.functions as func
import httpx
import pytest

from app.adapters.payments_http import HttpPaymentsGateway
from app.bootstrap import EmbeddedBackend, Services, ServiceStores, bootstrap
from app.ports import Acquirer
from app.settings import ServiceName, Settings
from devhost.bus import to_function_message
from eventstore.commit import Commit
from eventstore.embedded import bus as embedded_bus_module
from eventstore.embedded import store as embedded_store
from eventstore.embedded.bus import EmbeddedBus, ReceivedMessage, subscription_path
from eventstore.ports import DeadLetterQueues, MessagePublisher, PersonalDataStore
from functions import orders, payments, runtime

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SETTINGS_PATH = REPO_ROOT / "local.settings.example.json"
BASE_URL = "http://localhost:7071/api"

JsonBody = Mapping[str, Any] | list[Any] | str | bytes | None


def example_settings() -> dict[str, str]:
    """The Values of local.settings.example.json, as strings."""
    document = json.loads(EXAMPLE_SETTINGS_PATH.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in document["Values"].items()}


class HttpResult(NamedTuple):
    status: int
    json: Any  # the decoded body (None when there is none)
    headers: httpx.Headers  # case-insensitive, with Content-Type


def make_request(
    method: str,
    url: str,
    body: JsonBody = None,
    *,
    route_params: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> func.HttpRequest:
    """A real func.HttpRequest; a dict/list body is JSON-encoded, str/bytes are sent as they are.

    ``url`` is relative to the route prefix (``/orders``) or absolute."""
    if body is None:
        raw = b""
    elif isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode()
    else:
        raw = json.dumps(body).encode()
    full_url = url if url.startswith("http") else BASE_URL + url
    all_headers = {"content-type": "application/json"} if raw else {}
    all_headers.update(headers or {})
    return func.HttpRequest(method=method, url=full_url, headers=all_headers,
                            params=dict(params or {}), route_params=dict(route_params or {}),
                            body=raw)


def response_result(response: func.HttpResponse) -> HttpResult:
    headers = httpx.Headers(dict(response.headers))
    if response.mimetype and "content-type" not in headers:
        headers["content-type"] = response.mimetype
    body = response.get_body()
    return HttpResult(response.status_code, json.loads(body) if body else None, headers)


def http(
    fn: Callable[..., Any],
    method: str,
    url: str,
    body: JsonBody = None,
    *,
    route_params: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResult:
    """Invoke an HTTP-triggered function with a real func.HttpRequest: (status, json, headers)."""
    request = make_request(method, url, body, route_params=route_params, params=params,
                           headers=headers)
    response = fn(request)
    assert isinstance(response, func.HttpResponse), f"{fn!r} returned {response!r}"
    return response_result(response)


def parse_all(documents: list[dict[str, Any]]) -> list[Commit]:
    """The documents that are valid commits (the rest the functions park)."""
    parsed = []
    for document in documents:
        try:
            parsed.append(Commit.from_document(document))
        except (KeyError, TypeError, ValueError):
            continue
    return parsed


def documents_of(commits: list[Commit]) -> func.DocumentList:
    """Commits as the Cosmos DB trigger passes them: a DocumentList of Documents."""
    return func.DocumentList([func.Document.from_dict(c.to_document()) for c in commits])


@dataclass
class PaymentsCall:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    status: int


PaymentsHandler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Harness:
    """The embedded function app, driven by hand."""

    data_dir: Path
    settings: Settings
    payments_calls: list[PaymentsCall] = field(default_factory=list)
    payments_handler: PaymentsHandler | None = None  # replaces the real payments_put if set
    _checkpoints: dict[int, str | None] = field(default_factory=dict)

    # -- the process ----------------------------------------------------------------------------

    def start(self, wrap_stores: Callable[[ServiceStores], ServiceStores] | None = None,
              publisher: MessagePublisher | None = None, acquirer: Acquirer | None = None,
              wrap_personal_data: Callable[[PersonalDataStore], PersonalDataStore] | None = None,
              ) -> None:
        """(Re)start the app process: new Services over the same data, nothing cached; stores
        and the publisher can be replaced to inject faults."""
        runtime.shutdown()
        # The real gateway (base URL, key header, timeout); only its transport is replaced, so
        # the request it sends is exactly the one it would send.
        gateway = HttpPaymentsGateway(self.settings.orders.payments_api_base_url,
                                      transport=httpx.MockTransport(self.payments_transport))
        backend = FaultyBackend(EmbeddedBackend(self.settings), wrap_stores, publisher,
                                wrap_personal_data)
        runtime.install(bootstrap(self.settings, backend=backend, payments_gateway=gateway,
                                  acquirer=acquirer))

    # -- HTTP -----------------------------------------------------------------------------------

    http = staticmethod(http)

    def payments_transport(self, request: httpx.Request) -> httpx.Response:
        """Serves Orders' calls to the Payments API with the real payments_put function."""
        if self.payments_handler is not None:
            response = self.payments_handler(request)
        else:
            response = self._call_payments_put(request)
        self.payments_calls.append(PaymentsCall(
            method=request.method, url=str(request.url),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.content, status=response.status_code))
        return response

    @staticmethod
    def _call_payments_put(request: httpx.Request) -> httpx.Response:
        segments = request.url.path.strip("/").split("/")
        if request.method != "PUT" or len(segments) != 3 or segments[:2] != ["api", "payments"]:
            return httpx.Response(404, json={"title": "no such route in the test double"})
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers.items()),
            params=dict(request.url.params.items()),
            route_params={"paymentId": unquote(segments[2])},
            body=request.content,
        )
        response = payments.put_payment(req)
        headers = dict(response.headers)
        headers.setdefault("content-type", response.mimetype or "application/json")
        return httpx.Response(response.status_code, content=response.get_body(),
                              headers=headers)

    # -- change feed ----------------------------------------------------------------------------

    @staticmethod
    def services() -> Services:
        return runtime.services()

    def stores(self, service: ServiceName) -> ServiceStores:
        return self.services().stores(service)

    def pump(self, function: Callable[..., Any], service: ServiceName, max_items: int = 100
             ) -> list[Commit]:
        """Deliver the service's change feed, from this function's last checkpoint, to the
        change-feed function as DocumentLists; the checkpoint moves only when a batch succeeded.
        Returns the commits delivered."""
        store = self.stores(service).events
        delivered: list[Commit] = []
        while True:
            checkpoint = self._checkpoints.get(id(function))
            page = store.read_feed(checkpoint, max_items)
            if not page.documents:
                return delivered
            function(func.DocumentList([func.Document.from_dict(d) for d in page.documents]))
            self._checkpoints[id(function)] = page.checkpoint
            delivered.extend(parse_all(page.documents))

    def feed(self, service: ServiceName) -> list[Commit]:
        """The service's whole change feed, from the beginning."""
        return parse_all(self.stores(service).events.read_feed(None, 10_000).documents)

    # -- bus ------------------------------------------------------------------------------------

    def bus(self) -> EmbeddedBus:
        backend = self.services().backend
        assert isinstance(backend, FaultyBackend)
        return backend.embedded.bus

    @staticmethod
    def authorizations_queue() -> str:
        return os.environ["AUTHORIZATIONS_QUEUE"]

    @staticmethod
    def payment_events_path() -> str:
        """The Orders subscription on the payments topic."""
        return subscription_path(os.environ["PAYMENTS_TOPIC"], os.environ["PAYMENTS_SUBSCRIPTION"])

    def authorize_and_settle(self, payment_id: str,
                             headers: Mapping[str, str] | None = None) -> None:
        """Authorize the payment over HTTP, then run the asynchronous chain through the
        functions: payments publisher → acquirer → payments publisher → orders consumer."""
        result = self.http(payments.authorize_payment, "POST", f"/payments/{payment_id}/authorize",
                           route_params={"paymentId": payment_id}, headers=headers)
        assert result.status == 202, result
        self.pump(payments.payments_publisher, "payments")
        assert len(self.deliver(payments.payments_acquirer, self.authorizations_queue())) == 1
        self.pump(payments.payments_publisher, "payments")
        assert len(self.deliver(orders.on_payment_event, self.payment_events_path())) == 1

    def deliver(self, function: Callable[..., Any], entity_path: str) -> list[ReceivedMessage]:
        """Receive every available message of the entity and invoke the Service Bus function
        with each (as func.ServiceBusMessage): complete on success; on failure abandon the
        message and re-raise. Returns the messages delivered."""
        bus = self.bus()
        delivered: list[ReceivedMessage] = []
        while True:
            received: list[ReceivedMessage] = bus.receive(entity_path, max_messages=1,
                                                          timeout=0)
            if not received:
                return delivered
            message = received[0]
            try:
                function(to_function_message(message))
            except BaseException:
                bus.abandon(message)
                raise
            bus.complete(message)
            delivered.append(message)


class FaultyBackend:
    """The embedded backend, with stores or the publisher replaced where a test injects faults."""

    def __init__(self, embedded: EmbeddedBackend,
                 wrap_stores: Callable[[ServiceStores], ServiceStores] | None = None,
                 publisher: MessagePublisher | None = None,
                 wrap_personal_data: Callable[[PersonalDataStore], PersonalDataStore] | None
                 = None) -> None:
        self.embedded = embedded
        self._wrap_stores = wrap_stores
        self._publisher = publisher
        self._wrap_personal_data = wrap_personal_data

    def stores(self, database: str) -> ServiceStores:
        stores = self.embedded.stores(database)
        return self._wrap_stores(stores) if self._wrap_stores else stores

    def personal_data(self, database: str, container: str) -> PersonalDataStore:
        store = self.embedded.personal_data(database, container)
        return self._wrap_personal_data(store) if self._wrap_personal_data else store

    def publisher(self) -> MessagePublisher:
        return self._publisher or self.embedded.publisher()

    def inbox(self, entity_path: str, max_lock_renewal: float) -> Any:
        return self.embedded.inbox(entity_path, max_lock_renewal)

    def dead_letter_queues(self) -> DeadLetterQueues:
        return self.embedded.dead_letter_queues()

    def close(self) -> None:
        self.embedded.close()


def _reset() -> None:
    runtime.shutdown()
    embedded_store.close_all()
    embedded_bus_module.close_all()


@pytest.fixture
def embedded_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """The function app on the embedded backend in tmp_path, with every example setting."""
    _reset()
    environment = {**example_settings(), "BACKEND": "embedded",
                   "EMBEDDED_DATA_DIR": str(tmp_path), "PAYMENTS_ACQUIRER_DELAY_MS": "0",
                   "PAYMENTS_DECLINE_ABOVE": "100000"}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    harness = Harness(data_dir=tmp_path, settings=Settings.from_environ(environment))
    harness.start()
    try:
        yield harness
    finally:
        _reset()
