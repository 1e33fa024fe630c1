"""The web console, served by ``userloop serve`` under ``/console`` (``/`` redirects there).

Modules: ``base`` (the page decorator: session, CSRF, project, role), ``auth`` (sessions,
members, roles), ``i18n`` + ``messages`` (English and Chinese), ``forms`` + ``results`` (analysis
forms, tables, charts), and one module per area of pages: ``login``, ``overview``, ``analysis``,
``dashboards``, ``people``, ``segments``, ``layers`` (and alerts), ``live``, ``settings``, ``misc``
(campaigns placeholder, recommendations). Templates are in ``templates/``; CSS, JS and the vendored
ECharts and htmx in ``userloop/web/static/``. See ``docs/console.md``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from userloop.web.console import (  # noqa: F401  (each module registers its pages)
    analysis,
    dashboards,
    layers,
    live,
    login,
    misc,
    overview,
    people,
    segments,
    settings,
)
from userloop.web.console.base import PREFIX, ROUTES


async def _to_console(request: Request) -> Response:
    return RedirectResponse(PREFIX + "/", status_code=307)


def routes() -> list[BaseRoute]:
    """The console's routes, to mount in the application (``userloop/web/app.py``)."""
    return [
        Route("/", _to_console, methods=["GET", "HEAD"]),
        Route(PREFIX, _to_console, methods=["GET", "HEAD"]),
        *login.ROUTES,
        *ROUTES,
    ]
