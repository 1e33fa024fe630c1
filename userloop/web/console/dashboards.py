"""Dashboards: saved charts, re-run on every view, editable (rename, reorder, remove).

A chart is the analysis form of the page it was saved from (:class:`ChartDef`: kind, title and
form parameters), so "last 30 days" moves with the calendar. Saving checks the definition by
running it once; the dashboard (when new) and the chart are written in one transaction.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import msgspec
from starlette.responses import Response

from userloop.errors import UserloopError
from userloop.store.duckdb import Store
from userloop.web.console.base import Page, page, redirect

Kind = Literal[
    "trends", "funnel", "retention", "paths", "sessions", "visitors", "distribution", "channels", "content",
    "virality", "ltv",
]  # fmt: skip
MAX_TITLE = 120
MAX_CHARTS = 50


class ChartDef(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    kind: Kind
    title: str
    params: dict[str, str]

    def validate(self) -> None:
        if not self.title.strip() or len(self.title) > MAX_TITLE:
            raise UserloopError("bad_title", f"a title is 1 to {MAX_TITLE} characters", "title")


def list_dashboards(store: Store, project_id: int) -> list[dict[str, Any]]:
    return store.query(
        """SELECT d.dashboard_id, d.name, count(c.chart_id) AS charts, d.updated_at
           FROM console_dashboards d LEFT JOIN console_charts c
             ON c.project_id = d.project_id AND c.dashboard_id = d.dashboard_id
           WHERE d.project_id = ? GROUP BY ALL ORDER BY d.name, d.dashboard_id""",
        [project_id],
    )


def _dashboard(store: Store, project_id: int, dashboard_id: str) -> dict[str, Any]:
    rows = store.query(
        "SELECT dashboard_id, name, created_at, updated_at FROM console_dashboards WHERE project_id = ? AND dashboard_id = ?",
        [project_id, dashboard_id],
    )
    if not rows:
        raise UserloopError("dashboard_not_found", f"no dashboard {dashboard_id!r}", "dashboard", status=404)
    return rows[0]


def charts_of(store: Store, project_id: int, dashboard_id: str) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT chart_id, title, kind, params, position FROM console_charts WHERE project_id = ? AND dashboard_id = ? "
        "ORDER BY position, chart_id",
        [project_id, dashboard_id],
    )
    for r in rows:
        r["params"] = msgspec.json.decode(r["params"])
    return rows


def _name(text: str) -> str:
    text = text.strip()
    if not text or len(text) > MAX_TITLE:
        raise UserloopError("bad_name", f"a dashboard name is 1 to {MAX_TITLE} characters", "name")
    return text


def save_chart(store: Store, project_id: int, chart: ChartDef, dashboard_id: str | None, new_name: str | None) -> str:
    """Add ``chart`` at the end of a dashboard (a new one named ``new_name`` when given); one transaction."""
    now = datetime.now(UTC)
    cur = store.cursor()
    cur.execute("BEGIN TRANSACTION")
    try:
        if new_name:
            dashboard_id = secrets.token_hex(6)
            cur.execute("INSERT INTO console_dashboards VALUES (?, ?, ?, ?, ?)",
                        [project_id, dashboard_id, _name(new_name), now, now])  # fmt: skip
        elif not dashboard_id:
            raise UserloopError("dashboard_required", "pick a dashboard or name a new one", "dashboard")
        else:
            _dashboard(store, project_id, dashboard_id)
        n = cur.execute("SELECT count(*), coalesce(max(position), 0) FROM console_charts WHERE project_id = ? "
                        "AND dashboard_id = ?", [project_id, dashboard_id]).fetchall()[0]  # fmt: skip
        if n[0] >= MAX_CHARTS:
            raise UserloopError("dashboard_full", f"a dashboard holds at most {MAX_CHARTS} charts", "dashboard")
        cur.execute(
            "INSERT INTO console_charts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [project_id, secrets.token_hex(6), dashboard_id, chart.title.strip(), chart.kind,
             msgspec.json.encode(chart.params).decode(), int(n[1]) + 1, now],
        )  # fmt: skip
        cur.execute("UPDATE console_dashboards SET updated_at = ? WHERE project_id = ? AND dashboard_id = ?",
                    [now, project_id, dashboard_id])  # fmt: skip
        cur.execute("COMMIT")
    except Exception:
        cur.execute("ROLLBACK")
        raise
    assert dashboard_id is not None
    return dashboard_id


def move_chart(store: Store, project_id: int, dashboard_id: str, chart_id: str, step: int) -> None:
    """Swap the chart with its neighbour above (step -1) or below (+1), renumbering positions 1..n."""
    ids = [c["chart_id"] for c in charts_of(store, project_id, dashboard_id)]
    if chart_id not in ids:
        raise UserloopError("chart_not_found", f"no chart {chart_id!r}", "chart", status=404)
    i = ids.index(chart_id)
    j = i + step
    if 0 <= j < len(ids):
        ids[i], ids[j] = ids[j], ids[i]
    cur = store.cursor()
    cur.execute("BEGIN TRANSACTION")
    try:
        cur.executemany(
            "UPDATE console_charts SET position = ? WHERE project_id = ? AND chart_id = ?",
            [[k + 1, project_id, cid] for k, cid in enumerate(ids)],
        )
        cur.execute("COMMIT")
    except Exception:
        cur.execute("ROLLBACK")
        raise


# -- pages ----------------------------------------------------------------------------------------
@page("/p/{pid:int}/dashboards")
def dashboards_page(pg: Page) -> Response:
    assert pg.project is not None
    return pg.render("dashboards.html", title=pg.t("nav.dashboards"), dashboards=list_dashboards(pg.store, pg.project.id))


@page("/p/{pid:int}/dashboards", methods=("POST",), role="analyst")
def create_dashboard(pg: Page) -> Response:
    assert pg.project is not None and pg.form is not None
    now = datetime.now(UTC)
    dashboard_id = secrets.token_hex(6)
    pg.store.query("INSERT INTO console_dashboards VALUES (?, ?, ?, ?, ?)",
                   [pg.project.id, dashboard_id, _name(str(pg.form.get("name") or "")), now, now])  # fmt: skip
    return redirect(pg.url(f"/dashboards/{dashboard_id}"))


@page("/p/{pid:int}/dashboards/save", methods=("POST",), role="analyst")
def save(pg: Page) -> Response:
    """Save the chart of an analysis page (its form parameters) to a dashboard."""
    from userloop.web.console.analysis import run

    assert pg.project is not None and pg.form is not None
    f = pg.form
    params = dict(parse_qsl(str(f.get("params") or ""), keep_blank_values=False))
    try:
        chart = msgspec.convert({"kind": f.get("kind"), "title": f.get("title") or "", "params": params}, ChartDef)
    except msgspec.ValidationError as exc:
        raise UserloopError("invalid_field", str(exc), "kind") from exc
    chart.validate()
    run(pg, chart.kind, chart.params)  # a chart that cannot run is not saved
    dashboard_id = save_chart(pg.store, pg.project.id, chart, str(f.get("dashboard") or "") or None,
                              str(f.get("new_dashboard") or "").strip() or None)  # fmt: skip
    return redirect(pg.url(f"/dashboards/{dashboard_id}", saved="1"))


@page("/p/{pid:int}/dashboards/{did:str}")
def dashboard_page(pg: Page) -> Response:
    from userloop.web.console import results
    from userloop.web.console.analysis import run, today

    assert pg.project is not None
    did = pg.request.path_params["did"]
    board = _dashboard(pg.store, pg.project.id, did)
    shown = []
    for c in charts_of(pg.store, pg.project.id, did):
        item: dict[str, Any] = {**c, "qs": urlencode(c["params"]), "view": None, "error": None}
        try:
            query, result = run(pg, c["kind"], c["params"])
            item["view"] = results.present(c["kind"], result, query, c["params"].get("chart", "line"), today(pg))
            item["query"] = query
        except UserloopError as exc:
            item["error"] = exc
        shown.append(item)
    notice = pg.t("dashboard.saved") if pg.params.get("saved") else None
    return pg.render("dashboard.html", title=board["name"], board=board, charts=shown, notice=notice)


@page("/p/{pid:int}/dashboards/{did:str}/edit", methods=("POST",), role="analyst")
def edit_dashboard(pg: Page) -> Response:
    """One edit: rename / delete the dashboard, or rename / move / remove one chart."""
    assert pg.project is not None and pg.form is not None
    did, f, pid = pg.request.path_params["did"], pg.form, pg.project.id
    _dashboard(pg.store, pid, did)
    op, chart_id = str(f.get("op") or ""), str(f.get("chart") or "")
    now = datetime.now(UTC)
    if op == "rename":
        pg.store.query("UPDATE console_dashboards SET name = ?, updated_at = ? WHERE project_id = ? AND dashboard_id = ?",
                       [_name(str(f.get("name") or "")), now, pid, did])  # fmt: skip
    elif op == "delete":
        cur = pg.store.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            cur.execute("DELETE FROM console_charts WHERE project_id = ? AND dashboard_id = ?", [pid, did])
            cur.execute("DELETE FROM console_dashboards WHERE project_id = ? AND dashboard_id = ?", [pid, did])
            cur.execute("COMMIT")
        except Exception:
            cur.execute("ROLLBACK")
            raise
        return redirect(pg.url("/dashboards"))
    elif op in ("up", "down"):
        move_chart(pg.store, pid, did, chart_id, -1 if op == "up" else 1)
    elif op == "remove_chart":
        pg.store.query("DELETE FROM console_charts WHERE project_id = ? AND dashboard_id = ? AND chart_id = ?",
                       [pid, did, chart_id])  # fmt: skip
    elif op == "rename_chart":
        title = str(f.get("title") or "").strip()
        if not title or len(title) > MAX_TITLE:
            raise UserloopError("bad_title", f"a title is 1 to {MAX_TITLE} characters", "title")
        pg.store.query("UPDATE console_charts SET title = ? WHERE project_id = ? AND dashboard_id = ? AND chart_id = ?",
                       [title, pid, did, chart_id])  # fmt: skip
    else:
        raise UserloopError("bad_operation", f"unknown edit {op!r}", "op")
    return redirect(pg.url(f"/dashboards/{did}"))
