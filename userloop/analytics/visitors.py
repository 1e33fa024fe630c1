"""Visitors: new vs returning persons per interval, and DAU / WAU / MAU with stickiness per day.

Activity is any event, or ``event`` when given (``filters`` apply too). A person is **new** in an
interval when their first-ever activity (all time, not only the range) falls in that interval, and
**returning** when active in it but first seen in an earlier one. DAU / WAU / MAU on day D count the
persons active on D / in the 7 days / in the 30 days ending on D (project time zone); stickiness is
DAU / MAU. Persons are counted after identity merges.

One statement: the distinct (person, local day) pairs of the activity from the earliest day needed
(29 days before ``date_from``, or the start of its interval) to ``date_to`` give everything, plus
the persons active before that day (who cannot be new).

Rolling distinct counts without a join of days x persons: for each person's active day n (a day
number) with the previous active day p, the person's coverage of a W-day window grows by the days
[max(n, p + W), n + W - 1], which never overlaps what p covered; +1 at the first of those days and
-1 after the last, summed over persons and accumulated over days, is the rolling count.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from userloop.query.buckets import buckets, label
from userloop.query.model import Query
from userloop.query.runner import register
from userloop.query.sql import (
    Ctx,
    check_events,
    check_properties,
    events_sql,
    filter_properties,
    local_between,
)

Period = Literal["day", "week", "month"]
WINDOWS = {"dau": 1, "wau": 7, "mau": 30}
ALL_TIME = datetime(1, 1, 1, tzinfo=UTC)


class VisitorsQuery(Query, tag="visitors"):
    interval: Period = "day"
    event: str | None = None  # the activity; None = any event


def _day(value: date | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.combine(value, datetime.min.time())


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def visitors_sql(ctx: Ctx, q: VisitorsQuery) -> str:
    """Rows of two parts: ``part`` 'b' = (b, whole, active, new) per interval start ``b`` and over
    the whole range (whole = 1); 'r' = (n, dau, wau, mau), the rolling counts from day number n on
    (n = 0 is 29 days before ``date_from``) at every day where one of them changes."""
    d = ctx.dialect
    end = ctx.instant(q.date_to + timedelta(days=1))
    origin = q.date_from - timedelta(days=WINDOWS["mau"] - 1)
    first_day = min(origin, buckets(q.date_from, q.date_to, q.interval)[0].date())
    lo = ctx.instant(first_day)
    events = [q.event] if q.event else None
    recent = events_sql(ctx, lo, end, events=events, filters=q.filters)
    older = events_sql(ctx, ALL_TIME, lo, events=events, filters=q.filters)
    day = d.trunc("day", local_between(ctx, "e.timestamp", lo, end))
    parts = []
    for name, w in WINDOWS.items():
        plus = ", ".join(f"{1 if n == name else 0} AS {n}" for n in WINDOWS)
        minus = ", ".join(f"{-1 if n == name else 0} AS {n}" for n in WINDOWS)
        grow = "n" if w == 1 else f"CASE WHEN prev IS NULL OR prev + {w} <= n THEN n ELSE prev + {w} END"
        parts.append(f"SELECT {grow} AS pos, {plus} FROM g")
        parts.append(f"SELECT n + {w} AS pos, {minus} FROM g")
    origin_ts = ctx.p(_midnight(origin))
    from_ts = ctx.p(_midnight(q.date_from))
    key = d.hash64("e.person_id")
    # (person, interval) pairs in the range; pd is already distinct per day
    per_interval = (
        f"SELECT day AS b FROM pd WHERE day >= {from_ts}" if q.interval == "day"
        else f"SELECT DISTINCT pid, {d.trunc(q.interval, 'day')} AS b FROM pd WHERE day >= {from_ts}"
    )
    return (
        f"WITH pd AS (SELECT DISTINCT {key} AS pid, {day} AS day FROM ({recent}) e), "
        f"seen AS (SELECT DISTINCT {key} AS pid FROM ({older}) e), "
        # fb: the interval of the first activity; fr: of the first activity inside the range
        f"f AS (SELECT pid, {d.trunc(q.interval, 'min(day)')} AS fb, "
        f"{d.trunc(q.interval, f'min(CASE WHEN day >= {from_ts} THEN day END)')} AS fr FROM pd GROUP BY pid), "
        f"a AS (SELECT b, count(*) AS active FROM ({per_interval}) GROUP BY b), "
        f"nw AS (SELECT fr AS b, count(*) AS new FROM f WHERE fb = fr AND pid NOT IN (SELECT pid FROM seen) GROUP BY fr), "
        f"g AS (SELECT n, lag(n) OVER (PARTITION BY pid ORDER BY n) AS prev FROM "
        f"(SELECT pid, {d.date_diff('day', origin_ts, 'day')} AS n FROM pd WHERE day >= {origin_ts})), "
        f"dl AS ({' UNION ALL '.join(parts)}), "
        f"roll AS (SELECT pos, "
        + ", ".join(f"sum(sum({n})) OVER (ORDER BY pos) AS {n}" for n in WINDOWS)
        + f" FROM dl WHERE pos < {ctx.p((q.date_to - origin).days + 1)} GROUP BY pos) "
        f"SELECT 'b' AS part, a.b, 0 AS whole, a.active, coalesce(nw.new, 0) AS new, "
        f"NULL AS n, NULL AS dau, NULL AS wau, NULL AS mau FROM a LEFT JOIN nw ON nw.b = a.b "
        f"UNION ALL SELECT 'b', NULL, 1, (SELECT count(fr) FROM f), (SELECT coalesce(sum(new), 0) FROM nw), "
        f"NULL, NULL, NULL, NULL "
        f"UNION ALL SELECT 'r', NULL, NULL, NULL, NULL, pos, dau, wau, mau FROM roll"
    )


def run_visitors(ctx: Ctx, q: VisitorsQuery) -> dict[str, Any]:
    if q.event:
        check_events(ctx, [q.event], "event")
    check_properties(ctx, filter_properties(q.filters, "filters"))
    rows = ctx.fetch(visitors_sql(ctx, q))
    by_b = {_day(r["b"]): r for r in rows if r["part"] == "b" and not r["whole"]}
    whole = next((r for r in rows if r["part"] == "b" and r["whole"]), None)
    starts = buckets(q.date_from, q.date_to, q.interval)
    active = [int(by_b[b]["active"]) if b in by_b else 0 for b in starts]
    new = [int(by_b[b]["new"]) if b in by_b else 0 for b in starts]
    total_active = int(whole["active"]) if whole else 0
    total_new = int(whole["new"] or 0) if whole else 0

    # the rolling counts change only at the returned day numbers: carry each value forward
    offset = WINDOWS["mau"] - 1
    days = (q.date_to - q.date_from).days + 1
    series: dict[str, list[int]] = {n: [0] * days for n in WINDOWS}
    current = dict.fromkeys(WINDOWS, 0)
    changes = sorted((r for r in rows if r["part"] == "r"), key=lambda r: r["n"])
    j = 0
    for i in range(offset + days):
        while j < len(changes) and changes[j]["n"] <= i:
            current = {n: int(changes[j][n]) for n in WINDOWS}
            j += 1
        if i >= offset:
            for n in WINDOWS:
                series[n][i - offset] = current[n]
    return {
        "interval": q.interval,
        "event": q.event,
        "dates": [label(b, q.interval) for b in starts],
        "active": active,
        "new": new,
        "returning": [a - n for a, n in zip(active, new, strict=True)],
        "total": {"active": total_active, "new": total_new, "returning": total_active - total_new},
        "daily": {
            "dates": [(q.date_from + timedelta(days=i)).isoformat() for i in range(days)],
            **series,
            "stickiness": [dau / mau if mau else 0.0 for dau, mau in zip(series["dau"], series["mau"], strict=True)],
        },
    }


register(VisitorsQuery, run_visitors)
