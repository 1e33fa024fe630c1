"""Signing in and out, the language switch, and ``/console/`` (to the first project's overview).

The login form has its own CSRF token (a cookie and a hidden field that must match), since there
is no session yet; a wrong user name or password is a 401 saying only that.
"""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from userloop.web.console import auth
from userloop.web.console.base import PREFIX, Page, language, page, redirect, render_public, set_cookie
from userloop.web.console.i18n import LANG_COOKIE, LANGUAGES, translate


def _safe_next(target: str | None) -> str:
    """Only a path inside the console (no scheme, no host, no //evil.example)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"


async def login_form(request: Request) -> Response:
    token = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render_public(request, "login.html", login_csrf=token, next=_safe_next(request.query_params.get("next")))
    set_cookie(request, response, auth.LOGIN_CSRF_COOKIE, token, 3600)
    return response


async def login(request: Request) -> Response:
    form = await request.form()
    username, password = str(form.get("username") or ""), str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or ""))
    cookie = request.cookies.get(auth.LOGIN_CSRF_COOKIE)
    lang = language(request)
    if not cookie or not auth.csrf_ok(cookie, str(form.get("csrf_token") or "")):
        return render_public(request, "error.html", status=403, message=translate(lang, "error.csrf"), code="csrf")
    store = request.app.state.store
    if not await asyncio.to_thread(auth.check_login, store, username, password):
        return render_public(
            request, "login.html", status=401, error=translate(lang, "auth.failed"), login_csrf=cookie,
            next=target, username=username,
        )
    token, _ = await asyncio.to_thread(auth.create_session, store, username.strip())
    done = redirect(target)
    set_cookie(request, done, auth.SESSION_COOKIE, token, auth.SESSION_DAYS * 86400)
    done.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/")
    return done


@page("/logout", methods=("POST",))
def logout(pg: Page) -> Response:
    auth.end_session(pg.store, pg.request.cookies.get(auth.SESSION_COOKIE))
    response = redirect(PREFIX + "/login")
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


async def switch_language(request: Request) -> Response:
    to = request.query_params.get("to")
    response = redirect(_safe_next(request.query_params.get("next")))
    if to in LANGUAGES:
        set_cookie(request, response, LANG_COOKIE, to, 365 * 86400)
    return response


@page("/")
def home(pg: Page) -> Response:
    projects = auth.projects_for(pg.store, pg.user)
    if not projects:
        return pg.render("error.html", status=404, message=pg.t("error.no_projects"), code="no_projects")
    return redirect(f"{PREFIX}/p/{projects[0].id}/overview")


@page("/p/{pid:int}")
@page("/p/{pid:int}/")
def project_home(pg: Page) -> Response:
    return redirect(pg.url("/overview"))


ROUTES = [
    Route(PREFIX + "/login", login_form, methods=["GET"]),
    Route(PREFIX + "/login", login, methods=["POST"]),
    Route(PREFIX + "/lang", switch_language, methods=["GET"]),
]


def login_url(next_path: str) -> str:
    return f"{PREFIX}/login?next={quote(next_path)}"
