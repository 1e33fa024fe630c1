"""The checks of a rule against the project's data: events, properties, tags, layer models and
saved segments must exist, and segments must not refer to themselves through others.

Each failure is a 400 naming the field of the rule (``rule.and[1].event``), like a query's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb

from userloop.errors import UserloopError
from userloop.people.segments.model import (
    Aggregate,
    DidEvent,
    FunnelDrop,
    InLayer,
    InSegment,
    NoEvent,
    PersonProperty,
    Rule,
    TagValue,
    referenced_segments,
    walk,
)
from userloop.query.model import PropertyType
from userloop.query.sql import Ctx, check_properties

# tables owned by other capabilities (tags, layers): (definitions, values) and their key column
_OWNED = {
    "tag": ("tags", "name", "tag_values", "tag"),
    "layer model": ("layer_models", "name", "layer_members", "model"),
}


def check_against_store(
    ctx: Ctx, rule: Rule, saved_rules: Callable[[], dict[str, Rule]], name: str | None = None
) -> None:
    """``saved_rules()``: every saved segment's rule by name (read only when the rule refers to one)."""
    events: dict[str, str] = {}
    props: list[tuple[str, PropertyType, str]] = []
    _check_patterns(ctx, rule)
    for node, where in walk(rule):
        if isinstance(node, DidEvent | NoEvent | Aggregate):
            events.setdefault(node.event, f"{where}.event")
            props += [
                (f.property, f.type, f"{where}.filters[{i}].property") for i, f in enumerate(node.filters)
            ]
            if isinstance(node, Aggregate):
                props.append((node.property, "event", f"{where}.property"))
        elif isinstance(node, FunnelDrop):
            for i, s in enumerate(node.steps):
                events.setdefault(s.event, f"{where}.steps[{i}].event")
                props += [
                    (f.property, "event", f"{where}.steps[{i}].filters[{j}].property")
                    for j, f in enumerate(s.filters)
                ]
            props += [
                (f.property, "event", f"{where}.filters[{i}].property") for i, f in enumerate(node.filters)
            ]
        elif isinstance(node, PersonProperty):
            props.append((node.property, "person", f"{where}.property"))
        elif isinstance(node, TagValue):
            _check_owned(ctx, "tag", node.tag, f"{where}.tag")
        elif isinstance(node, InLayer):
            _check_owned(ctx, "layer model", node.model, f"{where}.model")
    for event, where in events.items():
        rows = ctx.store.query(
            "SELECT 1 AS x FROM events WHERE project_id = ? AND event = ? LIMIT 1", [ctx.project.id, event]
        )
        if not rows:
            raise UserloopError("unknown_event", f"no event named {event!r} in this project", where)
    check_properties(ctx, list(dict.fromkeys(props)))
    if any(isinstance(n, InSegment) for n, _ in walk(rule)):
        _check_segments(rule, saved_rules(), name)


def _check_patterns(ctx: Ctx, rule: Rule) -> None:
    """``regex`` values must compile (RE2, as DuckDB runs them): 400 here, not a failed query."""
    found: list[tuple[Any, str]] = []
    for node, where in walk(rule):
        if isinstance(node, PersonProperty | TagValue) and node.operator == "regex":
            found.append((node.value, f"{where}.value"))
        lists = [("filters", getattr(node, "filters", []))]
        if isinstance(node, FunnelDrop):
            lists += [(f"steps[{i}].filters", s.filters) for i, s in enumerate(node.steps)]
        for prefix, filters in lists:
            found += [
                (f.value, f"{where}.{prefix}[{i}].value")
                for i, f in enumerate(filters)
                if f.operator == "regex"
            ]
    for value, where in found:
        try:
            ctx.store.query("SELECT regexp_matches('', ?) AS x", [str(value)])
        except duckdb.Error as exc:
            raise UserloopError("bad_filter", f"not a regular expression: {exc}", where) from exc


def _check_owned(ctx: Ctx, what: str, value: str, where: str) -> None:
    defs, key, values, column = _OWNED[what]
    found = False
    for table, col in ((defs, key), (values, column)):
        try:
            rows = ctx.store.query(
                f"SELECT 1 AS x FROM {table} WHERE project_id = ? AND {col} = ? LIMIT 1",
                [ctx.project.id, value],
            )
        except duckdb.CatalogException:
            continue
        found = found or bool(rows)
    if not found:
        code = "unknown_" + what.replace(" ", "_")
        raise UserloopError(code, f"no {what} named {value!r} in this project", where)


def _check_segments(rule: Rule, saved: dict[str, Rule], name: str | None) -> None:
    for node, where in walk(rule):
        if isinstance(node, InSegment) and node.segment not in saved and node.segment != name:
            raise UserloopError(
                "unknown_segment", f"no segment named {node.segment!r} in this project", f"{where}.segment"
            )
    graph = {n: referenced_segments(r) for n, r in saved.items()}
    if name is not None:
        graph[name] = referenced_segments(rule)
    roots = [name] if name is not None else referenced_segments(rule)
    done: set[str] = set()
    for root in roots:
        path = _cycle(graph, root, [], done)
        if path:
            field = next(
                (w + ".segment" for n, w in walk(rule) if isinstance(n, InSegment) and n.segment in path),
                "rule",
            )
            raise UserloopError(
                "segment_cycle", f"segments refer to each other in a cycle: {' -> '.join(path)}", field
            )


def _cycle(graph: dict[str, list[str]], node: str, stack: list[str], done: set[str]) -> list[str] | None:
    """The first cycle reachable from ``node`` (as a path), or None; ``done``: nodes without one."""
    if node in stack:
        return [*stack[stack.index(node) :], node]
    if node in done:
        return None
    for nxt in graph.get(node, []):
        found = _cycle(graph, nxt, [*stack, node], done)
        if found:
            return found
    done.add(node)
    return None
