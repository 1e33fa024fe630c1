"""REST routes for recommendations: thin handlers over the ``recommend.*`` actions.

Apps (write key or secret key, as ``Authorization: Bearer``, HTTP Basic user or ``?key=``):
``GET /api/recommend?distinct_id=&type=&n=&scene=&item=`` (the only read a write key may do) and
``PUT /api/recommend/interests`` (tags a new user picked).

Secret key: ``GET /api/recommend/preview``, ``/similar``, ``/people``, ``/tags``, ``/models``,
``/stats``, ``GET /api/recommend/interests?distinct_id=``, ``POST /api/recommend/train``,
``POST /api/recommend/evaluate``, ``GET /api/recommend/evaluations?split=`` (the latest stored
evaluation per split), ``GET|PUT /api/recommend/config``; the catalogue:
``GET|POST /api/items``, ``POST /api/items/import`` (CSV), ``GET|DELETE /api/items/{type}/{id}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from userloop.actions import ActionContext, run_action
from userloop.errors import AuthError
from userloop.store.duckdb import Project
from userloop.web.http import (
    JSON,
    basic_user,
    bearer,
    decode_json,
    project_for_secret,
    read_body,
    read_csv_upload,
    read_object,
    store_of,
)


def project_for_app(request: Request) -> tuple[Project, bool]:
    """The project of a write key or a secret key (apps call the feed with their write key), and
    whether the key was the secret one."""
    key = bearer(request) or basic_user(request) or request.query_params.get("key")
    if not key:
        raise AuthError("missing_key", "send the project's write key or secret key as 'Authorization: Bearer <key>'")
    store = store_of(request)
    project = store.project_by_secret_key(key)
    if project is not None:
        return project, True
    project = store.project_by_write_key(key)
    if project is None:
        raise AuthError("unknown_key", "unknown key")
    return project, False


async def _run(request: Request, project: Project, name: str, params: dict[str, Any], status: int = 200) -> Response:
    ctx = ActionContext(store=store_of(request), writer=request.app.state.writer, project=project)
    return JSON(await asyncio.to_thread(run_action, name, ctx, params), status_code=status)


async def _secret(request: Request, name: str, params: dict[str, Any], status: int = 200) -> Response:
    return await _run(request, project_for_secret(request), name, params, status)


def _query(request: Request, *drop: str) -> dict[str, Any]:
    return {k: v for k, v in request.query_params.items() if k not in drop}


async def feed(request: Request) -> Response:
    project, secret = project_for_app(request)
    ctx = ActionContext(store=store_of(request), writer=request.app.state.writer, project=project)
    result = await asyncio.to_thread(run_action, "recommend.get", ctx, _query(request, "key"))
    if not secret:  # the write key ships inside apps and pages: it learns no internal person id
        result.pop("person_id", None)
    return JSON(result)


async def put_interests(request: Request) -> Response:
    project, _ = project_for_app(request)
    return await _run(request, project, "recommend.interests.set", await read_object(request))


async def get_interests(request: Request) -> Response:
    return await _secret(request, "recommend.interests.get", _query(request))


async def preview(request: Request) -> Response:
    return await _secret(request, "recommend.preview", _query(request))


async def similar(request: Request) -> Response:
    return await _secret(request, "recommend.similar", _query(request))


async def people(request: Request) -> Response:
    return await _secret(request, "recommend.people", _query(request))


async def tags(request: Request) -> Response:
    return await _secret(request, "recommend.tags", {})


async def models(request: Request) -> Response:
    return await _secret(request, "recommend.models", {})


async def stats(request: Request) -> Response:
    return await _secret(request, "recommend.stats", _query(request))


async def train(request: Request) -> Response:
    return await _secret(request, "recommend.train", {}, status=201)


async def evaluate(request: Request) -> Response:
    project = project_for_secret(request)
    return await _run(request, project, "recommend.evaluate", {**_query(request), **await read_object(request)})


async def evaluations(request: Request) -> Response:
    return await _secret(request, "recommend.evaluations", _query(request))


async def get_config(request: Request) -> Response:
    return await _secret(request, "recommend.config.get", {})


async def put_config(request: Request) -> Response:
    project = project_for_secret(request)
    return await _run(request, project, "recommend.config.set", await read_object(request))


async def list_items(request: Request) -> Response:
    return await _secret(request, "recommend.items.list", _query(request))


async def set_items(request: Request) -> Response:
    """A JSON list of items, or ``{"items": [...]}``."""
    project = project_for_secret(request)
    body = decode_json(await read_body(request))
    items = body.get("items") if isinstance(body, dict) else body
    return await _run(request, project, "recommend.items.set", {"items": items})


async def import_items(request: Request) -> Response:
    """A CSV as a multipart file (any field name) or a ``text/csv`` body."""
    project = project_for_secret(request)
    text, _ = await read_csv_upload(request)
    return await _run(request, project, "recommend.items.import", {"csv": text})


def _item(request: Request) -> dict[str, Any]:
    return {"type": request.path_params["item_type"], "id": request.path_params["item_id"]}


async def get_item(request: Request) -> Response:
    return await _secret(request, "recommend.items.get", _item(request))


async def delete_item(request: Request) -> Response:
    return await _secret(request, "recommend.items.delete", _item(request))


routes: list[Route] = [
    Route("/api/recommend", feed, methods=["GET"]),
    Route("/api/recommend/interests", put_interests, methods=["PUT", "POST"]),
    Route("/api/recommend/interests", get_interests, methods=["GET"]),
    Route("/api/recommend/preview", preview, methods=["GET"]),
    Route("/api/recommend/similar", similar, methods=["GET"]),
    Route("/api/recommend/people", people, methods=["GET"]),
    Route("/api/recommend/tags", tags, methods=["GET"]),
    Route("/api/recommend/models", models, methods=["GET"]),
    Route("/api/recommend/stats", stats, methods=["GET"]),
    Route("/api/recommend/train", train, methods=["POST"]),
    Route("/api/recommend/evaluate", evaluate, methods=["POST"]),
    Route("/api/recommend/evaluations", evaluations, methods=["GET"]),
    Route("/api/recommend/config", get_config, methods=["GET"]),
    Route("/api/recommend/config", put_config, methods=["PUT"]),
    Route("/api/items", list_items, methods=["GET"]),
    Route("/api/items", set_items, methods=["POST", "PUT"]),
    Route("/api/items/import", import_items, methods=["POST"]),
    Route("/api/items/{item_type:str}/{item_id:path}", get_item, methods=["GET"]),
    Route("/api/items/{item_type:str}/{item_id:path}", delete_item, methods=["DELETE"]),
]
