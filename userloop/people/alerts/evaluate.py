"""Evaluating a rule's condition now: what was measured, against what, and whether it fires."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from userloop.errors import UserloopError
from userloop.people.alerts.model import LayerFlow, Metric, Rule
from userloop.people.layers import service as layers
from userloop.people.layers.model import NONE, layer_names
from userloop.query.runner import decode_query, run_query
from userloop.query.sql import Ctx, check_events, check_properties, filter_properties
from userloop.store.duckdb import Project, Store


@dataclass
class Evaluation:
    fired: bool
    value: float | None  # the measured share or change
    threshold: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def evaluate(store: Store, project: Project, rule: Rule, now: datetime) -> Evaluation:
    if isinstance(rule.condition, LayerFlow):
        return _layer_flow(store, project, rule.condition, now)
    return _metric(store, project, rule.condition, now)


def _layer_flow(store: Store, project: Project, c: LayerFlow, now: datetime) -> Evaluation:
    """The share of persons in ``from`` layers ``window_days`` ago who are in ``to`` layers now."""
    model = layers.load(store, project.id, c.model)
    start = now - timedelta(days=c.window_days)
    mig = layers.migration_between(store, project, model, start, now)
    src, dst = set(c.from_), set(c.to)
    base = sum(n for layer, n in mig["from_totals"].items() if layer in src)
    moved = sum(cell["count"] for cell in mig["matrix"] if cell["from"] in src and cell["to"] in dst)
    share = moved / base if base else None
    fired = share is not None and base >= c.min_persons and share > c.threshold
    pct = "n/a" if share is None else f"{share:.1%}"
    message = (
        f"{pct} of {base} persons of {c.model} in {' or '.join(c.from_)} on {start:%Y-%m-%d %H:%M} UTC moved to "
        f"{' or '.join(c.to)} within {c.window_days} days (threshold {c.threshold:.1%})"
    )
    details = {"model": c.model, "from": c.from_, "to": c.to, "window_start": start.isoformat(),
               "window_end": now.isoformat(), "base": base, "moved": moved, "share": share}  # fmt: skip
    return Evaluation(fired=fired, value=share, threshold=c.threshold, message=message, details=details)


def _metric(store: Store, project: Project, c: Metric, now: datetime) -> Evaluation:
    """The series over the last ``period_days`` days against the ``period_days`` before."""
    ctx = Ctx(store, project)
    today = now.astimezone(ctx.tz).date()
    end = today if c.include_today else today - timedelta(days=1)
    start = end - timedelta(days=c.period_days - 1)
    result = run_query(store, project, trends_body(project, c, start.isoformat(), end.isoformat()))
    by = {r["compare"]: r for r in result["results"]}
    cur, prev = _value(c, by["current"]), _value(c, by["previous"])
    change = (cur - prev) / prev if prev else None
    fired = change is not None and (
        (c.direction == "down" and change <= -c.threshold)
        or (c.direction == "up" and change >= c.threshold)
        or (c.direction == "either" and abs(change) >= c.threshold)
    )
    prev_end = start - timedelta(days=1)
    prev_start = prev_end - timedelta(days=c.period_days - 1)
    name = c.series.name or f"{c.series.event} ({c.series.math})"
    moved = "n/a (the previous period is 0)" if change is None else f"{change:+.1%}"
    message = (
        f"{name}, {c.value.replace('_', ' ')}: {cur:g} from {start} to {end} against {prev:g} from {prev_start} "
        f"to {prev_end}: {moved} (alert when {c.direction} {c.threshold:.0%})"
    )
    details = {"series": name, "value": c.value, "current": cur, "previous": prev, "change": change,
               "current_period": [start.isoformat(), end.isoformat()],
               "previous_period": [prev_start.isoformat(), prev_end.isoformat()]}  # fmt: skip
    return Evaluation(fired=fired, value=change, threshold=c.threshold, message=message, details=details)


def trends_body(project: Project, c: Metric, date_from: str, date_to: str) -> dict[str, Any]:
    import msgspec

    return {
        "kind": "trends", "project": project.id, "date_from": date_from, "date_to": date_to, "interval": "day",
        "compare": True, "series": [msgspec.to_builtins(c.series)], "filters": msgspec.to_builtins(c.filters),
    }  # fmt: skip


def _value(c: Metric, r: dict[str, Any]) -> float:
    if c.value == "total":
        return float(r["total"])
    if c.value == "last_day":
        return float(r["values"][-1])
    return sum(r["values"]) / len(r["values"])


def check_against_store(store: Store, project: Project, rule: Rule) -> None:
    """400 naming the field when the condition refers to what the project does not have."""
    c = rule.condition
    if isinstance(c, LayerFlow):
        try:
            model = layers.load(store, project.id, c.model)
        except UserloopError as exc:
            raise UserloopError("unknown_layer_model", exc.message, "condition.model") from exc
        known = {*layer_names(model.kind, model.params), NONE}
        for key, names in (("from", c.from_), ("to", c.to)):
            for i, name in enumerate(names):
                if name not in known:
                    raise UserloopError(
                        "unknown_layer", f"model {c.model!r} has no layer {name!r}", f"condition.{key}[{i}]"
                    )
        return
    body = trends_body(project, c, "2000-01-01", "2000-01-07")
    try:
        query = decode_query(body)
        query.validate()
        ctx = Ctx(store, project)
        check_events(ctx, [c.series.event], "series[{i}].event")
        wanted = filter_properties(c.filters, "filters") + filter_properties(
            c.series.filters, "series[0].filters"
        )
        if c.series.property:
            wanted.append((c.series.property, "event", "series[0].property"))
        check_properties(ctx, wanted)
    except UserloopError as exc:
        where = (exc.field or "").replace("series[0]", "series")
        raise UserloopError(exc.code, exc.message, f"condition.{where}" if where else "condition") from exc
