"""What every analysis query shares: project, inclusive local dates, filters, breakdown.

Each analysis (``userloop/analytics/<kind>.py``) subclasses :class:`Query` with ``tag="<kind>"``;
msgspec decodes the request straight into the right class and rejects unknown fields.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import msgspec

from userloop.errors import UserloopError

Operator = Literal[
    "=", "!=", ">", ">=", "<", "<=", "contains", "not_contains", "in", "not_in", "is_set", "is_not_set", "regex"
]
PropertyType = Literal["event", "person"]
Interval = Literal["hour", "day", "week", "month"]
MAX_RANGE_DAYS = 3660


class PropertyFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    property: str
    operator: Operator = "="
    value: Any = None
    type: PropertyType = "event"


class Breakdown(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    property: str
    type: PropertyType = "event"
    limit: int = 10  # the top N values by the first series; the rest are "$other"


class Query(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="kind"):
    project: int
    date_from: date
    date_to: date
    filters: list[PropertyFilter] = []  # applied to every event the analysis reads
    segment: str | None = None  # a saved segment's name: only its current members' events count

    def validate(self) -> None:
        """Checks msgspec cannot express; subclasses extend and call super()."""
        if self.date_to < self.date_from:
            raise UserloopError("bad_date_range", "date_to is before date_from", "date_to")
        if (self.date_to - self.date_from).days > MAX_RANGE_DAYS:
            raise UserloopError("bad_date_range", f"the range is longer than {MAX_RANGE_DAYS} days", "date_from")
        for i, f in enumerate(self.filters):
            check_filter(f, f"filters[{i}]")


def check_filter(f: PropertyFilter, field: str) -> None:
    if not f.property:
        raise UserloopError("bad_filter", "filter property is empty", f"{field}.property")
    if f.operator in ("in", "not_in"):
        if not isinstance(f.value, list) or not f.value:
            raise UserloopError("bad_filter", f"{f.operator} needs a non-empty list value", f"{field}.value")
    elif f.operator not in ("is_set", "is_not_set") and (f.value is None or isinstance(f.value, list | dict)):
        raise UserloopError("bad_filter", f"{f.operator} needs a single value", f"{field}.value")
    if f.operator in (">", ">=", "<", "<=") and not isinstance(f.value, int | float | str):
        raise UserloopError("bad_filter", f"{f.operator} needs a number, date or text value", f"{field}.value")


def parse_breakdown(value: str | Breakdown | None) -> Breakdown | None:
    if value is None or isinstance(value, Breakdown):
        return value
    return Breakdown(property=value)
