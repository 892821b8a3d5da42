"""The HTTP API, described once: each route is declared beside its handler with ``ApiRoutes.route``,
which registers the Functions HTTP trigger and records the operation from the same arguments, and
``openapi_document`` builds the OpenAPI 3.1 document from those records and the pydantic models
that validate the requests and shape the responses (pydantic's JSON Schema is the 2020-12 dialect
OpenAPI 3.1 uses, so the schemas go in unchanged). There is no hand-written copy to drift.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import azure.functions as func
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from contracts.headers import CORRELATION_HEADER, RETRY_AFTER_HEADER
from functions.http import (
    PROBLEM_JSON,
    PROBLEM_STATUSES,
    REQUEST_HEADERS,
    RESPONSE_HEADERS,
    Handler,
    Problem,
    http_endpoint,
)

JsonDict = dict[str, Any]
Method = Literal["GET", "POST", "PUT", "DELETE"]

API_TITLE = "Orders and Payments"
API_VERSION = "1.0.0"
SECURITY_SCHEMES: dict[str, JsonDict] = {
    "entraToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An Entra ID access token of an allowed caller's managed identity (in "
        "Azure: the Orders app's). Checked by the function in Azure; the local host and "
        "`func start` do not check it."},
    "functionKey": {
        "type": "apiKey", "in": "header", "name": "x-functions-key",
        "description": "A function key of the app (Azure Functions' FUNCTION auth level). The "
        "local host and `func start` do not check it."},
}

# Every HTTP function runs behind http_endpoint, which can answer these whatever the route; a
# route with ids answers 404 for an id that does not exist (or could not).
COMMON_PROBLEMS = (413, 500, 503)
WITH_IDS = 404
_ROUTE_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: how a response's values feed another operation (schemathesis follows
    them in its stateful phase; Swagger UI shows them)."""

    operation: str  # the other operation's function name (its operationId)
    parameters: Mapping[str, str]  # its parameter -> runtime expression
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """A success response: its body model (or raw schema and media type), headers and links."""

    description: str
    model: type[BaseModel] | None = None
    headers: tuple[str, ...] = ()
    links: Mapping[str, Link] = field(default_factory=dict)
    media_types: Mapping[str, JsonDict] | None = None  # for bodies that are not JSON models


@dataclass(frozen=True)
class Operation:
    name: str
    method: Method
    route: str
    tag: str
    summary: str
    description: str
    replies: Mapping[int, Reply]
    problems: tuple[int, ...]
    body: type[BaseModel] | None
    body_required: bool
    path: Mapping[str, JsonDict]
    query: tuple[JsonDict, ...]
    headers: tuple[str, ...]
    auth_level: func.AuthLevel
    security: str | None


class ApiRoutes:
    """The documented HTTP routes of one blueprint."""

    def __init__(self, bp: func.Blueprint, tag: str, description: str) -> None:
        self.bp = bp
        self.tag = tag
        self.description = description
        self.operations: list[Operation] = []

    def route(
        self,
        name: str,
        method: Method,
        route: str,
        *,
        summary: str,
        replies: Mapping[int, Reply],
        problems: Iterable[int] = (),
        description: str = "",
        body: type[BaseModel] | None = None,
        body_required: bool = True,
        path: Mapping[str, JsonDict] | None = None,
        query: Sequence[JsonDict] = (),
        headers: Sequence[str] = (),
        auth_level: func.AuthLevel = func.AuthLevel.ANONYMOUS,
        security: str | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register ``handler`` as the Functions HTTP trigger ``name`` (behind http_endpoint) and
        record what it takes and answers. Refuses, at import, a route whose parameters are not
        the ones described, a header or problem status nothing describes."""
        path = dict(path or {})
        in_route = _ROUTE_PARAMETER.findall(route)
        if sorted(in_route) != sorted(path):
            raise ValueError(f"{name}: route {route!r} has parameters {in_route}, the "
                             f"description names {sorted(path)}")
        unknown = [h for h in headers if h not in REQUEST_HEADERS] + [
            h for reply in replies.values() for h in reply.headers if h not in RESPONSE_HEADERS]
        undescribed = [s for s in problems if s not in PROBLEM_STATUSES]
        if auth_level == func.AuthLevel.FUNCTION:
            security = security or "functionKey"
        if unknown or undescribed or (security is not None and security not in SECURITY_SCHEMES):
            raise ValueError(f"{name}: undescribed headers {unknown}, statuses {undescribed} "
                             f"or security scheme {security!r}")
        operation = Operation(
            name=name, method=method, route=route, tag=self.tag, summary=summary,
            description=description, replies=dict(replies),
            problems=tuple(sorted({*problems, *COMMON_PROBLEMS, *([WITH_IDS] if path else [])})),
            body=body,
            body_required=body_required, path=path, query=tuple(query), headers=tuple(headers),
            auth_level=auth_level, security=security)
        self.operations.append(operation)
        named = self.bp.function_name(name)
        trigger = self.bp.route(route=route, methods=[method], auth_level=auth_level)

        def register(handler: Handler) -> Handler:
            return cast(Handler, named(trigger(http_endpoint(handler, route, self.tag))))

        return register


def openapi_document(groups: Sequence[ApiRoutes], server_url: str) -> JsonDict:
    """The OpenAPI 3.1 document of these routes, served at ``server_url``."""
    operations = [op for group in groups for op in group.operations]
    schemas, refs = _schemas(operations)
    paths: dict[str, JsonDict] = {}
    for op in operations:
        paths.setdefault(f"/{op.route}", {})[op.method.lower()] = _operation(op, refs)
    document: JsonDict = {
        "openapi": "3.1.0",
        "info": {
            "title": API_TITLE,
            "version": API_VERSION,
            "description": "Two event-sourced services. Every command answers the stream "
            "version it produced; a read with `minVersion` returns at least that version. "
            "Errors are `application/problem+json` (RFC 9457).",
        },
        "servers": [{"url": server_url}],
        "tags": [{"name": g.tag, "description": g.description} for g in groups],
        "paths": paths,
        "components": {"schemas": schemas},
    }
    used = sorted({op.security for op in operations if op.security is not None})
    if used:
        document["components"]["securitySchemes"] = {name: SECURITY_SCHEMES[name]
                                                     for name in used}
    return document


_Key = tuple[type[BaseModel], JsonSchemaMode]


def _schemas(operations: Sequence[Operation]) -> tuple[JsonDict, dict[_Key, JsonDict]]:
    wanted: dict[_Key, None] = {(Problem, "serialization"): None}
    for op in operations:
        if op.body is not None:
            wanted[(op.body, "validation")] = None
        for reply in op.replies.values():
            if reply.model is not None:
                wanted[(reply.model, "serialization")] = None
    refs, definitions = models_json_schema(list(wanted),
                                           ref_template="#/components/schemas/{model}")
    return dict(definitions.get("$defs", {})), {cast(_Key, key): dict(ref)
                                                for key, ref in refs.items()}


def _operation(op: Operation, refs: Mapping[_Key, JsonDict]) -> JsonDict:
    parameters: list[JsonDict] = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in op.path.items()]
    parameters.extend(op.query)
    parameters.extend({"name": name, "in": "header", "required": False, **REQUEST_HEADERS[name]}
                      for name in op.headers)
    responses: JsonDict = {str(status): _reply(reply, refs)
                           for status, reply in sorted(op.replies.items())}
    for status in op.problems:
        responses[str(status)] = _problem(status, refs)
    described: JsonDict = {
        "operationId": op.name, "summary": op.summary, "tags": [op.tag],
        "parameters": parameters, "responses": responses}
    if op.description:
        described["description"] = op.description
    if op.body is not None:
        schema = refs[(op.body, "validation")]
        content: JsonDict = {"schema": schema}
        examples = op.body.model_json_schema().get("examples")
        if examples:
            content["example"] = examples[0]  # what Swagger UI's "Try it out" starts from
        described["requestBody"] = {"required": op.body_required,
                                    "content": {"application/json": content}}
    if op.security is not None:
        described["security"] = [{op.security: []}]
    return described


def _headers(names: Iterable[str]) -> JsonDict:
    return {name: RESPONSE_HEADERS[name] for name in (CORRELATION_HEADER, *names)}


def _reply(reply: Reply, refs: Mapping[_Key, JsonDict]) -> JsonDict:
    described: JsonDict = {"description": reply.description, "headers": _headers(reply.headers)}
    if reply.model is not None:
        described["content"] = {"application/json": {
            "schema": refs[(reply.model, "serialization")]}}
    elif reply.media_types is not None:
        described["content"] = dict(reply.media_types)
    if reply.links:
        described["links"] = {
            name: {"operationId": link.operation, "parameters": dict(link.parameters),
                   **({"description": link.description} if link.description else {})}
            for name, link in reply.links.items()}
    return described


def _problem(status: int, refs: Mapping[_Key, JsonDict]) -> JsonDict:
    headers = (RETRY_AFTER_HEADER,) if status == 503 else ()
    return {"description": PROBLEM_STATUSES[status], "headers": _headers(headers),
            "content": {PROBLEM_JSON: {"schema": refs[(Problem, "serialization")]}}}
