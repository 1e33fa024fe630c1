"""Admin API for the CLI while the server holds the DuckDB file (see ``userloop/backend.py``).

Authenticated by the random token the server wrote to ``<db>.server.json`` (mode 0600).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from pathlib import Path

import msgspec
import pyarrow as pa
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from userloop.backend import export_to_file
from userloop.errors import AuthError, NotFound, UserloopError
from userloop.ingest.event import Op, Payload
from userloop.query.runner import run_query
from userloop.web.http import JSON, bearer, decode_json, read_body, store_of


def _require_admin(request: Request) -> None:
    token = request.app.state.admin_token
    given = bearer(request)
    if not token or not given or not secrets.compare_digest(token, given):
        raise AuthError("admin_token_required", "this endpoint needs the server's admin token")


def _project_param(request: Request) -> int:
    text = request.query_params.get("project", "")
    if not text.isdigit():
        raise UserloopError("bad_parameter", "project must be a project id", "project")
    project_id = int(text)
    store_of(request).project(project_id)
    return project_id


async def create_project(request: Request) -> Response:
    _require_admin(request)
    body = decode_json(await read_body(request))
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise UserloopError("bad_body", "expected {\"name\": ..., \"timezone\": ...}", "name")
    project = store_of(request).create_project(body["name"], str(body.get("timezone") or "UTC"))
    return JSON(project.to_dict())


async def find_project(request: Request) -> Response:
    _require_admin(request)
    project = store_of(request).project_by_name(request.query_params.get("name", ""))
    if project is None:
        raise NotFound("project_not_found", "no project with that name", "name")
    return JSON(project.to_dict())


async def write_ops(request: Request) -> Response:
    _require_admin(request)
    project_id = _project_param(request)
    try:
        ops = msgspec.json.decode(await read_body(request), type=list[Op])
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise UserloopError("bad_body", f"expected a JSON list of operations: {exc}") from exc
    if any(op.project_id != project_id for op in ops):
        raise UserloopError("project_mismatch", "operations belong to another project", "project")
    await asyncio.wrap_future(request.app.state.writer.submit(Payload(ops=ops, accepted=len(ops))))
    return JSON({"applied": len(ops)})


async def get_project(request: Request) -> Response:
    _require_admin(request)
    return JSON(store_of(request).project(int(request.path_params["project_id"])).to_dict())


async def import_events(request: Request) -> Response:
    _require_admin(request)
    project_id = _project_param(request)
    raw = await read_body(request)
    try:
        table = pa.ipc.open_stream(raw).read_all()
    except pa.ArrowInvalid as exc:
        raise UserloopError("bad_body", f"expected an Arrow IPC stream of events: {exc}") from exc
    projects = set(table.column("project_id").unique().to_pylist()) if table.num_rows else set()
    if projects - {project_id}:
        raise UserloopError("project_mismatch", "rows belong to another project", "project")
    result = await asyncio.wrap_future(request.app.state.writer.submit_table(table))
    return JSON({"stored": result.stored, "received": table.num_rows})


async def export_events(request: Request) -> Response:
    _require_admin(request)
    project_id = _project_param(request)
    fd, name = tempfile.mkstemp(suffix=".parquet", prefix="userloop-export-")
    os.close(fd)
    path = Path(name)
    rows = await asyncio.to_thread(export_to_file, store_of(request), project_id, path)
    return FileResponse(
        path,
        media_type="application/vnd.apache.parquet",
        headers={"x-userloop-rows": str(rows)},
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


async def query(request: Request) -> Response:
    """An analysis for the CLI (``userloop query``) while the server holds the file."""
    _require_admin(request)
    project_id = _project_param(request)
    raw = await read_body(request)
    store = store_of(request)
    return JSON(await asyncio.to_thread(run_query, store, store.project(project_id), raw))


async def call_action(request: Request) -> Response:
    """A named operation (``userloop/actions.py``) for the CLI while the server holds the file."""
    from userloop.actions import ActionContext, run_action

    _require_admin(request)
    project_id = _project_param(request)
    raw = await read_body(request)
    params = decode_json(raw) if raw.strip() else {}
    if not isinstance(params, dict):
        raise UserloopError("invalid_body", "parameters must be a JSON object")
    store = store_of(request)
    ctx = ActionContext(store=store, writer=request.app.state.writer, project=store.project(project_id))
    result = await asyncio.to_thread(run_action, request.path_params["name"], ctx, params)
    return JSON(result)
