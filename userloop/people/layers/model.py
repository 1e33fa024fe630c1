"""Layer model definitions: one typed parameter set per kind, validated before anything is saved.

A definition is ``{"name", "kind", "params", "schedule", "description"}``. ``params`` is decoded
into the kind's Struct (unknown fields rejected, defaults filled in, limits checked), so an invalid
definition is a 400 naming the field (``params.sleeping_days``). Event names default to the demo
data's (``userloop/demo/``): ``follow``/``unfollow``, ``sign_up``, ``purchase`` with ``amount``,
``receive_coupon`` (a coupon collected) and ``coupon_id`` on a purchase (a coupon used).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from userloop.errors import UserloopError

Days = Annotated[int, msgspec.Meta(ge=1, le=3660)]
Share = Annotated[float, msgspec.Meta(ge=0, le=1)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
NONE = "none"  # the "layer" of a person outside the model, in migration matrices


class _Params(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    def events(self) -> list[tuple[str, str]]:
        """(field, event name) of every event the parameters name."""
        return []

    def properties(self) -> list[tuple[str, str]]:
        """(field, event property) of every property the parameters name."""
        return []


class _Activity(_Params):
    # events that count as interaction: the listed ones, or (when None) every event but the passive
    # ones (things done *to* the person: a pushed coupon, an unfollow reported by the server)
    activity_events: Annotated[list[Name], msgspec.Meta(min_length=1)] | None = None
    passive_events: list[Name] = msgspec.field(default_factory=lambda: ["receive_coupon", "unfollow"])

    def events(self) -> list[tuple[str, str]]:
        return [(f"activity_events[{i}]", e) for i, e in enumerate(self.activity_events or [])]


class LifecycleParams(_Activity):
    follow_event: Name = "follow"
    unfollow_event: Name | None = "unfollow"
    signup_event: Name = "sign_up"
    purchase_event: Name = "purchase"
    amount_property: Name = "amount"  # for the RFM sub-layers of "buying"
    sleeping_days: Days = 30
    churned_days: Days = 90
    rfm_substrata: bool = False  # "buying" split into "buying:<rfm group>"

    def events(self) -> list[tuple[str, str]]:
        out = [("follow_event", self.follow_event), ("signup_event", self.signup_event),
               ("purchase_event", self.purchase_event)]  # fmt: skip
        if self.unfollow_event:
            out.append(("unfollow_event", self.unfollow_event))
        return out + super().events()

    def properties(self) -> list[tuple[str, str]]:
        return [("amount_property", self.amount_property)] if self.rfm_substrata else []


class StageParams(_Activity):
    new_days: Days = 14  # tenure below this: new
    window_days: Days = 30  # active days are counted over this many days
    mature_tenure_days: Days = 30
    mature_active_days: Days = 4
    loyal_tenure_days: Days = 90
    loyal_active_days: Days = 8
    churned_days: Days = 60


class _Purchases(_Params):
    purchase_event: Name = "purchase"
    amount_property: Name = "amount"
    window_days: Days | None = None  # None: all history before the reference time

    def events(self) -> list[tuple[str, str]]:
        return [("purchase_event", self.purchase_event)]

    def properties(self) -> list[tuple[str, str]]:
        return [("amount_property", self.amount_property)]


class RfmParams(_Purchases):
    group_by: Literal["fm", "f"] = "fm"  # the second axis of the named groups: (F+M)/2 or F


Threshold = Annotated[float, msgspec.Meta(ge=0)] | Literal["median"]


class ValueFrequencyParams(_Purchases):
    value: Literal["sum", "avg"] = "sum"  # value = total spent, or the average order
    frequency_threshold: Threshold = "median"  # high frequency: frequency >= threshold
    value_threshold: Threshold = "median"  # high value: value >= threshold


class PromotionParams(_Params):
    purchase_event: Name = "purchase"
    coupon_property: Name = "coupon_id"  # set on a purchase made with a coupon
    collect_event: Name = "receive_coupon"
    window_days: Days | None = None
    fanatic_share: Share = 0.7
    fanatic_collected: Annotated[int, msgspec.Meta(ge=0)] = 3
    sensitive_share: Share = 0.3

    def events(self) -> list[tuple[str, str]]:
        return [("purchase_event", self.purchase_event), ("collect_event", self.collect_event)]

    def properties(self) -> list[tuple[str, str]]:
        return [("coupon_property", self.coupon_property)]


Params = LifecycleParams | StageParams | RfmParams | ValueFrequencyParams | PromotionParams

PARAMS: dict[str, type[_Params]] = {
    "lifecycle": LifecycleParams,
    "stage": StageParams,
    "rfm": RfmParams,
    "value_frequency": ValueFrequencyParams,
    "promotion": PromotionParams,
}

RFM_GROUPS_ORDER = [
    "champions", "loyal_customers", "potential_loyalists", "new_customers", "promising", "need_attention",
    "about_to_sleep", "at_risk", "cant_lose_them", "hibernating", "lost",
]  # fmt: skip

# (R, FM) -> group; FM is (F + M) / 2 rounded up (or F alone with group_by "f"). Rows: R 5..1.
_GRID = """
5: new_customers  potential_loyalists potential_loyalists champions       champions
4: promising      potential_loyalists potential_loyalists loyal_customers loyal_customers
3: about_to_sleep about_to_sleep      need_attention      loyal_customers loyal_customers
2: hibernating    hibernating         at_risk             at_risk         cant_lose_them
1: lost           hibernating         at_risk             at_risk         cant_lose_them
"""
RFM_GROUPS: dict[tuple[int, int], str] = {
    (int(r), fm): g
    for r, rest in (line.split(":") for line in _GRID.strip().splitlines())
    for fm, g in enumerate(rest.split(), start=1)
}

LAYERS: dict[str, list[str]] = {
    "lifecycle": ["potential", "follower", "registered", "buying", "sleeping", "churned"],
    "stage": ["new", "growing", "mature", "loyal", "churned"],
    "rfm": RFM_GROUPS_ORDER,
    "value_frequency": [
        "high_frequency_high_value",
        "high_frequency_low_value",
        "low_frequency_high_value",
        "low_frequency_low_value",
    ],  # fmt: skip
    "promotion": ["fanatic", "sensitive", "neutral", "indifferent"],
}


def layer_names(kind: str, params: _Params) -> list[str]:
    """Every layer a model of this kind and parameters can put a person in, in display order."""
    names = list(LAYERS[kind])
    if isinstance(params, LifecycleParams) and params.rfm_substrata:
        i = names.index("buying")
        names[i : i + 1] = [f"buying:{g}" for g in RFM_GROUPS_ORDER]
    return names


class Definition(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    kind: str
    params: dict[str, Any] = {}
    schedule: str | None = None
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class LayerModel(msgspec.Struct, kw_only=True):
    """A validated definition."""

    name: str
    kind: str
    params: Params
    schedule: str | None
    description: str
    given: frozenset[str]  # the parameter names the caller set (the rest are defaults)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "params": msgspec.to_builtins(self.params),
            "schedule": self.schedule, "description": self.description,
            "layers": layer_names(self.kind, self.params),
        }  # fmt: skip


_AT = re.compile(r" - at `\$\.?(.*)`$")


def convert(obj: Any, cls: type[Any], prefix: str = "") -> Any:
    """``msgspec.convert`` with its errors as 400s naming the field (``prefix`` + the inner path)."""
    try:
        return msgspec.convert(obj, cls)
    except msgspec.ValidationError as exc:
        raise validation_error(exc, prefix) from exc


def validation_error(exc: msgspec.ValidationError, prefix: str = "") -> UserloopError:
    text = str(exc)
    m = _AT.search(text)
    inner = m.group(1) if m else ""
    message = _AT.sub("", text)
    name = re.search(r"(?:unknown|missing required) field `([^`]*)`", text)
    if name:
        inner = f"{inner}.{name.group(1)}" if inner else name.group(1)
    field = ".".join(p for p in (prefix, inner) if p) or None
    code = (
        "unknown_field"
        if "unknown field" in text
        else "missing_field"
        if "missing required" in text
        else "invalid_field"
    )
    return UserloopError(code, message, field)


def check_name(name: Any, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserloopError(
            "invalid_name",
            "a name is 1-63 characters: a lowercase letter, then lowercase letters, digits or _",
            field,
        )
    return name


def parse_definition(raw: Any) -> LayerModel:
    """A definition from a decoded JSON object; :class:`UserloopError` naming the field if invalid."""
    if not isinstance(raw, dict):
        raise UserloopError("invalid_body", "a layer model definition is a JSON object")
    d: Definition = convert(raw, Definition)
    check_name(d.name)
    cls = PARAMS.get(d.kind)
    if cls is None:
        raise UserloopError("unknown_kind", f"kind must be one of {', '.join(PARAMS)}", "kind")
    params = convert(d.params, cls, "params")
    _check_params(params)
    if d.schedule is not None:
        from userloop.schedule import parse_trigger

        parse_trigger(d.schedule)
    return LayerModel(name=d.name, kind=d.kind, params=params, schedule=d.schedule, description=d.description,
                      given=frozenset(d.params))  # fmt: skip


def _check_params(p: _Params) -> None:
    if isinstance(p, LifecycleParams) and p.churned_days <= p.sleeping_days:
        raise UserloopError(
            "invalid_field", "churned_days must be more than sleeping_days", "params.churned_days"
        )
    if isinstance(p, StageParams):
        if p.churned_days <= p.new_days:
            raise UserloopError(
                "invalid_field", "churned_days must be more than new_days", "params.churned_days"
            )
        if p.loyal_tenure_days < p.mature_tenure_days:
            raise UserloopError("invalid_field", "loyal_tenure_days must be at least mature_tenure_days",
                                "params.loyal_tenure_days")  # fmt: skip
        if p.loyal_active_days < p.mature_active_days:
            raise UserloopError("invalid_field", "loyal_active_days must be at least mature_active_days",
                                "params.loyal_active_days")  # fmt: skip
        if p.loyal_active_days > p.window_days:
            raise UserloopError(
                "invalid_field", "loyal_active_days cannot exceed window_days", "params.loyal_active_days"
            )
    if isinstance(p, PromotionParams) and p.fanatic_share < p.sensitive_share:
        raise UserloopError(
            "invalid_field", "fanatic_share must be at least sensitive_share", "params.fanatic_share"
        )
