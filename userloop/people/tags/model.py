"""Tag definitions as typed data: decoding, and the checks msgspec cannot express.

A tag is ``static`` (set by API/CSV, or following a person property), ``semi_dynamic`` (only the
current value: set by API/CSV or computed) or ``dynamic`` (computed, every change kept in
``tag_history``). Its *source* follows from the definition: ``rule``, ``sql``, ``property``, or
none (``manual``: values come from ``PUT .../values`` and CSV imports).
"""

from __future__ import annotations

import builtins
import re
from datetime import date
from typing import Any, Literal

import msgspec

from userloop.errors import UserloopError
from userloop.query.model import MAX_RANGE_DAYS, PropertyFilter, check_filter
from userloop.schedule import parse_trigger

Kind = Literal["static", "semi_dynamic", "dynamic"]
Aggregate = Literal["count", "sum", "avg", "min", "max", "distinct", "first", "last", "most_frequent"]
Source = Literal["manual", "property", "rule", "sql"]

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
DEFAULT_CATEGORIES = ("basic info", "member", "consumption", "activity", "temporary")
DEFAULT_CATEGORY: dict[str, str] = {"static": "basic info", "semi_dynamic": "member", "dynamic": "activity"}
PROPERTY_TAG_SCHEDULE = "interval:300"  # a person-property tag follows the profiles this often by default
NUMERIC_AGGREGATES = frozenset({"count", "sum", "avg", "min", "max", "distinct"})
TIMESTAMP = "timestamp"  # the event time: a property for min/max ("last purchase date")
MAX_SQL_CHARS = 20_000
MAX_BUCKETS = 50


class Window(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Either the ``last_days`` before the compute time, or inclusive local dates."""

    last_days: int | None = None
    date_from: date | None = None
    date_to: date | None = None


class Bucket(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """A named value for aggregates ``<= max`` (after the previous bucket); no max: the rest."""

    name: str
    max: float | None = None


class Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    aggregate: Aggregate
    event: str | None = None  # None: every event
    property: str | None = None  # an event property or column; "timestamp" for min/max
    filters: list[PropertyFilter] = []
    window: Window | None = None  # None: all events up to the compute time
    buckets: list[Bucket] | None = None
    fill_zero: bool = False  # count/distinct/sum: persons without matching events get 0


class TagDef(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    name: str
    kind: Kind
    description: str = ""
    category: str | None = None  # "consumption/orders": a path in the catalogue
    rule: Rule | None = None
    sql: str | None = None
    property: str | None = None  # a person property (static tags)
    schedule: str | None = None  # "interval:SECONDS" | "cron:M H DOM MON DOW"

    @builtins.property  # the field 'property' shadows the decorator in this class
    def source(self) -> Source:
        if self.rule is not None:
            return "rule"
        if self.sql is not None:
            return "sql"
        if self.property is not None:
            return "property"
        return "manual"

    @builtins.property
    def computed(self) -> bool:
        return self.source != "manual"


_AT = re.compile(r" - at `\$\.?(.*)`$")


def _decode_error(exc: msgspec.ValidationError | msgspec.DecodeError) -> UserloopError:
    text = str(exc)
    m = _AT.search(text)
    where = m.group(1) if m else None
    message = _AT.sub("", text)
    if "unknown field" in text:
        name = re.search(r"unknown field `([^`]*)`", text)
        full = f"{where}.{name.group(1)}" if where and name else (name.group(1) if name else where)
        return UserloopError("unknown_field", message, full)
    if "missing required field" in text.lower():
        name = re.search(r"required field `([^`]*)`", text)
        full = f"{where}.{name.group(1)}" if where and name else (name.group(1) if name else where)
        return UserloopError("missing_field", message, full)
    return UserloopError("invalid_field", message, where)


def decode(raw: dict[str, Any]) -> TagDef:
    """A validated definition from JSON-like data; 400 naming the field otherwise."""
    if not isinstance(raw, dict):
        raise UserloopError("invalid_body", "a tag definition must be a JSON object")
    try:
        tag = msgspec.convert(raw, TagDef)
    except msgspec.ValidationError as exc:
        raise _decode_error(exc) from exc
    validate(tag)
    return tag


def to_dict(tag: TagDef) -> dict[str, Any]:
    return msgspec.to_builtins(tag)  # type: ignore[no-any-return]


def normal_category(text: str | None, kind: str) -> str:
    """``"Consumption / Orders"`` -> ``"consumption/orders"``: trimmed, lower-case segments."""
    if text is None:
        return DEFAULT_CATEGORY[kind]
    parts = [p.strip().lower() for p in text.split("/")]
    if not text.strip() or any(not p for p in parts):
        raise UserloopError("invalid_category", "category is a path like 'consumption/orders'", "category")
    if len(parts) > 5 or any(len(p) > 64 or not p.isprintable() for p in parts):
        raise UserloopError("invalid_category", "at most 5 levels of at most 64 printable characters", "category")
    return "/".join(parts)


def validate(tag: TagDef) -> None:
    if not NAME.match(tag.name):
        raise UserloopError(
            "invalid_name", "name is a slug: a lower-case letter, then letters, digits or _ (64 at most)", "name"
        )
    given = [k for k in ("rule", "sql", "property") if getattr(tag, k) is not None]
    if len(given) > 1:
        raise UserloopError("conflicting_source", f"give one of rule, sql or property, not {' and '.join(given)}",
                            given[1])
    if tag.kind == "static" and tag.source in ("rule", "sql"):
        raise UserloopError("static_tag_computed", "a static tag is set, imported or follows a person property; "
                            "use kind semi_dynamic or dynamic for a computed tag", tag.source)
    if tag.kind != "static" and tag.property is not None:
        raise UserloopError("property_tag_not_static", "only static tags follow a person property", "property")
    if tag.kind == "dynamic" and not tag.computed:
        raise UserloopError("dynamic_tag_needs_rule", "a dynamic tag is computed: give a rule or sql", "rule")
    if tag.property is not None and not tag.property.strip():
        raise UserloopError("invalid_field", "property must not be empty", "property")
    if len(tag.description) > 2000:
        raise UserloopError("invalid_field", "description is longer than 2000 characters", "description")
    tag.category = normal_category(tag.category, tag.kind)
    if tag.schedule is None and tag.source == "property":
        tag.schedule = PROPERTY_TAG_SCHEDULE
    if tag.schedule is not None:
        parse_trigger(tag.schedule)
    if tag.sql is not None:
        if not tag.sql.strip():
            raise UserloopError("invalid_sql", "sql must not be empty", "sql")
        if len(tag.sql) > MAX_SQL_CHARS:
            raise UserloopError("invalid_sql", f"sql is longer than {MAX_SQL_CHARS} characters", "sql")
    if tag.rule is not None:
        validate_rule(tag.rule)


def validate_rule(rule: Rule) -> None:
    agg = rule.aggregate
    if agg == "count":
        if rule.property is not None:
            raise UserloopError("invalid_field", "count takes no property (filter the events instead)", "rule.property")
    elif not rule.property:
        raise UserloopError("property_required", f"aggregate {agg} needs a property", "rule.property")
    if rule.property == TIMESTAMP and agg not in ("min", "max"):
        raise UserloopError("invalid_field", "the event timestamp can be aggregated with min or max only",
                            "rule.property")
    if rule.event is not None and not rule.event:
        raise UserloopError("invalid_field", "event must not be empty (leave it out for every event)", "rule.event")
    for i, f in enumerate(rule.filters):
        check_filter(f, f"rule.filters[{i}]")
    if rule.window is not None:
        validate_window(rule.window)
    if rule.fill_zero and agg not in ("count", "distinct", "sum"):
        raise UserloopError("invalid_field", "fill_zero applies to count, distinct and sum", "rule.fill_zero")
    if rule.buckets is not None:
        numeric = agg in NUMERIC_AGGREGATES and rule.property != TIMESTAMP
        if not numeric:
            raise UserloopError("invalid_buckets", f"buckets need a numeric aggregate, not {agg}", "rule.buckets")
        validate_buckets(rule.buckets)


def validate_window(w: Window) -> None:
    if w.last_days is not None:
        if w.date_from is not None or w.date_to is not None:
            raise UserloopError("invalid_window", "give last_days or date_from/date_to, not both", "rule.window")
        if not 1 <= w.last_days <= MAX_RANGE_DAYS:
            raise UserloopError("invalid_window", f"last_days must be between 1 and {MAX_RANGE_DAYS}",
                                "rule.window.last_days")
        return
    if w.date_from is None or w.date_to is None:
        missing = "date_from" if w.date_from is None else "date_to"
        raise UserloopError("invalid_window", "a window needs last_days, or both date_from and date_to",
                            f"rule.window.{missing}")
    if w.date_to < w.date_from:
        raise UserloopError("invalid_window", "date_to is before date_from", "rule.window.date_to")


def validate_buckets(buckets: list[Bucket]) -> None:
    if not buckets or len(buckets) > MAX_BUCKETS:
        raise UserloopError("invalid_buckets", f"give 1 to {MAX_BUCKETS} buckets", "rule.buckets")
    seen: set[str] = set()
    previous: float | None = None
    for i, b in enumerate(buckets):
        where = f"rule.buckets[{i}]"
        if not b.name.strip() or len(b.name) > 200:
            raise UserloopError("invalid_buckets", "a bucket needs a name (200 characters at most)", f"{where}.name")
        if b.name in seen:
            raise UserloopError("invalid_buckets", f"bucket name {b.name!r} is used twice", f"{where}.name")
        seen.add(b.name)
        if b.max is None:
            if i != len(buckets) - 1:
                raise UserloopError("invalid_buckets", "only the last bucket may leave out max", f"{where}.max")
            continue
        if previous is not None and b.max <= previous:
            raise UserloopError("invalid_buckets", "bucket maxima must increase", f"{where}.max")
        previous = b.max
