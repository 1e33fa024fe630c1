"""REST routes for persons (secret key): portraits, merge history, unmerge, deletion, settings.

``{id}`` is a distinct id or a person id. The specific routes (``.../merges``, ``.../unmerge``) are
in :data:`routes`, mounted before the generic ``/api/persons/{id}`` GET and DELETE of
``userloop/web/app.py`` (:func:`get_person`, :func:`delete_person`). Each calls one action
(``userloop/people/portrait.py``, ``userloop/people/audit.py``), as the CLI does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.ingest.event import Payload, ProfileOp
from userloop.people.audit import resolve_person
from userloop.people.portrait import DEFAULT_TIMELINE, MAX_TIMELINE
from userloop.web.http import JSON, decode_json, project_for_secret, read_body, store_of


async def _run(request: Request, name: str, params: dict[str, Any]) -> Response:
    project = project_for_secret(request)
    ctx = ActionContext(store_of(request), request.app.state.writer, project)
    return JSON(await asyncio.to_thread(run_action, name, ctx, params))


def _timeline(request: Request) -> int:
    text = request.query_params.get("timeline")
    if text is None or text == "":
        return DEFAULT_TIMELINE
    if not text.isdigit() or int(text) > MAX_TIMELINE:
        raise UserloopError("bad_parameter", f"timeline must be an integer between 0 and {MAX_TIMELINE}", "timeline")
    return int(text)


async def _object_body(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    body = decode_json(raw) if raw.strip() else {}
    if not isinstance(body, dict):
        raise UserloopError("invalid_body", "the body must be a JSON object")
    return body


async def get_person(request: Request) -> Response:
    """The portrait; ``?timeline=N`` latest events (default 20)."""
    return await _run(request, "persons.get", {"id": request.path_params["id"], "timeline": _timeline(request)})


async def person_merges(request: Request) -> Response:
    return await _run(request, "persons.merges", {"id": request.path_params["id"]})


async def unmerge(request: Request) -> Response:
    """Body ``{"merge": MERGE_ID}`` or ``{"distinct_ids": [...]}``."""
    body = await _object_body(request)
    return await _run(request, "persons.unmerge", {**body, "id": request.path_params["id"]})


async def portrait_settings(request: Request) -> Response:
    """GET the project's portrait settings; PUT a JSON object of the fields to change."""
    params = await _object_body(request) if request.method == "PUT" else {}
    return await _run(request, "persons.settings", params)


async def delete_person(request: Request) -> Response:
    """Delete a person (all its distinct ids), and its events with ``?delete_events=true``."""
    project = project_for_secret(request)
    store = store_of(request)
    person_id, ids = await asyncio.to_thread(resolve_person, store, project.id, request.path_params["id"])
    if not ids:
        raise UserloopError("person_has_no_ids", "this person has no distinct id left to delete by", "id", status=409)
    with_events = request.query_params.get("delete_events", "").lower() in ("1", "true", "yes")
    op = ProfileOp(project_id=project.id, distinct_id=ids[0], op="delete", delete_events=with_events)
    await asyncio.wrap_future(request.app.state.writer.submit(Payload(ops=[op], accepted=1)))
    return JSON({"deleted": person_id, "distinct_ids": ids, "events_deleted": with_events})


routes: list[Route] = [
    Route("/api/settings/portraits", portrait_settings, methods=["GET", "PUT"]),
    Route("/api/persons/{id:path}/merges", person_merges, methods=["GET"]),
    Route("/api/persons/{id:path}/unmerge", unmerge, methods=["POST"]),
]
