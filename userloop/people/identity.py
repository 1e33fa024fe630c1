"""Identity: distinct ids -> persons, and merging anonymous and known ids.

Runs inside the writer's transaction (``userloop/store/writer.py``). New distinct ids get a person
in bulk SQL; merges are rare and applied one by one, in the order they arrived.

A new person's id is ``md5(project_id || ':' || distinct_id)``, so replaying the same data gives
the same ids. On a merge the person of ``distinct_id`` (the identified id) absorbs the other.
"""

from __future__ import annotations

import uuid
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from userloop.ingest.event import Merge, Unbind

PERSON_ID_SQL = "md5(CAST({p} AS VARCHAR) || ':' || {d})"


def ensure_identities(cur: duckdb.DuckDBPyConnection, ids: pa.Table) -> None:
    """Give every (project_id, distinct_id, ts) in ``ids`` a person if it has none yet."""
    cur.register("_ids", ids)
    try:
        new = f"""
            SELECT n.project_id, n.distinct_id, {PERSON_ID_SQL.format(p="n.project_id", d="n.distinct_id")} AS person_id,
                   n.ts
            FROM (SELECT project_id, distinct_id, min(ts) AS ts FROM _ids GROUP BY ALL) n
            WHERE NOT EXISTS (SELECT 1 FROM identities i
                              WHERE i.project_id = n.project_id AND i.distinct_id = n.distinct_id)
        """
        cur.execute(
            f"INSERT INTO persons (project_id, person_id, properties, created_at, updated_at) "
            f"SELECT project_id, person_id, '{{}}', ts, ts FROM ({new}) ON CONFLICT DO NOTHING"
        )
        cur.execute(
            f"INSERT INTO identities (project_id, distinct_id, person_id) "
            f"SELECT project_id, distinct_id, person_id FROM ({new}) ON CONFLICT DO NOTHING"
        )
    finally:
        cur.unregister("_ids")


def person_of(cur: duckdb.DuckDBPyConnection, project_id: int, distinct_id: str) -> str | None:
    row = cur.execute(
        "SELECT person_id FROM identities WHERE project_id = ? AND distinct_id = ?",
        [project_id, distinct_id],
    ).fetchall()
    return str(row[0][0]) if row else None


def _merge_props(keep: dict[str, Any], absorbed: dict[str, Any]) -> dict[str, Any]:
    merged = dict(absorbed)
    merged.update(keep)  # the surviving person's values win
    return merged


def apply_merge(cur: duckdb.DuckDBPyConnection, op: Merge) -> None:
    keep = person_of(cur, op.project_id, op.distinct_id)
    gone = person_of(cur, op.project_id, op.other_id)
    if keep is None or gone is None or keep == gone:
        return
    rows = cur.execute(
        "SELECT person_id, properties, created_at FROM persons WHERE project_id = ? AND person_id IN (?, ?)",
        [op.project_id, keep, gone],
    ).fetchall()
    by_id = {r[0]: (msgspec.json.decode(r[1] or "{}"), r[2]) for r in rows}
    keep_props, keep_created = by_id.get(keep, ({}, None))
    gone_props, gone_created = by_id.get(gone, ({}, None))
    created = min(c for c in (keep_created, gone_created) if c is not None) if by_id else None
    cur.execute(
        "UPDATE identities SET person_id = ? WHERE project_id = ? AND person_id = ?",
        [keep, op.project_id, gone],
    )
    cur.execute(
        "UPDATE persons SET properties = ?, created_at = coalesce(?, created_at), updated_at = now() "
        "WHERE project_id = ? AND person_id = ?",
        [msgspec.json.encode(_merge_props(keep_props, gone_props)).decode(), created, op.project_id, keep],
    )
    cur.execute("DELETE FROM persons WHERE project_id = ? AND person_id = ?", [op.project_id, gone])


def apply_unbind(cur: duckdb.DuckDBPyConnection, op: Unbind) -> None:
    current = person_of(cur, op.project_id, op.distinct_id)
    if current is None:
        return
    others = cur.execute(
        "SELECT count(*) FROM identities WHERE project_id = ? AND person_id = ? AND distinct_id <> ?",
        [op.project_id, current, op.distinct_id],
    ).fetchall()
    if not others or others[0][0] == 0:
        return  # already alone
    fresh = uuid.uuid4().hex
    cur.execute(
        "INSERT INTO persons (project_id, person_id, properties, created_at, updated_at) "
        "VALUES (?, ?, '{}', now(), now())",
        [op.project_id, fresh],
    )
    cur.execute(
        "UPDATE identities SET person_id = ? WHERE project_id = ? AND distinct_id = ?",
        [fresh, op.project_id, op.distinct_id],
    )
