"""REST routes for layer models (secret key): thin handlers over the ``layers.*`` actions.

``GET/POST /api/layers``, ``GET/PATCH/PUT/DELETE /api/layers/{name}``,
``POST /api/layers/{name}/compute`` (``{"as_of": "YYYY-MM-DD"}`` optional),
``GET /api/layers/{name}/members?layer=&on=&person=&limit=&offset=``,
``GET /api/layers/{name}/migration?from=YYYY-MM-DD&to=YYYY-MM-DD``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.web.http import JSON, project_for_secret, read_object, store_of


async def call(request: Request, name: str, params: dict[str, Any], status: int = 200) -> Response:
    """Run the action ``name`` for the project of the request's secret key."""
    project = project_for_secret(request)
    ctx = ActionContext(store=store_of(request), writer=request.app.state.writer, project=project)
    return JSON(await asyncio.to_thread(run_action, name, ctx, params), status_code=status)


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object ({} when empty); authenticates first."""
    project_for_secret(request)
    return await read_object(request)


def _name(request: Request) -> str:
    return str(request.path_params["name"])


async def list_models(request: Request) -> Response:
    return await call(request, "layers.list", {})


async def create_model(request: Request) -> Response:
    return await call(request, "layers.create", await json_object(request), status=201)


async def get_model(request: Request) -> Response:
    return await call(request, "layers.get", {"name": _name(request)})


async def update_model(request: Request) -> Response:
    body = await json_object(request)
    if "name" in body and body["name"] != _name(request):
        raise UserloopError("invalid_field", "a layer model cannot be renamed", "name")
    return await call(request, "layers.update", {**body, "name": _name(request)})


async def delete_model(request: Request) -> Response:
    return await call(request, "layers.delete", {"name": _name(request)})


async def compute_model(request: Request) -> Response:
    body = await json_object(request)
    return await call(request, "layers.compute", {"as_of": body.get("as_of"), "name": _name(request)})


async def members(request: Request) -> Response:
    return await call(request, "layers.members", {**request.query_params, "name": _name(request)})


async def migration(request: Request) -> Response:
    return await call(request, "layers.migration", {**request.query_params, "name": _name(request)})


routes: list[Route] = [
    Route("/api/layers", list_models, methods=["GET"]),
    Route("/api/layers", create_model, methods=["POST"]),
    Route("/api/layers/{name:str}", get_model, methods=["GET"]),
    Route("/api/layers/{name:str}", update_model, methods=["PATCH", "PUT"]),
    Route("/api/layers/{name:str}", delete_model, methods=["DELETE"]),
    Route("/api/layers/{name:str}/compute", compute_model, methods=["POST"]),
    Route("/api/layers/{name:str}/members", members, methods=["GET"]),
    Route("/api/layers/{name:str}/migration", migration, methods=["GET"]),
]
