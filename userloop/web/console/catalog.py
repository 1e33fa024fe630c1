"""What the forms offer to pick from: a project's events, properties, tags, segments and layer models.

Read with a few small queries and kept for :data:`TTL` seconds per project, so that opening a
page does not scan the events each time (new event names appear within a minute).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from userloop.query.sql import COLUMNS
from userloop.store.duckdb import Store

TTL = 60.0
PERSON_SAMPLE = 20_000  # persons read for the person property names


@dataclass(frozen=True)
class Catalog:
    events: list[str]  # most frequent first
    event_properties: list[str]  # JSON keys and event columns
    person_properties: list[str]
    tags: list[str]
    segments: list[str]
    layers: list[str]


_lock = threading.Lock()
_cache: dict[tuple[str, int], tuple[float, Catalog]] = {}


def _names(store: Store, sql: str, params: list[Any]) -> list[str]:
    try:
        return [str(r["name"]) for r in store.query(sql, params)]
    except Exception:  # a capability's table may not exist in an older file  # noqa: BLE001
        return []


def catalog(store: Store, project_id: int, fresh: bool = False) -> Catalog:
    key = (str(store.path), project_id)
    with _lock:
        hit = _cache.get(key)
    if hit and not fresh and time.monotonic() - hit[0] < TTL:
        return hit[1]
    p = [project_id]
    events = _names(store, "SELECT event AS name FROM events WHERE project_id = ? GROUP BY event "
                           "ORDER BY count(*) DESC, event", p)  # fmt: skip
    props = _names(store, "SELECT DISTINCT property AS name FROM event_properties WHERE project_id = ? ORDER BY 1", p)
    person = _names(store, f"""SELECT DISTINCT unnest(json_keys(properties)) AS name
                               FROM (SELECT properties FROM persons WHERE project_id = ? LIMIT {PERSON_SAMPLE})
                               ORDER BY 1""", p)  # fmt: skip
    cat = Catalog(
        events=events,
        event_properties=sorted(set(props) | COLUMNS - {"event", "type"}),
        person_properties=person,
        tags=_names(store, "SELECT name FROM tags WHERE project_id = ? ORDER BY name", p),
        segments=_names(store, "SELECT name FROM segments WHERE project_id = ? ORDER BY name", p),
        layers=_names(store, "SELECT name FROM layer_models WHERE project_id = ? ORDER BY name", p),
    )
    with _lock:
        _cache[key] = (time.monotonic(), cat)
    return cat


def forget(store: Store, project_id: int) -> None:
    """Drop the cached lists (after a segment, tag or layer model was saved or deleted)."""
    with _lock:
        _cache.pop((str(store.path), project_id), None)
