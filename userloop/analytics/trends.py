"""Trends: counts, unique persons, per-person and property sums/averages per interval.

``total`` of ``uv`` counts distinct persons over the whole range (a GROUPING SET), not the sum of
the intervals. Persons are counted by a 64-bit hash of their id, as funnel and retention do (two
persons collide with probability about n^2 / 2^65: 3e-8 for a million persons). Every interval of the range is present, zeros included.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal

import msgspec

from userloop.errors import UserloopError
from userloop.query.buckets import buckets, label
from userloop.query.model import Breakdown, Interval, PropertyFilter, Query, check_filter, parse_breakdown
from userloop.query.runner import register
from userloop.query.sql import (
    Ctx,
    check_events,
    check_properties,
    events_sql,
    filter_properties,
    local_between,
    prop,
)

Math = Literal["total", "uv", "per_user", "sum", "avg", "min", "max"]
OTHER = "$other"
NONE = "$none"


class Series(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    event: str
    math: Math = "total"
    property: str | None = None
    filters: list[PropertyFilter] = []
    name: str | None = None


class TrendsQuery(Query, tag="trends"):
    series: list[Series]
    interval: Interval = "day"
    breakdown: str | Breakdown | None = None
    compare: bool = False

    def validate(self) -> None:
        super().validate()
        if not self.series:
            raise UserloopError("series_empty", "add at least one series", "series")
        for i, s in enumerate(self.series):
            if s.math in ("sum", "avg", "min", "max") and not s.property:
                raise UserloopError("property_required", f"math {s.math!r} needs a property", f"series[{i}].property")
            for j, f in enumerate(s.filters):
                check_filter(f, f"series[{i}].filters[{j}]")
        if self.interval == "hour" and (self.date_to - self.date_from).days > 31:
            raise UserloopError("bad_interval", "hourly trends cover at most 31 days", "interval")


def trends_sql(ctx: Ctx, q: TrendsQuery, s: Series, date_from: date, date_to: date) -> str:
    """One series: per (bucket, breakdown value) and per breakdown value over the whole range."""
    start, end = ctx.range(date_from, date_to)
    bd = parse_breakdown(q.breakdown)
    base = events_sql(
        ctx, start, end, events=[s.event], filters=[*q.filters, *s.filters],
        person_properties=bd is not None and bd.type == "person",
    )
    d = ctx.dialect
    value = d.number(prop(ctx, s.property)) if s.property else "NULL"
    bd_expr = f"coalesce({prop(ctx, bd.property, bd.type)}, {ctx.p(NONE)})" if bd else "NULL"
    sql = (
        f"WITH x AS (SELECT {d.trunc(q.interval, local_between(ctx, 'e.timestamp', start, end))} AS b, {bd_expr} AS bd, "
        f"{d.hash64('e.person_id')} AS pid, {value} AS v FROM ({base}) e)"
    )
    source = "x"
    if bd:
        sql += (
            f", top AS (SELECT bd FROM x GROUP BY bd ORDER BY count(*) DESC, bd LIMIT {ctx.p(bd.limit)})"
            f", y AS (SELECT b, CASE WHEN bd IN (SELECT bd FROM top) THEN bd ELSE {ctx.p(OTHER)} END AS bd, pid, v FROM x)"
        )
        source = "y"
    return (
        f"{sql} SELECT b, bd, grouping(b) AS whole, count(*) AS n, count(DISTINCT pid) AS u, "
        f"sum(v) AS s, count(v) AS nv, min(v) AS lo, max(v) AS hi "
        f"FROM {source} GROUP BY GROUPING SETS ((b, bd), (bd))"
    )


def _value(math: str, row: dict[str, Any] | None) -> float | int:
    if row is None:
        return 0
    n, u, s, nv = row["n"], row["u"], row["s"], row["nv"]
    if math == "total":
        return int(n)
    if math == "uv":
        return int(u)
    if math == "per_user":
        return n / u if u else 0
    if math == "sum":
        return float(s or 0)
    if math == "avg":
        return float(s) / nv if nv else 0
    if math == "min":
        return float(row["lo"]) if row["lo"] is not None else 0
    return float(row["hi"]) if row["hi"] is not None else 0


def _series_results(
    ctx: Ctx, q: TrendsQuery, s: Series, date_from: date, date_to: date, tag: str,
    scans: dict[Any, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    # every math is computed by the same query (count, distinct persons, sum, count, min, max of
    # the property), so series that differ only in math share one scan of the events
    key = (s.event, s.property, msgspec.json.encode(s.filters), date_from, date_to)
    rows = scans.get(key)
    if rows is None:
        rows = scans[key] = ctx.fetch(trends_sql(ctx, q, s, date_from, date_to))
    starts = buckets(date_from, date_to, q.interval)
    by_bd: dict[Any, dict[Any, dict[str, Any]]] = {}
    totals: dict[Any, dict[str, Any]] = {}
    for r in rows:
        if r["whole"]:
            totals[r["bd"]] = r
        else:
            b = r["b"]
            by_bd.setdefault(r["bd"], {})[b if isinstance(b, datetime) else datetime.combine(b, datetime.min.time())] = r
    values = list(totals) or ([None] if not q.breakdown else [])
    order = sorted(values, key=lambda v: (v == OTHER, -(totals[v]["n"] if v in totals else 0), str(v)))
    out = []
    for v in order:
        cells = by_bd.get(v, {})
        name = s.name or (s.event if s.math == "total" else f"{s.event} ({s.math}{'' if not s.property else ' ' + s.property})")
        out.append(
            {
                "label": name if v is None else f"{name} - {v}",
                "event": s.event,
                "math": s.math,
                "breakdown_value": v,
                "compare": tag,
                "dates": [label(b, q.interval) for b in starts],
                "values": [_value(s.math, cells.get(b)) for b in starts],
                "total": _value(s.math, totals.get(v)),
            }
        )
    return out


def run_trends(ctx: Ctx, q: TrendsQuery) -> dict[str, Any]:
    check_events(ctx, [s.event for s in q.series], "series[{i}].event")
    wanted = filter_properties(q.filters, "filters")
    for i, s in enumerate(q.series):
        if s.property:
            wanted.append((s.property, "event", f"series[{i}].property"))
        wanted += filter_properties(s.filters, f"series[{i}].filters")
    bd = parse_breakdown(q.breakdown)
    if bd:
        wanted.append((bd.property, bd.type, "breakdown"))
    check_properties(ctx, wanted)
    results = []
    scans: dict[Any, list[dict[str, Any]]] = {}
    for s in q.series:
        results += _series_results(ctx, q, s, q.date_from, q.date_to, "current", scans)
    if q.compare:
        days = (q.date_to - q.date_from).days + 1
        prev_to = q.date_from - timedelta(days=1)
        prev_from = prev_to - timedelta(days=days - 1)
        for s in q.series:
            results += _series_results(ctx, q, s, prev_from, prev_to, "previous", scans)
    return {"interval": q.interval, "results": results}


register(TrendsQuery, run_trends)
