"""Serves the app's HTTP triggers on the Functions routes: a small ASGI app under uvicorn
(httptools parser, uvloop where installed).

What it guarantees, where a plain ASGI framework would not:

- bodies are read as a stream with the host's size limit (``max_request_bytes``) and a deadline
  (``body_timeout``), so a huge chunked body costs no more memory than the limit and a client
  that sends less than it announced gets a 408 instead of a hung connection;
- a client that sends no complete request head within ``header_timeout`` is disconnected;
- every error the host itself answers (404, 405, 408, 413, malformed HTTP, a function that
  crashed) is ``application/problem+json``;
- a client that disconnects mid-request is not an error.

Function code is synchronous, so each request runs in a worker thread (as the Python worker runs
functions in its thread pool); the event loop stays free for other requests. The pool is a plain
``ThreadPoolExecutor``: handing a request to it costs about half of what ``anyio.to_thread``
costs, which on this path is most of the host's own time per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from contracts.headers import CORRELATION_HEADER
from devhost.indexing import HttpSpec
from devhost.invocations import invoke

log = logging.getLogger("devhost.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PROBLEM_JSON = b"application/problem+json"
# Checkout calls Payments over HTTP on this same host and holds its thread meanwhile, so the pool
# must be large enough for both halves of many concurrent checkouts.
WORKER_THREADS = 256
ROUTE_ID_PARAMS = ("orderId", "paymentId", "customerId")


@dataclass(frozen=True)
class HttpLimits:
    max_request_bytes: int = 100 * 1024 * 1024  # the Functions host's own request limit
    body_timeout: float = 30.0
    header_timeout: float = 10.0


def problem_body(status: int, title: str, detail: str) -> bytes:
    return json.dumps({"type": f"https://httpstatuses.io/{status}", "title": title,
                       "status": status, "detail": detail}).encode()


class _ClientGone(Exception):
    """The client disconnected before its request was read."""


class _Refused(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


class FunctionsHttpApp:
    """The ASGI app: routes a request to its HTTP function, as the Functions host does."""

    def __init__(self, specs: list[HttpSpec], route_prefix: str = "api",
                 limits: HttpLimits | None = None) -> None:
        prefix = route_prefix.strip("/")
        self._prefix = f"/{prefix}" if prefix else ""
        self._limits = limits or HttpLimits()
        self._workers = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="http")
        # Routes are tried only among those with the same number of segments (most specific
        # first, as the list comes sorted), not one regex per route for every request.
        self._by_length: dict[int, list[HttpSpec]] = {}
        for spec in specs:
            self._by_length.setdefault(spec.route.strip("/").count("/") + 1, []).append(spec)
        self._catch_all = [s for s in specs if "{*" in s.route]

    def close(self) -> None:
        """Let the worker threads end once their requests are done (without waiting here)."""
        self._workers.shutdown(wait=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await self._serve(scope, receive, send)
        except _ClientGone:
            log.debug("client disconnected before its request was read")

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if self._prefix and not (path == self._prefix or path.startswith(self._prefix + "/")):
            await _send_problem(send, 404, "Not found", f"no function serves {path}")
            return
        relative = path[len(self._prefix):] or "/"
        candidates = self._by_length.get(relative.strip("/").count("/") + 1, []) + \
            self._catch_all
        matches = [(spec, m) for spec in candidates if (m := spec.pattern.match(relative))]
        if not matches:
            await _send_problem(send, 404, "Not found", f"no function serves {path}")
            return
        allowed = [(spec, m) for spec, m in matches if method in spec.methods]
        if not allowed:
            methods = ", ".join(sorted({m for spec, _ in matches for m in spec.methods}))
            await _send_problem(send, 405, "Method not allowed",
                                f"{method} is not allowed on {path}", [(b"allow",
                                                                       methods.encode())])
            return
        spec, match = allowed[0]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read_body(headers, receive)
        except _Refused as refused:
            await _send_problem(send, refused.status, refused.title, refused.detail,
                                [(b"connection", b"close")])
            return
        query = scope.get("query_string", b"").decode("latin-1")
        host = headers.get("host", "localhost")
        url = f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")
        route_params = {k: v for k, v in match.groupdict().items() if v is not None}
        req = func.HttpRequest(method=method, url=url, headers=headers,
                               params=_query_params(query), route_params=route_params, body=body)

        def describe(result: Any) -> tuple[bool, str]:
            status = result.status_code if isinstance(result, func.HttpResponse) else 200
            ids = " ".join(f"{k}={route_params[k]}" for k in ROUTE_ID_PARAMS
                           if k in route_params)
            correlation = (result.headers.get(CORRELATION_HEADER)
                           if isinstance(result, func.HttpResponse) else None)
            parts = [f"{method} {path} -> {status}", ids,
                     f"correlation={correlation}" if correlation else ""]
            return status >= 500, " ".join(p for p in parts if p)

        def call() -> Any:
            return invoke(spec.name, spec.call, {spec.arg_name: req}, describe=describe)

        try:
            result = await asyncio.get_running_loop().run_in_executor(self._workers, call)
        except Exception:
            log.exception("function %s failed", spec.name)
            await _send_problem(send, 500, "Internal error", f"function {spec.name} failed")
            return
        await _send_result(send, result)

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        limit = self._limits.max_request_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Refused(413, "Payload too large",
                           f"the request body exceeds the host's limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _Refused(413, "Payload too large",
                                       f"the request body exceeds the host's limit of {limit} "
                                       "bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refused(408, "Request timeout",
                           f"the request body did not arrive within {self._limits.body_timeout:g} "
                           "seconds") from None


def _query_params(query: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(query, keep_blank_values=True))


async def _send_problem(send: Send, status: int, title: str, detail: str,
                        extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = problem_body(status, title, detail)
    headers = [(b"content-type", PROBLEM_JSON), (b"content-length", str(len(body)).encode()),
               *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_result(send: Send, result: Any) -> None:
    status = 200
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(result, func.HttpResponse):
        status = result.status_code
        body = result.get_body()
        media_type = result.mimetype or "text/plain"
        if result.charset and "charset" not in media_type:
            media_type = f"{media_type}; charset={result.charset}"
        headers = [(k.encode("latin-1"), str(v).encode("latin-1"))
                   for k, v in result.headers.items() if k.lower() != "content-type"]
        headers.append((b"content-type", media_type.encode("latin-1")))
    elif result is None:
        status, body = 204, b""
    elif isinstance(result, (str, bytes)):
        body = result.encode() if isinstance(result, str) else result
        headers.append((b"content-type", b"text/plain"))
    else:
        body = json.dumps(result).encode()
        headers.append((b"content-type", b"application/json"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class StrictHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for the request head and problem+json for
    requests that are not HTTP."""

    header_timeout: float = HttpLimits.header_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if getattr(self, "_head_deadline", None) is None:
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Keep-alive: the next request head gets its own deadline once it starts (the
        # keep-alive timeout covers the idle time before it).

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._head_deadline: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout, self._head_too_slow)

    def _disarm_header_deadline(self) -> None:
        deadline = getattr(self, "_head_deadline", None)
        if deadline is not None:
            deadline.cancel()
        self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            log.warning("closing a connection that sent no complete request head within %gs",
                        self.header_timeout)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        body = problem_body(400, "Malformed request", f"the request is not valid HTTP: {msg}")
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json"
                             b"\r\ncontent-length: " + str(len(body)).encode() +
                             b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()
