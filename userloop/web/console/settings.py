"""Project settings: time zone, keys (shown to admins, rotated on demand), members and their roles,
and new projects (for the built-in admin account).

Every change needs the project's ``admin`` role (a viewer or analyst sees the settings read-only,
without the keys); rotating a key makes the old one stop working at once.
"""

from __future__ import annotations

from starlette.responses import Response

from userloop.errors import UserloopError
from userloop.web.console import auth
from userloop.web.console.base import PREFIX, Page, page, redirect

COMMON_ZONES = (
    "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Taipei", "Asia/Singapore", "Asia/Tokyo", "Asia/Seoul", "Asia/Kolkata",
    "Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York", "America/Chicago", "America/Los_Angeles",
    "America/Sao_Paulo", "Australia/Sydney", "UTC",
)  # fmt: skip


def _settings(pg: Page, notice: str | None = None, password: str | None = None, status: int = 200) -> Response:
    assert pg.project is not None
    return pg.render(
        "settings.html", status=status, title=pg.t("nav.settings"), zones=COMMON_ZONES, notice=notice,
        members=auth.members(pg.store, pg.project.id), roles=auth.ROLES, password=password,
        superuser=pg.user == auth.SUPERUSER,
    )  # fmt: skip


@page("/p/{pid:int}/settings")
def settings_page(pg: Page) -> Response:
    return _settings(pg)


@page("/p/{pid:int}/settings/timezone", methods=("POST",), role="admin")
def set_timezone(pg: Page) -> Response:
    assert pg.project is not None and pg.form is not None
    pg.project = pg.store.set_project_timezone(pg.project.id, str(pg.form.get("timezone") or "").strip())
    return _settings(pg, pg.t("settings.timezone_saved", tz=pg.project.timezone))


@page("/p/{pid:int}/settings/rotate", methods=("POST",), role="admin")
def rotate(pg: Page) -> Response:
    assert pg.project is not None and pg.form is not None
    which = str(pg.form.get("which") or "")
    pg.project = pg.store.rotate_project_key(pg.project.id, which)
    return _settings(pg, pg.t("settings.rotated", name=pg.t(f"settings.{which}")))


@page("/p/{pid:int}/settings/members", methods=("POST",), role="admin")
def member_add(pg: Page) -> Response:
    assert pg.project is not None and pg.form is not None
    f = pg.form
    username = str(f.get("username") or "").strip()
    generated = auth.add_member(pg.store, pg.project.id, username, str(f.get("role") or ""),
                                str(f.get("password") or "") or None)  # fmt: skip
    return _settings(pg, pg.t("settings.member_saved", user=username), generated)


@page("/p/{pid:int}/settings/members/remove", methods=("POST",), role="admin")
def member_remove(pg: Page) -> Response:
    assert pg.project is not None and pg.form is not None
    username = str(pg.form.get("username") or "")
    auth.remove_member(pg.store, pg.project.id, username)
    return _settings(pg, pg.t("settings.member_removed", user=username))


@page("/projects", methods=("POST",))
def create_project(pg: Page) -> Response:
    """A new project (the built-in admin only): name and time zone."""
    if pg.user != auth.SUPERUSER:
        raise UserloopError("forbidden", pg.t("error.superuser"), status=403)
    assert pg.form is not None
    project = pg.store.create_project(str(pg.form.get("name") or ""), str(pg.form.get("timezone") or "UTC").strip())
    return redirect(f"{PREFIX}/p/{project.id}/settings")
