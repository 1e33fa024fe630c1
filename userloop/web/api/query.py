"""``POST /api/query``: every analysis, one endpoint (secret key)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from userloop.query.runner import run_query
from userloop.web.http import JSON, project_for_secret, read_body, store_of


async def query(request: Request) -> Response:
    project = project_for_secret(request)
    raw = await read_body(request)
    result = await asyncio.to_thread(run_query, store_of(request), project, raw)
    return JSON(result)
