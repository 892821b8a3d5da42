"""The API's own description, served by the function app: ``GET /api/openapi.json`` (generated
from the routes of the services this app runs) and the docs page ``GET /api/docs`` (Swagger UI,
its assets from the installed ``swagger-ui-bundle-v2`` package: no CDN, works offline)."""

from __future__ import annotations

import functools
import json
from urllib.parse import urlsplit

import azure.functions as func
from swagger_ui_bundle import swagger_ui_path

from app.settings import ServiceName
from contracts.headers import CORRELATION_HEADER
from functions import orders, payments, runtime
from functions.http import ApiError
from functions.openapi import ApiRoutes, Reply, openapi_document

bp = func.Blueprint()  # type: ignore[no-untyped-call]
api = ApiRoutes(bp, "documentation", "This description and its docs page")

_SERVICE_ROUTES: dict[ServiceName, ApiRoutes] = {"orders": orders.api, "payments": payments.api}
# The Swagger UI files the page loads; nothing else of the package is served.
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript",
          "favicon-32x32.png": "image/png", "favicon-16x16.png": "image/png"}
_CACHED = {"Cache-Control": "public, max-age=86400"}
# Everything the page loads comes from this app: a CDN (or any other origin) is refused outright.
_PAGE_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data:")


def _document_groups() -> tuple[ApiRoutes, ...]:
    return (*(_SERVICE_ROUTES[s] for s in runtime.settings().services), api)


@functools.cache
def _document(server_url: str, groups: tuple[ApiRoutes, ...]) -> str:
    return json.dumps(openapi_document(groups, server_url), separators=(",", ":"))


def _base(req: func.HttpRequest, suffix: str) -> str:
    """This request's URL without ``suffix`` (and anything after it): where the app is served."""
    parts = urlsplit(req.url)
    path = parts.path.rstrip("/")
    path = path[: -len(suffix)] if path.endswith(suffix) else path
    return f"{parts.scheme}://{parts.netloc}{path}" if parts.netloc else path


@api.route("apidocs_openapi", "GET", "openapi.json", summary="This OpenAPI 3.1 document",
           headers=(CORRELATION_HEADER,),
           replies={200: Reply("The document", media_types={
               "application/json": {"schema": {"type": "object"}}})})
def openapi_json(req: func.HttpRequest) -> func.HttpResponse:
    document = _document(_base(req, "/openapi.json"), _document_groups())
    return func.HttpResponse(document, status_code=200, mimetype="application/json")


_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Orders and Payments API</title>
  <link rel="icon" type="image/png" href="{docs}/favicon-32x32.png">
  <link rel="stylesheet" href="{docs}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{docs}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: {spec}, dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
      displayRequestDuration: true, defaultModelsExpandDepth: 0
    }});
  </script>
</body>
</html>
"""


@api.route("apidocs_page", "GET", "docs", summary="The docs page (Swagger UI)",
           headers=(CORRELATION_HEADER,),
           replies={200: Reply("An HTML page", media_types={
               "text/html": {"schema": {"type": "string"}}})})
def docs_page(req: func.HttpRequest) -> func.HttpResponse:
    docs = urlsplit(_base(req, "/docs") + "/docs").path
    spec = json.dumps(urlsplit(_base(req, "/docs")).path + "/openapi.json")
    page = _PAGE.format(docs=docs, spec=spec)
    return func.HttpResponse(page, status_code=200, mimetype="text/html", charset="utf-8",
                             headers={"Content-Security-Policy": _PAGE_POLICY})


@api.route("apidocs_asset", "GET", "docs/{asset}", summary="A file of the docs page",
           path={"asset": {"type": "string", "enum": list(ASSETS)}},
           headers=(CORRELATION_HEADER,), problems=(404,),
           replies={200: Reply("The file", media_types={
               media_type: {"schema": {"type": "string"}} for media_type in ASSETS.values()})})
def docs_asset(req: func.HttpRequest) -> func.HttpResponse:
    name = str(req.route_params.get("asset", ""))
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "Not found", f"the docs page has no file {name!r}")
    body = (swagger_ui_path / name).read_bytes()
    return func.HttpResponse(body, status_code=200, mimetype=media_type, headers=_CACHED)
