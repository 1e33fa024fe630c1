"""A project's interactions and catalogue, read from DuckDB into :class:`Interactions`.

One statement turns the item events into rows of (person, item, hour, events, weight, bought):
every :class:`EventRule` is one branch of a ``UNION ALL`` over ``events`` (person resolved through
``person_overrides``, array properties unnested), the item type taken from the rule, the event
or, failing both, the catalogue. The catalogue query reads ``items`` with its fields normalised
(``created_at`` falls back to ``published_at``, ``author`` to ``teacher``).

Without configured rules, they are detected from ``event_properties``: an event with an
``item_id`` property (and ``item_type`` when it has one), an event with a ``<type>_id`` property
for a type the catalogue has (``course_id`` -> course), an event with an ``items`` array (orders).
SDK events (``$pageview``...) are skipped. Weights follow the event name: purchase/buy/pay 5
(bought), cart/collect/favourite/like/share/finish/enrol/subscribe 3, read/start/play/watch/learn 2,
anything else 1.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import scipy.sparse as sp

from userloop.query.sql import json_path
from userloop.recommend.config import CLICK_EVENT, IMPRESSION_EVENT, EventRule, RecommendConfig
from userloop.recommend.data import Interactions, Items
from userloop.recommend.evaluate import EventLog
from userloop.store.duckdb import Project, Store

_STRONG = re.compile(r"purchase|buy|pay(?!load)|paid")
_MEDIUM = re.compile(r"cart|collect|fav|like|share|finish|complete|enrol|subscribe|follow")
_LIGHT = re.compile(r"read|start|play|watch|learn|listen")


def default_weight(event: str) -> tuple[float, bool]:
    name = event.lower()
    if _STRONG.search(name):
        return 5.0, True
    if _MEDIUM.search(name):
        return 3.0, False
    if _LIGHT.search(name):
        return 2.0, False
    return 1.0, False


def detect_rules(store: Store, project: Project) -> list[EventRule]:
    """Interaction rules guessed from the properties the project's events carry."""
    props = store.query(
        "SELECT event, list(property ORDER BY property) AS props FROM event_properties "
        "WHERE project_id = ? AND NOT starts_with(event, '$') GROUP BY event ORDER BY event",
        [project.id],
    )
    types = [r["item_type"] for r in store.query(
        "SELECT DISTINCT item_type FROM items WHERE project_id = ? ORDER BY 1", [project.id])]
    rules: list[EventRule] = []
    for row in props:
        event, keys = row["event"], set(row["props"])
        weight, bought = default_weight(event)
        if "item_id" in keys:
            rules.append(EventRule(event=event, weight=weight, bought=bought,
                                   type_property="item_type" if "item_type" in keys else None))
        elif "items" in keys:
            rules.append(EventRule(event=event, weight=weight, bought=bought, items="items"))
        else:
            for t in types:
                if f"{t}_id" in keys:
                    rules.append(EventRule(event=event, weight=weight, bought=bought, item_id=f"{t}_id",
                                           item_type=t, type_property=None))
    return [r for r in rules if r.event not in (IMPRESSION_EVENT, CLICK_EVENT)]


def rules_of(store: Store, project: Project, cfg: RecommendConfig) -> list[EventRule]:
    return cfg.events if cfg.events is not None else detect_rules(store, project)


class _Params:
    """Named bound parameters (``$p0``...): the order of calls need not follow the SQL text."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def p(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def events_sql(rules: list[EventRule], p: _Params, project_id: int, start: datetime, end: datetime,
               table: str = "events") -> str:
    """Rows (person_id, item_type, item_id, ts, w, bought) of every rule, types not yet resolved.
    ``table``: ``events`` or a CTE of some of its rows (serving: one person's latest events)."""
    branches = []
    for rule in rules:
        if rule.items:
            src = (f"{table} ev, unnest(CAST(coalesce(json_extract(ev.properties, {p.p(json_path(rule.items))}), "
                   "'[]') AS JSON[])) AS arr(it)")
            doc = "arr.it"
            id_path = json_path("item_id")
            type_path: str | None = json_path("item_type")
        else:
            src, doc = f"{table} ev", "ev.properties"
            id_path = json_path(rule.item_id)
            type_path = json_path(rule.type_property) if rule.type_property else None
        if rule.item_type is not None:
            type_expr = p.p(rule.item_type)
        elif type_path is not None:
            type_expr = f"json_extract_string({doc}, {p.p(type_path)})"
        else:
            type_expr = "NULL::VARCHAR"
        id_expr = f"json_extract_string({doc}, {p.p(id_path)})"
        where = [f"ev.project_id = {p.p(project_id)}", f"ev.event = {p.p(rule.event)}",
                 f"ev.timestamp >= {p.p(start)}", f"ev.timestamp < {p.p(end)}"]
        branches.append(
            f"SELECT coalesce(o.person_id, ev.person_id) AS person_id, {type_expr} AS item_type, "
            f"{id_expr} AS item_id, ev.timestamp AS ts, {p.p(float(rule.weight))}::DOUBLE AS w, "
            f"{p.p(rule.bought)}::BOOLEAN AS bought FROM {src} "
            "LEFT JOIN person_overrides o ON o.project_id = ev.project_id AND o.distinct_id = ev.distinct_id "
            f"WHERE {' AND '.join(where)}"
        )
    return " UNION ALL ".join(branches)


CATALOGUE_SQL = """SELECT item_type, item_id,
        json_extract_string(properties, '$.title') AS title,
        CASE WHEN json_type(properties, '$.tags') = 'ARRAY'
             THEN CAST(json_extract(properties, '$.tags') AS VARCHAR[])
             WHEN json_extract_string(properties, '$.tags') IS NOT NULL
             THEN list_filter(list_transform(string_split(json_extract_string(properties, '$.tags'), '|'), lambda x: trim(x)), lambda x: x <> '')
             ELSE []::VARCHAR[] END AS tags,
        json_extract_string(properties, '$.category') AS category,
        TRY_CAST(json_extract_string(properties, '$.price') AS DOUBLE) AS price,
        coalesce(json_extract_string(properties, '$.author'), json_extract_string(properties, '$.teacher')) AS author,
        TRY_CAST(coalesce(json_extract_string(properties, '$.created_at'),
                          json_extract_string(properties, '$.published_at')) AS TIMESTAMPTZ) AS created_at,
        NOT deleted AND coalesce(TRY_CAST(json_extract_string(properties, '$.active') AS BOOLEAN), true) AS active,
        deleted, properties, updated_at
    FROM items WHERE project_id = ?"""


def load(store: Store, project: Project, cfg: RecommendConfig, until: datetime | None = None) -> Interactions:
    """The project's interactions in the last ``lookback_days`` before ``until`` (default now)."""
    until = until or datetime.now(UTC)
    return load_log(store, project, cfg, until).interactions(now=until.timestamp())


def load_log(store: Store, project: Project, cfg: RecommendConfig, until: datetime | None = None) -> EventLog:
    """The same as rows of (person, item, hour) for splitting (``userloop recommend evaluate``)."""
    until = until or datetime.now(UTC)
    start = until - timedelta(days=cfg.lookback_days)
    rules = rules_of(store, project, cfg)
    cur = store.new_cursor()
    try:
        return _load(cur, project, rules, start, until)
    finally:
        cur.close()


def _fetch(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in cur.execute(sql, params or []).fetchnumpy().items()}


def _load(cur: duckdb.DuckDBPyConnection, project: Project, rules: list[EventRule], start: datetime,
          until: datetime) -> EventLog:
    cur.execute(f"CREATE OR REPLACE TEMP TABLE _rec_cat AS {CATALOGUE_SQL}", [project.id])
    if rules:
        p = _Params()
        raw = events_sql(rules, p, project.id, start, until)
        # one statement: rule branches -> type resolved (catalogue lookup when the event has none)
        # -> one row per (person, item, hour)
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE _rec_ev AS
            WITH raw AS ({raw}),
            by_id AS (SELECT item_id, min(item_type) AS item_type FROM _rec_cat WHERE NOT deleted GROUP BY item_id)
            SELECT r.person_id, coalesce(r.item_type, b.item_type, 'item') AS item_type, r.item_id,
                   time_bucket(INTERVAL 1 HOUR, r.ts) AS hour, count(*) AS n, sum(r.w) AS w,
                   bool_or(r.bought) AS bought, max(epoch(r.ts)) AS last
            FROM raw r LEFT JOIN by_id b ON r.item_type IS NULL AND b.item_id = r.item_id
            WHERE r.item_id IS NOT NULL AND r.item_id <> '' AND r.person_id IS NOT NULL
            GROUP BY ALL""",
            p.values,
        )
    else:
        cur.execute("""CREATE OR REPLACE TEMP TABLE _rec_ev (person_id VARCHAR, item_type VARCHAR, item_id VARCHAR,
            hour TIMESTAMPTZ, n BIGINT, w DOUBLE, bought BOOLEAN, last DOUBLE)""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _rec_items AS
        SELECT k.item_type, k.item_id, row_number() OVER (ORDER BY k.item_type, k.item_id) - 1 AS idx
        FROM (SELECT item_type, item_id FROM _rec_cat WHERE NOT deleted
              UNION SELECT DISTINCT item_type, item_id FROM _rec_ev) k""")
    cur.execute("""CREATE OR REPLACE TEMP TABLE _rec_users AS
        SELECT person_id, row_number() OVER (ORDER BY person_id) - 1 AS idx FROM (SELECT DISTINCT person_id FROM _rec_ev)""")
    ev = _fetch(cur, """SELECT u.idx AS u, i.idx AS i, e.last AS ts, e.w AS w, e.bought AS bought, e.n AS n,
                               epoch(e.hour) AS hour
                        FROM _rec_ev e JOIN _rec_users u USING (person_id) JOIN _rec_items i USING (item_type, item_id)""")
    items = _fetch(cur, """SELECT i.item_type, i.item_id, coalesce(c.title, '') AS title, coalesce(c.category, '') AS category,
                                  coalesce(epoch(c.created_at), 'nan'::DOUBLE) AS created, coalesce(c.active, true) AS active
                           FROM _rec_items i LEFT JOIN _rec_cat c USING (item_type, item_id) ORDER BY i.idx""")
    tags = _fetch(cur, """SELECT i.idx, t.tag FROM _rec_items i JOIN _rec_cat c USING (item_type, item_id),
                                 unnest(c.tags) AS t(tag) WHERE t.tag IS NOT NULL AND t.tag <> '' """)
    users = _fetch(cur, "SELECT person_id FROM _rec_users ORDER BY idx")["person_id"].astype(object)
    for t in ("_rec_ev", "_rec_items", "_rec_users", "_rec_cat"):
        cur.execute(f"DROP TABLE IF EXISTS {t}")
    # ts: the last event of each (person, item, hour) row, so numpy's hours are the SQL buckets
    return EventLog(user=ev["u"].astype(np.int64), item=ev["i"].astype(np.int64), ts=ev["ts"].astype(np.float64),
                    weight=ev["w"].astype(np.float32), bought=ev["bought"].astype(bool), users=users,
                    items=_items(items, tags), count=ev["n"].astype(np.int32))


def _codes(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    if len(values) == 0:
        return [], np.zeros(0, np.int64)
    names, codes = np.unique(values.astype(str), return_inverse=True)
    return [str(x) for x in names], codes


def _items(rows: dict[str, np.ndarray], tag_rows: dict[str, np.ndarray]) -> Items:
    n = len(rows["item_id"])
    types, type_codes = _codes(rows["item_type"])
    tag_names, tag_codes = _codes(tag_rows["tag"])
    tags = sp.csr_matrix(
        (np.ones(len(tag_codes), np.float32), (tag_rows["idx"].astype(np.int64), tag_codes)), shape=(n, len(tag_names))
    )
    tags.sum_duplicates()
    tags.data[:] = 1.0
    cat = rows["category"].astype(str)
    has = cat != ""
    categories, cat_codes = _codes(cat[has])
    category = np.full(n, -1, np.int32)
    category[has] = cat_codes
    return Items(
        item_type=type_codes.astype(np.int16), item_id=rows["item_id"].astype(object), types=types,
        tags=tags, tag_names=tag_names, category=category, categories=categories,
        created=rows["created"].astype(np.float64), active=rows["active"].astype(bool), title=rows["title"].astype(object),
    )
