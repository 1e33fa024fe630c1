"""Profile operations: set, set_once, increment, append, unset, delete.

Applied by the writer after merges, in arrival order. The touched persons are read in one query,
changed in memory (the operations are order-dependent and few compared with events) and written
back in one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import msgspec
import pyarrow as pa

from userloop.ingest.event import ProfileOp


def apply_op(props: dict[str, Any], op: ProfileOp) -> None:
    if op.op == "set":
        props.update(op.properties)
    elif op.op == "set_once":
        for k, v in op.properties.items():
            props.setdefault(k, v)
    elif op.op == "increment":
        for k, v in op.properties.items():
            current = props.get(k, 0)
            if isinstance(current, bool) or not isinstance(current, int | float):
                current = 0
            props[k] = current + v
    elif op.op == "append":
        for k, v in op.properties.items():
            current = props.get(k)
            items = list(current) if isinstance(current, list) else ([] if current is None else [current])
            items.extend(v if isinstance(v, list) else [v])
            props[k] = items
    elif op.op == "unset":
        for k in op.properties:
            props.pop(k, None)


def apply_profile_ops(cur: duckdb.DuckDBPyConnection, ops: Sequence[ProfileOp]) -> None:
    if not ops:
        return
    keys = pa.table(
        {
            "project_id": pa.array([o.project_id for o in ops], pa.int32()),
            "distinct_id": pa.array([o.distinct_id for o in ops], pa.string()),
        }
    )
    cur.register("_pkeys", keys)
    try:
        rows = cur.execute(
            """SELECT DISTINCT k.project_id, k.distinct_id, i.person_id, p.properties
               FROM _pkeys k
               JOIN identities i USING (project_id, distinct_id)
               LEFT JOIN persons p ON p.project_id = i.project_id AND p.person_id = i.person_id"""
        ).fetchall()
    finally:
        cur.unregister("_pkeys")
    person_for = {(r[0], r[1]): r[2] for r in rows}
    props: dict[tuple[int, str], dict[str, Any]] = {
        (r[0], r[2]): msgspec.json.decode(r[3] or "{}") for r in rows
    }
    deleted: list[tuple[int, str, bool]] = []
    for op in ops:
        person = person_for.get((op.project_id, op.distinct_id))
        if person is None:
            continue
        key = (op.project_id, person)
        if op.op == "delete":
            deleted.append((op.project_id, person, op.delete_events))
            props.pop(key, None)
            continue
        if key in props:
            apply_op(props[key], op)
    if props:
        update = pa.table(
            {
                "project_id": pa.array([k[0] for k in props], pa.int32()),
                "person_id": pa.array([k[1] for k in props], pa.string()),
                "properties": pa.array(
                    [msgspec.json.encode(v).decode() for v in props.values()], pa.string()
                ),
            }
        )
        cur.register("_pupd", update)
        try:
            cur.execute(
                """UPDATE persons SET properties = u.properties, updated_at = now()
                   FROM _pupd u WHERE persons.project_id = u.project_id AND persons.person_id = u.person_id"""
            )
        finally:
            cur.unregister("_pupd")
    for project_id, person, with_events in deleted:
        delete_person(cur, project_id, person, with_events)


def delete_person(cur: duckdb.DuckDBPyConnection, project_id: int, person_id: str, with_events: bool) -> None:
    if with_events:
        cur.execute(
            """DELETE FROM events WHERE project_id = ? AND distinct_id IN
               (SELECT distinct_id FROM identities WHERE project_id = ? AND person_id = ?)""",
            [project_id, project_id, person_id],
        )
    cur.execute(
        "DELETE FROM person_overrides WHERE project_id = ? AND distinct_id IN "
        "(SELECT distinct_id FROM identities WHERE project_id = ? AND person_id = ?)",
        [project_id, project_id, person_id],
    )
    cur.execute("DELETE FROM identities WHERE project_id = ? AND person_id = ?", [project_id, person_id])
    cur.execute("DELETE FROM persons WHERE project_id = ? AND person_id = ?", [project_id, person_id])
