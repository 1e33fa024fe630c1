"""Alert rule definitions: a condition, the channels that deliver it, when to check it.

Conditions (``condition.type``):

- ``layer_flow``: more than ``threshold`` (a fraction) of the persons in layers ``from`` of layer
  model ``model`` ``window_days`` ago are in layers ``to`` now;
- ``metric``: a trends series (``userloop/analytics/trends.py``) over the last ``period_days``
  complete days moved ``down`` / ``up`` / ``either`` way by at least ``threshold`` (a fraction)
  against the period before.

Channels (``channels[i].type``): ``webhook`` (a JSON POST) and ``email`` (SMTP; settings from the
channel or ``USERLOOP_SMTP_*``, see ``deliver.py``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from userloop.analytics.trends import Series
from userloop.errors import UserloopError
from userloop.people.layers.model import check_name, convert
from userloop.query.model import PropertyFilter

Days = Annotated[int, msgspec.Meta(ge=1, le=366)]
Fraction = Annotated[float, msgspec.Meta(gt=0)]
Layers = Annotated[list[Annotated[str, msgspec.Meta(min_length=1)]], msgspec.Meta(min_length=1)]
EMAIL_RE = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")
MASK = "***"


class LayerFlow(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag="layer_flow", tag_field="type"):
    model: str
    from_: Layers = msgspec.field(name="from")
    to: Layers
    window_days: Days = 7
    threshold: Annotated[float, msgspec.Meta(ge=0, le=1)]  # fires when the moved share is more than this
    min_persons: Annotated[int, msgspec.Meta(ge=1)] = 1  # the least persons in ``from`` to judge


class Metric(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag="metric", tag_field="type"):
    series: Series
    filters: list[PropertyFilter] = []
    period_days: Days = 7
    value: Literal["daily_average", "total", "last_day"] = "daily_average"
    direction: Literal["down", "up", "either"] = "down"
    threshold: Fraction  # 0.2: a change of 20% or more
    include_today: bool = False  # the current period ends today (partial) instead of yesterday


Condition = LayerFlow | Metric


class Webhook(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag="webhook", tag_field="type"):
    url: str
    headers: dict[str, str] = {}
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0


class Email(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag="email", tag_field="type"):
    to: Annotated[list[str], msgspec.Meta(min_length=1)]
    subject: str | None = None
    smtp_host: str | None = None
    smtp_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    sender: str | None = None  # the From address
    username: str | None = None
    password: str | None = None
    security: Literal["none", "starttls", "ssl"] | None = None
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0


Channel = Webhook | Email


class Definition(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    condition: dict[str, Any]
    channels: list[dict[str, Any]] = []
    schedule: str | None = "interval:3600"
    cooldown_minutes: Annotated[int, msgspec.Meta(ge=0, le=525600)] = 1440
    enabled: bool = True
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class Rule(msgspec.Struct, kw_only=True):
    name: str
    condition: Condition
    channels: list[Channel]
    schedule: str | None
    cooldown_minutes: int
    enabled: bool
    description: str

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        if not secrets:  # the stored password and header values are never shown back
            for ch in out["channels"]:
                if ch.get("password"):
                    ch["password"] = MASK
                if ch.get("headers"):
                    ch["headers"] = dict.fromkeys(ch["headers"], MASK)
        return out


def parse_rule(raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise UserloopError("invalid_body", "an alert rule is a JSON object")
    d: Definition = convert(raw, Definition)
    check_name(d.name)
    if d.name == "log":  # GET /api/alerts/log is the log
        raise UserloopError("invalid_name", "'log' is reserved", "name")
    if "type" not in d.condition:
        raise UserloopError("missing_field", "condition.type is layer_flow or metric", "condition.type")
    condition = convert(d.condition, Condition, "condition")  # type: ignore[arg-type]
    channels = []
    for i, ch in enumerate(d.channels):
        if not isinstance(ch, dict) or "type" not in ch:
            raise UserloopError(
                "missing_field", "a channel's type is webhook or email", f"channels[{i}].type"
            )
        c = convert(ch, Channel, f"channels[{i}]")  # type: ignore[arg-type]
        _check_channel(c, f"channels[{i}]")
        channels.append(c)
    if d.schedule is not None:
        from userloop.schedule import parse_trigger

        parse_trigger(d.schedule)
    return Rule(name=d.name, condition=condition, channels=channels, schedule=d.schedule,
                cooldown_minutes=d.cooldown_minutes, enabled=d.enabled, description=d.description)  # fmt: skip


def _check_channel(c: Channel, field: str) -> None:
    if isinstance(c, Webhook):
        if not re.match(r"^https?://[^\s/]+", c.url):
            raise UserloopError(
                "invalid_url", "a webhook url starts with http:// or https://", f"{field}.url"
            )
        return
    for i, addr in enumerate(c.to):
        if not EMAIL_RE.match(addr):
            raise UserloopError("invalid_email", f"{addr!r} is not an email address", f"{field}.to[{i}]")
    if c.sender is not None and not EMAIL_RE.match(c.sender):
        raise UserloopError("invalid_email", f"{c.sender!r} is not an email address", f"{field}.sender")
