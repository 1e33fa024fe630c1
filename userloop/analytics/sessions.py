"""Sessions (visits): a person's events split at ``timeout_minutes`` of inactivity.

One pass of window functions over the events ordered per person (``lag`` of the time: a gap of
``timeout_minutes`` or more starts a visit; a running sum numbers the visits), then GROUP BY visit.
A visit belongs to the interval (project time zone) of its first event and counts when that event
is inside the range; events up to ``FOLLOW_HOURS`` after the range are read so that visits may end
after it, and events up to ``timeout_minutes`` before it so that a visit already under way at the
start of the range is recognised (and left out). Contract: ``docs/analytics/sessions.md``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from userloop.errors import UserloopError
from userloop.query.buckets import buckets, label
from userloop.query.model import Breakdown, Query, parse_breakdown
from userloop.query.runner import register
from userloop.query.sql import Ctx, check_events, check_properties, events_sql, filter_properties, prop

DEFAULT_PAGEVIEWS = ("$pageview", "$screen")
FOLLOW_HOURS = 24  # how far past date_to a visit that starts in the range is followed
OTHER = "$other"
NONE = "$none"
METRICS = ("visits", "visitors", "pageviews", "bounces", "depth", "avg_duration_seconds", "bounce_rate")


class SessionsQuery(Query, tag="sessions"):
    interval: Literal["hour", "day", "week", "month"] = "day"
    timeout_minutes: float = 30
    pageview_events: list[str] | Literal["all"] | None = None
    page_property: str | list[str] = "path"
    pages_limit: int = 10
    breakdown: str | Breakdown | None = None

    def validate(self) -> None:
        super().validate()
        if not 0 < self.timeout_minutes <= 24 * 60:
            raise UserloopError("bad_timeout", "timeout_minutes must be above 0 and at most 1440", "timeout_minutes")
        if isinstance(self.pageview_events, list) and not self.pageview_events:
            raise UserloopError("bad_pageview_events", 'list at least one event, or use "all"', "pageview_events")
        if not _pages(self.page_property) or not all(_pages(self.page_property)):
            raise UserloopError("bad_page_property", "page_property needs a property name", "page_property")
        if not 1 <= self.pages_limit <= 1000:
            raise UserloopError("bad_limit", "pages_limit must be between 1 and 1000", "pages_limit")
        bd = parse_breakdown(self.breakdown)
        if bd is not None and (not bd.property or not 1 <= bd.limit <= 1000):
            raise UserloopError("bad_breakdown", "breakdown needs a property and a limit of 1..1000", "breakdown")
        if self.interval == "hour" and (self.date_to - self.date_from).days > 31:
            raise UserloopError("bad_interval", "hourly sessions cover at most 31 days", "interval")


def _pages(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def pageview_events(ctx: Ctx, q: SessionsQuery) -> list[str] | None:
    """The events counted as page views; None = every event.

    Default: ``$pageview`` and ``$screen`` when the project has ever recorded either, else every
    event (an imported log such as Taobao's has no page-view event: each action is a view).
    """
    if q.pageview_events == "all":
        return None
    if q.pageview_events is not None:
        check_events(ctx, q.pageview_events, "pageview_events[{i}]")
        return sorted(set(q.pageview_events))
    names = list(DEFAULT_PAGEVIEWS)
    rows = ctx.store.query(
        f"SELECT 1 AS x FROM events WHERE project_id = ? AND event IN ({', '.join('?' for _ in names)}) LIMIT 1",
        [ctx.project.id, *names],
    )
    return names if rows else None


def visits_sql(ctx: Ctx, q: SessionsQuery, pageviews: list[str] | None, bd: Breakdown | None) -> str:
    """One row per visit that starts in the range: person, start, first/last micros, page views,
    entry/exit page (of its first/last page view), breakdown value (of its first event)."""
    d = ctx.dialect
    start, end = ctx.range(q.date_from, q.date_to)
    timeout = timedelta(minutes=q.timeout_minutes)
    base = events_sql(
        ctx, start - timeout, end + timedelta(hours=FOLLOW_HOURS), filters=q.filters,
        person_properties=bd is not None and bd.type == "person",
    )
    is_pv = "TRUE" if pageviews is None else f"e.event IN ({', '.join(ctx.p(n) for n in pageviews)})"
    page = ", ".join(prop(ctx, name) for name in _pages(q.page_property))
    bd_expr = f"coalesce({prop(ctx, bd.property, bd.type)}, {ctx.p(NONE)})" if bd else "NULL"
    # persons by a 64-bit key of the merged person id (partitioning and sorting by it is about a
    # third cheaper than by the id's text; two persons would need the same key: ~n^2 / 2^65).
    # count(*) when every event is a view: DuckDB 2.0 derives wrong statistics for the sum of a
    # constant (sum(CASE WHEN TRUE THEN 1 ...)) and then folds "pvs = 1" to false
    pvs = "count(*)" if pageviews is None else "sum(CASE WHEN pv THEN 1 ELSE 0 END)"
    gap = ctx.p(round(timeout.total_seconds() * 1_000_000))
    none = ctx.p(NONE)
    return (
        f"WITH ev AS (SELECT {d.hash64('e.person_id')} AS pid, {d.epoch_micros('e.timestamp')} AS us, e.timestamp AS ts, "
        f"e.message_id AS mid, {is_pv} AS pv, coalesce({page}, {none}) AS page, {bd_expr} AS bd FROM ({base}) e), "
        # a gap of exactly the timeout starts a new visit; the first event of a person too (lag NULL)
        f"g AS (SELECT *, row_number() OVER w AS rn, CASE WHEN us - lag(us) OVER w < {gap} THEN 0 ELSE 1 END AS new "
        f"FROM ev WINDOW w AS (PARTITION BY pid ORDER BY us, mid)), "
        f"s AS (SELECT *, sum(new) OVER (PARTITION BY pid ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) "
        f"AS vid FROM g) "
        f"SELECT pid, min(ts) AS start_ts, min(us) AS first_us, max(us) AS last_us, "
        f"{pvs} AS pvs, "
        f"{d.arg_min('page', 'CASE WHEN pv THEN rn END')} AS entry, "
        f"{d.arg_max('page', 'CASE WHEN pv THEN rn END')} AS exit, "
        f"{d.arg_min('bd', 'rn') if bd else 'NULL'} AS bd "
        f"FROM s GROUP BY pid, vid "
        f"HAVING min(us) >= {ctx.p(_micros(start))} AND min(us) < {ctx.p(_micros(end))}"
    )


def _micros(t: datetime) -> int:
    return round(t.timestamp() * 1_000_000)


def sessions_sql(ctx: Ctx, q: SessionsQuery, pageviews: list[str] | None) -> str:
    """Metrics per (bucket, breakdown value) and per breakdown value over the range, then the top
    entry and exit pages per breakdown value, in one result (``part`` tells the rows apart)."""
    d = ctx.dialect
    bd = parse_breakdown(q.breakdown)
    sql = f"WITH v AS ({visits_sql(ctx, q, pageviews, bd)})"
    source = "v"
    if bd:
        sql += (
            # row_number() rather than LIMIT: DuckDB 2.0 can drop a LIMIT above the LEFT JOIN of
            # events_sql when person_overrides has no rows
            f", top AS (SELECT bd FROM (SELECT bd, row_number() OVER (ORDER BY count(*) DESC, bd) AS r "
            f"FROM v GROUP BY bd) t WHERE r <= {ctx.p(bd.limit)})"
            f", y AS (SELECT pid, start_ts, first_us, last_us, pvs, entry, exit, "
            f"CASE WHEN bd IN (SELECT bd FROM top) THEN bd ELSE {ctx.p(OTHER)} END AS bd FROM v)"
        )
        source = "y"
    bucket = d.trunc(q.interval, ctx.local("start_ts"))
    sql += (
        f", x AS (SELECT *, {bucket} AS b FROM {source})"
        f", m AS (SELECT b, bd, grouping(b) AS whole, count(*) AS visits, count(DISTINCT pid) AS visitors, "
        f"sum(pvs) AS pageviews, sum(CASE WHEN pvs = 1 THEN 1 ELSE 0 END) AS bounces, "
        f"sum(last_us - first_us) AS duration_us FROM x GROUP BY GROUPING SETS ((b, bd), (bd)))"
    )
    limit = ctx.p(q.pages_limit)
    for part, col in (("entry", "entry"), ("exit", "exit")):
        sql += (
            f", {part}_pages AS (SELECT bd, {col} AS page, count(*) AS visits, "
            f"sum(CASE WHEN pvs = 1 THEN 1 ELSE 0 END) AS bounces, "
            f"row_number() OVER (PARTITION BY bd ORDER BY count(*) DESC, {col}) AS r "
            f"FROM x WHERE {col} IS NOT NULL GROUP BY bd, {col})"
        )
    cols = "b, bd, whole, visits, visitors, pageviews, bounces, duration_us"
    return (
        f"{sql} SELECT 'metrics' AS part, {cols}, NULL AS page, NULL AS r FROM m "
        f"UNION ALL SELECT 'entry', NULL, bd, NULL, visits, NULL, NULL, bounces, NULL, page, r FROM entry_pages "
        f"WHERE r <= {limit} "
        f"UNION ALL SELECT 'exit', NULL, bd, NULL, visits, NULL, NULL, bounces, NULL, page, r FROM exit_pages "
        f"WHERE r <= {limit}"
    )


def _metrics(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"visits": 0, "visitors": 0, "pageviews": 0, "bounces": 0, "depth": 0, "avg_duration_seconds": 0,
                "bounce_rate": 0}  # fmt: skip
    visits = int(row["visits"])
    return {
        "visits": visits,
        "visitors": int(row["visitors"]),
        "pageviews": int(row["pageviews"]),
        "bounces": int(row["bounces"]),
        "depth": int(row["pageviews"]) / visits,
        "avg_duration_seconds": int(row["duration_us"]) / visits / 1_000_000,
        "bounce_rate": int(row["bounces"]) / visits,
    }


def _bucket_key(b: Any) -> datetime:
    return b if isinstance(b, datetime) else datetime.combine(b, datetime.min.time())


def run_sessions(ctx: Ctx, q: SessionsQuery) -> dict[str, Any]:
    wanted = filter_properties(q.filters, "filters")
    names = _pages(q.page_property)
    wanted += [(n, "event", "page_property" if isinstance(q.page_property, str) else f"page_property[{i}]")
               for i, n in enumerate(names)]  # fmt: skip
    bd = parse_breakdown(q.breakdown)
    if bd:
        wanted.append((bd.property, bd.type, "breakdown"))
    check_properties(ctx, wanted)
    pageviews = pageview_events(ctx, q)
    rows = ctx.fetch(sessions_sql(ctx, q, pageviews))
    starts = buckets(q.date_from, q.date_to, q.interval)
    cells: dict[Any, dict[datetime, dict[str, Any]]] = {}
    totals: dict[Any, dict[str, Any]] = {}
    pages: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for r in rows:
        if r["part"] == "metrics":
            if r["whole"]:
                totals[r["bd"]] = r
            else:
                cells.setdefault(r["bd"], {})[_bucket_key(r["b"])] = r
        else:
            pages.setdefault((r["part"], r["bd"]), []).append(r)
    values = list(totals) or ([None] if not q.breakdown else [])
    order = sorted(values, key=lambda v: (v == OTHER, -(totals[v]["visits"] if v in totals else 0), str(v)))
    results = []
    for v in order:
        per = [_metrics(cells.get(v, {}).get(b)) for b in starts]
        total = _metrics(totals.get(v))
        visits = total["visits"]
        entry = sorted(pages.get(("entry", v), []), key=lambda r: r["r"])
        exits = sorted(pages.get(("exit", v), []), key=lambda r: r["r"])
        results.append(
            {
                "breakdown_value": v,
                "dates": [label(b, q.interval) for b in starts],
                **{m: [p[m] for p in per] for m in METRICS},
                "total": total,
                "entry_pages": [
                    {"page": r["page"], "visits": int(r["visits"]), "share": int(r["visits"]) / visits,
                     "bounces": int(r["bounces"]), "bounce_rate": int(r["bounces"]) / int(r["visits"])}
                    for r in entry
                ],  # fmt: skip
                "exit_pages": [
                    {"page": r["page"], "visits": int(r["visits"]), "share": int(r["visits"]) / visits} for r in exits
                ],
            }
        )
    return {
        "interval": q.interval,
        "timeout_minutes": q.timeout_minutes,
        "pageview_events": "all" if pageviews is None else pageviews,
        "page_property": q.page_property,
        "results": results,
    }


register(SessionsQuery, run_sessions)
