"""Distributions over persons: how many events each person did, the sum of a property per person,
or the time from a person's first event A to the first event B after it.

Each person (after identity merges) gives one value; the result is a histogram of those values
(bins: lower edges, the last bin open) with the count below the first edge, and min / max / mean /
sum and interpolated percentiles (pandas' default). Everything is aggregated in SQL.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any, Literal

import msgspec

from userloop.errors import UserloopError
from userloop.query.model import Query
from userloop.query.runner import register
from userloop.query.sql import Ctx, check_events, check_properties, events_sql, filter_properties, prop

Measure = Literal["count", "sum", "time_between"]
MAX_BINS = 200
DEFAULT_PERCENTILES = [25.0, 50.0, 75.0, 90.0, 95.0, 99.0]

# count: 1, 2, 3, 4, 5-9, 10-19, 20-49, 50-99, 100-199, ...
COUNT_BINS = [1.0, 2.0, 3.0, 4.0] + [m * 10.0**k for k in range(10) for m in (5, 10, 20)][:-1]
# sum: 0-1, 1-2, 2-5, 5-10, ... (negative sums are counted as "below")
SUM_BINS = [0.0] + [m * 10.0**k for k in range(13) for m in (1, 2, 5)]
# time between, seconds: 0-10s, 10-30s, 1m, 2m, 5m, 10m, 30m, 1h, 2h, 3h, 6h, 12h, 1d, 2d, 3d, 7d, 14d, 30d, 60d, 90d+
TIME_BINS = [0.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0,
             86400.0, 172800.0, 259200.0, 604800.0, 1209600.0, 2592000.0, 5184000.0, 7776000.0]


class DistributionQuery(Query, tag="distribution"):
    measure: Measure = "count"
    event: str | None = None  # count and sum: the event counted / summed
    property: str | None = None  # sum: the numeric event property summed per person
    from_event: str | None = None  # time_between: A (the person's first in the range)
    to_event: str | None = None  # time_between: B (the first at or after A)
    window_seconds: float | None = None  # time_between: B at most this long after A (may pass date_to)
    bins: list[float] | None = None  # lower edges, strictly increasing; the last bin is open
    percentiles: list[float] = msgspec.field(default_factory=lambda: list(DEFAULT_PERCENTILES))

    def validate(self) -> None:
        super().validate()
        needed = {"count": ("event",), "sum": ("event", "property"), "time_between": ("from_event", "to_event")}
        unused = {
            "count": ("property", "from_event", "to_event", "window_seconds"),
            "sum": ("from_event", "to_event", "window_seconds"),
            "time_between": ("event", "property"),
        }
        for name in needed[self.measure]:
            if not getattr(self, name):
                raise UserloopError("field_required", f"measure {self.measure!r} needs {name}", name)
        for name in unused[self.measure]:
            if getattr(self, name) is not None:
                raise UserloopError("unused_field", f"{name} is not used by measure {self.measure!r}", name)
        if self.window_seconds is not None and not self.window_seconds > 0:
            raise UserloopError("bad_window", "window_seconds must be above 0", "window_seconds")
        if self.bins is not None:
            if not 1 <= len(self.bins) <= MAX_BINS:
                raise UserloopError("bad_bins", f"bins needs 1 to {MAX_BINS} lower edges", "bins")
            if any(not math.isfinite(b) for b in self.bins) or any(
                a >= b for a, b in zip(self.bins, self.bins[1:], strict=False)
            ):
                raise UserloopError("bad_bins", "bins must be finite and strictly increasing", "bins")
        if not 1 <= len(self.percentiles) <= 20 or any(not 0 <= p <= 100 for p in self.percentiles):
            raise UserloopError("bad_percentiles", "percentiles: 1 to 20 numbers from 0 to 100", "percentiles")


def _edges(q: DistributionQuery) -> list[float]:
    if q.bins is not None:
        return [float(b) for b in q.bins]
    return {"count": COUNT_BINS, "sum": SUM_BINS, "time_between": TIME_BINS}[q.measure]


def values_sql(ctx: Ctx, q: DistributionQuery) -> str:
    """One row per person: ``v`` (NULL for time_between without B)."""
    d = ctx.dialect
    start, end = ctx.range(q.date_from, q.date_to)
    if q.measure != "time_between":
        assert q.event
        base = events_sql(ctx, start, end, events=[q.event], filters=q.filters)
        value = "count(*)" if q.measure == "count" else f"coalesce(sum({d.number(prop(ctx, q.property or ''))}), 0)"
        return f"SELECT {d.hash64('e.person_id')} AS pid, {value} AS v FROM ({base}) e GROUP BY 1"
    assert q.from_event and q.to_event
    b_end = end if q.window_seconds is None else end + timedelta(seconds=q.window_seconds)
    a = events_sql(ctx, start, end, events=[q.from_event], filters=q.filters)
    b = events_sql(ctx, start, b_end, events=[q.to_event], filters=q.filters)
    gap = f"{d.epoch_micros('b.timestamp')} - {d.epoch_micros('a.ta')}"
    within = f" AND {gap} <= {ctx.p(round(q.window_seconds * 1e6))}" if q.window_seconds is not None else ""
    if q.from_event == q.to_event:  # the next occurrence: another event at the same instant, or the first later one
        tb = (
            "CASE WHEN sum(CASE WHEN b.timestamp = a.ta THEN 1 ELSE 0 END) >= 2 THEN a.ta "
            "ELSE min(CASE WHEN b.timestamp > a.ta THEN b.timestamp END) END"
        )
    else:
        tb = "min(b.timestamp)"
    return (
        f"SELECT pid, ({d.epoch_micros('tb')} - {d.epoch_micros('ta')}) / 1e6 AS v FROM ("
        f"SELECT a.pid, a.ta, {tb} AS tb FROM "
        f"(SELECT {d.hash64('e.person_id')} AS pid, min(e.timestamp) AS ta FROM ({a}) e GROUP BY 1) a "
        f"LEFT JOIN (SELECT {d.hash64('e.person_id')} AS pid, e.timestamp FROM ({b}) e) b "
        f"ON b.pid = a.pid AND b.timestamp >= a.ta{within} "
        f"GROUP BY a.pid, a.ta)"
    )


def distribution_sql(ctx: Ctx, q: DistributionQuery) -> str:
    """Rows (whole, bucket, n, ...): one with the statistics (whole = 1) and one per non-empty bin
    (bucket = the index of the bin, -1 = below the first edge)."""
    d = ctx.dialect
    edges = _edges(q)
    case = " ".join(f"WHEN v >= {ctx.p(e)} THEN {i}" for i, e in reversed(list(enumerate(edges))))
    qs = ctx.p([p / 100 for p in q.percentiles])
    return (
        f"WITH x AS ({values_sql(ctx, q)}) "
        f"SELECT 1 AS whole, NULL AS bucket, count(*) AS persons, count(v) AS n, min(v) AS lo, max(v) AS hi, "
        f"avg(v) AS mean, sum(v) AS total, {d.quantiles('v', qs)} AS qs FROM x "
        f"UNION ALL "
        f"SELECT 0, CASE {case} ELSE -1 END AS bucket, count(*), count(*), NULL, NULL, NULL, NULL, NULL "
        f"FROM x WHERE v IS NOT NULL GROUP BY 2"
    )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _duration(s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and (s / size).is_integer():
            return f"{int(s // size)}{unit}"
    return f"{_num(s)}s"


def _label(q: DistributionQuery, lo: float, hi: float | None) -> str:
    if q.measure == "time_between":
        return f"{_duration(lo)}+" if hi is None else f"{_duration(lo)}-{_duration(hi)}"
    if hi is None:
        return f"{_num(lo)}+"
    if q.measure == "count" and lo.is_integer() and hi.is_integer():
        return _num(lo) if hi == lo + 1 else f"{_num(lo)}-{_num(hi - 1)}"
    return f"{_num(lo)}-{_num(hi)}"


def _pkey(p: float) -> str:
    return f"p{_num(p)}"


def run_distribution(ctx: Ctx, q: DistributionQuery) -> dict[str, Any]:
    if q.measure == "time_between":
        check_events(ctx, [q.from_event or ""], "from_event")
        check_events(ctx, [q.to_event or ""], "to_event")
    else:
        check_events(ctx, [q.event or ""], "event")
    wanted = filter_properties(q.filters, "filters")
    if q.property:
        wanted.append((q.property, "event", "property"))
    check_properties(ctx, wanted)
    rows = ctx.fetch(distribution_sql(ctx, q))
    stats = next(r for r in rows if r["whole"])
    counts = {int(r["bucket"]): int(r["n"]) for r in rows if not r["whole"]}
    edges = _edges(q)
    last = len(edges) - 1
    if q.bins is None:  # default bins: up to the last non-empty one
        last = max([i for i in counts if i >= 0], default=0)
    buckets = []
    for i in range(last + 1):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        buckets.append({"label": _label(q, edges[i], hi), "from": edges[i], "to": hi, "persons": counts.get(i, 0)})
    n = int(stats["n"])
    quantiles = stats["qs"] or [None] * len(q.percentiles)
    out: dict[str, Any] = {"measure": q.measure}
    if q.measure == "time_between":
        out |= {"from_event": q.from_event, "to_event": q.to_event, "window_seconds": q.window_seconds,
                "persons": int(stats["persons"]), "converted": n}
    else:
        out |= {"event": q.event, "property": q.property, "persons": n}
    return out | {
        "buckets": buckets,
        "below": counts.get(-1, 0),
        "stats": {
            "min": stats["lo"] if n else None,
            "max": stats["hi"] if n else None,
            "mean": float(stats["mean"]) if n else None,
            "sum": stats["total"] if n else 0,
            "percentiles": {_pkey(p): (float(v) if v is not None else None) for p, v in zip(q.percentiles, quantiles, strict=True)},
        },
    }


register(DistributionQuery, run_distribution)
