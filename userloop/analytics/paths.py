"""Paths: the most frequent sequences after a start event (or before an end event), as a Sankey.

Per person, events ordered by (timestamp, message id), reversed for ``end_event`` so that "before"
is "after" read backwards. A scan of the anchor events finds each person's first anchor, and only
the rows from there on are sorted (pass 1: row numbers, visit starts by ``lag`` of the time,
repeats by ``lag`` of the node, a running count of anchors); a second sort over visit starts and
candidate rows ties each row to its visit and the visit's first anchor (running sum and maximum); a
third numbers the steps of the rows kept. Each path becomes one row of step columns, equal paths
are counted with GROUP BY, and nodes, links, top paths and drop-off come from those counts.
Contract: ``docs/analytics/paths.md``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from userloop.errors import UserloopError
from userloop.query.model import Query
from userloop.query.runner import register
from userloop.query.sql import Ctx, check_events, check_properties, events_sql, filter_properties, prop

MAX_STEPS = 20
FOLLOW_HOURS = 24  # session mode: context read on each side of the range, for visits crossing its edges


class PathsQuery(Query, tag="paths"):
    start_event: str | None = None
    end_event: str | None = None
    steps: int = 5
    window_seconds: int | None = None
    timeout_minutes: float = 30
    collapse_repeats: bool = True
    path_property: str | list[str] | None = None
    events: list[str] | None = None
    links_per_step: int = 10
    paths_limit: int = 10

    def validate(self) -> None:
        super().validate()
        if self.start_event is not None and self.end_event is not None:
            raise UserloopError("bad_anchor", "give start_event or end_event, not both", "end_event")
        if self.start_event == "":
            raise UserloopError("bad_anchor", "start_event is empty", "start_event")
        if self.end_event == "":
            raise UserloopError("bad_anchor", "end_event is empty", "end_event")
        if not 2 <= self.steps <= MAX_STEPS:
            raise UserloopError("bad_steps", f"steps must be between 2 and {MAX_STEPS}", "steps")
        if self.window_seconds is not None and not 0 < self.window_seconds <= 366 * 86_400:
            raise UserloopError("bad_window", "window_seconds must be above 0 and at most a year", "window_seconds")
        if not 0 < self.timeout_minutes <= 24 * 60:
            raise UserloopError("bad_timeout", "timeout_minutes must be above 0 and at most 1440", "timeout_minutes")
        if self.path_property is not None and (not _names(self.path_property) or not all(_names(self.path_property))):
            raise UserloopError("bad_path_property", "path_property needs a property name", "path_property")
        if self.events is not None and not self.events:
            raise UserloopError("bad_events", "list at least one event, or leave events out", "events")
        for name in ("links_per_step", "paths_limit"):
            if not 1 <= getattr(self, name) <= 1000:
                raise UserloopError("bad_limit", f"{name} must be between 1 and 1000", name)

    @property
    def before(self) -> bool:
        return self.end_event is not None

    @property
    def anchor(self) -> str | None:
        return self.end_event if self.before else self.start_event


def _names(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _micros(t: datetime) -> int:
    return round(t.timestamp() * 1_000_000)


def path_rows_sql(ctx: Ctx, q: PathsQuery) -> str:
    """One row per path (a visit, or a person in window mode) whose head is inside the range:
    ``pk`` (the person's key) and ``n0`` (the head's node) .. ``n{steps-1}`` (NULL past the end).

    "Reading order" is time order (``end_event``: reversed), ties by message id. Steps:

    * prefilter: per person, the first anchor in reading order (session mode: among the events
      read; window mode: inside the range); rows before it cannot be in a path (window mode: nor
      rows more than ``window_seconds`` from it);
    * pass 1 (sort by person, time, message id): row number ``rn``, ``new`` (a gap of
      ``timeout_minutes`` or more before the row: a visit starts), ``rep`` (same node as the row
      before, in the same visit) and ``na``, the running count of anchors;
    * pass 2, session mode only (sort by person, rn, over visit starts and possible path rows):
      ``vid`` (running count of visit starts) and ``nv``, the anchors before the visit. A row is in
      its visit's path when ``na > nv`` (an anchor precedes it in the visit); the head is the anchor
      with ``na = nv + 1`` (window mode: ``na = 1``); repeats other than the head are left out;
    * pass 3 (sort by path, rn, over the rows of the paths): the step number of each row; then per
      path (GROUP BY) the node of each step and the head's time, which must be inside the range.

    Without an anchor every event is one: paths start at each visit's first event (window mode:
    at the person's first event in the range).
    """
    d = ctx.dialect
    start, end = ctx.range(q.date_from, q.date_to)
    window = q.window_seconds
    if window is None:
        lo, hi = start - timedelta(hours=FOLLOW_HOURS), end + timedelta(hours=FOLLOW_HOURS)
    elif q.before:
        lo, hi = start - timedelta(seconds=window), end
    else:
        lo, hi = start, end + timedelta(seconds=window, microseconds=1)
    events = None if q.events is None else [*q.events, *([q.anchor] if q.anchor else [])]
    node = "e.event"
    if q.path_property is not None:
        node = f"coalesce({', '.join(prop(ctx, n) for n in _names(q.path_property))}, e.event)"
    anchor = f"e.event = {ctx.p(q.anchor)}" if q.anchor else "TRUE"
    order = "DESC" if q.before else "ASC"
    lo_us, hi_us = ctx.p(_micros(start)), ctx.p(_micros(end))
    # persons by a 64-bit key of the merged person id: cheaper to partition and sort by than the
    # id's text (two persons would have to share a key to be mixed up: ~n^2 / 2^65)
    pk = d.hash64("e.person_id")
    us = d.epoch_micros("e.timestamp")
    sql = (
        f"WITH ev AS (SELECT {pk} AS pk, {us} AS us, e.message_id AS mid, {node} AS node, {anchor} AS anchor "
        f"FROM ({events_sql(ctx, lo, hi, events=events, filters=q.filters)}) e)"
    )
    source = "ev"
    if window is not None or q.anchor is not None:
        # the first anchor of each person in reading order (a scan of the anchor events alone)
        first, ge = ("max", "<=") if q.before else ("min", ">=")
        a_lo, a_hi = (lo, hi) if window is None else (start, end)
        anchors = events_sql(ctx, a_lo, a_hi, events=[q.anchor] if q.anchor else events, filters=q.filters)
        keep = f"ev.us {ge} fa.f"
        if window is not None:
            keep += f" AND abs(ev.us - fa.f) <= {ctx.p(window * 1_000_000)}"
        sql += (
            f", fa AS (SELECT {pk} AS pk, {first}({us}) AS f FROM ({anchors}) e GROUP BY {pk})"
            f", x AS (SELECT ev.* FROM ev JOIN fa ON ev.pk = fa.pk AND {keep})"
        )
        source = "x"
    # pass 1. Without an anchor every row is one, and na = rn (no sum of a constant: DuckDB 2.0
    # derives wrong statistics for those)
    same = "TRUE"
    cols = ["row_number() OVER w AS rn"]
    if window is None:
        gap = ctx.p(round(q.timeout_minutes * 60 * 1_000_000))
        same = f"abs(us - lag(us) OVER w) < {gap}"
        cols.append(f"CASE WHEN {same} THEN 0 ELSE 1 END AS new")
    rep = f"coalesce(lag(node) OVER w = node AND {same}, FALSE)" if q.collapse_repeats else "FALSE"
    cols.append(f"{rep} AS rep")
    cols.append("sum(CASE WHEN anchor THEN 1 ELSE 0 END) OVER w AS na" if q.anchor else "row_number() OVER w AS na")
    sql += (
        f", a AS (SELECT pk, us, node, anchor, {', '.join(cols)} FROM {source} "
        f"WINDOW w AS (PARTITION BY pk ORDER BY us {order}, mid {order} "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))"
    )
    if window is None:
        # pass 2 over visit starts and the rows that may be in a path
        sql += (
            ", b AS (SELECT *, sum(new) OVER v AS vid, "
            "max(CASE WHEN new = 1 THEN na - CASE WHEN anchor THEN 1 ELSE 0 END END) OVER v AS nv "
            "FROM a WHERE new = 1 OR (na > 0 AND (anchor OR NOT rep)) "
            "WINDOW v AS (PARTITION BY pk ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))"
        )
        source, key, head = "b", "vid", "(anchor AND na = nv + 1)"
        content = f"na > nv AND ({head} OR NOT rep)"
    else:
        source, key, head = "a", "0", "(anchor AND na = 1)"
        content = f"na > 0 AND ({head} OR NOT rep)"
    # pass 3 (sort by path, rn, over the rows of the paths): step numbers; then one row per path
    cols = ", ".join(f"max(CASE WHEN step = {i} THEN node END) AS n{i}" for i in range(q.steps))
    return (
        f"{sql}, c AS (SELECT pk, {key} AS k, us, node, {head} AS head, "
        f"row_number() OVER (PARTITION BY pk, {key} ORDER BY rn) - 1 AS step FROM {source} WHERE {content}) "
        f"SELECT pk, {cols} FROM c WHERE step < {q.steps} GROUP BY pk, k "
        f"HAVING max(CASE WHEN head THEN us END) >= {lo_us} AND max(CASE WHEN head THEN us END) < {hi_us}"
    )


def paths_sql(ctx: Ctx, q: PathsQuery) -> str:
    """Everything the response needs, in one result; ``part`` tells the rows apart:
    ``total`` (paths, persons), ``step`` (paths reaching each step, paths ending there), ``node``
    (per step and name: paths, paths ending there), ``link`` (per step: from, to, paths) and
    ``path`` (the most frequent whole sequences, in ``n0``..)."""
    n = q.steps
    cols = ", ".join(f"n{i}" for i in range(n))
    limit = ctx.p(q.links_per_step)
    nodes = " UNION ALL ".join(
        f"SELECT {i} AS step, n{i} AS name, sum(c) AS c, "
        + (f"sum(CASE WHEN n{i + 1} IS NULL THEN c ELSE 0 END)" if i < n - 1 else "NULL")
        + f" AS dropped FROM seqs WHERE n{i} IS NOT NULL GROUP BY n{i}"
        for i in range(n)
    )
    links = " UNION ALL ".join(
        f"SELECT {i} AS step, n{i} AS src, n{i + 1} AS dst, sum(c) AS c FROM seqs WHERE n{i + 1} IS NOT NULL "
        f"GROUP BY n{i}, n{i + 1}"
        for i in range(n - 1)
    )
    nulls = ", ".join("NULL" for _ in range(n))
    named_nulls = ", ".join(f"NULL AS n{i}" for i in range(n))
    order = ", ".join(f"n{i} NULLS FIRST" for i in range(n))
    return (
        f"WITH p AS MATERIALIZED ({path_rows_sql(ctx, q)}), "
        f"seqs AS MATERIALIZED (SELECT {cols}, count(*) AS c FROM p GROUP BY {cols}), "
        f"nodes AS MATERIALIZED (SELECT *, row_number() OVER (PARTITION BY step ORDER BY c DESC, name) AS r "
        f"FROM ({nodes}) x), "
        f"links AS MATERIALIZED (SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY step ORDER BY c DESC, src, dst) "
        f"AS r FROM ({links}) x) y WHERE r <= {limit}) "
        f"SELECT 'total' AS part, NULL AS step, NULL AS a, NULL AS b, count(*) AS c, count(DISTINCT pk) AS d, "
        f"{named_nulls} FROM p "
        f"UNION ALL SELECT 'step', step, NULL, NULL, sum(c), sum(dropped), {nulls} FROM nodes GROUP BY step "
        f"UNION ALL SELECT 'node', step, name, NULL, c, dropped, {nulls} FROM nodes n WHERE r <= {limit} OR EXISTS "
        f"(SELECT 1 FROM links l WHERE (l.step = n.step AND l.src = n.name) OR (l.step + 1 = n.step AND l.dst = n.name)) "
        f"UNION ALL SELECT 'link', step, src, dst, c, NULL, {nulls} FROM links "
        # row_number() rather than LIMIT: DuckDB 2.0 drops a LIMIT above a LEFT JOIN whose right
        # side is empty (person_overrides of a project without merges)
        f"UNION ALL SELECT 'path', NULL, NULL, NULL, c, r, {cols} FROM (SELECT *, row_number() OVER "
        f"(ORDER BY c DESC, {order}) AS r FROM seqs) t WHERE r <= {ctx.p(q.paths_limit)}"
    )


def run_paths(ctx: Ctx, q: PathsQuery) -> dict[str, Any]:
    names = [*([q.anchor] if q.anchor else []), *(q.events or [])]
    if names:
        fields = ["end_event" if q.before else "start_event"] if q.anchor else []
        fields += [f"events[{i}]" for i in range(len(q.events or []))]
        for name, field in zip(names, fields, strict=True):
            check_events(ctx, [name], field)
    wanted = filter_properties(q.filters, "filters")
    if q.path_property is not None:
        one = isinstance(q.path_property, str)
        wanted += [(n, "event", "path_property" if one else f"path_property[{i}]")
                   for i, n in enumerate(_names(q.path_property))]  # fmt: skip
    check_properties(ctx, wanted)
    rows = ctx.fetch(paths_sql(ctx, q))
    sign = -1 if q.before else 1
    total = persons = 0
    steps: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    top: list[dict[str, Any]] = []
    for r in rows:
        part = r["part"]
        if part == "total":
            total, persons = int(r["c"]), int(r["d"])
        elif part == "step":
            steps.append(r)
        elif part == "node":
            nodes.append(r)
        elif part == "link":
            links.append(r)
        else:
            seq = [r[f"n{i}"] for i in range(q.steps) if r[f"n{i}"] is not None]
            top.append({"path": seq[::-1] if q.before else seq, "count": int(r["c"]), "rank": int(r["d"])})
    nodes.sort(key=lambda r: (int(r["step"]), -int(r["c"]), r["a"]))
    ids = {(int(r["step"]), r["a"]): i for i, r in enumerate(nodes)}
    links.sort(key=lambda r: (int(r["step"]), -int(r["c"]), r["a"], r["b"]))
    steps.sort(key=lambda r: int(r["step"]))
    last = q.steps - 1

    def drop(r: dict[str, Any]) -> int | None:
        return None if int(r["step"]) == last else int(r["d"] or 0)

    return {
        "direction": "before" if q.before else "after",
        "anchor": q.anchor,
        "steps": q.steps,
        "unit": "person" if q.window_seconds is not None else "visit",
        "total_paths": total,
        "persons": persons,
        "nodes": [
            {"id": i, "name": r["a"], "step": sign * int(r["step"]), "count": int(r["c"]), "dropped": drop(r)}
            for i, r in enumerate(nodes)
        ],
        "links": [
            {"source": ids[(int(r["step"]), r["a"])], "target": ids[(int(r["step"]) + 1, r["b"])],
             "value": int(r["c"])}
            for r in links
        ],  # fmt: skip
        "top_paths": [{"path": p["path"], "count": p["count"]} for p in sorted(top, key=lambda p: p["rank"])],
        "drop_off": [
            {"step": sign * int(r["step"]), "paths": int(r["c"]), "dropped": drop(r),
             "drop_rate": None if drop(r) is None else int(r["d"] or 0) / int(r["c"])}
            for r in steps
        ],  # fmt: skip
    }


register(PathsQuery, run_paths)
