"""REST routes for tags (secret key): thin handlers over the ``tags.*`` actions.

``GET/POST /api/tags``, ``GET /api/tags/catalogue``, ``GET/PATCH/PUT/DELETE /api/tags/{name}``,
``POST /api/tags/{name}/compute``, ``POST /api/tags/{name}/import`` (CSV: multipart file or a
``text/csv`` body), ``PUT /api/tags/{name}/values`` (a JSON list), ``GET /api/tags/{name}/coverage``,
``GET /api/tags/{name}/history?person=...``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.web.http import (
    JSON,
    decode_json,
    project_for_secret,
    read_body,
    read_csv_upload,
    read_object,
    store_of,
)


async def _call(request: Request, name: str, params: dict[str, Any], status: int = 200) -> Response:
    project = project_for_secret(request)
    ctx = ActionContext(store=store_of(request), writer=request.app.state.writer, project=project)
    return JSON(await asyncio.to_thread(run_action, name, ctx, params), status_code=status)


def _name(request: Request) -> str:
    return str(request.path_params["name"])


async def list_tags(request: Request) -> Response:
    project_for_secret(request)
    return await _call(request, "tags.list", dict(request.query_params))


async def create_tag(request: Request) -> Response:
    project_for_secret(request)
    return await _call(request, "tags.create", await read_object(request), status=201)


async def catalogue(request: Request) -> Response:
    return await _call(request, "tags.catalogue", {})


async def get_tag(request: Request) -> Response:
    return await _call(request, "tags.get", {"name": _name(request)})


async def patch_tag(request: Request) -> Response:
    project_for_secret(request)
    return await _call(request, "tags.update", {**await read_object(request), "name": _name(request)})


async def put_tag(request: Request) -> Response:
    project_for_secret(request)
    body = await read_object(request)
    if "name" in body and body["name"] != _name(request):
        raise UserloopError("invalid_field", "a tag cannot be renamed", "name")
    return await _call(request, "tags.update", {**body, "name": _name(request), "replace": True})


async def delete_tag(request: Request) -> Response:
    return await _call(request, "tags.delete", {"name": _name(request)})


async def compute_tag(request: Request) -> Response:
    project_for_secret(request)
    body = await read_object(request)
    as_of = body.get("as_of", request.query_params.get("as_of"))
    return await _call(request, "tags.compute", {"name": _name(request), "as_of": as_of})


async def import_csv(request: Request) -> Response:
    """A CSV (``distinct_id|person_id,value``) as a multipart file (any field name) or the body;
    ``replace`` as a form field or query parameter."""
    project_for_secret(request)
    text, fields = await read_csv_upload(request)
    replace = fields.get("replace", "").lower() in ("1", "true")
    return await _call(request, "tags.import", {"name": _name(request), "csv": text, "replace": replace})


async def put_values(request: Request) -> Response:
    """A JSON list of ``{distinct_id|person_id, value}``, or ``{"values": [...], "replace": bool}``."""
    project_for_secret(request)
    body = decode_json(await read_body(request))
    params = {"values": body} if isinstance(body, list) else body
    if not isinstance(params, dict):
        raise UserloopError("invalid_values", "send a list of {distinct_id or person_id, value}", "values")
    return await _call(request, "tags.import", {**params, "name": _name(request)})


async def coverage(request: Request) -> Response:
    return await _call(request, "tags.coverage", {**dict(request.query_params), "name": _name(request)})


async def history(request: Request) -> Response:
    return await _call(request, "tags.history", {**dict(request.query_params), "name": _name(request)})


routes: list[Route] = [
    Route("/api/tags", list_tags, methods=["GET"]),
    Route("/api/tags", create_tag, methods=["POST"]),
    Route("/api/tags/catalogue", catalogue, methods=["GET"]),
    Route("/api/tags/{name:str}", get_tag, methods=["GET"]),
    Route("/api/tags/{name:str}", patch_tag, methods=["PATCH"]),
    Route("/api/tags/{name:str}", put_tag, methods=["PUT"]),
    Route("/api/tags/{name:str}", delete_tag, methods=["DELETE"]),
    Route("/api/tags/{name:str}/compute", compute_tag, methods=["POST"]),
    Route("/api/tags/{name:str}/import", import_csv, methods=["POST"]),
    Route("/api/tags/{name:str}/values", put_values, methods=["PUT"]),
    Route("/api/tags/{name:str}/coverage", coverage, methods=["GET"]),
    Route("/api/tags/{name:str}/history", history, methods=["GET"]),
]
