"""REST routes for segments (secret key). Each calls one ``segments.*`` action.

POST   /api/segments/preview            {"rule": ..., "sample": 10}  -> {"count", "sample"}
GET    /api/segments                    the saved segments
POST   /api/segments                    create {"name", "rule", "type", "schedule", "description"}
GET    /api/segments/{name}
PATCH  /api/segments/{name}             change some fields (PUT: the same)
DELETE /api/segments/{name}
POST   /api/segments/{name}/compute     recompute (a static segment: a new snapshot)
GET    /api/segments/{name}/members     ?limit=&offset=
GET    /api/segments/{name}/history     ?person_id=&limit=&offset=
GET    /api/segments/{name}/export      ?format=csv|parquet&properties=city,gender&distinct_ids=true
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.web.http import JSON, decode_json, project_for_secret, read_body, store_of


async def _call(request: Request, name: str, params: dict[str, Any]) -> Any:
    project = project_for_secret(request)
    ctx = ActionContext(store_of(request), request.app.state.writer, project)
    return await asyncio.to_thread(run_action, name, ctx, params)


async def _body(request: Request) -> dict[str, Any]:
    body = decode_json(await read_body(request))
    if not isinstance(body, dict):
        raise UserloopError("invalid_body", "expected a JSON object")
    return body


def _int(request: Request, key: str, default: int) -> int:
    text = request.query_params.get(key)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise UserloopError("bad_parameter", f"{key} must be a whole number", key) from None


async def preview(request: Request) -> Response:
    project_for_secret(request)  # 401 before reading the body
    return JSON(await _call(request, "segments.preview", await _body(request)))


async def list_segments(request: Request) -> Response:
    return JSON(await _call(request, "segments.list", {}))


async def create(request: Request) -> Response:
    project_for_secret(request)
    return JSON(await _call(request, "segments.create", await _body(request)), status_code=201)


async def get(request: Request) -> Response:
    return JSON(await _call(request, "segments.get", {"name": request.path_params["name"]}))


async def update(request: Request) -> Response:
    project_for_secret(request)
    body = await _body(request)
    return JSON(await _call(request, "segments.update", {**body, "name": request.path_params["name"]}))


async def delete(request: Request) -> Response:
    return JSON(await _call(request, "segments.delete", {"name": request.path_params["name"]}))


async def compute(request: Request) -> Response:
    project_for_secret(request)
    raw = await read_body(request)
    body = decode_json(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise UserloopError("invalid_body", "expected a JSON object")
    params = {k: v for k, v in body.items() if k == "as_of"}
    return JSON(await _call(request, "segments.compute", {**params, "name": request.path_params["name"]}))


async def members(request: Request) -> Response:
    params = {
        "name": request.path_params["name"],
        "limit": _int(request, "limit", 100),
        "offset": _int(request, "offset", 0),
    }
    return JSON(await _call(request, "segments.members", params))


async def history(request: Request) -> Response:
    params: dict[str, Any] = {
        "name": request.path_params["name"],
        "limit": _int(request, "limit", 1000),
        "offset": _int(request, "offset", 0),
    }
    if "person_id" in request.query_params:
        params["person_id"] = request.query_params["person_id"]
    return JSON(await _call(request, "segments.history", params))


async def export(request: Request) -> Response:
    """The members as a CSV or Parquet download (written by DuckDB to a temporary file)."""
    project_for_secret(request)
    fmt = request.query_params.get("format", "csv")
    if fmt not in ("csv", "parquet"):
        raise UserloopError("bad_format", "format must be csv or parquet", "format")
    fd, name = tempfile.mkstemp(suffix=f".{fmt}", prefix="userloop-segment-")
    os.close(fd)
    path = Path(name)
    params = {
        "name": request.path_params["name"],
        "format": fmt,
        "path": str(path),
        "properties": request.query_params.get("properties", ""),
        "distinct_ids": request.query_params.get("distinct_ids", "false").lower() in ("1", "true", "yes"),
    }
    try:
        result = await _call(request, "segments.export", params)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
    return FileResponse(
        path,
        media_type=media,
        filename=f"{request.path_params['name']}.{fmt}",
        headers={"x-userloop-rows": str(result["rows"])},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


routes: list[Route] = [
    Route("/api/segments/preview", preview, methods=["POST"]),
    Route("/api/segments", list_segments, methods=["GET"]),
    Route("/api/segments", create, methods=["POST"]),
    Route("/api/segments/{name:str}", get, methods=["GET"]),
    Route("/api/segments/{name:str}", update, methods=["PATCH", "PUT"]),
    Route("/api/segments/{name:str}", delete, methods=["DELETE"]),
    Route("/api/segments/{name:str}/compute", compute, methods=["POST"]),
    Route("/api/segments/{name:str}/members", members, methods=["GET"]),
    Route("/api/segments/{name:str}/history", history, methods=["GET"]),
    Route("/api/segments/{name:str}/export", export, methods=["GET"]),
]
