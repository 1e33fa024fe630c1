"""The segment rule tree: typed nodes, decoding with field paths, and the checks msgspec cannot do.

A rule is a tree of ``and`` / ``or`` / ``not`` over conditions, each a msgspec Struct tagged by
``kind``. ``{"and": [...]}`` may be written without ``"kind": "and"`` (likewise ``or``/``not``).
Every error names the field it is about as a path from the request body, e.g. ``rule.and[2].times``.

Condition kinds (see ``docs/people/segments.md``):

- ``person``    a person property compared like a query filter (``=``, ``!=``, ``>``, ``in``, ``is_set``, ...)
- ``tag``       a tag's current value (``tag_values``), compared as a number when the value is one
- ``event``     did EVENT (with event property filters) ``times`` times (``operator`` ``>=`` by
                default, or ``<=``, ``=``, ``>``, ``<``, ``!=``) in a window
- ``no_event``  did not do EVENT in a window
- ``aggregate`` sum / avg / min / max of an event property over a window compared to a number
- ``segment``   member of another saved segment (no cycles)
- ``funnel``    reached step ``dropped_after_step`` of a funnel but not the next one
- ``layer``     in layer L of stratification model M (``layer_members``)

Windows: ``last_days: D`` is today and the D - 1 days before it, as whole days in the project's time
zone; ``date_from``/``date_to`` are inclusive local dates; neither means all time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import date
from typing import Any, Literal

import msgspec

from userloop.analytics.funnel import MAX_STEPS, MAX_WINDOW_SECONDS, FunnelStep
from userloop.errors import UserloopError
from userloop.query.model import MAX_RANGE_DAYS, Operator, PropertyFilter, check_filter

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_CONDITIONS = 64
MAX_DEPTH = 16
MAX_TIMES = 1_000_000_000

Compare = Literal["=", "!=", ">", ">=", "<", "<="]
Function = Literal["sum", "avg", "min", "max"]


class Node(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True, tag_field="kind"):
    """A node of the rule tree."""


class And(Node, tag="and", kw_only=True):
    and_: list[Rule] = msgspec.field(name="and")


class Or(Node, tag="or", kw_only=True):
    or_: list[Rule] = msgspec.field(name="or")


class Not(Node, tag="not", kw_only=True):
    not_: Rule = msgspec.field(name="not")


class PersonProperty(Node, tag="person", kw_only=True):
    property: str
    operator: Operator = "="
    value: Any = None


class TagValue(Node, tag="tag", kw_only=True):
    tag: str
    operator: Operator = "="
    value: Any = None


class Windowed(Node, kw_only=True):
    """Conditions over the events of a time window (none: all time)."""

    last_days: int | None = None
    date_from: date | None = None
    date_to: date | None = None


class DidEvent(Windowed, tag="event", kw_only=True):
    event: str
    operator: Compare = ">="
    times: int = 1
    filters: list[PropertyFilter] = []


class NoEvent(Windowed, tag="no_event", kw_only=True):
    event: str
    filters: list[PropertyFilter] = []


class Aggregate(Windowed, tag="aggregate", kw_only=True):
    event: str
    property: str
    function: Function
    operator: Compare
    value: float
    filters: list[PropertyFilter] = []


class InSegment(Node, tag="segment", kw_only=True):
    segment: str


class FunnelDrop(Windowed, tag="funnel", kw_only=True):
    steps: list[FunnelStep]
    dropped_after_step: int  # 1-based: reached this step, not the next
    window_seconds: int = 86_400
    filters: list[PropertyFilter] = []


class InLayer(Node, tag="layer", kw_only=True):
    model: str
    layer: str


Rule = (
    And
    | Or
    | Not
    | PersonProperty
    | TagValue
    | DidEvent
    | NoEvent
    | Aggregate
    | InSegment
    | FunnelDrop
    | InLayer
)


class SegmentDef(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A saved segment: ``dynamic`` (recomputed on ``schedule`` and on demand) or ``static`` (a
    snapshot of the members at creation and at each explicit refresh)."""

    name: str
    rule: Rule
    type: Literal["dynamic", "static"] = "dynamic"
    schedule: str | None = None  # "interval:SECONDS" | "cron:M H DOM MON DOW" (dynamic only)
    description: str = ""


class Preview(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rule: Rule
    sample: int = 10


# -- decoding ----------------------------------------------------------------------------------------

_AT = re.compile(r" - at `\$\.?(.*)`$")


def _normalize(node: Any) -> Any:
    """``{"and": [...]}`` -> ``{"kind": "and", "and": [...]}`` (and ``or``, ``not``), recursively."""
    if not isinstance(node, dict):
        return node
    if "kind" not in node and len(node) == 1:
        (key,) = node
        if key in ("and", "or", "not"):
            node = {"kind": key, **node}
    kind = node.get("kind")
    if kind in ("and", "or") and isinstance(node.get(kind), list):
        return {**node, kind: [_normalize(x) for x in node[kind]]}
    if kind == "not" and "not" in node:
        return {**node, "not": _normalize(node["not"])}
    return node


def decode(raw: Any, type_: type[Any]) -> Any:
    """``raw`` (a dict from JSON) as ``type_``; 400 naming the field on any mismatch."""
    if not isinstance(raw, dict):
        raise UserloopError("invalid_body", "expected a JSON object")
    if "rule" in raw:
        raw = {**raw, "rule": _normalize(raw["rule"])}
    try:
        return msgspec.convert(raw, type_)
    except msgspec.ValidationError as exc:
        raise _error(exc) from exc


def _error(exc: msgspec.ValidationError) -> UserloopError:
    text = str(exc)
    m = _AT.search(text)
    field = m.group(1) if m else None
    message = _AT.sub("", text)
    if name := re.search(r"unknown field `([^`]*)`", text):
        return UserloopError("unknown_field", message, f"{field}.{name.group(1)}" if field else name.group(1))
    if name := re.search(r"missing required field `([^`]*)`", text):
        return UserloopError("missing_field", message, f"{field}.{name.group(1)}" if field else name.group(1))
    if field and field.endswith(".kind") or field == "kind":
        message += f"; expected one of {', '.join(KINDS)}"
        return UserloopError("unknown_kind", message, field)
    return UserloopError("invalid_field", message, field)


KINDS = ("and", "or", "not", "person", "tag", "event", "no_event", "aggregate", "segment", "funnel", "layer")


# -- walking -----------------------------------------------------------------------------------------


def children(node: Rule, path: str) -> Iterator[tuple[Rule, str]]:
    if isinstance(node, And):
        yield from ((c, f"{path}.and[{i}]") for i, c in enumerate(node.and_))
    elif isinstance(node, Or):
        yield from ((c, f"{path}.or[{i}]") for i, c in enumerate(node.or_))
    elif isinstance(node, Not):
        yield node.not_, f"{path}.not"


def walk(node: Rule, path: str = "rule") -> Iterator[tuple[Rule, str]]:
    """Every node with its field path, parents first."""
    yield node, path
    for child, where in children(node, path):
        yield from walk(child, where)


def decode_rule(text: str | bytes) -> Rule:
    """A rule as stored (JSON written by :func:`encode_rule`)."""
    return msgspec.json.decode(text, type=Rule)  # type: ignore[arg-type, no-any-return]


def encode_rule(rule: Rule) -> str:
    return msgspec.json.encode(rule).decode()


def referenced_segments(rule: Rule) -> list[str]:
    return [n.segment for n, _ in walk(rule) if isinstance(n, InSegment)]


# -- checks without the store ------------------------------------------------------------------------


def check_rule(rule: Rule, path: str = "rule") -> None:
    """Shape checks on the whole tree (the store-dependent ones are in ``validate.py``)."""
    leaves = 0
    for node, where in walk(rule, path):
        depth = where.count(".")
        if depth > MAX_DEPTH:
            raise UserloopError("rule_too_deep", f"a rule nests at most {MAX_DEPTH} levels", where)
        if isinstance(node, And | Or):
            if not (node.and_ if isinstance(node, And) else node.or_):
                op = "and" if isinstance(node, And) else "or"
                raise UserloopError("empty_group", f"'{op}' needs at least one condition", f"{where}.{op}")
            continue
        if isinstance(node, Not):
            continue
        leaves += 1
        if leaves > MAX_CONDITIONS:
            raise UserloopError("rule_too_large", f"a rule has at most {MAX_CONDITIONS} conditions", where)
        _check_leaf(node, where)


def _check_leaf(node: Rule, where: str) -> None:
    if isinstance(node, PersonProperty):
        check_filter(PropertyFilter(property=node.property, operator=node.operator, value=node.value), where)
    elif isinstance(node, TagValue):
        if not node.tag:
            raise UserloopError("bad_condition", "tag is empty", f"{where}.tag")
        check_filter(PropertyFilter(property=node.tag, operator=node.operator, value=node.value), where)
    elif isinstance(node, InSegment):
        if not NAME.match(node.segment):
            raise UserloopError(
                "bad_condition", f"{node.segment!r} is not a segment name", f"{where}.segment"
            )
    elif isinstance(node, InLayer):
        if not node.model:
            raise UserloopError("bad_condition", "model is empty", f"{where}.model")
        if not node.layer:
            raise UserloopError("bad_condition", "layer is empty", f"{where}.layer")
    elif isinstance(node, FunnelDrop):
        _check_window(node, where, required=True)
        _check_funnel(node, where)
    elif isinstance(node, DidEvent | NoEvent | Aggregate):
        _check_window(node, where, required=False)
        if not node.event:
            raise UserloopError("bad_condition", "event is empty", f"{where}.event")
        _check_event_filters(node.filters, f"{where}.filters")
        if isinstance(node, DidEvent):
            if not 0 <= node.times <= MAX_TIMES:
                raise UserloopError(
                    "bad_condition", f"times must be between 0 and {MAX_TIMES}", f"{where}.times"
                )
            if node.operator == "<" and node.times == 0:
                raise UserloopError("bad_condition", "fewer than 0 times matches nobody", f"{where}.times")
        if isinstance(node, Aggregate):
            if not node.property:
                raise UserloopError("bad_condition", "property is empty", f"{where}.property")
            if not math.isfinite(node.value):
                raise UserloopError("bad_condition", "value must be a finite number", f"{where}.value")


def _check_event_filters(filters: list[PropertyFilter], where: str) -> None:
    for i, f in enumerate(filters):
        check_filter(f, f"{where}[{i}]")
        if f.type != "event":
            raise UserloopError(
                "bad_filter",
                "event conditions filter on event properties; use a person condition",
                f"{where}[{i}].type",
            )


def _check_window(node: Windowed, where: str, *, required: bool) -> None:
    if node.last_days is not None:
        if node.date_from is not None or node.date_to is not None:
            raise UserloopError(
                "bad_window", "give last_days or date_from/date_to, not both", f"{where}.last_days"
            )
        if not 1 <= node.last_days <= MAX_RANGE_DAYS:
            raise UserloopError(
                "bad_window", f"last_days must be between 1 and {MAX_RANGE_DAYS}", f"{where}.last_days"
            )
        return
    if (node.date_from is None) != (node.date_to is None):
        missing = "date_to" if node.date_to is None else "date_from"
        raise UserloopError("bad_window", "date_from and date_to go together", f"{where}.{missing}")
    if node.date_from is not None and node.date_to is not None:
        if node.date_to < node.date_from:
            raise UserloopError("bad_window", "date_to is before date_from", f"{where}.date_to")
        if (node.date_to - node.date_from).days > MAX_RANGE_DAYS:
            raise UserloopError(
                "bad_window", f"the window is longer than {MAX_RANGE_DAYS} days", f"{where}.date_from"
            )
    elif required:
        raise UserloopError(
            "bad_window", "this condition needs last_days or date_from/date_to", f"{where}.last_days"
        )


def _check_funnel(node: FunnelDrop, where: str) -> None:
    if not 2 <= len(node.steps) <= MAX_STEPS:
        raise UserloopError("bad_funnel", f"a funnel has 2 to {MAX_STEPS} steps", f"{where}.steps")
    for i, s in enumerate(node.steps):
        if not s.event:
            raise UserloopError("bad_funnel", "step event is empty", f"{where}.steps[{i}].event")
        _check_event_filters(s.filters, f"{where}.steps[{i}].filters")
    _check_event_filters(node.filters, f"{where}.filters")
    if not 1 <= node.window_seconds <= MAX_WINDOW_SECONDS:
        raise UserloopError(
            "bad_funnel",
            f"window_seconds must be between 1 and {MAX_WINDOW_SECONDS}",
            f"{where}.window_seconds",
        )
    if not 1 <= node.dropped_after_step < len(node.steps):
        raise UserloopError(
            "bad_funnel",
            f"dropped_after_step must be between 1 and {len(node.steps) - 1}",
            f"{where}.dropped_after_step",
        )


def check_definition(d: SegmentDef) -> None:
    if not NAME.match(d.name):
        raise UserloopError(
            "bad_name",
            "name must be 1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
            "name",
        )
    if d.schedule is not None and d.type == "static":
        raise UserloopError(
            "bad_schedule", "static segments are refreshed on request, not on a schedule", "schedule"
        )
    if len(d.description) > 2000:
        raise UserloopError("bad_description", "description is longer than 2000 characters", "description")
    check_rule(d.rule)
