"""Analysis forms: the fields each analysis page shows, and the query they make.

A form is read from the page's URL (GET parameters), so every chart is a link, and a saved chart
keeps these parameters: ``range=30d`` stays "the last 30 days" on a dashboard. :func:`build` turns
them into the same JSON body ``POST /api/query`` takes; advanced users can instead send that body
as ``q`` (JSON), e.g. to use several filters or options the form does not show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from userloop.errors import UserloopError

RANGES = ("7d", "14d", "30d", "90d", "180d", "custom")
DEFAULT_RANGE = "30d"
OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "contains", "not_contains", "in", "not_in", "is_set", "is_not_set")
MATHS = ("total", "uv", "per_user", "sum", "avg", "min", "max")
INTERVALS = ("day", "week", "month")
SERIES = 3
FUNNEL_STEPS = 5
WINDOWS = (("3600", "1h"), ("86400", "1d"), ("604800", "7d"), ("2592000", "30d"))


@dataclass(frozen=True)
class Field:
    name: str
    label: str  # message key
    type: str = "text"  # text | event | property | select | number | checkbox | textarea
    options: tuple[tuple[str, str], ...] = ()  # (value, message key or literal)
    default: str = ""
    group: str = ""  # fields of one group share a line (a series, a filter)


@dataclass
class Form:
    kind: str
    fields: list[Field]
    values: dict[str, str] = field(default_factory=dict)


class Values:
    """The submitted parameters with defaults; bad numbers are 400s naming the form field."""

    def __init__(self, params: dict[str, str], defaults: dict[str, str]):
        self.params = params
        self.defaults = defaults

    def text(self, name: str) -> str:
        value = self.params.get(name)
        return (value if value is not None else self.defaults.get(name, "")).strip()

    def number(self, name: str, lo: int, hi: int) -> int:
        text = self.text(name)
        try:
            value = int(text)
        except ValueError as exc:
            raise UserloopError("bad_parameter", f"{name} must be a whole number", name) from exc
        if not lo <= value <= hi:
            raise UserloopError("bad_parameter", f"{name} must be between {lo} and {hi}", name)
        return value


def _opts(*values: str, prefix: str = "") -> tuple[tuple[str, str], ...]:
    return tuple((v, prefix + v) for v in values)


def date_range(v: Values, today: date) -> tuple[date, date]:
    """Inclusive local dates: ``Nd`` is today and the N - 1 days before it; ``custom`` reads the dates."""
    rng = v.text("range") or DEFAULT_RANGE
    if rng == "custom":
        try:
            return date.fromisoformat(v.text("date_from")), date.fromisoformat(v.text("date_to"))
        except ValueError as exc:
            raise UserloopError("bad_date", "dates are YYYY-MM-DD", "date_from") from exc
    if rng not in RANGES:
        raise UserloopError("bad_parameter", f"range must be one of {', '.join(RANGES)}", "range")
    days = int(rng[:-1])
    return today - timedelta(days=days - 1), today


def common_fields() -> list[Field]:
    return [
        Field("range", "form.range", "select", _opts(*RANGES, prefix="range."), DEFAULT_RANGE, "range"),
        Field("date_from", "form.date_from", "date", group="range"),
        Field("date_to", "form.date_to", "date", group="range"),
        Field("f_type", "form.filter_on", "select", (("event", "form.event_property"), ("person", "form.person_property")),
              "event", "filter"),  # fmt: skip
        Field("f_prop", "form.filter", "property", group="filter"),
        Field("f_op", "form.operator", "select", tuple((o, o) for o in OPERATORS), "=", "filter"),
        Field("f_val", "form.value", group="filter"),
        Field("segment", "form.segment", "segment", group="filter"),
    ]


def _filters(v: Values) -> list[dict[str, Any]]:
    prop = v.text("f_prop")
    if not prop:
        return []
    op = v.text("f_op") or "="
    text = v.text("f_val")
    value: Any = None
    if op in ("in", "not_in"):
        value = [_scalar(x.strip()) for x in text.split(",") if x.strip()]
    elif op not in ("is_set", "is_not_set"):
        value = _scalar(text)
    return [{"property": prop, "operator": op, "value": value, "type": v.text("f_type") or "event"}]


def _scalar(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _breakdown(v: Values, name: str = "bd") -> dict[str, Any] | None:
    prop = v.text(name)
    return {"property": prop, "type": v.text(name + "_type") or "event", "limit": 10} if prop else None


def _pick(events: list[str], *wanted: str) -> str:
    """The first of ``wanted`` the project has, else its most frequent event."""
    for name in wanted:
        if name in events:
            return name
    return events[0] if events else ""


# -- one spec per analysis -------------------------------------------------------------------------
def fields(kind: str, events: list[str]) -> list[Field]:
    """The form of ``kind``; defaults come from the project's events (most frequent first)."""
    ev = lambda *w: _pick(events, *w)  # noqa: E731
    interval = Field("interval", "form.interval", "select", _opts(*INTERVALS, prefix="interval."), "day")
    bd = [
        Field("bd", "form.breakdown", "property", group="opts"),
        Field("bd_type", "form.breakdown_on", "select", (("event", "form.event_property"), ("person", "form.person_property")),
              "event", "opts"),  # fmt: skip
    ]
    if kind == "trends":
        out: list[Field] = []
        for i in range(1, SERIES + 1):
            out += [
                Field(f"e{i}", "form.event", "event", default=ev("$pageview") if i == 1 else "", group=f"series{i}"),
                Field(f"m{i}", "form.math", "select", _opts(*MATHS, prefix="math."), "total", f"series{i}"),
                Field(f"p{i}", "form.property", "property", group=f"series{i}"),
            ]
        return out + [interval, *bd,
                      Field("compare", "form.compare", "checkbox"),
                      Field("chart", "form.chart", "select", (("line", "chart.line"), ("bar", "chart.bar")), "line")]  # fmt: skip
    if kind == "funnel":
        steps = [ev("$pageview"), ev("sign_up"), ev("purchase")]
        return [
            *[Field(f"s{i}", "form.step", "event", default=steps[i - 1] if i <= 3 else "", group="steps")
              for i in range(1, FUNNEL_STEPS + 1)],  # fmt: skip
            Field("window", "form.window", "select", WINDOWS, "86400"),
            *bd,
        ]
    if kind == "retention":
        return [
            Field("start", "form.start_event", "event", default=ev("sign_up", "$pageview")),
            Field("ret", "form.return_event", "event", default=ev("$pageview")),
            Field("interval", "form.interval", "select", _opts(*INTERVALS, prefix="interval."), "week"),
            Field("periods", "form.periods", "number", default="6"),
        ]
    if kind == "paths":
        return [
            Field("anchor", "form.anchor_event", "event", default=ev("$pageview")),
            Field("direction", "form.direction", "select", (("after", "form.after"), ("before", "form.before")), "after"),
            Field("steps", "form.steps", "number", default="4"),
        ]
    if kind == "sessions":
        return [interval, Field("timeout", "form.timeout_minutes", "number", default="30")]
    if kind == "visitors":
        return [interval, Field("event", "form.activity_event", "event")]
    if kind == "distribution":
        return [
            Field("measure", "form.measure", "select", _opts("count", "sum", "time_between", prefix="measure."), "count"),
            Field("event", "form.event", "event", default=ev("$pageview")),
            Field("property", "form.property", "property"),
            Field("from", "form.from_event", "event"),
            Field("to", "form.to_event", "event"),
        ]
    if kind == "channels":
        return [
            Field("attribution", "form.attribution", "select", _opts("first_touch", "last_touch", prefix="attribution."),
                  "first_touch"),  # fmt: skip
            Field("dimension", "form.dimension", "select",
                  tuple((d, d) for d in ("channel", "utm_source", "utm_medium", "utm_campaign", "referring_domain")),
                  "channel"),  # fmt: skip
            Field("costs", "form.costs", "textarea"),
        ]
    if kind == "content":
        return [
            Field("sort", "form.sort", "select", tuple((s, f"col.{s}") for s in (
                "reads", "readers", "shares", "sharers", "new_users", "conversions", "conversion_rate", "share_rate")),
                "reads"),  # fmt: skip
            Field("limit", "form.limit", "number", default="20"),
        ]
    if kind == "virality":
        return [Field("interval", "form.interval", "select", _opts(*INTERVALS, prefix="interval."), "week")]
    if kind == "ltv":
        return [
            Field("rev_event", "form.revenue_event", "event", default=ev("purchase")),
            Field("rev_prop", "form.revenue_property", "property", default="revenue"),
            Field("cohort_event", "form.cohort_event", "event"),
            Field("interval", "form.interval", "select", _opts(*INTERVALS, prefix="interval."), "week"),
            Field("periods", "form.periods", "number", default="6"),
        ]
    raise UserloopError("unknown_kind", f"no analysis named {kind!r}", "kind", status=404)


def form(kind: str, events: list[str], params: dict[str, str]) -> Form:
    specs = fields(kind, events) + common_fields()
    values = {f.name: params.get(f.name, f.default) for f in specs}
    return Form(kind, specs, values)


def build(kind: str, project_id: int, params: dict[str, str], events: list[str], today: date) -> dict[str, Any]:
    """The ``/api/query`` body of the form, or its ``q`` parameter (dates default to the form's range)."""
    specs = fields(kind, events) + common_fields()
    v = Values(params, {f.name: f.default for f in specs})
    d0, d1 = date_range(v, today)
    dates = {"date_from": d0.isoformat(), "date_to": d1.isoformat()}
    if params.get("q", "").strip():
        try:
            body = json.loads(params["q"])
        except ValueError as exc:
            raise UserloopError("malformed_json", f"q is not valid JSON: {exc}", "q") from exc
        if not isinstance(body, dict):
            raise UserloopError("malformed_json", "q must be a JSON object", "q")
        return {**dates, **body, "kind": kind, "project": project_id}
    q: dict[str, Any] = {"kind": kind, "project": project_id, **dates}
    if flt := _filters(v):
        q["filters"] = flt
    if segment := v.text("segment"):
        q["segment"] = segment
    q.update(_BUILDERS[kind](v))
    return q


def _trends(v: Values) -> dict[str, Any]:
    series = []
    for i in range(1, SERIES + 1):
        if event := v.text(f"e{i}"):
            s: dict[str, Any] = {"event": event, "math": v.text(f"m{i}") or "total"}
            if prop := v.text(f"p{i}"):
                s["property"] = prop
            series.append(s)
    out: dict[str, Any] = {"series": series, "interval": v.text("interval") or "day", "compare": v.text("compare") == "1"}
    if bd := _breakdown(v):
        out["breakdown"] = bd
    return out


def _funnel(v: Values) -> dict[str, Any]:
    steps = [{"event": e} for i in range(1, FUNNEL_STEPS + 1) if (e := v.text(f"s{i}"))]
    out: dict[str, Any] = {"steps": steps, "window_seconds": v.number("window", 1, 366 * 86400)}
    if bd := _breakdown(v):
        out["breakdown"] = bd
    return out


def _distribution(v: Values) -> dict[str, Any]:
    measure = v.text("measure") or "count"
    if measure == "time_between":
        return {"measure": measure, "from_event": v.text("from") or None, "to_event": v.text("to") or None}
    out: dict[str, Any] = {"measure": measure, "event": v.text("event") or None}
    if measure == "sum":
        out["property"] = v.text("property") or None
    return out


def _channels(v: Values) -> dict[str, Any]:
    dimension = v.text("dimension") or "channel"
    costs = []
    for n, line in enumerate(v.text("costs").splitlines()):
        if not line.strip():
            continue
        name, sep, amount = line.rpartition("=")
        try:
            cost = float(amount)
        except ValueError:
            cost = -1.0
        if not sep or not name.strip() or cost < 0:
            raise UserloopError("bad_cost", f"line {n + 1}: write one 'value = cost' per line", "costs")
        costs.append({dimension: name.strip(), "cost": cost})
    return {"attribution": v.text("attribution") or "first_touch", "dimension": dimension, "costs": costs}


_BUILDERS: dict[str, Any] = {
    "trends": _trends,
    "funnel": _funnel,
    "retention": lambda v: {"start_event": v.text("start"), "return_event": v.text("ret"),
                            "interval": v.text("interval") or "week", "periods": v.number("periods", 1, 400)},  # fmt: skip
    "paths": lambda v: {("start_event" if v.text("direction") != "before" else "end_event"): v.text("anchor") or None,
                        "steps": v.number("steps", 2, 20)},  # fmt: skip
    "sessions": lambda v: {"interval": v.text("interval") or "day", "timeout_minutes": v.number("timeout", 1, 1440)},
    "visitors": lambda v: {"interval": v.text("interval") or "day", **({"event": e} if (e := v.text("event")) else {})},
    "distribution": _distribution,
    "channels": _channels,
    "content": lambda v: {"sort": v.text("sort") or "reads", "limit": v.number("limit", 1, 10000)},
    "virality": lambda v: {"interval": v.text("interval") or "week"},
    "ltv": lambda v: {"revenue_event": v.text("rev_event"), "revenue_property": v.text("rev_prop") or "revenue",
                      "interval": v.text("interval") or "week", "periods": v.number("periods", 1, 400),
                      **({"cohort_event": c} if (c := v.text("cohort_event")) else {})},  # fmt: skip
}
