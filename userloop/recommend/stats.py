"""Online results: impressions, clicks, CTR and conversions per scene, A/B variant and source.

Serving stores one ``$recommend_impression`` event per response (``rec_id``, ``scene``,
``variant``, ``items`` as ``type:id``, ``sources``). Apps send ``$recommend_click`` with the
``rec_id`` and the clicked item (``item_type`` + ``item_id``, or ``item`` as ``type:id``) through
any collector. A conversion is a purchase (an interaction rule with ``bought``) of the clicked
item by the same person within ``window_hours`` after the click.

One statement: impressions unnested into (rec_id, item, source), clicks de-duplicated per
(rec_id, item) and joined to them, purchases joined to clicks; counted with GROUPING SETS so the
result has one row per (scene, variant, source) and a total per (scene, variant).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from userloop.errors import UserloopError
from userloop.recommend import config as cfgmod
from userloop.recommend.config import CLICK_EVENT, IMPRESSION_EVENT
from userloop.recommend.interactions import _Params, events_sql, rules_of
from userloop.store.duckdb import Project, Store


def _time(value: Any, field: str, default: datetime) -> datetime:
    if value in (None, ""):
        return default
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise UserloopError("invalid_field", f"{field} must be an ISO 8601 time", field) from exc
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def online_stats(store: Store, project: Project, params: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    end = _time(params.get("date_to"), "date_to", now)
    start = _time(params.get("date_from"), "date_from", end - timedelta(days=30))
    try:
        window = float(params.get("window_hours", 24))
    except (TypeError, ValueError) as exc:
        raise UserloopError("invalid_field", "window_hours is a number", "window_hours") from exc
    if window <= 0:
        raise UserloopError("invalid_field", "window_hours must be positive", "window_hours")
    cfg = cfgmod.load(store, project)
    bought = [r for r in rules_of(store, project, cfg) if r.bought]
    p = _Params()
    pid, s, e = p.p(project.id), p.p(start), p.p(end)
    e_late = p.p(end + timedelta(hours=window))
    win = p.p(timedelta(hours=window))
    buys = (events_sql(bought, p, project.id, start, end + timedelta(hours=window)) if bought else
            "SELECT NULL::VARCHAR AS person_id, NULL::VARCHAR AS item_type, NULL::VARCHAR AS item_id, "
            "NULL::TIMESTAMPTZ AS ts WHERE false")
    sql = f"""
    WITH imp AS (
        SELECT json_extract_string(properties, '$.rec_id') AS rec_id,
               coalesce(json_extract_string(properties, '$.scene'), 'default') AS scene,
               coalesce(json_extract_string(properties, '$.variant'), 'default') AS variant,
               CAST(json_extract(properties, '$.items') AS VARCHAR[]) AS items,
               CAST(json_extract(properties, '$.sources') AS VARCHAR[]) AS sources
        FROM events WHERE project_id = {pid} AND event = {p.p(IMPRESSION_EVENT)} AND timestamp >= {s} AND timestamp < {e}),
    shown AS (SELECT rec_id, scene, variant, unnest(items) AS item, unnest(sources) AS source FROM imp),
    clicks AS (
        SELECT json_extract_string(ev.properties, '$.rec_id') AS rec_id,
               coalesce(json_extract_string(ev.properties, '$.item'),
                        json_extract_string(ev.properties, '$.item_type') || ':' || json_extract_string(ev.properties, '$.item_id')) AS item,
               arg_min(coalesce(o.person_id, ev.person_id), ev.timestamp) AS person_id, min(ev.timestamp) AS ts
        FROM events ev LEFT JOIN person_overrides o ON o.project_id = ev.project_id AND o.distinct_id = ev.distinct_id
        WHERE ev.project_id = {pid} AND ev.event = {p.p(CLICK_EVENT)} AND ev.timestamp >= {s} AND ev.timestamp < {e_late}
        GROUP BY 1, 2),
    clicked AS (SELECT s.rec_id, s.item, c.person_id, c.ts FROM shown s JOIN clicks c USING (rec_id, item)),
    buys AS ({buys}),
    conv AS (
        SELECT DISTINCT c.rec_id, c.item FROM clicked c JOIN buys b
          ON b.person_id = c.person_id AND b.item_id = substr(c.item, strpos(c.item, ':') + 1)
         AND (b.item_type IS NULL OR b.item_type = split_part(c.item, ':', 1))
         AND b.ts >= c.ts AND b.ts < c.ts + {win})
    SELECT s.scene, s.variant, CASE WHEN grouping(s.source) = 1 THEN '*' ELSE s.source END AS source,
           count(*) AS impressions, count(DISTINCT s.rec_id) AS responses,
           count(c.rec_id) AS clicks, count(v.rec_id) AS conversions
    FROM shown s LEFT JOIN clicked c USING (rec_id, item) LEFT JOIN conv v USING (rec_id, item)
    GROUP BY GROUPING SETS ((s.scene, s.variant, s.source), (s.scene, s.variant))
    ORDER BY s.scene, s.variant, source"""
    rows = store.query(sql, p.values)
    for r in rows:
        r["ctr"] = round(r["clicks"] / r["impressions"], 6) if r["impressions"] else None
        r["conversion_rate"] = round(r["conversions"] / r["clicks"], 6) if r["clicks"] else None
    return {"date_from": start, "date_to": end, "window_hours": window, "rows": rows}
