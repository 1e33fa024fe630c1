"""Funnels: persons who did steps 1..k in order within a window (ClickHouse ``windowFunnel``).

A person reaches step ``k`` when distinct events of theirs match steps ``1..k`` at times
``t1 <= t2 <= ... <= tk`` (equal times count as in order) with ``tk - t1 <= window_seconds`` and
``t1`` inside the date range; later steps may fall after ``date_to``, up to the window. Persons
are counted after identity merges. One event never counts as two steps of one chain: a funnel
``pv -> pv`` needs two page views.

The SQL (:func:`funnel_sql`) only selects: one row per event matching any step, with a 64-bit
person key and the step bitmask packed next to the time. The levels are computed by the
vectorised engine in :mod:`userloop.analytics._funnel_engine` (see there for the algorithm and
for which chain the conversion times are measured on).

Breakdown: each person counts once, under the value of the chain that took them deepest (the
first step's event property of that chain's first event, or the person property); the top
``limit`` values by persons entering the funnel, the rest as ``$other``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from userloop.analytics._funnel_engine import Levels, compute, packable
from userloop.errors import UserloopError
from userloop.query.model import Breakdown, PropertyFilter, Query, check_filter, parse_breakdown
from userloop.query.runner import register
from userloop.query.sql import (
    Ctx,
    check_events,
    check_properties,
    events_sql,
    filter_properties,
    filters_sql,
    prop,
)

OTHER = "$other"
NONE = "$none"
MAX_STEPS = 20
MAX_WINDOW_SECONDS = 366 * 86_400
MAX_DROPPED = 100_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLACEHOLDER = re.compile(r"\$(p\d+)\b")


class FunnelStep(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    event: str
    filters: list[PropertyFilter] = []
    name: str | None = None


class FunnelQuery(Query, tag="funnel"):
    steps: list[FunnelStep]
    window_seconds: int = 86_400
    breakdown: str | Breakdown | None = None
    dropped_after_step: int | None = None  # 1-based: persons who reached it but not the next
    dropped_limit: int = 1000

    def validate(self) -> None:
        super().validate()
        if len(self.steps) < 2:
            raise UserloopError("steps_too_few", "a funnel needs at least two steps", "steps")
        if len(self.steps) > MAX_STEPS:
            raise UserloopError("steps_too_many", f"a funnel has at most {MAX_STEPS} steps", "steps")
        for i, s in enumerate(self.steps):
            if not s.event:
                raise UserloopError("bad_step", "step event is empty", f"steps[{i}].event")
            for j, f in enumerate(s.filters):
                check_filter(f, f"steps[{i}].filters[{j}]")
        if not 1 <= self.window_seconds <= MAX_WINDOW_SECONDS:
            raise UserloopError(
                "bad_window", f"window_seconds must be between 1 and {MAX_WINDOW_SECONDS}", "window_seconds"
            )
        bd = parse_breakdown(self.breakdown)
        if bd is not None and not 1 <= bd.limit <= 1000:
            raise UserloopError("bad_breakdown", "breakdown limit must be between 1 and 1000", "breakdown.limit")
        if self.dropped_after_step is not None and not 1 <= self.dropped_after_step < len(self.steps):
            raise UserloopError(
                "bad_step", f"dropped_after_step must be between 1 and {len(self.steps) - 1}", "dropped_after_step"
            )
        if not 0 <= self.dropped_limit <= MAX_DROPPED:
            raise UserloopError("bad_limit", f"dropped_limit must be between 0 and {MAX_DROPPED}", "dropped_limit")


def _micros(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _step_match(ctx: Ctx, q: FunnelQuery, i: int, end: datetime) -> str:
    s = q.steps[i]
    cond = f"e.event = {ctx.p(s.event)}"
    if s.filters:
        cond += f" AND {filters_sql(ctx, s.filters)}"
    if i == 0:  # chains start inside the range; later steps may run up to the window past it
        cond += f" AND e.timestamp < {ctx.p(end)}"
    return cond


def _mask_sql(ctx: Ctx, q: FunnelQuery, end: datetime) -> tuple[str, str]:
    """The step bitmask of an event (bit i: step i + 1), and a cheap condition on the event name
    that the events with a non-zero mask meet.

    A simple ``CASE`` on the event name is much cheaper in DuckDB than ``event IN (...)`` or one
    comparison per step, so the events are read without ``events_sql``'s name list and the rows
    of no step are dropped by ``mask > 0``."""
    names = list(dict.fromkeys(s.event for s in q.steps))
    by_name = f"CASE e.event {' '.join(f'WHEN {ctx.p(x)} THEN 1' for x in names)} ELSE 0 END = 1"
    if any(s.filters for s in q.steps):
        mask = " + ".join(f"CASE WHEN {_step_match(ctx, q, i, end)} THEN {1 << i} ELSE 0 END" for i in range(len(q.steps)))
        return mask, by_name
    bits: dict[str, int] = {}
    for i, s in enumerate(q.steps):
        bits[s.event] = bits.get(s.event, 0) | (1 << i)
    whens = []
    for name, b in bits.items():
        value = str(b)
        if b & 1:  # step 1 only inside the range
            value = f"CASE WHEN e.timestamp < {ctx.p(end)} THEN {b} ELSE {b & ~1} END"
        whens.append(f"WHEN {ctx.p(name)} THEN {value}")
    return f"CASE e.event {' '.join(whens)} ELSE 0 END", "TRUE"


def funnel_sql(ctx: Ctx, q: FunnelQuery, *, packed: bool) -> str:
    """One row per event matching any step: ``h`` (64-bit person key), and either ``k`` =
    ``(time - range start in µs) << n_steps | mask`` (``packed``) or ``t`` and ``m``; ``bd`` (the
    breakdown value, on step 1 events) when there is a breakdown."""
    start, end = ctx.range(q.date_from, q.date_to)
    until = end + timedelta(seconds=q.window_seconds)
    bd = parse_breakdown(q.breakdown)
    base = events_sql(
        ctx, start, until, filters=q.filters, person_properties=bd is not None and bd.type == "person",
    )
    d = ctx.dialect
    n = len(q.steps)
    mask, prefilter = _mask_sql(ctx, q, end)
    cols = [f"{d.hash64('e.person_id')} AS h", f"{d.epoch_micros('e.timestamp')} AS t"]
    if bd is not None:
        step1 = _step_match(ctx, q, 0, end)
        cols.append(f"CASE WHEN {step1} THEN coalesce({prop(ctx, bd.property, bd.type)}, {ctx.p(NONE)}) END AS bd")
    inner = f"SELECT {', '.join(cols)}, ({mask}) AS m FROM ({base}) e WHERE {prefilter}"
    out = f"h, (t - {ctx.p(_micros(start))}) * {ctx.p(1 << n)} + m AS k" if packed else "h, t, m"
    if bd is not None:
        out += ", bd"
    return f"SELECT {out} FROM ({inner}) x WHERE m > 0"


def _read(ctx: Ctx, sql: str, arrow: bool) -> dict[str, Any]:
    """Run ``sql`` with the values it binds, as numpy columns (an Arrow table for strings)."""
    used = set(_PLACEHOLDER.findall(sql))
    params = {k: v for k, v in ctx.params.items() if k in used}
    ctx.params = {}
    rel = ctx.store.cursor().sql(sql, params=params)
    if not arrow:
        return dict(rel.fetchnumpy())
    table: pa.Table = rel.to_arrow_table()
    out: dict[str, Any] = {c: table.column(c).to_numpy() for c in table.column_names if c != "bd"}
    out["bd"] = table.column("bd")
    return out


def _steps(q: FunnelQuery, lv: Levels, which: np.ndarray | None = None) -> list[dict[str, Any]]:
    n = len(q.steps)
    counts = lv.counts if which is None else _counts_for(lv, n, which)
    out = []
    for k, s in enumerate(q.steps):
        c = counts[k]
        deltas = lv.step_deltas[k]
        if which is not None and k:
            deltas = deltas[which[lv.step_persons[k]]]
        out.append(
            {
                "event": s.event,
                "name": s.name or s.event,
                "count": c,
                "conversion_from_first": (c / counts[0]) if counts[0] else 0.0,
                "conversion_from_previous": (c / counts[k - 1] if counts[k - 1] else 0.0) if k else (1.0 if c else 0.0),
                "median_seconds_from_previous": float(np.median(deltas)) if k and len(deltas) else None,
            }
        )
    return out


def _counts_for(lv: Levels, n: int, which: np.ndarray) -> list[int]:
    assert lv.level is not None
    hist = np.bincount(lv.level[which], minlength=n + 1)
    return [int(x) for x in hist[::-1].cumsum()[::-1][1:]]


def _breakdown(q: FunnelQuery, lv: Levels, bd_col: pa.ChunkedArray) -> list[dict[str, Any]]:
    assert lv.level is not None and lv.start_row is not None
    bd = parse_breakdown(q.breakdown)
    assert bd is not None
    entered = np.flatnonzero(lv.level > 0)
    encoded = pc.dictionary_encode(bd_col.take(pa.array(lv.start_row[entered]))).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    values = encoded.dictionary.to_pylist()
    sizes = np.bincount(codes, minlength=len(values))
    ranked = sorted(range(len(values)), key=lambda i: (-int(sizes[i]), str(values[i])))
    top = ranked[: bd.limit]
    person_code = np.full(len(lv.level), -1, dtype=np.int64)
    person_code[entered] = codes
    out = []
    for i in top:
        out.append({"breakdown_value": values[i], "steps": _steps(q, lv, person_code == i)})
    if len(ranked) > bd.limit:
        rest = np.isin(person_code, np.array(ranked[bd.limit:], dtype=np.int64))
        out.append({"breakdown_value": OTHER, "steps": _steps(q, lv, rest)})
    return out


def _dropped(ctx: Ctx, q: FunnelQuery, lv: Levels) -> dict[str, Any]:
    assert lv.level is not None and lv.person is not None and q.dropped_after_step is not None
    keys = np.sort(lv.person[lv.level == q.dropped_after_step])
    total = len(keys)
    ids: list[str] = []
    if total and q.dropped_limit:
        sample = keys[: q.dropped_limit]  # the lowest keys: a deterministic sample when capped
        start, end = ctx.range(q.date_from, q.date_to)
        base = events_sql(ctx, start, end, events=[q.steps[0].event], filters=q.filters)
        h = ctx.dialect.hash64("e.person_id")
        wanted = ctx.p([int(x) for x in sample])
        rows = ctx.fetch(
            f"SELECT DISTINCT e.person_id FROM ({base}) e WHERE {h} IN (SELECT unnest(CAST({wanted} AS UBIGINT[])))"
        )
        ids = sorted(r["person_id"] for r in rows)
    return {
        "dropped_after_step": q.dropped_after_step,
        "dropped_count": total,
        "dropped_persons": ids,
        "dropped_truncated": total > len(ids),
    }


def run_funnel(ctx: Ctx, q: FunnelQuery) -> dict[str, Any]:
    wanted = filter_properties(q.filters, "filters")
    for i, s in enumerate(q.steps):
        wanted += filter_properties(s.filters, f"steps[{i}].filters")
    bd = parse_breakdown(q.breakdown)
    if bd is not None:
        wanted.append((bd.property, bd.type, "breakdown"))
    check_properties(ctx, wanted)
    n = len(q.steps)
    span = timedelta(days=(q.date_to - q.date_from).days + 2, seconds=q.window_seconds)  # + a DST hour
    packed = packable(span // timedelta(microseconds=1), n)
    per_person = bd is not None or q.dropped_after_step is not None
    cols = _read(ctx, funnel_sql(ctx, q, packed=packed), arrow=bd is not None)
    window_us = q.window_seconds * 1_000_000
    if packed:
        lv = compute(cols["h"], cols["k"], None, n, window_us, per_person=per_person)
    else:
        lv = compute(cols["h"], cols["t"], cols["m"], n, window_us, per_person=per_person)
    if lv.seen != (1 << n) - 1:  # a step matched no event: 400 if the project never saw it
        check_events(ctx, [s.event for s in q.steps], "steps[{i}].event")
    result: dict[str, Any] = {"window_seconds": q.window_seconds, "steps": _steps(q, lv)}
    if bd is not None:
        result["breakdown"] = _breakdown(q, lv, cols["bd"])
    if q.dropped_after_step is not None:
        result.update(_dropped(ctx, q, lv))
    return result


register(FunnelQuery, run_funnel)
