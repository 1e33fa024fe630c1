"""LTV: revenue per person by acquisition cohort over N periods, and the repeat purchase rate.

A person is acquired at their first-ever event (all time, not only the range), or their first
``cohort_event`` when given; the cohort is that instant's period (project time zone; weeks start on
Monday), and the cohorts are the periods of the date range. Revenue is the sum of
``revenue_property`` over the person's ``revenue_event`` events at or after the acquisition, in the
cohort period (period 0) and the N-1 periods after it (which may run past ``date_to``).
``ltv[k]`` is the cohort's cumulative revenue to the end of period k per cohort person. Buyers have
at least one revenue event in those N periods, repeat buyers at least two. Persons are counted after
identity merges. Everything is aggregated in SQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, Literal

from userloop.errors import UserloopError
from userloop.query.buckets import add, buckets, label
from userloop.query.model import Query
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

Period = Literal["day", "week", "month"]
MAX_PERIODS = 400
ALL_TIME = datetime(1, 1, 1, tzinfo=UTC)


class LTVQuery(Query, tag="ltv"):
    revenue_event: str
    revenue_property: str = "revenue"
    cohort_event: str | None = None  # acquisition: the first of this event; None = the first of any event
    interval: Period = "month"
    periods: int = 12

    def validate(self) -> None:
        super().validate()
        if not self.revenue_event:
            raise UserloopError("event_required", "revenue_event is empty", "revenue_event")
        if not self.revenue_property:
            raise UserloopError("property_required", "revenue_property is empty", "revenue_property")
        if self.cohort_event == "":
            raise UserloopError("event_required", "cohort_event is empty (leave it out for any event)", "cohort_event")
        if not 1 <= self.periods <= MAX_PERIODS:
            raise UserloopError("bad_periods", f"periods must be between 1 and {MAX_PERIODS}", "periods")


def ltv_sql(ctx: Ctx, q: LTVQuery) -> str:
    """Rows (part, cohort, k, x, y): part 's' = cohort sizes (x), 'r' = revenue of period k (x),
    'b' = buyers (x) and repeat buyers (y) per cohort."""
    d = ctx.dialect
    starts = buckets(q.date_from, q.date_to, q.interval)
    start, end = ctx.range(q.date_from, q.date_to)
    rev_end = ctx.instant(add(starts[-1], q.interval, q.periods).date())
    first = events_sql(ctx, ALL_TIME, end, events=[q.cohort_event] if q.cohort_event else None, filters=q.filters)
    revenue = events_sql(ctx, start, rev_end, events=[q.revenue_event], filters=q.filters)
    value = d.number(prop(ctx, q.revenue_property))
    key = d.hash64("e.person_id")  # 64-bit person keys, as in retention
    cohort = d.trunc(q.interval, local_between(ctx, "t0", start, end))
    period = d.trunc(q.interval, local_between(ctx, "e.timestamp", start, rev_end))
    return (
        f"WITH f AS (SELECT {key} AS pid, min(e.timestamp) AS t0 FROM ({first}) e GROUP BY 1), "
        f"c AS (SELECT pid, t0, {cohort} AS cohort FROM f WHERE t0 >= {ctx.p(start)}), "
        f"r AS (SELECT {key} AS pid, e.timestamp AS ts, {period} AS rp, {value} AS v FROM ({revenue}) e), "
        f"j AS (SELECT * FROM (SELECT c.pid, c.cohort, {d.date_diff(q.interval, 'c.cohort', 'r.rp')} AS k, r.v "
        f"FROM c JOIN r ON r.pid = c.pid AND r.ts >= c.t0) WHERE k < {ctx.p(q.periods)}), "
        f"per AS (SELECT pid, cohort, count(*) AS n FROM j GROUP BY pid, cohort) "
        f"SELECT 's' AS part, cohort, NULL AS k, CAST(count(*) AS DOUBLE) AS x, NULL AS y FROM c GROUP BY cohort "
        f"UNION ALL SELECT 'r', cohort, k, CAST(coalesce(sum(v), 0) AS DOUBLE), NULL FROM j GROUP BY cohort, k "
        f"UNION ALL SELECT 'b', cohort, NULL, CAST(count(*) AS DOUBLE), "
        f"CAST(sum(CASE WHEN n >= 2 THEN 1 ELSE 0 END) AS DOUBLE) FROM per GROUP BY cohort"
    )


def _as_datetime(value: date | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.combine(value, datetime.min.time())


def run_ltv(ctx: Ctx, q: LTVQuery) -> dict[str, Any]:
    check_events(ctx, [q.revenue_event], "revenue_event")
    if q.cohort_event:
        check_events(ctx, [q.cohort_event], "cohort_event")
    check_properties(ctx, [*filter_properties(q.filters, "filters"), (q.revenue_property, "event", "revenue_property")])
    rows = ctx.fetch(ltv_sql(ctx, q))
    sizes: dict[datetime, int] = {}
    revenue: dict[tuple[datetime, int], float] = {}
    buyers: dict[datetime, tuple[int, int]] = {}
    for r in rows:
        b = _as_datetime(r["cohort"])
        if r["part"] == "s":
            sizes[b] = int(r["x"])
        elif r["part"] == "r":
            revenue[(b, int(r["k"]))] = float(r["x"])
        else:
            buyers[b] = (int(r["x"]), int(r["y"]))
    now = datetime.now(ctx.tz).replace(tzinfo=None)
    cohorts = []
    num = [0.0] * q.periods
    den = [0] * q.periods
    for b in buckets(q.date_from, q.date_to, q.interval):
        size = sizes.get(b, 0)
        per = [revenue.get((b, k), 0.0) for k in range(q.periods)]
        cumulative = []
        total = 0.0
        for x in per:
            total += x
            cumulative.append(total)
        n_buyers, n_repeat = buyers.get(b, (0, 0))
        cohorts.append({
            "start": label(b, q.interval),
            "size": size,
            "revenue": per,
            "cumulative_revenue": cumulative,
            "ltv": [x / size if size else None for x in cumulative],
            "buyers": n_buyers,
            "repeat_buyers": n_repeat,
            "repeat_rate": n_repeat / n_buyers if n_buyers else None,
        })
        for k in range(q.periods):
            if add(b, q.interval, k) <= now:  # the k-th period has begun
                num[k] += cumulative[k]
                den[k] += size
    all_buyers = sum(c["buyers"] for c in cohorts)
    all_repeat = sum(c["repeat_buyers"] for c in cohorts)
    return {
        "interval": q.interval,
        "periods": q.periods,
        "revenue_event": q.revenue_event,
        "revenue_property": q.revenue_property,
        "cohort_event": q.cohort_event,
        "cohorts": cohorts,
        "average": {
            "size": sum(c["size"] for c in cohorts),
            "ltv": [x / n if n else None for x, n in zip(num, den, strict=True)],
            "buyers": all_buyers,
            "repeat_buyers": all_repeat,
            "repeat_rate": all_repeat / all_buyers if all_buyers else None,
        },
    }


register(LTVQuery, run_ltv)
