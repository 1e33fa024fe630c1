"""Layer history: writing a computed snapshot, and reading a model's state at any instant.

A person's layers over time are half-open intervals ``[valid_from, valid_to)`` in
``layer_history``. A compute at reference time ``T`` touches only the persons whose layer at ``T``
differs from what history said (the *affected* persons), so an unchanged person costs nothing:

- the usual case, ``T`` after every earlier snapshot: close the open interval of each affected
  person at ``T`` and open one with the new layer;
- a backfill (``T`` before a later snapshot ``N``, or a recompute of ``T``): rebuild the affected
  persons' intervals from their change points (old interval starts, gaps, the new layer at ``T``
  and the old layer at ``N``, which holds until then) with consecutive equal layers merged.

Both run inside the caller's transaction; the new snapshot is the temp table ``_ln``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

STATE = """SELECT person_id, layer FROM layer_history
           WHERE project_id = $pid AND model = $model AND valid_from <= {at} AND (valid_to IS NULL OR valid_to > {at})"""


def _run(cur: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    used = {k: v for k, v in params.items() if f"${k}" in sql}
    return cur.execute(sql, used).fetchall()


def apply_snapshot(
    cur: duckdb.DuckDBPyConnection, project_id: int, model: str, at: datetime
) -> tuple[int, bool]:
    """Write the snapshot in ``_ln`` (person_id, layer) at ``at`` into history.

    Returns (changed persons, whether ``at`` is the model's latest reference time).
    """
    p: dict[str, Any] = {"pid": project_id, "model": model, "t": at}
    rows = _run(
        cur,
        """SELECT min(as_of) FILTER (WHERE as_of > $t), count(*) FILTER (WHERE as_of = $t)
           FROM layer_snapshots WHERE project_id = $pid AND model = $model""",
        p,
    )
    later, same = rows[0]
    _run(cur, "DROP TABLE IF EXISTS _aff", p)
    _run(
        cur,
        f"""CREATE TEMP TABLE _aff AS
            SELECT coalesce(n.person_id, c.person_id) AS person_id
            FROM _ln n FULL JOIN ({STATE.format(at="$t")}) c ON c.person_id = n.person_id
            WHERE n.layer IS DISTINCT FROM c.layer""",
        p,
    )
    changed = int(_run(cur, "SELECT count(*) FROM _aff", p)[0][0])
    if changed:
        if later is None and not same:
            _append(cur, p)
        else:
            _rebuild(cur, {**p, "n": later})
    _run(cur, "DROP TABLE _aff", p)
    return changed, later is None


def _append(cur: duckdb.DuckDBPyConnection, p: dict[str, Any]) -> None:
    _run(
        cur,
        """UPDATE layer_history SET valid_to = $t
           WHERE project_id = $pid AND model = $model AND valid_to IS NULL
             AND person_id IN (SELECT person_id FROM _aff)""",
        p,
    )
    _run(
        cur,
        """INSERT INTO layer_history
           SELECT $pid, $model, n.person_id, n.layer, $t, NULL FROM _ln n SEMI JOIN _aff a ON a.person_id = n.person_id""",
        p,
    )


def _rebuild(cur: duckdb.DuckDBPyConnection, p: dict[str, Any]) -> None:
    _run(cur, "DROP TABLE IF EXISTS _old", p)
    _run(
        cur,
        """CREATE TEMP TABLE _old AS
           SELECT person_id, layer, valid_from, valid_to FROM layer_history
           WHERE project_id = $pid AND model = $model AND person_id IN (SELECT person_id FROM _aff)""",
        p,
    )
    at_next = ""
    if p["n"] is not None:  # the old layer at the next snapshot holds from there on
        at_next = """UNION ALL
            SELECT a.person_id, $n, o.layer FROM _aff a
            LEFT JOIN _old o ON o.person_id = a.person_id AND o.valid_from <= $n AND (o.valid_to IS NULL OR o.valid_to > $n)"""
    _run(
        cur,
        """DELETE FROM layer_history
            WHERE project_id = $pid AND model = $model AND person_id IN (SELECT person_id FROM _aff)""",
        p,
    )
    # change points; at one instant a layer beats the NULL that ends the interval before it
    _run(
        cur,
        f"""INSERT INTO layer_history
            WITH pts AS (
                SELECT person_id, valid_from AS t, layer FROM _old WHERE valid_from <> $t
                UNION ALL
                SELECT person_id, valid_to, NULL FROM _old WHERE valid_to IS NOT NULL AND valid_to <> $t
                UNION ALL
                SELECT a.person_id, $t, n.layer FROM _aff a LEFT JOIN _ln n ON n.person_id = a.person_id
                {at_next}
            ), g AS (
                SELECT person_id, t, max(layer) AS layer FROM pts GROUP BY person_id, t
            ), s AS (
                SELECT *, lag(layer) OVER w AS prev, row_number() OVER w AS rn
                FROM g WINDOW w AS (PARTITION BY person_id ORDER BY t)
            ), c AS (
                SELECT person_id, t, layer FROM s WHERE rn = 1 OR layer IS DISTINCT FROM prev
            ), iv AS (
                SELECT person_id, layer, t AS valid_from, lead(t) OVER (PARTITION BY person_id ORDER BY t) AS valid_to
                FROM c
            )
            SELECT $pid, $model, person_id, layer, valid_from, valid_to FROM iv WHERE layer IS NOT NULL""",
        p,
    )
    _run(cur, "DROP TABLE _old", p)


def migration_sql() -> str:
    """Counts of persons from their layer at ``$t0`` to their layer at ``$t1`` (NULL: not in the model)."""
    return f"""
        SELECT a.layer AS from_layer, b.layer AS to_layer, count(*) AS n
        FROM ({STATE.format(at="$t0")}) a FULL JOIN ({STATE.format(at="$t1")}) b ON a.person_id = b.person_id
        GROUP BY ALL"""


def state_sql() -> str:
    """Each person's layer at ``$at``."""
    return STATE.format(at="$at")
