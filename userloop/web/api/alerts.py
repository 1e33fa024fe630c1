"""REST routes for alert rules (secret key): thin handlers over the ``alerts.*`` actions.

``GET/POST /api/alerts``, ``GET /api/alerts/log?rule=&limit=&offset=``,
``GET/PATCH/PUT/DELETE /api/alerts/{name}``, ``POST /api/alerts/{name}/check``
(``{"dry_run": true}``: evaluate only, deliver and log nothing).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from userloop.errors import UserloopError
from userloop.web.api.layers import call, json_object


def _name(request: Request) -> str:
    return str(request.path_params["name"])


async def list_rules(request: Request) -> Response:
    return await call(request, "alerts.list", {})


async def create_rule(request: Request) -> Response:
    return await call(request, "alerts.create", await json_object(request), status=201)


async def alert_log(request: Request) -> Response:
    return await call(request, "alerts.log", dict(request.query_params))


async def get_rule(request: Request) -> Response:
    return await call(request, "alerts.get", {"name": _name(request)})


async def update_rule(request: Request) -> Response:
    body = await json_object(request)
    if "name" in body and body["name"] != _name(request):
        raise UserloopError("invalid_field", "an alert rule cannot be renamed", "name")
    return await call(request, "alerts.update", {**body, "name": _name(request)})


async def delete_rule(request: Request) -> Response:
    return await call(request, "alerts.delete", {"name": _name(request)})


async def check_rule(request: Request) -> Response:
    body = await json_object(request)
    return await call(
        request, "alerts.check", {"dry_run": body.get("dry_run", False), "name": _name(request)}
    )


routes: list[Route] = [
    Route("/api/alerts", list_rules, methods=["GET"]),
    Route("/api/alerts", create_rule, methods=["POST"]),
    Route("/api/alerts/log", alert_log, methods=["GET"]),
    Route("/api/alerts/{name:str}", get_rule, methods=["GET"]),
    Route("/api/alerts/{name:str}", update_rule, methods=["PATCH", "PUT"]),
    Route("/api/alerts/{name:str}", delete_rule, methods=["DELETE"]),
    Route("/api/alerts/{name:str}/check", check_rule, methods=["POST"]),
]
