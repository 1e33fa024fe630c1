"""Identity: distinct ids -> persons, and merging anonymous and known ids.

Runs inside the writer's transaction (``userloop/store/writer.py``). New distinct ids get a person
in bulk SQL; merges are applied in bulk, in the order they arrived (union-find over person ids).

A new person's id is ``md5(project_id || ':' || distinct_id)``, so replaying the same data gives
the same ids. On a merge the person of ``distinct_id`` (the identified id) absorbs the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from userloop.ingest.event import Merge, Unbind
from userloop.people.audit import MergeStep, log_merges, log_unbind

PERSON_ID_SQL = "md5(CAST({p} AS VARCHAR) || ':' || {d})"


def ensure_identities(cur: duckdb.DuckDBPyConnection, ids: pa.Table) -> None:
    """Give every (project_id, distinct_id, ts) in ``ids`` a person if it has none yet."""
    cur.register("_ids", ids)
    try:
        ensure_identities_from(cur, "_ids")
    finally:
        cur.unregister("_ids")


def ensure_identities_from(cur: duckdb.DuckDBPyConnection, relation: str) -> None:
    """The same for a relation (table, view or subquery) with columns project_id, distinct_id, ts.

    One anti-join against ``identities`` finds the new ids; persons and identities are inserted from
    that one result.
    """
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _new_ids AS
            SELECT n.project_id, n.distinct_id,
                   {PERSON_ID_SQL.format(p="n.project_id", d="n.distinct_id")} AS person_id, n.ts
            FROM (SELECT project_id, distinct_id, min(ts) AS ts FROM {relation} GROUP BY ALL) n
            ANTI JOIN identities i ON i.project_id = n.project_id AND i.distinct_id = n.distinct_id"""
    )
    try:
        cur.execute(
            "INSERT INTO persons (project_id, person_id, properties, created_at, updated_at) "
            "SELECT project_id, person_id, '{}', ts, ts FROM _new_ids ON CONFLICT DO NOTHING"
        )
        cur.execute(
            "INSERT INTO identities (project_id, distinct_id, person_id) "
            "SELECT project_id, distinct_id, person_id FROM _new_ids ON CONFLICT DO NOTHING"
        )
    finally:
        cur.execute("DROP TABLE IF EXISTS _new_ids")


def person_of(cur: duckdb.DuckDBPyConnection, project_id: int, distinct_id: str) -> str | None:
    row = cur.execute(
        "SELECT person_id FROM identities WHERE project_id = ? AND distinct_id = ?",
        [project_id, distinct_id],
    ).fetchall()
    return str(row[0][0]) if row else None


def apply_merges(cur: duckdb.DuckDBPyConnection, merges: Sequence[Merge]) -> None:
    """Apply merges in order, in bulk: one read of the persons involved, one update of identities.

    Each merge joins the person of ``other_id`` into the person of ``distinct_id`` (union-find over
    person ids, so chains like a->b then b->c end on one survivor). The survivor keeps its own
    property values where both have one, and the earliest ``created_at``.
    """
    if not merges:
        return
    keys = pa.table(
        {
            "project_id": pa.array([m.project_id for m in merges for _ in (0, 1)], pa.int32()),
            "distinct_id": pa.array([d for m in merges for d in (m.distinct_id, m.other_id)], pa.string()),
        }
    )
    cur.register("_mkeys", keys)
    try:
        rows = cur.execute(
            "SELECT DISTINCT k.project_id, k.distinct_id, i.person_id FROM _mkeys k "
            "JOIN identities i USING (project_id, distinct_id)"
        ).fetchall()
    finally:
        cur.unregister("_mkeys")
    person = {(r[0], r[1]): (r[0], r[2]) for r in rows}
    parent: dict[tuple[int, str], tuple[int, str]] = {}

    def root(x: tuple[int, str]) -> tuple[int, str]:
        while x in parent:
            x = parent[x]
        return x

    steps: list[tuple[tuple[int, str], tuple[int, str]]] = []  # (absorbed root, surviving root)
    causes: list[tuple[Merge, list[str]]] = []  # each step's merge, and the persons its absorbed root holds
    members: dict[tuple[int, str], list[str]] = {}
    for m in merges:
        a = person.get((m.project_id, m.distinct_id))
        b = person.get((m.project_id, m.other_id))
        if a is None or b is None:
            continue
        keep, gone = root(a), root(b)
        if keep != gone:
            parent[gone] = keep
            steps.append((gone, keep))
            held = members.pop(gone, [gone[1]])
            causes.append((m, held))
            members.setdefault(keep, [keep[1]]).extend(held)
    if not steps:
        return
    final = {gone: root(gone) for gone in parent}
    involved = pa.table(
        {
            "project_id": pa.array([k[0] for k in {*final, *final.values()}], pa.int32()),
            "person_id": pa.array([k[1] for k in {*final, *final.values()}], pa.string()),
        }
    )
    cur.register("_minv", involved)
    try:
        rows = cur.execute(
            "SELECT p.project_id, p.person_id, p.properties, p.created_at FROM persons p "
            "JOIN _minv v USING (project_id, person_id)"
        ).fetchall()
    finally:
        cur.unregister("_minv")
    props: dict[tuple[int, str], dict[str, Any]] = {(r[0], r[1]): msgspec.json.decode(r[2] or "{}") for r in rows}
    created: dict[tuple[int, str], Any] = {(r[0], r[1]): r[3] for r in rows}
    log: list[MergeStep] = []
    for (gone, keep), (m, held) in zip(steps, causes, strict=True):
        log.append(MergeStep(m, gone[1], keep[1], held, props.get(gone, {}), props.get(keep, {}),
                             created.get(gone), created.get(keep)))
        props[keep] = {**props.pop(gone, {}), **props.get(keep, {})}
        times = [t for t in (created.pop(gone, None), created.get(keep)) if t is not None]
        if times:
            created[keep] = min(times)
    moves = pa.table(
        {
            "project_id": pa.array([g[0] for g in final], pa.int32()),
            "old": pa.array([g[1] for g in final], pa.string()),
            "new": pa.array([k[1] for k in final.values()], pa.string()),
        }
    )
    survivors = sorted(set(final.values()))
    updates = pa.table(
        {
            "project_id": pa.array([k[0] for k in survivors], pa.int32()),
            "person_id": pa.array([k[1] for k in survivors], pa.string()),
            "properties": pa.array([msgspec.json.encode(props.get(k, {})).decode() for k in survivors], pa.string()),
            "created_at": pa.array([created.get(k) for k in survivors], pa.timestamp("us", tz="UTC")),
        }
    )
    cur.register("_mmoves", moves)
    cur.register("_mupd", updates)
    try:
        # the ids of every absorbed person, read once: for the merge log and person_overrides
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _mheld AS SELECT i.project_id, i.distinct_id, i.person_id, m.new "
            "FROM identities i JOIN _mmoves m ON i.project_id = m.project_id AND i.person_id = m.old"
        )
        log_merges(cur, log, "_mheld")
        cur.execute(
            "INSERT INTO person_overrides SELECT project_id, distinct_id, new FROM _mheld "
            "ON CONFLICT DO UPDATE SET person_id = excluded.person_id"
        )
        cur.execute(
            "UPDATE identities SET person_id = m.new FROM _mmoves m "
            "WHERE identities.project_id = m.project_id AND identities.person_id = m.old"
        )
        cur.execute(
            "UPDATE persons SET properties = u.properties, created_at = coalesce(u.created_at, persons.created_at), "
            "updated_at = now() FROM _mupd u "
            "WHERE persons.project_id = u.project_id AND persons.person_id = u.person_id"
        )
        cur.execute(
            "DELETE FROM persons WHERE (project_id, person_id) IN (SELECT (project_id, old) FROM _mmoves)"
        )
    finally:
        cur.execute("DROP TABLE IF EXISTS _mheld")
        cur.unregister("_mmoves")
        cur.unregister("_mupd")


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
    cur.execute(
        "INSERT INTO person_overrides VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET person_id = excluded.person_id",
        [op.project_id, op.distinct_id, fresh],
    )
    log_unbind(cur, op, current, fresh)
