"""Serves the app's HTTP triggers on the Functions routes with Starlette under uvicorn.

Function code is synchronous, so each request runs in a worker thread (as the Python worker does
with its thread pool); the event loop stays free for other requests.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import azure.functions as func
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devhost.indexing import HttpSpec
from devhost.invocations import invoke

log = logging.getLogger("devhost.http")

MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the Functions host's own request limit
# Checkout calls Payments over HTTP on this same host and holds its thread meanwhile, so the pool
# must be large enough for both halves of many concurrent checkouts.
WORKER_THREADS = 256


def _problem(status: int, title: str, detail: str) -> Response:
    body = {"type": f"https://httpstatuses.io/{status}", "title": title, "status": status,
            "detail": detail}
    return Response(json.dumps(body), status_code=status, media_type="application/problem+json")


def build_app(specs: list[HttpSpec], route_prefix: str = "api") -> Starlette:
    prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
    limiter = anyio.CapacityLimiter(WORKER_THREADS)

    async def dispatch(request: Request) -> Response:
        path = request.url.path
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return _problem(404, "Not found", f"no function serves {path}")
        relative = path[len(prefix):] or "/"
        matches = [(spec, m) for spec in specs if (m := spec.pattern.match(relative))]
        if not matches:
            return _problem(404, "Not found", f"no function serves {path}")
        allowed = [(spec, m) for spec, m in matches if request.method in spec.methods]
        if not allowed:
            methods = sorted({m for spec, _ in matches for m in spec.methods})
            response = _problem(405, "Method not allowed",
                                f"{request.method} is not allowed on {path}")
            response.headers["Allow"] = ", ".join(methods)
            return response
        spec, match = allowed[0]
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
            return _problem(413, "Payload too large", "the request exceeds the host's limit")
        body = await request.body()
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query_params),
            route_params={k: v for k, v in match.groupdict().items() if v is not None},
            body=body,
        )
        try:
            result = await anyio.to_thread.run_sync(_call, spec, req, limiter=limiter)
        except Exception:
            log.exception("function %s failed", spec.name)
            return _problem(500, "Internal error", f"function {spec.name} failed")
        return _to_response(result)

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", dispatch, methods=methods)])


def _call(spec: HttpSpec, req: func.HttpRequest) -> Any:
    return invoke(spec.name, spec.call, {spec.arg_name: req})


def _to_response(result: Any) -> Response:
    if isinstance(result, func.HttpResponse):
        headers = dict(result.headers)
        media_type = result.mimetype
        if result.charset and media_type and "charset" not in media_type:
            media_type = f"{media_type}; charset={result.charset}"
        headers.pop("Content-Type", None)
        headers.pop("content-type", None)
        return Response(result.get_body(), status_code=result.status_code, headers=headers,
                        media_type=media_type)
    if result is None:
        return Response(status_code=204)
    if isinstance(result, (str, bytes)):
        return Response(result, media_type="text/plain")
    return Response(json.dumps(result), media_type="application/json")
