"""A rule tree -> ONE SQL query selecting the member ``person_id``s.

Every event condition (``event``, ``no_event``, ``aggregate``, and those of inlined dynamic
segments) becomes one conditional aggregate (``count(*) FILTER (WHERE ...)``, ``sum(..) FILTER``)
of a single scan of the project's events, grouped by person after identity merges; identical
conditions share a column. The scan covers the union of the windows and reads only the events the
rule names. Two ways to combine the conditions are printed from the same tree:

- ``columns`` (the default): the project's persons joined to the per-person aggregates, the tree
  a boolean expression of the row (``AND``/``OR``/``NOT`` of 2-valued leaves, ``coalesce(.., false)``).
  When the tree cannot hold without an event (e.g. "did X at least once AND ..."), the join is inner
  and the persons without events are never visited.
- ``sets``: each condition a set of person ids, combined with ``INTERSECT`` / ``UNION`` / ``EXCEPT``
  against the persons (the aggregates computed once, ``MATERIALIZED``).

Both give the same members; ``benchmarks/people_segments.py`` times them (see
``docs/people/segments.md#performance``). Persons are the rows of ``persons``; a person without
events has count 0 and sum 0, and no avg/min/max (comparisons with those are false).

``funnel`` conditions run the funnel engine of :mod:`userloop.analytics.funnel` first; the 64-bit
keys of the persons who dropped go to the query as a registered Arrow table.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb
import msgspec
import pyarrow as pa

from userloop.errors import UserloopError
from userloop.people.segments.model import (
    Aggregate,
    And,
    DidEvent,
    FunnelDrop,
    InLayer,
    InSegment,
    NoEvent,
    Not,
    Or,
    PersonProperty,
    Rule,
    TagValue,
    Windowed,
)
from userloop.query.model import PropertyFilter
from userloop.query.sql import Ctx, _text, events_sql, filter_sql, filters_sql, prop

Strategy = Literal["columns", "sets"]
ALL_TIME = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2300, 1, 1, tzinfo=UTC))
_tables = itertools.count()


@dataclass
class Saved:
    """A saved segment as the compiler needs it."""

    name: str
    type: str
    rule: Rule


@dataclass
class Compiled:
    sql: str  # SELECT person_id ... (one row per member)
    params: dict[str, Any]
    tables: dict[str, pa.Table] = field(default_factory=dict)  # to register on the cursor first


@dataclass
class _Leaf:
    pred: str  # a 2-valued boolean over p (persons: person_id, person_properties) and a (aggregates)
    needs_events: bool  # false for every person without events: the join can be inner
    uses_events: bool = False  # reads the aggregates (a.c*)
    subset: str | None = None  # sets: the members as SELECT person_id (None: filter u/a by pred)


class Compiler:
    def __init__(
        self, ctx: Ctx, as_of: datetime, resolve: Callable[[str], Saved], strategy: Strategy = "columns"
    ) -> None:
        self.ctx, self.as_of, self.resolve, self.strategy = ctx, as_of, resolve, strategy
        self.columns: dict[bytes, tuple[str, str]] = {}  # condition key -> (alias, aggregate sql)
        self.events: set[str] = set()
        self.span: tuple[datetime, datetime] | None = None  # the union of the windows (None: all time)
        self.all_time = False
        self.tables: dict[str, pa.Table] = {}
        self._stack: list[str] = []

    # -- entry -------------------------------------------------------------------------------------
    def compile(self, rule: Rule) -> Compiled:
        d, pid = self.ctx.dialect, self.ctx.p(self.ctx.project.id)
        persons = (
            f"SELECT person_id, {d.hash64('person_id')} AS h, properties AS person_properties "
            f"FROM persons WHERE project_id = {pid}"
        )
        sql = self._sets(rule, persons) if self.strategy == "sets" else self._columns(rule, persons)
        return Compiled(sql=sql, params=dict(self.ctx.params), tables=self.tables)

    def _columns(self, rule: Rule, persons: str) -> str:
        """The persons filtered by the root's conjuncts that need no events, joined to the events
        aggregates (when the rule has event conditions) and filtered by the rest. With such
        conjuncts the events are joined to those persons before they are aggregated: fewer groups."""
        parts = [self._bool(c) for c in (rule.and_ if isinstance(rule, And) else [rule])]
        first = [p.pred for p in parts if not p.uses_events]
        rest = [p.pred for p in parts if p.uses_events]
        p = f"SELECT * FROM ({persons}) p" + (f" WHERE {' AND '.join(first)}" if first else "")
        if not rest:
            return f"SELECT p.person_id FROM ({p}) p"
        join = "JOIN" if any(x.needs_events for x in parts) else "LEFT JOIN"
        hash_e = self.ctx.dialect.hash64("e.person_id")
        if first:
            a = f"SELECT p.h, {self._aggregates()} FROM ({self._events()}) e JOIN p ON p.h = {hash_e} GROUP BY p.h"
            return f"WITH p AS ({p}) SELECT p.person_id FROM p {join} ({a}) a ON a.h = p.h WHERE {' AND '.join(rest)}"
        a = f"SELECT {hash_e} AS h, {self._aggregates()} FROM ({self._events()}) e GROUP BY 1"
        return f"SELECT p.person_id FROM ({p}) p {join} ({a}) a ON a.h = p.h WHERE {' AND '.join(rest)}"

    def _sets(self, rule: Rule, persons: str) -> str:
        body = self._set(rule)
        ctes = [f"u AS ({persons})"]
        if self.columns:
            hash_e = self.ctx.dialect.hash64("e.person_id")
            a = f"SELECT {hash_e} AS h, {self._aggregates()} FROM ({self._events()}) e GROUP BY 1"
            ctes.append(f"a AS MATERIALIZED ({a})")
        return f"WITH {', '.join(ctes)} SELECT person_id FROM ({body}) s WHERE person_id IN (SELECT person_id FROM u)"

    # -- the tree as one boolean expression (columns) ----------------------------------------------
    def _bool(self, node: Rule) -> _Leaf:
        if isinstance(node, And | Or):
            parts = [self._bool(c) for c in (node.and_ if isinstance(node, And) else node.or_)]
            op = " AND " if isinstance(node, And) else " OR "
            needs = any if isinstance(node, And) else all
            return _Leaf(
                "(" + op.join(p.pred for p in parts) + ")",
                needs(p.needs_events for p in parts),
                any(p.uses_events for p in parts),
            )
        if isinstance(node, Not):
            inner = self._bool(node.not_)
            return _Leaf(f"(NOT {inner.pred})", False, inner.uses_events)
        if isinstance(node, InSegment):
            return self._segment(node, self._bool)  # type: ignore[no-any-return]
        return self._leaf(node)

    # -- the tree as set algebra (sets) ------------------------------------------------------------
    def _set(self, node: Rule) -> str:
        if isinstance(node, And | Or):
            parts = [self._set(c) for c in (node.and_ if isinstance(node, And) else node.or_)]
            op = " INTERSECT " if isinstance(node, And) else " UNION "
            return op.join(f"(SELECT person_id FROM ({s}) x{i})" for i, s in enumerate(parts))
        if isinstance(node, Not):
            return f"(SELECT person_id FROM u) EXCEPT (SELECT person_id FROM ({self._set(node.not_)}) n)"
        if isinstance(node, InSegment):
            return self._segment(node, self._set)  # type: ignore[no-any-return]
        leaf = self._leaf(node)
        if leaf.subset is not None:
            return leaf.subset
        if leaf.needs_events:
            return f"SELECT p.person_id FROM u p JOIN a ON a.h = p.h WHERE {leaf.pred}"
        if leaf.uses_events:
            return f"SELECT p.person_id FROM u p LEFT JOIN a ON a.h = p.h WHERE {leaf.pred}"
        return f"SELECT p.person_id FROM u p WHERE {leaf.pred}"

    # -- leaves ------------------------------------------------------------------------------------
    def _segment(self, node: InSegment, inline: Callable[[Rule], Any]) -> Any:
        if node.segment in self._stack:
            raise UserloopError(
                "segment_cycle",
                f"segment {node.segment!r} refers to itself: {' -> '.join([*self._stack, node.segment])}",
                "rule",
            )
        saved = self.resolve(node.segment)
        if saved.type == "dynamic":  # inlined: the same moment and the same events scan as the rest
            self._stack.append(node.segment)
            try:
                return inline(saved.rule)
            finally:
                self._stack.pop()
        sub = (
            f"SELECT person_id FROM segment_members WHERE project_id = {self.ctx.p(self.ctx.project.id)} "
            f"AND segment = {self.ctx.p(node.segment)}"
        )
        return sub if inline == self._set else _Leaf(f"p.person_id IN ({sub})", False)

    def _leaf(self, node: Rule) -> _Leaf:
        c = self.ctx
        if isinstance(node, PersonProperty):
            f = PropertyFilter(
                property=node.property, operator=node.operator, value=node.value, type="person"
            )
            return _Leaf(f"coalesce({filter_sql(c, f, 'p')}, false)", False)
        if isinstance(node, TagValue):
            return _in(self._tag_set(node))
        if isinstance(node, InLayer):
            sub = (
                f"SELECT person_id FROM layer_members WHERE project_id = {c.p(c.project.id)} "
                f"AND model = {c.p(node.model)} AND layer = {c.p(node.layer)}"
            )
            return _Leaf(f"p.person_id IN ({sub})", False, subset=sub)
        if isinstance(node, FunnelDrop):
            name = self._funnel(node)
            sub = f"SELECT person_id FROM u WHERE h IN (SELECT h FROM {name})"
            return _Leaf(f"p.h IN (SELECT h FROM {name})", False, subset=sub)
        if isinstance(node, DidEvent):
            col = self._column(node)
            pred = f"coalesce({col}, 0) {node.operator} {c.p(node.times)}"
            return _Leaf(pred, not _holds(node.operator, 0, node.times), True)
        if isinstance(node, NoEvent):
            col = self._column(node)
            return _Leaf(f"coalesce({col}, 0) = 0", False, True)
        if isinstance(node, Aggregate):
            col = self._column(node)
            if node.function == "sum":  # the sum of no events is 0
                pred = f"coalesce({col}, 0) {node.operator} {c.p(node.value)}"
                return _Leaf(pred, not _holds(node.operator, 0, node.value), True)
            return _Leaf(f"coalesce({col} {node.operator} {c.p(node.value)}, false)", True, True)
        raise AssertionError(f"unhandled condition {type(node).__name__}")

    def _tag_set(self, node: TagValue) -> tuple[str, bool]:
        """(SELECT person_id of the persons whose tag matches the positive form, negated?): ``!=``,
        ``not_in``, ``not_contains``, ``is_not_set`` also match the persons without the tag, like
        the person property filters."""
        c, d = self.ctx, self.ctx.dialect
        base = f"SELECT person_id FROM tag_values WHERE project_id = {c.p(c.project.id)} AND tag = {c.p(node.tag)}"
        v = node.value
        negate = node.operator in ("!=", "not_in", "not_contains", "is_not_set")
        op: str = {"!=": "=", "not_in": "in", "not_contains": "contains", "is_not_set": "is_set"}.get(
            node.operator, node.operator
        )
        values = v if isinstance(v, list) else [v]
        numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in values)
        if op == "is_set":
            cond = "value IS NOT NULL"
        elif op == "in":
            cond = (
                f"num_value IN ({', '.join(c.p(float(x)) for x in values)})"
                if numeric
                else (f"value IN ({', '.join(c.p(_text(x)) for x in values)})")
            )
        elif op == "contains":
            cond = d.contains("value", c.p(_text(v)))
        elif op == "regex":
            cond = d.regex("value", c.p(_text(v)))
        else:
            cond = f"num_value {op} {c.p(float(v))}" if numeric else f"value {op} {c.p(_text(v))}"
        return f"{base} AND {cond}", negate

    # -- the shared events scan --------------------------------------------------------------------
    def _window(self, node: Windowed) -> tuple[datetime, datetime] | None:
        if node.last_days is not None:
            today = self.as_of.astimezone(self.ctx.tz).date()
            return self.ctx.range(today - timedelta(days=node.last_days - 1), today)
        if node.date_from is not None and node.date_to is not None:
            return self.ctx.range(node.date_from, node.date_to)
        return None

    def _column(self, node: DidEvent | NoEvent | Aggregate) -> str:
        """The aggregate column of an event condition (one per distinct event, filters, window and
        function). The filters are evaluated only on the rows of the event inside the window (a
        ``CASE``: DuckDB computes a ``FILTER`` clause's expression for every row)."""
        window = self._window(node)
        what = [node.function, node.property] if isinstance(node, Aggregate) else ["count"]
        key = msgspec.json.encode([node.event, node.filters, window, what])
        if key not in self.columns:
            c = self.ctx
            self.events.add(node.event)
            cond = [f"e.event = {c.p(node.event)}"]
            if window is None:
                self.all_time = True
            else:
                lo, hi = window
                self.span = window if self.span is None else (min(self.span[0], lo), max(self.span[1], hi))
                cond += [f"e.timestamp >= {c.p(lo)}", f"e.timestamp < {c.p(hi)}"]
            match = " AND ".join(cond)
            if node.filters:
                match = (
                    f"CASE WHEN {match} THEN coalesce({filters_sql(c, node.filters)}, false) ELSE false END"
                )
            alias = f"c{len(self.columns)}"
            if isinstance(node, Aggregate):
                value = c.dialect.number(prop(c, node.property, "event"))
                agg = f"{node.function}(CASE WHEN {match} THEN {value} END)"
            else:
                agg = f"count(*) FILTER (WHERE {match})"
            self.columns[key] = (alias, f"{agg} AS {alias}")
        return "a." + self.columns[key][0]

    def _aggregates(self) -> str:
        return ", ".join(sql for _, sql in self.columns.values())

    def _events(self) -> str:
        """The events the rule's conditions read (by name, inside the union of their windows)."""
        lo, hi = ALL_TIME if self.all_time or self.span is None else self.span
        return events_sql(self.ctx, lo, hi, events=sorted(self.events))

    # -- funnels -----------------------------------------------------------------------------------
    def _funnel(self, node: FunnelDrop) -> str:
        from userloop.people.segments.funnels import dropped_keys

        if node.last_days is not None:
            today = self.as_of.astimezone(self.ctx.tz).date()
            days = (today - timedelta(days=node.last_days - 1), today)
        else:
            assert node.date_from is not None and node.date_to is not None
            days = (node.date_from, node.date_to)
        name = f"_seg_funnel_{next(_tables)}"
        self.tables[name] = pa.table({"h": pa.array(dropped_keys(self.ctx, node, *days), pa.uint64())})
        return name


def _in(tag: tuple[str, bool]) -> _Leaf:
    sub, negate = tag
    if negate:
        return _Leaf(f"p.person_id NOT IN ({sub})", False, subset=f"SELECT person_id FROM u EXCEPT {sub}")
    return _Leaf(f"p.person_id IN ({sub})", False, subset=sub)


def _holds(op: str, left: float, right: float) -> bool:
    return {
        "=": left == right,
        "!=": left != right,
        ">": left > right,
        ">=": left >= right,
        "<": left < right,
        "<=": left <= right,
    }[op]


def compile_rule(
    ctx: Ctx, rule: Rule, as_of: datetime, resolve: Callable[[str], Saved], strategy: Strategy = "columns"
) -> Compiled:
    return Compiler(ctx, as_of, resolve, strategy).compile(rule)


_PLACEHOLDER = re.compile(r"\$([A-Za-z_]\w*)")


def bound(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The named values ``sql`` uses (DuckDB refuses unused ones)."""
    used = set(_PLACEHOLDER.findall(sql))
    return {k: v for k, v in params.items() if k in used}


def execute(
    cur: duckdb.DuckDBPyConnection, compiled: Compiled, sql: str, extra: dict[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run ``sql`` (which embeds ``compiled.sql``) with its bound values and registered tables."""
    for name, table in compiled.tables.items():
        cur.register(name, table)
    try:
        return cur.execute(sql, bound(sql, {**compiled.params, **(extra or {})})).fetchall()
    finally:
        for name in compiled.tables:
            cur.unregister(name)
