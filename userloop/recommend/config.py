"""A project's recommendation settings: a validated, typed definition stored as JSON.

``RecommendConfig``
  ``events``     which events are interactions with an item and how much each counts
                 (``EventRule``); ``null``: detected from the project's events (see
                 ``userloop/recommend/interactions.py``)
  ``params``     model hyper-parameters, list lengths and the default blend weights (``ModelParams``)
  ``scenes``     named placements (``square_feed``, ``course_detail``...): allowed types, blend
                 weights, diversity, seen/purchased removal, business rules, A/B variants
  ``schedule``   retraining: ``interval:SECONDS`` or ``cron:M H DOM MON DOW`` (project time zone)
  ``lookback_days``, ``track_impressions``, ``fresh_events``

Saving goes through :func:`decode` (400 naming the bad field) and one statement.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from userloop.errors import UserloopError
from userloop.recommend.blend import Weights
from userloop.recommend.build import ModelParams
from userloop.store.duckdb import Project, Store

IMPRESSION_EVENT = "$recommend_impression"
CLICK_EVENT = "$recommend_click"


class EventRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Events named ``event`` are interactions with the item whose id is the property ``item_id``
    (or each element of the array property ``items``, objects with ``item_id``/``item_type``)."""

    event: str
    weight: float = 1.0
    item_id: str = "item_id"  # the property holding the item id
    item_type: str | None = None  # a fixed item type for these events
    type_property: str | None = "item_type"  # else: the property holding it (else: looked up in the catalogue)
    items: str | None = None  # an array property of {item_id, item_type} objects (orders)
    bought: bool = False  # a purchase: removed from feeds for good, counted as a conversion


class Match(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Items matching any of the listed items (``type:id``), types, categories or tags."""

    items: list[str] = []
    types: list[str] = []
    categories: list[str] = []
    tags: list[str] = []


class Boost(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    match: Match
    factor: float = 2.0


class Pin(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    item: str  # type:id
    position: int = 1  # 1-based


class Variant(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An A/B arm: a share of persons (by a stable hash of the person id) gets these weights."""

    name: str
    share: float
    weights: dict[str, float] = {}


class Scene(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    types: list[str] = []  # allowed item types (empty: all); a request's ``type`` narrows further
    weights: dict[str, float] = {}  # overrides of the default blend weights
    diversity: float = 0.3  # 0: plain order; each shown type/category discounts the next by this share
    exclude_seen: bool = True
    exclude_purchased: bool = True
    boost: list[Boost] = []
    exclude: Match | None = None
    pin: list[Pin] = []
    variants: list[Variant] = []


class RecommendConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    events: list[EventRule] | None = None
    params: ModelParams = msgspec.field(default_factory=ModelParams)
    scenes: list[Scene] = []
    schedule: str | None = None
    lookback_days: int = 365
    track_impressions: bool = True
    fresh_events: bool = True  # read the person's events since the last training on each request


SOURCE_WEIGHT_KEYS = set(Weights.__struct_fields__)


def _error_field(exc: msgspec.ValidationError) -> str | None:
    text = str(exc)
    if "at `$." in text:
        return text.split("at `$.", 1)[1].rstrip("`").replace("`", "")
    if "`$." in text:
        return text.split("`$.", 1)[1].split("`", 1)[0]
    return None


def decode(raw: Any) -> RecommendConfig:
    """A validated configuration (400 ``invalid_field``/``unknown_field`` naming the field)."""
    try:
        cfg = msgspec.convert(raw, RecommendConfig)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        code = "unknown_field" if msg.startswith("Object contains unknown field") else "invalid_field"
        raise UserloopError(code, msg, _error_field(exc)) from exc
    check(cfg)
    return cfg


def check(cfg: RecommendConfig) -> None:
    from userloop.schedule import parse_trigger

    if cfg.schedule is not None:
        parse_trigger(cfg.schedule)
    if cfg.lookback_days < 1:
        raise UserloopError("invalid_field", "lookback_days must be at least 1", "lookback_days")
    for i, rule in enumerate(cfg.events or []):
        if not rule.event:
            raise UserloopError("invalid_field", "event must not be empty", f"events[{i}].event")
        if rule.weight <= 0:
            raise UserloopError("invalid_field", "weight must be positive", f"events[{i}].weight")
    names: set[str] = set()
    for i, scene in enumerate(cfg.scenes):
        where = f"scenes[{i}]"
        if not scene.name or scene.name in names:
            raise UserloopError("invalid_field", f"scene name {scene.name!r} is empty or repeated", f"{where}.name")
        names.add(scene.name)
        if not 0.0 <= scene.diversity < 1.0:
            raise UserloopError("invalid_field", "diversity must be in [0, 1)", f"{where}.diversity")
        _check_weights(scene.weights, f"{where}.weights")
        for j, b in enumerate(scene.boost):
            if b.factor <= 0:
                raise UserloopError("invalid_field", "factor must be positive", f"{where}.boost[{j}].factor")
            _check_items(b.match.items, f"{where}.boost[{j}].match.items")
        if scene.exclude is not None:
            _check_items(scene.exclude.items, f"{where}.exclude.items")
        for j, p in enumerate(scene.pin):
            _check_items([p.item], f"{where}.pin[{j}].item")
            if p.position < 1:
                raise UserloopError("invalid_field", "position starts at 1", f"{where}.pin[{j}].position")
        total = 0.0
        for j, v in enumerate(scene.variants):
            if not 0 < v.share <= 1:
                raise UserloopError("invalid_field", "share must be in (0, 1]", f"{where}.variants[{j}].share")
            _check_weights(v.weights, f"{where}.variants[{j}].weights")
            total += v.share
        if total > 1.0 + 1e-9:
            raise UserloopError("invalid_field", "variant shares add up to more than 1", f"{where}.variants")


def _check_weights(weights: dict[str, float], where: str) -> None:
    for key, value in weights.items():
        if key not in SOURCE_WEIGHT_KEYS:
            raise UserloopError("unknown_field", f"no blend weight named {key!r} (one of {sorted(SOURCE_WEIGHT_KEYS)})",
                                f"{where}.{key}")
        if not isinstance(value, int | float) or value < 0:
            raise UserloopError("invalid_field", "weights are numbers >= 0", f"{where}.{key}")


def _check_items(items: list[str], where: str) -> None:
    for i, key in enumerate(items):
        if ":" not in key:
            raise UserloopError("invalid_field", f"items are 'type:id', got {key!r}", f"{where}[{i}]")


def load(store: Store, project: Project) -> RecommendConfig:
    rows = store.query("SELECT config FROM recommend_settings WHERE project_id = ?", [project.id])
    return msgspec.json.decode(rows[0]["config"], type=RecommendConfig) if rows else RecommendConfig()


def save(store: Store, project: Project, cfg: RecommendConfig) -> None:
    store.cursor().execute(
        """INSERT INTO recommend_settings VALUES (?, ?, ?)
           ON CONFLICT (project_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at""",
        [project.id, msgspec.json.encode(cfg).decode(), datetime.now(UTC)],
    )


def scene(cfg: RecommendConfig, name: str | None) -> Scene:
    """The named scene; an unknown name gets the defaults (apps can start before configuring)."""
    for s in cfg.scenes:
        if s.name == name:
            return s
    return Scene(name=name or "default")

