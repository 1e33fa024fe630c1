"""How a console page runs: the :func:`page` decorator and the :class:`Page` it hands to a view.

``@page("/p/{pid}/funnel", role="viewer")`` registers a route under ``/console``. Before the view
runs, the decorator finds the session (else redirects to the login page), checks the CSRF token of
a POST, finds the project of ``{pid}`` and the user's role in it (a project the user is not a member
of is a 404; a role below ``role`` is a 403), and reads the form. The view itself is a plain
function run in a worker thread (DuckDB work blocks), returning a response; a
:class:`~userloop.errors.UserloopError` it raises becomes an HTML error page (or, for an htmx
request, an error fragment) with the error's status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.store.duckdb import Project, Store
from userloop.web.console import auth
from userloop.web.console.i18n import LANG_COOKIE, LANGUAGES, Formatter, negotiate, translate

PREFIX = "/console"
# console pages hold private data and CSRF tokens: not cached, not framed by other sites
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
TEMPLATES = Path(__file__).parent / "templates"
ROUTES: list[Route] = []

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _tojson(value: Any) -> Markup:
    """JSON safe inside HTML (attributes and <script>): <, >, &, ' escaped as \\u sequences."""
    text = msgspec.json.encode(value).decode()
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(a, b)
    return Markup(text)


_env.filters["tojson"] = _tojson


@dataclass
class Page:
    """One request to the console, as a view sees it."""

    request: Request
    store: Store
    user: str
    csrf: str
    lang: str
    project: Project | None = None
    role: auth.Role | None = None
    form: FormData | None = None
    body: bytes = b""
    extra_cookies: list[tuple[str, str]] = field(default_factory=list)

    @property
    def params(self) -> QueryParams:
        return self.request.query_params

    @property
    def fmt(self) -> Formatter:
        return Formatter(self.lang, self.project.timezone if self.project else "UTC")

    @property
    def htmx(self) -> bool:
        return self.request.headers.get("hx-request") == "true"

    def t(self, key: str, /, **values: Any) -> str:
        return translate(self.lang, key, **values)

    def can(self, role: auth.Role) -> bool:
        return auth.allows(self.role, role)

    def require(self, role: auth.Role) -> None:
        if not self.can(role):
            raise UserloopError("forbidden", self.t("error.role", role=self.t(f"role.{role}")), status=403)

    def url(self, path: str = "", **query: Any) -> str:
        """A URL of this project's console: ``url("/funnel", range="7d")``."""
        assert self.project is not None
        qs = urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        return f"{PREFIX}/p/{self.project.id}{path}" + (f"?{qs}" if qs else "")

    def action(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """The named operation (``userloop/actions.py``), as the REST API and the CLI run it."""
        assert self.project is not None
        writer = self.request.app.state.writer
        result = run_action(name, ActionContext(self.store, writer, self.project), params or {})
        return msgspec.json.decode(msgspec.json.encode(result))  # JSON types, as the API returns them

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        from userloop.web.console.nav import navigation

        projects = auth.projects_for(self.store, self.user)
        body = _env.get_template(template).render(
            page=self, t=self.t, fmt=self.fmt, user=self.user, project=self.project, role=self.role,
            projects=projects, csrf=self.csrf, lang=self.lang, languages=LANGUAGES,
            nav=navigation(self) if self.project else [], path=self.request.url.path,
            full_path=self.request.url.path + (f"?{self.request.url.query}" if self.request.url.query else ""),
            **values,
        )
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def render_public(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page without a session (the login page)."""
    lang = language(request)
    body = _env.get_template(template).render(
        t=lambda key, **v: translate(lang, key, **v), lang=lang, languages=LANGUAGES, page=None,
        project=None, user=None, nav=[], projects=[], path=request.url.path, full_path=request.url.path,
        **values,
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def language(request: Request) -> str:
    return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
        secure=request.url.scheme == "https",
    )


View = Callable[[Page], Response]


def page(path: str, *, methods: tuple[str, ...] = ("GET",), role: auth.Role = "viewer") -> Callable[[View], View]:
    """Register ``view`` at ``/console{path}``; ``{pid}`` in the path selects the project."""

    def register(view: View) -> View:
        async def endpoint(request: Request) -> Response:
            store: Store = request.app.state.store
            token = request.cookies.get(auth.SESSION_COOKIE)
            session = await asyncio.to_thread(auth.load_session, store, token)
            if session is None:
                if request.method == "GET":
                    return redirect(f"{PREFIX}/login?next={quote(_next(request))}")
                return _plain(request, 401, "error.session")
            form, body = None, b""
            if request.method == "POST":
                ctype = request.headers.get("content-type", "")
                if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                    body = await request.body()  # JSON (the segment builder's preview)
                form = await request.form()
                sent = request.headers.get("x-csrf-token") or form.get("csrf_token")
                if not auth.csrf_ok(session.csrf_token, sent if isinstance(sent, str) else None):
                    return _plain(request, 403, "error.csrf")
            pg = Page(request, store, session.username, session.csrf_token, language(request), form=form, body=body)
            try:
                return await asyncio.to_thread(_run, view, pg, role)
            except UserloopError as exc:
                return _error(pg, exc)

        ROUTES.append(Route(PREFIX + path, endpoint, methods=list(methods)))
        return view

    return register


def _run(view: View, pg: Page, role: auth.Role) -> Response:
    pid = pg.request.path_params.get("pid")
    if pid is not None:
        role_now = auth.role_of(pg.store, pg.user, int(pid))
        try:
            project = pg.store.project(int(pid))
        except UserloopError:
            role_now = None
        if role_now is None:
            raise UserloopError("project_not_found", pg.t("error.no_project"), status=404)
        pg.project, pg.role = project, role_now
        pg.require(role)
    return view(pg)


def _next(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _plain(request: Request, status: int, key: str) -> Response:
    text = translate(language(request), key)
    if request.headers.get("hx-request") == "true":
        return HTMLResponse(f'<div class="error">{Markup.escape(text)}</div>', status_code=status)
    return render_public(request, "error.html", status=status, message=text, code=key)


def _error(pg: Page, exc: UserloopError) -> Response:
    if pg.htmx:
        return HTMLResponse(
            _env.get_template("_error.html").render(error=exc, t=pg.t), status_code=exc.status
        )
    return pg.render("error.html", status=exc.status, message=exc.message, code=exc.code, field=exc.field)


def error_json(exc: UserloopError) -> str:
    return json.dumps(exc.to_dict(), ensure_ascii=False)
