"""Retention: of the persons who did ``start_event`` in a period, how many did ``return_event`` k
periods later.

A person's cohort is the period (project time zone; weeks start on Monday) of their first
``start_event`` inside the date range. ``retained[0]`` is the cohort size; ``retained[k]`` counts
the cohort's persons with at least one ``return_event`` in the k-th period after the cohort period
(those periods may run past ``date_to``). Every cohort period of the range is present, empty ones
included. Persons are counted after identity merges.

``average[k]`` is the weighted mean over the cohorts whose k-th period has begun (the sum of their
``retained[k]`` over the sum of their sizes, in percent); ``None`` where no such cohort has persons.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from userloop.errors import UserloopError
from userloop.query.buckets import add, buckets, label
from userloop.query.model import Breakdown, PropertyFilter, Query, check_filter, parse_breakdown
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

OTHER = "$other"
NONE = "$none"
MAX_PERIODS = 400
Period = Literal["day", "week", "month"]


class RetentionQuery(Query, tag="retention"):
    start_event: str
    return_event: str
    interval: Period = "day"
    periods: int = 8
    start_filters: list[PropertyFilter] = []  # only on start events (``filters`` apply to both)
    return_filters: list[PropertyFilter] = []  # only on return events
    breakdown: str | Breakdown | None = None  # a property of the person's first start event, or a person property

    def validate(self) -> None:
        super().validate()
        for name in ("start_event", "return_event"):
            if not getattr(self, name):
                raise UserloopError("event_required", f"{name} is empty", name)
        if not 1 <= self.periods <= MAX_PERIODS:
            raise UserloopError("bad_periods", f"periods must be between 1 and {MAX_PERIODS}", "periods")
        for which in ("start_filters", "return_filters"):
            for i, f in enumerate(getattr(self, which)):
                check_filter(f, f"{which}[{i}]")
        bd = parse_breakdown(self.breakdown)
        if bd is not None and (not bd.property or bd.limit < 1):
            raise UserloopError("bad_breakdown", "breakdown needs a property and a limit >= 1", "breakdown")


def retention_sql(ctx: Ctx, q: RetentionQuery) -> str:
    """Rows (cohort, bd, k, whole, n): persons of a cohort (and breakdown value) retained in period k.

    ``whole`` = 1 marks the rows over all breakdown values; k = 0 rows are the cohort sizes.
    """
    d = ctx.dialect
    starts = buckets(q.date_from, q.date_to, q.interval)
    start, end = ctx.range(q.date_from, q.date_to)
    # return events can only count from the period after the first cohort to the last cohort's last period
    first_period = ctx.instant(starts[0].date())
    ret_start = ctx.instant(add(starts[0], q.interval).date())
    ret_end = ctx.instant(add(starts[-1], q.interval, q.periods).date())
    bd = parse_breakdown(q.breakdown)
    first = events_sql(
        ctx, start, end, events=[q.start_event], filters=[*q.filters, *q.start_filters],
        person_properties=bd is not None and bd.type == "person",
    )
    back = events_sql(ctx, ret_start, ret_end, events=[q.return_event], filters=[*q.filters, *q.return_filters])
    bd_first = (
        d.arg_min(f"coalesce({prop(ctx, bd.property, bd.type)}, {ctx.p(NONE)})", "e.timestamp") if bd else "NULL"
    )
    cohort = d.trunc(q.interval, local_between(ctx, "t0", first_period, end))
    period = d.trunc(q.interval, local_between(ctx, "e.timestamp", first_period, ret_end))
    key = d.hash64("e.person_id")  # a 64-bit key: cheaper to group and join than the id text
    sql = (
        f"WITH s AS (SELECT {key} AS pid, min(e.timestamp) AS t0, {bd_first} AS bd FROM ({first}) e GROUP BY 1), "
        f"c0 AS (SELECT pid, {cohort} AS cohort, bd FROM s), "
    )
    if bd:
        sql += (
            f"top AS (SELECT bd FROM c0 GROUP BY bd ORDER BY count(*) DESC, bd LIMIT {ctx.p(bd.limit)}), "
            f"c AS (SELECT pid, cohort, CASE WHEN bd IN (SELECT bd FROM top) THEN bd ELSE {ctx.p(OTHER)} END AS bd "
            f"FROM c0), "
        )
    else:
        sql += "c AS (SELECT * FROM c0), "
    sql += (
        f"r AS (SELECT DISTINCT {key} AS pid, {period} AS rp FROM ({back}) e), "
        f"h AS (SELECT cohort, bd, 0 AS k FROM c UNION ALL "
        f"SELECT c.cohort, c.bd, {d.date_diff(q.interval, 'c.cohort', 'r.rp')} AS k FROM c JOIN r ON r.pid = c.pid "
        f"WHERE r.rp > c.cohort) "
        f"SELECT cohort, bd, k, grouping(bd) AS whole, count(*) AS n FROM h WHERE k < {ctx.p(q.periods)} "
        f"GROUP BY GROUPING SETS ((cohort, k), (cohort, k, bd))"
    )
    return sql


def _as_datetime(value: date | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.combine(value, datetime.min.time())


def _table(q: RetentionQuery, starts: list[datetime], counts: dict[tuple[datetime, int], int], now: datetime) -> dict[str, Any]:
    cohorts = []
    num = [0] * q.periods
    den = [0] * q.periods
    for b in starts:
        retained = [counts.get((b, k), 0) for k in range(q.periods)]
        size = retained[0]
        cohorts.append({
            "start": label(b, q.interval),
            "size": size,
            "retained": retained,
            "percentages": [100.0 * n / size if size else None for n in retained],
        })
        for k in range(q.periods):
            if add(b, q.interval, k) <= now:  # the k-th period has begun
                num[k] += retained[k]
                den[k] += size
    average = [100.0 * n / m if m else None for n, m in zip(num, den, strict=True)]
    return {"cohorts": cohorts, "average": average}


def run_retention(ctx: Ctx, q: RetentionQuery) -> dict[str, Any]:
    check_events(ctx, [q.start_event], "start_event")
    check_events(ctx, [q.return_event], "return_event")
    wanted = [*filter_properties(q.filters, "filters"), *filter_properties(q.start_filters, "start_filters"),
              *filter_properties(q.return_filters, "return_filters")]
    bd = parse_breakdown(q.breakdown)
    if bd:
        wanted.append((bd.property, bd.type, "breakdown"))
    check_properties(ctx, wanted)
    rows = ctx.fetch(retention_sql(ctx, q))
    starts = buckets(q.date_from, q.date_to, q.interval)
    now = datetime.now(ctx.tz).replace(tzinfo=None)
    whole: dict[tuple[datetime, int], int] = {}
    per_bd: dict[Any, dict[tuple[datetime, int], int]] = {}
    for r in rows:
        key = (_as_datetime(r["cohort"]), int(r["k"]))
        if r["whole"]:
            whole[key] = int(r["n"])
        else:
            per_bd.setdefault(r["bd"], {})[key] = int(r["n"])
    out: dict[str, Any] = {"interval": q.interval, "periods": q.periods, **_table(q, starts, whole, now)}
    if q.breakdown is not None:
        sizes = {v: sum(n for (_, k), n in cells.items() if k == 0) for v, cells in per_bd.items()}
        order = sorted(per_bd, key=lambda v: (v == OTHER, -sizes[v], str(v)))
        out["breakdown"] = [{"breakdown_value": v, **_table(q, starts, per_bd[v], now)} for v in order]
    return out


register(RetentionQuery, run_retention)
