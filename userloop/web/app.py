"""The application factory: every route and middleware in one place."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from userloop.config import Settings
from userloop.errors import UserloopError
from userloop.store.duckdb import Store
from userloop.store.writer import Writer
from userloop.web import console
from userloop.web.api import admin, alerts, collect, events, layers, persons, query, recommend, segments, tags
from userloop.web.cors import CollectorCORS
from userloop.web.http import JSON, handle_internal_error, handle_userloop_error


async def health(request: Request) -> Response:
    """200 when the store answers and accepts a write transaction."""
    store: Store = request.app.state.store
    writer: Writer = request.app.state.writer
    try:
        cur = store.cursor()
        cur.execute("BEGIN TRANSACTION")
        cur.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
        cur.execute("ROLLBACK")
    except Exception as exc:  # report, don't raise: this is the health endpoint
        return JSON({"status": "error", "error": str(exc)}, status_code=503)
    if not writer.is_alive():
        return JSON({"status": "error", "error": "writer thread is not running"}, status_code=503)
    return JSON({"status": "ok"})


class ReadYourWrites:
    """Every ``/api/`` request first waits until acknowledged events are in DuckDB (spool mode).

    The collector acknowledges once events are in the fsynced spool; the loader stores them a few
    milliseconds later. Waiting here (only when something is pending) means a client that sent
    events and then reads, or asks a question, sees them.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            writer: Writer = scope["app"].state.writer
            if writer.pending():
                await asyncio.to_thread(writer.sync)
        await self.app(scope, receive, send)


STATIC_DIR = Path(__file__).parent / "static"  # the web tracker (userloop.js) and its demo page
POSTHOG_CAPTURE = ("/batch", "/capture", "/e", "/i/v0/e", "/track", "/engage")
POSTHOG_FLAGS = ("/flags", "/decide")
SENSORS = ("/sa", "/sa.gif")
_COLLECTOR_PATHS = frozenset(POSTHOG_CAPTURE + POSTHOG_FLAGS + SENSORS)


def is_collector(path: str) -> bool:
    """The collector endpoints, which browsers on any site may call (see web/cors.py)."""
    return path.startswith("/v1/") or (path.rstrip("/") or "/") in _COLLECTOR_PATHS


def _both(path: str) -> list[str]:
    return [path, path + "/"]


def routes() -> list[BaseRoute]:
    r: list[BaseRoute] = [Route("/health", health, methods=["GET", "HEAD"])]
    # Segment
    r += [Route("/v1/{kind:str}", collect.segment_endpoint, methods=["POST"])]
    # PostHog
    for path in POSTHOG_CAPTURE:
        r += [Route(p, collect.posthog_capture, methods=["POST"]) for p in _both(path)]
    for path in POSTHOG_FLAGS:
        r += [Route(p, collect.posthog_flags, methods=["GET", "POST"]) for p in _both(path)]
    # Sensors Data
    for path in SENSORS:
        r += [Route(path, collect.sensors_endpoint, methods=["GET", "POST"])]
    # People (secret key): specific routes first, before the /api/persons/{distinct_id:path} catch-all
    r += persons.routes + tags.routes + segments.routes + layers.routes + alerts.routes + recommend.routes
    # Read APIs (secret key)
    r += [
        Route("/api/events", events.list_events, methods=["GET"]),
        Route("/api/query", query.query, methods=["POST"]),
        Route("/api/persons/{id:path}", persons.get_person, methods=["GET"]),
        Route("/api/persons/{id:path}", persons.delete_person, methods=["DELETE"]),
    ]
    # Admin API (server token, used by the CLI while the server holds the file)
    r += [
        Route("/api/admin/projects", admin.create_project, methods=["POST"]),
        Route("/api/admin/projects", admin.find_project, methods=["GET"]),
        Route("/api/admin/ops", admin.write_ops, methods=["POST"]),
        Route("/api/admin/projects/{project_id:int}", admin.get_project, methods=["GET"]),
        Route("/api/admin/import", admin.import_events, methods=["POST"]),
        Route("/api/admin/export", admin.export_events, methods=["GET"]),
        Route("/api/admin/query", admin.query, methods=["POST"]),
        Route("/api/admin/actions/{name:str}", admin.call_action, methods=["POST"]),
    ]
    # The web console (/console/..., / redirects there): userloop/web/console/
    r += console.routes()
    # Static files: /static/userloop.js (the web tracker), /static/tracker-demo.html, the console's CSS/JS/vendor
    r += [Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static")]
    return r


def create_app(
    store: Store,
    *,
    settings: Settings | None = None,
    writer: Writer | None = None,
    admin_token: str | None = None,
    scheduler: bool = False,
) -> Starlette:
    settings = settings or Settings(db_path=store.path)
    own_writer = writer is None
    writer = writer or Writer(
        store,
        max_batch=settings.writer_max_batch,
        max_wait_ms=settings.writer_max_wait_ms,
        spool_dir=store.spool_dir if settings.spool else None,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        writer.start()
        app.state.parse_pool = None
        if settings.parse_workers > 0 and writer.spooled:
            from userloop.ingest.workers import ParsePool

            app.state.parse_pool = ParsePool(settings.parse_workers)
            await asyncio.to_thread(app.state.parse_pool.warm_up)
        sched = None
        if scheduler:  # the server runs scheduled recomputes; tests and the CLI opt in
            from userloop.schedule import Scheduler, set_current

            sched = Scheduler(store, writer)
            sched.start()
            set_current(sched)
        try:
            yield
        finally:
            if sched is not None:
                from userloop.schedule import set_current

                sched.stop()
                set_current(None)
            if app.state.parse_pool is not None:
                app.state.parse_pool.close()
                app.state.parse_pool = None
            if own_writer:
                writer.stop()

    app = Starlette(
        routes=routes(),
        middleware=[Middleware(CollectorCORS, is_collector=is_collector), Middleware(ReadYourWrites)],
        exception_handlers={UserloopError: handle_userloop_error, Exception: handle_internal_error},
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.writer = writer
    app.state.settings = settings
    app.state.admin_token = admin_token
    return app
