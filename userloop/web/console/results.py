"""Analysis results as the console shows them: tables (also the CSV downloads) and ECharts options.

One function per kind turns the ``/api/query`` result into a :class:`View`: its tables hold the
raw numbers (the HTML formats them per language, the CSV writes them as they are) and its charts
are plain ECharts option objects, rendered by ``static/console.js``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

# column types: how the HTML formats a value (the CSV writes it raw)
TEXT, INT, NUM, PCT, RATIO, SECONDS, HEAT = "text", "int", "num", "pct", "ratio", "seconds", "heat"
PALETTE = ["#3a62d7", "#1a8d5f", "#e08a1e", "#c8463d", "#7b4fc9", "#1f9fb5", "#8c6d31", "#d44f95", "#5b6b82", "#3aa657"]


@dataclass
class Column:
    key: str
    label: str  # message key, or a literal (a breakdown value, a period number)
    type: str = TEXT
    literal: bool = False


@dataclass
class Table:
    id: str
    title: str  # message key
    columns: list[Column]
    rows: list[list[Any]]
    link: Callable[[list[Any]], str | None] | None = None  # first cell as a link (persons, content)

    def narrow(self, *keys: str) -> Table:
        """Only the columns ``keys`` (the overview shows a few columns of the full tables)."""
        idx = [i for i, c in enumerate(self.columns) if c.key in keys]
        return Table(self.id, self.title, [self.columns[i] for i in idx], [[r[i] for i in idx] for r in self.rows], self.link)

    def csv(self, t: Callable[[str], str]) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow([c.key for c in self.columns])
        for row in self.rows:
            w.writerow(["" if v is None else v for v in row])
        return out.getvalue()


@dataclass
class Chart:
    id: str
    option: dict[str, Any]
    height: int = 340
    drop_forms: str | None = None  # funnel: id prefix of the drop-off segment forms


@dataclass
class View:
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    summary: list[tuple[str, Any, str]] = field(default_factory=list)  # (message key, value, type)
    extra: dict[str, Any] = field(default_factory=dict)


def _axis(dates: list[str], series: list[dict[str, Any]], kind: str = "line", stack: bool = False) -> dict[str, Any]:
    return {
        "color": PALETTE,
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "scroll", "top": 0},
        "grid": {"left": 50, "right": 20, "top": 36, "bottom": 30, "containLabel": True},
        "xAxis": {"type": "category", "data": dates, "boundaryGap": kind == "bar"},
        "yAxis": {"type": "value"},
        "series": [{"type": kind, "smooth": kind == "line", "showSymbol": len(dates) < 40,
                    **({"stack": "total"} if stack else {}), **s} for s in series],  # fmt: skip
    }


def _label(r: dict[str, Any]) -> str:
    name = str(r.get("label") or r.get("event") or "")
    if r.get("breakdown_value") is not None and str(r["breakdown_value"]) not in name:
        name += f" · {r['breakdown_value']}"
    if r.get("compare") == "previous":
        name += " (previous)"
    return str(name)


def trends(r: dict[str, Any], q: dict[str, Any], chart_type: str = "line") -> View:
    rows = r["results"]
    current = [x for x in rows if x.get("compare") != "previous"]
    dates = current[0]["dates"] if current else []
    series = []
    for x in rows:
        s: dict[str, Any] = {"name": _label(x), "data": x["values"]}
        if x.get("compare") == "previous":
            s["lineStyle"] = {"type": "dashed"}
            s["data"] = x["values"][: len(dates)]  # drawn against the current period's days
        series.append(s)
    table = Table("series", "table.series", [
        Column("series", "col.series"), Column("breakdown_value", "col.breakdown"), Column("period", "col.period"),
        Column("total", "col.total", NUM), *[Column(d, d, NUM, literal=True) for d in dates],
    ], [
        [x.get("label") or x["event"], x.get("breakdown_value"), x.get("compare") or "current", x["total"],
         *(x["values"] + [None] * (len(dates) - len(x["values"])))[: len(dates)]]
        for x in rows
    ])  # fmt: skip
    summary = [(_label(x), x["total"], NUM) for x in rows if x.get("breakdown_value") is None]  # a card per series
    return View([Chart("trends", _axis(dates, series, "bar" if chart_type == "bar" else "line"))], [table], summary)


def funnel(r: dict[str, Any], q: dict[str, Any]) -> View:
    steps = r["steps"]
    names = [s["name"] for s in steps]
    counts = [s["count"] for s in steps]
    dropped = [0] + [max(counts[i - 1] - counts[i], 0) for i in range(1, len(counts))]
    option = {
        "color": ["#3a62d7", "#f3b5ae"],
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "legend": {"top": 0, "data": ["converted", "dropped"]},
        "grid": {"left": 50, "right": 20, "top": 36, "bottom": 30, "containLabel": True},
        "xAxis": {"type": "category", "data": names},
        "yAxis": {"type": "value"},
        "series": [
            {"id": "converted", "name": "converted", "type": "bar", "stack": "f", "data": counts,
             "label": {"show": True, "position": "inside"}},
            {"id": "dropped", "name": "dropped", "type": "bar", "stack": "f", "data": [None, *dropped[1:]], "cursor": "pointer",
             "label": {"show": True, "position": "top"}},
        ],
    }  # fmt: skip
    table = Table("steps", "table.steps", [
        Column("step", "col.step", INT), Column("event", "col.event"), Column("count", "col.persons", INT),
        Column("conversion_from_first", "col.conversion_from_first", RATIO),
        Column("conversion_from_previous", "col.conversion_from_previous", RATIO),
        Column("dropped", "col.dropped", INT), Column("median_seconds_from_previous", "col.median_time", SECONDS),
    ], [
        [i + 1, s["name"], s["count"], s["conversion_from_first"], s["conversion_from_previous"], dropped[i],
         s["median_seconds_from_previous"]] for i, s in enumerate(steps)
    ])  # fmt: skip
    tables = [table]
    if r.get("breakdown"):
        tables.append(Table("breakdown", "table.breakdown", [
            Column("breakdown_value", "col.breakdown"), *[Column(f"step{i + 1}", n, INT, literal=True) for i, n in enumerate(names)],
            Column("conversion", "col.conversion_from_first", RATIO),
        ], [
            [b["breakdown_value"], *[s["count"] for s in b["steps"]], b["steps"][-1]["conversion_from_first"]]
            for b in r["breakdown"]
        ]))  # fmt: skip
    view = View([Chart("funnel", option, drop_forms="drop-")], tables)
    view.extra["dropped"] = dropped
    return view


def _heat_color(pct: float | None) -> str:
    if pct is None:
        return "transparent"
    alpha = 0.08 + 0.8 * max(0.0, min(pct, 100.0)) / 100
    return f"rgba(58, 98, 215, {alpha:.2f})"


def period_start(start: str, k: int, interval: str) -> date:
    """The first day of the k-th period after the cohort period that starts on ``start``."""
    d = date.fromisoformat(start)
    if interval == "day":
        return d + timedelta(days=k)
    if interval == "week":
        return d + timedelta(weeks=k)
    months = d.month - 1 + k
    return date(d.year + months // 12, months % 12 + 1, 1)


def retention(r: dict[str, Any], q: dict[str, Any], today: date | None = None) -> View:
    """Cells of periods that have not begun yet (after ``today``) are left empty, not 0%."""
    n = r["periods"]
    cohorts = r["cohorts"]

    def cell(c: dict[str, Any], k: int) -> tuple[Any, Any]:
        if today is not None and period_start(c["start"], k, r.get("interval", "day")) > today:
            return (None, None)
        return (c["retained"][k], c["percentages"][k])

    table = Table("cohorts", "table.cohorts", [
        Column("start", "col.cohort"), Column("size", "col.persons", INT),
        *[Column(f"period_{k}", str(k), HEAT, literal=True) for k in range(n)],
    ], [[c["start"], c["size"], *[cell(c, k) for k in range(n)]] for c in cohorts])  # fmt: skip
    avg = r.get("average") or []
    option = _axis([str(k) for k in range(n)], [{"name": "average %", "data": [
        None if a is None else round(a, 2) for a in avg]}])  # fmt: skip
    view = View([Chart("retention", option, 260)], [table])
    view.extra["heat_color"] = _heat_color
    return view


def retention_csv(r: dict[str, Any]) -> Table:
    n = r["periods"]
    return Table("cohorts", "table.cohorts", [
        Column("start", ""), Column("size", ""), *[Column(f"retained_{k}", "") for k in range(n)],
        *[Column(f"percent_{k}", "") for k in range(n)],
    ], [[c["start"], c["size"], *c["retained"], *c["percentages"]] for c in r["cohorts"]])  # fmt: skip


def paths(r: dict[str, Any], q: dict[str, Any]) -> View:
    # ECharts needs unique node names: the same event at several steps gets zero-width spaces
    names = {n["id"]: n["name"] + "\u200b" * n["step"] if n["step"] >= 0 else n["name"] + "\u200c" * -n["step"]
             for n in r["nodes"]}  # fmt: skip
    # only what the anchor reaches through the listed links (the top links per step): a node whose
    # incoming links were cut would otherwise float at the left edge
    reached = {n["id"] for n in r["nodes"] if n["step"] == 0}
    while more := {x["target"] for x in r["links"] if x["source"] in reached} - reached:
        reached |= more
    nodes = [n for n in r["nodes"] if n["id"] in reached]
    links = [x for x in r["links"] if x["source"] in reached and x["target"] in reached]
    if r.get("direction") == "before":  # read left to right in time: earlier steps flow into the anchor
        links = [{"source": x["target"], "target": x["source"], "value": x["value"]} for x in links]
    option = {
        "tooltip": {"trigger": "item"},
        "series": [{
            "type": "sankey", "left": 10, "right": 120, "top": 10, "bottom": 10, "nodeAlign": "left",
            "emphasis": {"focus": "adjacency"}, "lineStyle": {"color": "gradient", "curveness": 0.5},
            "data": [{"name": names[n["id"]], "value": n["count"]} for n in nodes],
            "links": [{"source": names[x["source"]], "target": names[x["target"]], "value": x["value"]} for x in links],
        }],
    }  # fmt: skip
    top = Table("paths", "table.top_paths", [Column("path", "col.path"), Column("count", "col.count", INT)],
                [[" → ".join(p["path"]), p["count"]] for p in r.get("top_paths", [])])  # fmt: skip
    drop = Table("drop_off", "table.drop_off", [
        Column("step", "col.step", INT), Column("paths", "col.paths", INT), Column("dropped", "col.dropped", INT),
        Column("drop_rate", "col.drop_rate", RATIO),
    ], [[d["step"], d["paths"], d["dropped"], d["drop_rate"]] for d in r.get("drop_off", [])])  # fmt: skip
    return View([Chart("paths", option, 460)], [top, drop],
                [("col.paths", r["total_paths"], INT), ("col.persons", r["persons"], INT)])  # fmt: skip


def sessions(r: dict[str, Any], q: dict[str, Any]) -> View:
    res = r["results"]
    main = res[0] if res else None
    charts, tables = [], []
    if main:
        charts.append(Chart("sessions", _axis(main["dates"], [
            {"name": "visits", "data": main["visits"]}, {"name": "visitors", "data": main["visitors"]},
            {"name": "pageviews", "data": main["pageviews"]}])))  # fmt: skip
    metrics = ("visits", "visitors", "pageviews", "bounces", "depth", "avg_duration_seconds", "bounce_rate")
    types = {"depth": NUM, "avg_duration_seconds": SECONDS, "bounce_rate": RATIO}
    tables.append(Table("totals", "table.totals", [
        Column("breakdown_value", "col.breakdown"), *[Column(m, f"col.{m}", types.get(m, INT)) for m in metrics]],
        [[x["breakdown_value"], *[x["total"][m] for m in metrics]] for x in res]))  # fmt: skip
    if main:
        tables.append(Table("daily", "table.per_interval", [
            Column("date", "col.date"), *[Column(m, f"col.{m}", types.get(m, INT)) for m in metrics]],
            [[d, *[main[m][i] for m in metrics]] for i, d in enumerate(main["dates"])]))  # fmt: skip
        for key in ("entry_pages", "exit_pages"):
            tables.append(Table(key, f"table.{key}", [
                Column("page", "col.page"), Column("visits", "col.visits", INT), Column("share", "col.share", RATIO)],
                [[p["page"], p["visits"], p["share"]] for p in main[key]]))  # fmt: skip
    return View(charts, tables, [(f"col.{m}", main["total"][m], types.get(m, INT)) for m in metrics] if main else [])


def visitors(r: dict[str, Any], q: dict[str, Any]) -> View:
    d = r["daily"]
    charts = [
        Chart("new_returning", _axis(r["dates"], [{"name": "new", "data": r["new"]},
                                                  {"name": "returning", "data": r["returning"]}], "bar", stack=True)),
        Chart("dau", _axis(d["dates"], [{"name": "DAU", "data": d["dau"]}, {"name": "WAU", "data": d["wau"]},
                                        {"name": "MAU", "data": d["mau"]}])),
    ]  # fmt: skip
    tables = [
        Table("intervals", "table.new_returning", [
            Column("date", "col.date"), Column("active", "col.active", INT), Column("new", "col.new", INT),
            Column("returning", "col.returning", INT)],
            [[x, r["active"][i], r["new"][i], r["returning"][i]] for i, x in enumerate(r["dates"])]),
        Table("daily", "table.daily_active", [
            Column("date", "col.date"), Column("dau", "DAU", INT, True), Column("wau", "WAU", INT, True),
            Column("mau", "MAU", INT, True), Column("stickiness", "col.stickiness", RATIO)],
            [[x, d["dau"][i], d["wau"][i], d["mau"][i], d["stickiness"][i]] for i, x in enumerate(d["dates"])]),
    ]  # fmt: skip
    t = r["total"]
    return View(charts, tables, [("col.active", t["active"], INT), ("col.new", t["new"], INT),
                                 ("col.returning", t["returning"], INT)])  # fmt: skip


def distribution(r: dict[str, Any], q: dict[str, Any]) -> View:
    b = r["buckets"]
    option = _axis([x["label"] for x in b], [{"name": "persons", "data": [x["persons"] for x in b]}], "bar")
    table = Table("buckets", "table.buckets", [
        Column("label", "col.bucket"), Column("from", "col.from", NUM), Column("to", "col.to", NUM),
        Column("persons", "col.persons", INT)], [[x["label"], x["from"], x["to"], x["persons"]] for x in b])  # fmt: skip
    st = r.get("stats") or {}
    pct = st.get("percentiles") or {}
    stats = Table("stats", "table.stats", [Column("stat", "col.stat"), Column("value", "col.value", NUM)],
                  [[k, st.get(k)] for k in ("min", "max", "mean", "sum")] + [[k, v] for k, v in pct.items()])  # fmt: skip
    return View([Chart("distribution", option)], [table, stats],
                [("col.persons", r.get("persons"), INT), ("col.below", r.get("below"), INT)])  # fmt: skip


CHANNEL_COLUMNS = (
    ("visitors", INT), ("new_visitors", INT), ("registered", INT), ("buyers", INT), ("purchases", INT),
    ("revenue", NUM), ("registration_rate", RATIO), ("purchase_rate", RATIO), ("revenue_per_visitor", NUM),
    ("cost", NUM), ("cost_per_registered", NUM), ("cost_per_buyer", NUM), ("roi", NUM),
)


def channels(r: dict[str, Any], q: dict[str, Any]) -> View:
    rows = r["results"]
    values = [str(x["value"]) for x in rows]
    option = _axis(values, [{"name": "visitors", "data": [x["visitors"] for x in rows]},
                            {"name": "buyers", "data": [x["buyers"] for x in rows]}], "bar")  # fmt: skip
    option["yAxis"] = [{"type": "value"}, {"type": "value"}]
    option["series"].append({"name": "revenue", "type": "line", "yAxisIndex": 1, "data": [x["revenue"] for x in rows]})
    table = Table("channels", "table.channels", [
        Column("value", "col.value_of_dimension"), *[Column(k, f"col.{k}", ty) for k, ty in CHANNEL_COLUMNS]],
        [[x["value"], *[x.get(k) for k, _ in CHANNEL_COLUMNS]] for x in rows])  # fmt: skip
    return View([Chart("channels", option)], [table])


CONTENT_COLUMNS = (
    ("reads", INT), ("readers", INT), ("shares", INT), ("sharers", INT), ("new_users", INT), ("conversions", INT),
    ("conversion_rate", RATIO), ("share_rate", RATIO),
)


def content(r: dict[str, Any], q: dict[str, Any]) -> View:
    rows = r["results"]
    option = _axis([x["content_id"] for x in rows], [{"name": "reads", "data": [x["reads"] for x in rows]},
                                                     {"name": "shares", "data": [x["shares"] for x in rows]}], "bar")  # fmt: skip
    table = Table("content", "table.content", [
        Column("content_id", "col.content_id"), Column("title", "col.title"),
        *[Column(k, f"col.{k}", ty) for k, ty in CONTENT_COLUMNS]],
        [[x["content_id"], x.get("title"), *[x.get(k) for k, _ in CONTENT_COLUMNS]] for x in rows])  # fmt: skip
    t = r["totals"]
    return View([Chart("content", option)], [table], [(f"col.{k}", t.get(k), ty) for k, ty in CONTENT_COLUMNS])


VIRALITY_COLUMNS = (
    ("active_users", INT), ("new_users", INT), ("inviters", INT), ("invites", INT), ("invites_per_user", NUM),
    ("conversions", INT), ("conversion_rate", RATIO), ("k", NUM), ("cycle_time_seconds", SECONDS),
)


def virality(r: dict[str, Any], q: dict[str, Any]) -> View:
    rows = r["results"]
    dates = [x["date"] for x in rows]
    option = _axis(dates, [{"name": "invites", "type": "bar", "data": [x["invites"] for x in rows]},
                           {"name": "conversions", "type": "bar", "data": [x["conversions"] for x in rows]}], "bar")  # fmt: skip
    option["yAxis"] = [{"type": "value"}, {"type": "value", "name": "K"}]
    option["series"].append({"name": "K", "type": "line", "yAxisIndex": 1, "data": [x["k"] for x in rows]})
    table = Table("periods", "table.periods", [
        Column("date", "col.date"), *[Column(k, f"col.{k}", ty) for k, ty in VIRALITY_COLUMNS]],
        [[x["date"], *[x.get(k) for k, _ in VIRALITY_COLUMNS]] for x in rows])  # fmt: skip
    t = r["totals"]
    return View([Chart("virality", option)], [table], [(f"col.{k}", t.get(k), ty) for k, ty in VIRALITY_COLUMNS])


def ltv(r: dict[str, Any], q: dict[str, Any]) -> View:
    n = r["periods"]
    cohorts = r["cohorts"]
    option = _axis([str(k) for k in range(n)], [
        {"name": c["start"], "data": c["ltv"]} for c in cohorts if c["size"]][:10]
        + [{"name": "average", "data": r["average"]["ltv"], "lineStyle": {"width": 3}}])  # fmt: skip
    table = Table("cohorts", "table.cohorts", [
        Column("start", "col.cohort"), Column("size", "col.persons", INT), Column("buyers", "col.buyers", INT),
        Column("repeat_rate", "col.repeat_rate", RATIO), *[Column(f"ltv_{k}", f"LTV {k}", NUM, True) for k in range(n)]],
        [[c["start"], c["size"], c["buyers"], c["repeat_rate"], *c["ltv"]] for c in cohorts])  # fmt: skip
    a = r["average"]
    return View([Chart("ltv", option)], [table],
                [("col.persons", a["size"], INT), ("col.buyers", a["buyers"], INT), ("col.repeat_rate", a["repeat_rate"], RATIO)])  # fmt: skip


PRESENTERS: dict[str, Callable[..., View]] = {
    "trends": trends, "funnel": funnel, "retention": retention, "paths": paths, "sessions": sessions,
    "visitors": visitors, "distribution": distribution, "channels": channels, "content": content,
    "virality": virality, "ltv": ltv,
}  # fmt: skip


def present(kind: str, result: dict[str, Any], query: dict[str, Any], chart_type: str = "line",
            today: date | None = None) -> View:  # fmt: skip
    if kind == "trends":
        return trends(result, query, chart_type)
    if kind == "retention":
        return retention(result, query, today)
    return PRESENTERS[kind](result, query)


def csv_table(kind: str, result: dict[str, Any], query: dict[str, Any], table_id: str | None) -> Table:
    """The table a CSV link names (the first when none); retention's has counts and percentages."""
    if kind == "retention" and table_id in (None, "cohorts"):
        return retention_csv(result)
    view = present(kind, result, query)
    for table in view.tables:
        if table_id in (None, table.id):
            return table
    from userloop.errors import UserloopError

    raise UserloopError("unknown_table", f"no table {table_id!r} in this result", "table", status=404)
