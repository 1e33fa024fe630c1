"""The SELECT that yields ``(person_id, value)`` for each source of a tag, as text and bound values.

``rule``      an aggregate of the project's events (persons resolved after merges) in a window
``sql``       a checked power-user query over project-only views (``sandbox.py``)
``property``  a person property (``persons.properties``)
``manual``    values set by API or CSV, per distinct id: the latest set wins for a person

Values are text: integers as digits, other numbers with up to 15 significant digits (``%.15g``: a
sum never shows float noise), event times as ``YYYY-MM-DDTHH:MM:SSZ``; bucketed rules give the
bucket's name. ``num_value`` is derived from the text by :func:`num_sql`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from userloop.people.tags import sandbox
from userloop.people.tags.model import TIMESTAMP, Rule, TagDef, Window
from userloop.query.sql import Ctx, events_sql, json_path, prop

EPOCH = datetime(1900, 1, 1, tzinfo=UTC)  # "all time" starts here
_PLACEHOLDER = re.compile(r"\$(p\d+)\b")
NUMBER = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"


def num_sql(value: str) -> str:
    """The number a text value spells, else NULL (``'12'``, ``'-0.5'``, ``'1e3'``; not ``'nan'``)."""
    return f"CASE WHEN regexp_matches({value}, '{NUMBER}') THEN TRY_CAST({value} AS DOUBLE) END"


def text_sql(expr: str, type_name: str) -> str:
    """``expr`` of DuckDB type ``type_name`` as tag text."""
    t = type_name.upper()
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return f"printf('%.15g', CAST({expr} AS DOUBLE))"
    if t.startswith("TIMESTAMP"):
        return f"strftime(timezone('UTC', CAST({expr} AS TIMESTAMPTZ)), '%Y-%m-%dT%H:%M:%SZ')"
    return f"CAST({expr} AS VARCHAR)"


def window_range(ctx: Ctx, window: Window | None, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) instants: ``last_days`` back from ``now`` on the project's wall clock (a DST day
    is 23 or 25 hours), or the local dates; never past ``now``."""
    if window is None:
        return EPOCH, now
    if window.last_days is not None:
        local = now.astimezone(ctx.tz)
        return (local - timedelta(days=window.last_days)).astimezone(UTC), now
    assert window.date_from is not None and window.date_to is not None
    start, end = ctx.range(window.date_from, window.date_to)
    return start, min(end, now)


def rule_sql(ctx: Ctx, rule: Rule, now: datetime) -> str:
    start, end = window_range(ctx, rule.window, now)
    base = events_sql(ctx, start, end, events=[rule.event] if rule.event else None, filters=rule.filters)
    agg = rule.aggregate
    if agg == "most_frequent":  # ties: the smallest value
        assert rule.property is not None
        x = prop(ctx, rule.property, "event", "e")
        counts = f"SELECT e.person_id, {x} AS v, count(*) AS n FROM ({base}) e WHERE {x} IS NOT NULL GROUP BY 1, 2"
        return (f"SELECT person_id, v AS value FROM ({counts}) "
                "QUALIFY row_number() OVER (PARTITION BY person_id ORDER BY n DESC, v) = 1")
    if agg in ("first", "last"):  # the first/last non-null value; same-instant ties by message id
        assert rule.property is not None
        x = prop(ctx, rule.property, "event", "e")
        fn = "arg_min" if agg == "first" else "arg_max"
        return f"SELECT e.person_id, {fn}({x}, (e.timestamp, e.message_id)) AS value FROM ({base}) e GROUP BY 1"
    if rule.property == TIMESTAMP:
        return f"SELECT e.person_id, {text_sql(f'{agg}(e.timestamp)', 'TIMESTAMPTZ')} AS value FROM ({base}) e GROUP BY 1"
    if agg == "count":
        expr, type_name = "count(*)", "BIGINT"
    elif agg == "distinct":
        assert rule.property is not None
        expr, type_name = f"count(DISTINCT {prop(ctx, rule.property, 'event', 'e')})", "BIGINT"
    else:
        assert rule.property is not None
        expr, type_name = f"{agg}(TRY_CAST({prop(ctx, rule.property, 'event', 'e')} AS DOUBLE))", "DOUBLE"
    measured = f"SELECT e.person_id, {expr} AS a FROM ({base}) e GROUP BY 1"
    if rule.fill_zero:
        measured = (f"SELECT p.person_id, coalesce(m.a, 0) AS a FROM persons p "
                    f"LEFT JOIN ({measured}) m ON m.person_id = p.person_id WHERE p.project_id = {ctx.p(ctx.project.id)}")
    if rule.buckets:
        whens = " ".join(
            f"WHEN a <= {ctx.p(float(b.max))} THEN {ctx.p(b.name)}" if b.max is not None else f"ELSE {ctx.p(b.name)}"
            for b in rule.buckets
        )
        value = f"CASE WHEN a IS NULL THEN NULL {whens} END"
    else:
        value = text_sql("a", type_name)
    return f"SELECT person_id, {value} AS value FROM ({measured})"


def property_sql(ctx: Ctx, name: str) -> str:
    return (f"SELECT person_id, json_extract_string(properties, {ctx.p(json_path(name))}) AS value "
            f"FROM persons WHERE project_id = {ctx.p(ctx.project.id)}")


def manual_sql(ctx: Ctx, tag: str) -> str:
    return (
        "SELECT i.person_id, arg_max(t.value, (t.set_at, t.distinct_id)) AS value FROM tag_inputs t "
        "JOIN identities i ON i.project_id = t.project_id AND i.distinct_id = t.distinct_id "
        f"WHERE t.project_id = {ctx.p(ctx.project.id)} AND t.tag = {ctx.p(tag)} GROUP BY i.person_id"
    )


def sql_source(cur: duckdb.DuckDBPyConnection, ctx: Ctx, text: str) -> str:
    """The checked query over the project's rows, its value column as tag text."""
    checked = sandbox.check(cur, text)
    pid = ctx.p(ctx.project.id)
    cols = sandbox.columns(cur, checked, pid, bound(ctx, sandbox.shadows(pid)))
    value = text_sql("q.value", cols["value"])
    return (f"{sandbox.shadows(pid)} SELECT CAST(q.person_id AS VARCHAR) AS person_id, {value} AS value "
            f"FROM (\n{checked.sql}\n) q")


def source_sql(cur: duckdb.DuckDBPyConnection, ctx: Ctx, tag: TagDef, now: datetime) -> str:
    if tag.rule is not None:
        return rule_sql(ctx, tag.rule, now)
    if tag.sql is not None:
        return sql_source(cur, ctx, tag.sql)
    if tag.property is not None:
        return property_sql(ctx, tag.property)
    return manual_sql(ctx, tag.name)


def bound(ctx: Ctx, sql: str) -> dict[str, Any]:
    """The values of the placeholders ``sql`` uses (DuckDB refuses unused named parameters)."""
    used = set(_PLACEHOLDER.findall(sql))
    return {k: v for k, v in ctx.params.items() if k in used}
