"""Portraits: one person's profile view model (``GET /api/persons/{id}``, ``userloop persons get``).

A portrait is the person (properties, all distinct ids, first/last seen), where they came from
(the channel and utm of their first event), totals from their events (visits split at
``visit_gap_minutes`` of inactivity, purchases, revenue, coupons used), the tags, segments and
layers of the other people capabilities (read from their tables when those exist), RFM scores,
the latest events and the size of their merge history. Each section is one SQL statement.

Which events are purchases and coupon uses, and which property holds the amount, are per-project
:class:`PortraitSettings` (``persons.settings``); the defaults match the demo data
(``purchase`` with its ``amount``, ``use_coupon``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from userloop.actions import ActionContext, action
from userloop.errors import UserloopError
from userloop.people.audit import decode_params, history_count_sql, resolve_person
from userloop.query.sql import json_path

if TYPE_CHECKING:
    from userloop.store.duckdb import Store

DEFAULT_TIMELINE = 20
MAX_TIMELINE = 1000
_SOURCE_FIELDS = ("channel", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term",
                  "referring_domain", "referrer")  # fmt: skip

# the other capabilities' tables, by their contract columns (``docs/people/portraits.md``)
_CONTRACTS: dict[str, tuple[str, ...]] = {
    "tag_values": ("project_id", "tag", "person_id", "value", "num_value", "updated_at"),
    "segment_members": ("project_id", "segment", "person_id"),
    "layer_members": ("project_id", "model", "person_id", "layer", "scores", "computed_at"),
    "layer_models": ("project_id", "name", "kind"),
    "tags": ("project_id", "name", "kind", "category"),  # optional extras: the tag's kind and catalogue place
}


class PortraitSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What a project's portraits count as purchases, revenue and coupon uses, and visit splits."""

    purchase_events: list[str] = msgspec.field(default_factory=lambda: ["purchase"])
    revenue_property: str = "amount"  # like the layers' RFM monetary (demo: purchase.amount)
    coupon_events: list[str] = msgspec.field(default_factory=lambda: ["use_coupon"])
    visit_gap_minutes: float = 30.0

    def validate(self) -> None:
        for name in ("purchase_events", "coupon_events"):
            names: list[str] = getattr(self, name)
            if not names:
                raise UserloopError("invalid_field", f"{name} needs at least one event name", name)
            for i, event in enumerate(names):
                if not event.strip():
                    raise UserloopError("invalid_field", "event names must not be empty", f"{name}[{i}]")
        if not self.revenue_property.strip():
            raise UserloopError("invalid_field", "revenue_property must not be empty", "revenue_property")
        if not 0 < self.visit_gap_minutes <= 24 * 60:
            raise UserloopError("invalid_field", "visit_gap_minutes must be above 0 and at most 1440",
                                "visit_gap_minutes")


def settings_for(store: Store, project_id: int) -> PortraitSettings:
    rows = store.query(
        "SELECT purchase_events, revenue_property, coupon_events, visit_gap_minutes "
        "FROM portrait_settings WHERE project_id = ?",
        [project_id],
    )
    return PortraitSettings(**rows[0]) if rows else PortraitSettings()


@action("persons.settings")
def settings_action(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """The project's portrait settings; given fields replace the current ones (the rest are kept)."""
    current = msgspec.to_builtins(settings_for(ctx.store, ctx.project.id))
    if params:
        new = decode_params({**current, **params}, PortraitSettings)
        new.validate()
        ctx.store.query(
            """INSERT INTO portrait_settings VALUES ($pid, $purchase, $revenue, $coupon, $gap, now())
               ON CONFLICT DO UPDATE SET purchase_events = excluded.purchase_events,
                 revenue_property = excluded.revenue_property, coupon_events = excluded.coupon_events,
                 visit_gap_minutes = excluded.visit_gap_minutes, updated_at = excluded.updated_at""",
            {"pid": ctx.project.id, "purchase": new.purchase_events, "revenue": new.revenue_property,
             "coupon": new.coupon_events, "gap": new.visit_gap_minutes},
        )
        current = msgspec.to_builtins(new)
    return current  # type: ignore[no-any-return]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _json(text: str | None) -> Any:
    return msgspec.json.decode(text) if text else None


def available_tables(store: Store) -> set[str]:
    """Those of the other capabilities' tables that exist with their contract columns."""
    rows = store.query(
        "SELECT table_name, list(column_name) AS columns FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name IN (SELECT unnest($names)) GROUP BY table_name",
        {"names": list(_CONTRACTS)},
    )
    return {r["table_name"] for r in rows if set(_CONTRACTS[r["table_name"]]) <= set(r["columns"])}


_TIMELINE_FIELDS = ("message_id", "event", "timestamp", "distinct_id", "properties", "url", "path", "channel")


def _events(store: Store, pid: int, ids: list[str], s: PortraitSettings, n: int) -> dict[str, Any]:
    """One scan of the person's events (no index on distinct_id: the scan is the cost) for counts,
    first/last seen, visits, purchases, revenue, coupons, the first touch and the latest ``n`` events."""
    source = ", ".join(f"'{f}': {f}" for f in _SOURCE_FIELDS)
    latest = ", ".join(f"'{f}': {f}" for f in _TIMELINE_FIELDS)
    return store.query(
        f"""WITH ev AS MATERIALIZED (
              SELECT {", ".join(dict.fromkeys(_SOURCE_FIELDS + _TIMELINE_FIELDS))}
              FROM events WHERE project_id = $pid AND distinct_id IN (SELECT unnest($ids))),
            g AS (SELECT *, epoch_us(timestamp) - lag(epoch_us(timestamp)) OVER (ORDER BY timestamp, message_id)
                              AS gap FROM ev)
            SELECT count(*) AS event_count, min(timestamp) AS first_seen, max(timestamp) AS last_seen,
                   count(*) FILTER (WHERE gap IS NULL OR gap >= $gap) AS visits,
                   count(*) FILTER (WHERE list_contains($purchase, event)) AS purchases,
                   sum(TRY_CAST(json_extract_string(properties, $revenue) AS DOUBLE))
                     FILTER (WHERE list_contains($purchase, event)) AS revenue,
                   count(*) FILTER (WHERE list_contains($coupon, event)) AS coupons_used,
                   first({{{source}, 'event': event, 'timestamp': timestamp}} ORDER BY timestamp, message_id)
                     FILTER (WHERE channel IS NOT NULL OR utm_source IS NOT NULL) AS source,
                   (SELECT list({{{latest}}} ORDER BY timestamp DESC, message_id DESC)
                    FROM (SELECT * FROM ev QUALIFY row_number() OVER (ORDER BY timestamp DESC, message_id DESC) <= $n))
                     AS timeline
            FROM g""",
        {"pid": pid, "ids": ids, "gap": round(s.visit_gap_minutes * 60_000_000), "purchase": s.purchase_events,
         "revenue": json_path(s.revenue_property), "coupon": s.coupon_events, "n": n},
    )[0]


def _tags(store: Store, pid: int, person: str, with_defs: bool) -> list[dict[str, Any]]:
    defs = "t.kind, t.category" if with_defs else "NULL AS kind, NULL AS category"
    join = "LEFT JOIN tags t ON t.project_id = v.project_id AND t.name = v.tag" if with_defs else ""
    rows = store.query(
        f"""SELECT v.tag, v.value, v.num_value, v.updated_at, {defs} FROM tag_values v {join}
            WHERE v.project_id = $pid AND v.person_id = $person ORDER BY v.tag""",
        {"pid": pid, "person": person},
    )
    return [{k: _iso(v) for k, v in r.items()} for r in rows]


def _segments(store: Store, pid: int, person: str) -> list[str]:
    rows = store.query(
        "SELECT coalesce(list(segment ORDER BY segment), []) AS names FROM segment_members "
        "WHERE project_id = $pid AND person_id = $person",
        {"pid": pid, "person": person},
    )
    return list(rows[0]["names"])


def _layers(store: Store, pid: int, person: str, with_models: bool) -> list[dict[str, Any]]:
    kind = "lm.kind" if with_models else "NULL"
    join = (
        "LEFT JOIN layer_models lm ON lm.project_id = m.project_id AND lm.name = m.model" if with_models else ""
    )
    rows = store.query(
        f"""SELECT m.model, {kind} AS kind, m.layer, CAST(m.scores AS VARCHAR) AS scores, m.computed_at
            FROM layer_members m {join}
            WHERE m.project_id = $pid AND m.person_id = $person ORDER BY m.model""",
        {"pid": pid, "person": person},
    )
    return [{**{k: _iso(v) for k, v in r.items()}, "scores": _json(r["scores"])} for r in rows]


def _rfm(layers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The scores of the person's RFM model: of kind ``rfm``, else the first whose scores have r, f, m."""
    def has_rfm(layer: dict[str, Any]) -> bool:
        return isinstance(layer["scores"], dict) and {"r", "f", "m"} <= set(layer["scores"])

    pick = next((x for x in layers if (x["kind"] or "").lower() == "rfm" and has_rfm(x)), None)
    pick = pick or next((x for x in layers if has_rfm(x)), None)
    if pick is None:
        return None
    return {"model": pick["model"], "layer": pick["layer"], **pick["scores"]}


def portrait(store: Store, project_id: int, ident: str, timeline: int = DEFAULT_TIMELINE) -> dict[str, Any]:
    person_id, ids = resolve_person(store, project_id, ident)
    settings = settings_for(store, project_id)
    person = store.query(
        "SELECT properties, created_at FROM persons WHERE project_id = $pid AND person_id = $person",
        {"pid": project_id, "person": person_id},
    )[0]
    t = _events(store, project_id, ids, settings, timeline)
    tables = available_tables(store)
    layers = _layers(store, project_id, person_id, "layer_models" in tables) if "layer_members" in tables else []
    source = t["source"]
    merges = store.query(
        history_count_sql(),
        {"pid": project_id, "person": person_id, "ids": ids},
    )[0]["n"]
    return {
        "person_id": person_id,
        "distinct_ids": ids,
        "properties": _json(person["properties"]) or {},
        "event_count": t["event_count"],
        "first_seen": _iso(t["first_seen"]),
        "last_seen": _iso(t["last_seen"]),
        "created_at": _iso(person["created_at"]),
        "source": {k: _iso(v) for k, v in source.items()} if source else None,
        "totals": {
            "visits": t["visits"],
            "purchases": t["purchases"],
            "revenue": t["revenue"] or 0.0,
            "coupons_used": t["coupons_used"],
        },
        "tags": _tags(store, project_id, person_id, "tags" in tables) if "tag_values" in tables else [],
        "segments": _segments(store, project_id, person_id) if "segment_members" in tables else [],
        "layers": layers,
        "rfm": _rfm(layers),
        "timeline": [{**{k: _iso(v) for k, v in e.items()}, "properties": _json(e["properties"]) or {}}
                     for e in t["timeline"] or []],
        "merge_count": merges,
        "settings": msgspec.to_builtins(settings),
    }


class GetRequest(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    timeline: int = DEFAULT_TIMELINE


@action("persons.get")
def get_action(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    req = decode_params(params, GetRequest)
    if not 0 <= req.timeline <= MAX_TIMELINE:
        raise UserloopError("bad_parameter", f"timeline must be between 0 and {MAX_TIMELINE}", "timeline")
    return portrait(ctx.store, ctx.project.id, req.id, req.timeline)
