"""The overview dashboard: key figures with their change against the previous period and a
sparkline each, then the top channels and the top content.

Every figure comes from ``/api/query`` analyses (through ``run_query``) over the last N days
(today included, project time zone) and the N days before:

| figure | analysis |
|---|---|
| PV | ``trends`` ``total`` of each page-view event the project has (``$pageview``, ``$screen``), summed |
| UV | ``visitors`` ``total.active``: distinct persons with any event |
| new users | ``visitors`` ``total.new``: persons whose first event ever is in the range |
| active users | the mean of ``visitors`` ``daily.dau`` over the range's days (daily active users) |
| registrations | ``trends`` ``total`` of ``sign_up`` |
| buyers | ``trends`` ``uv`` of ``purchase`` (distinct persons over the range) |
| revenue | ``trends`` ``sum`` of ``purchase.revenue`` |

Figures whose event the project never recorded show "—".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from starlette.responses import Response

from userloop.errors import UserloopError
from userloop.query.runner import run_query
from userloop.store.duckdb import Project, Store
from userloop.web.console import catalog, results
from userloop.web.console.analysis import csv_response, today
from userloop.web.console.base import Page, page

PV_EVENTS = ("$pageview", "$screen")
REGISTER_EVENT = "sign_up"
PURCHASE_EVENT = "purchase"
REVENUE_PROPERTY = "revenue"
PERIODS = (7, 14, 30, 90)
TOP = 5


@dataclass
class Kpi:
    key: str
    value: float | int | None
    previous: float | int | None
    daily: list[Any]
    type: str = "int"


def _range(days: int, end: date) -> tuple[date, date, date, date]:
    start = end - timedelta(days=days - 1)
    return start, end, start - timedelta(days=days), start - timedelta(days=1)


def kpis(store: Store, project: Project, days: int, end: date) -> tuple[list[Kpi], list[str]]:
    d0, d1, p0, p1 = _range(days, end)
    events = set(catalog.catalog(store, project.id).events)
    base = {"project": project.id, "date_from": d0.isoformat(), "date_to": d1.isoformat()}

    def q(body: dict[str, Any]) -> dict[str, Any]:
        return run_query(store, project, {**base, **body})

    series: list[dict[str, Any]] = [{"event": e, "math": "total"} for e in PV_EVENTS if e in events]
    n_pv = len(series)
    if REGISTER_EVENT in events:
        series.append({"event": REGISTER_EVENT, "math": "total"})
    if PURCHASE_EVENT in events:
        series.append({"event": PURCHASE_EVENT, "math": "uv"})
        series.append({"event": PURCHASE_EVENT, "math": "sum", "property": REVENUE_PROPERTY})
    cur: list[dict[str, Any]] = []
    prev: list[dict[str, Any]] = []
    if series:
        trends = q({"kind": "trends", "series": series, "interval": "day", "compare": True})["results"]
        cur = [r for r in trends if r["compare"] == "current"]
        prev = [r for r in trends if r["compare"] == "previous"]
    vis = q({"kind": "visitors", "interval": "day"})
    vis_prev = run_query(store, project, {**base, "kind": "visitors", "interval": "day",
                                          "date_from": p0.isoformat(), "date_to": p1.isoformat()})  # fmt: skip

    def avg(values: list[int]) -> float:
        return sum(values) / len(values) if values else 0.0

    dates = vis["dates"]
    pv_daily = [sum(r["values"][i] for r in cur[:n_pv]) for i in range(len(dates))] if n_pv else []
    out = [
        Kpi("kpi.pv", sum(r["total"] for r in cur[:n_pv]) if n_pv else None,
            sum(r["total"] for r in prev[:n_pv]) if n_pv else None, pv_daily),
        Kpi("kpi.uv", vis["total"]["active"], vis_prev["total"]["active"], vis["daily"]["dau"]),
        Kpi("kpi.new_users", vis["total"]["new"], vis_prev["total"]["new"], vis["new"]),
        Kpi("kpi.active_users", avg(vis["daily"]["dau"]), avg(vis_prev["daily"]["dau"]), vis["daily"]["dau"], "num"),
    ]  # fmt: skip
    rest = {(r["event"], r["math"]): (r, p) for r, p in zip(cur[n_pv:], prev[n_pv:], strict=True)}
    for key, k, ty in (
        ("kpi.registrations", (REGISTER_EVENT, "total"), "int"),
        ("kpi.buyers", (PURCHASE_EVENT, "uv"), "int"),
        ("kpi.revenue", (PURCHASE_EVENT, "sum"), "num"),
    ):
        r, p = rest.get(k, (None, None))
        out.append(Kpi(key, r["total"] if r else None, p["total"] if p else None, r["values"] if r else [], ty))
    return out, dates


def sparkline(values: list[Any]) -> dict[str, Any]:
    return {
        "grid": {"left": 0, "right": 0, "top": 2, "bottom": 2},
        "xAxis": {"type": "category", "show": False, "boundaryGap": False},
        "yAxis": {"type": "value", "show": False, "min": 0},
        "tooltip": {"trigger": "axis"},
        "series": [{"type": "line", "data": values, "showSymbol": False, "smooth": True,
                    "lineStyle": {"width": 2, "color": "#3a62d7"}, "areaStyle": {"color": "rgba(58,98,215,0.12)"}}],
    }  # fmt: skip


def _top(store: Store, project: Project, kind: str, d0: date, d1: date, extra: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return run_query(store, project, {"kind": kind, "project": project.id, "date_from": d0.isoformat(),
                                          "date_to": d1.isoformat(), **extra})  # fmt: skip
    except UserloopError:
        return None  # e.g. a project without articles


def _days(pg: Page) -> int:
    text = pg.params.get("days", "7")
    if not text.isdigit() or int(text) not in PERIODS:
        raise UserloopError("bad_parameter", f"days must be one of {', '.join(map(str, PERIODS))}", "days")
    return int(text)


@page("/p/{pid:int}/overview")
def overview(pg: Page) -> Response:
    assert pg.project is not None
    days = _days(pg)
    end = today(pg)
    d0, d1, _, _ = _range(days, end)
    figures, dates = kpis(pg.store, pg.project, days, end)
    channels = _top(pg.store, pg.project, "channels", d0, d1, {"limit": TOP})
    content = _top(pg.store, pg.project, "content", d0, d1, {"limit": TOP})
    return pg.render(
        "overview.html", title=pg.t("nav.overview"), days=days, periods=PERIODS, kpis=figures, date_from=d0,
        date_to=d1, sparkline=sparkline,
        channels=results.channels(channels, {}) if channels else None,
        content=results.content(content, {}) if content else None,
    )  # fmt: skip


@page("/p/{pid:int}/overview/csv")
def overview_csv(pg: Page) -> Response:
    assert pg.project is not None
    days = _days(pg)
    figures, dates = kpis(pg.store, pg.project, days, today(pg))
    table = results.Table("kpis", "", [results.Column("figure", ""), results.Column("value", ""),
                                       results.Column("previous", ""), *[results.Column(d, "") for d in dates]],
                          [[k.key.removeprefix("kpi."), k.value, k.previous, *k.daily] for k in figures])  # fmt: skip
    return csv_response(table.csv(pg.t), f"overview-{days}d-{dates[0]}-{dates[-1]}.csv")
