"""The identity audit: every merge, unbind and unmerge is logged in ``merge_log``; merges can be undone.

Writer side (inside the writer's transaction, set-based SQL): :func:`log_merges` is called by
``identity.apply_merges`` with the steps it applies, :func:`log_unbind` by ``apply_unbind``, and
:func:`apply_unmerge` applies an :class:`~userloop.ingest.event.Unmerge` operation.

Read side (actions, one function for REST, CLI and console): ``persons.merges`` lists a person's
history, ``persons.unmerge`` checks a request, hands it to the writer and answers what it did.

Undo semantics (``docs/people/portraits.md#undoing-a-merge``): the distinct ids of a person form a
graph whose edges are the active merges (``distinct_id`` -- ``other_id``). Undoing merge M removes
its edge; what splits off is everything still reachable from M's absorbed side (``other_id`` and
the ids M moved) but no longer from M's surviving ``distinct_id``. So ids linked later *through*
an absorbed id leave with it, and ids linked to the survivor by another merge stay.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import duckdb
import msgspec
import pyarrow as pa

from userloop.actions import ActionContext, action
from userloop.errors import NotFound, UserloopError
from userloop.ingest.event import Merge, Payload, Unbind, Unmerge

if TYPE_CHECKING:
    from userloop.store.duckdb import Store

_TS = pa.timestamp("us", tz="UTC")
_encode = msgspec.json.Encoder().encode

# the next merge_id of each project, in the same statement as the rows it numbers
_NEXT_IDS = "(SELECT project_id, max(merge_id) AS last FROM merge_log GROUP BY ALL)"

LOG_COLUMNS = (
    "merge_id, action, kind, message_id, distinct_id, other_id, surviving_person_id, absorbed_person_id, "
    "moved_distinct_ids, absorbed_properties, absorbed_created_at, surviving_properties, surviving_created_at, "
    "undoes, undone_by, logged_at"
)


class MergeStep(NamedTuple):
    """One person absorbing another inside a batch of merges (as ``apply_merges`` applies it)."""

    merge: Merge
    absorbed: str  # person ids as they were before the step
    surviving: str
    held: list[str]  # the persons (before the batch) that the absorbed person is made of
    absorbed_properties: dict[str, Any]
    surviving_properties: dict[str, Any]
    absorbed_created_at: datetime | None
    surviving_created_at: datetime | None


# -- writer side: logging ---------------------------------------------------------------------------
def log_merges(cur: duckdb.DuckDBPyConnection, steps: list[MergeStep], held_ids: str) -> None:
    """One row per step, numbered per project in order. ``held_ids`` names a relation with the
    ``project_id, distinct_id, person_id`` of every absorbed person before the batch (the moved ids)."""
    if not steps:
        return
    table = pa.table(
        {
            "step": pa.array(range(len(steps)), pa.int64()),
            "project_id": pa.array([s.merge.project_id for s in steps], pa.int32()),
            "kind": pa.array([s.merge.kind for s in steps], pa.string()),
            "message_id": pa.array([s.merge.message_id for s in steps], pa.string()),
            "distinct_id": pa.array([s.merge.distinct_id for s in steps], pa.string()),
            "other_id": pa.array([s.merge.other_id for s in steps], pa.string()),
            "surviving": pa.array([s.surviving for s in steps], pa.string()),
            "absorbed": pa.array([s.absorbed for s in steps], pa.string()),
            "held": pa.array([s.held for s in steps], pa.list_(pa.string())),
            "absorbed_properties": pa.array([_encode(s.absorbed_properties).decode() for s in steps], pa.string()),
            "absorbed_created_at": pa.array([s.absorbed_created_at for s in steps], _TS),
            "surviving_properties": pa.array([_encode(s.surviving_properties).decode() for s in steps], pa.string()),
            "surviving_created_at": pa.array([s.surviving_created_at for s in steps], _TS),
        }
    )
    cur.register("_mlog", table)
    try:
        cur.execute(
            f"""INSERT INTO merge_log (project_id, merge_id, action, kind, message_id, distinct_id, other_id,
                    surviving_person_id, absorbed_person_id, moved_distinct_ids, absorbed_properties,
                    absorbed_created_at, surviving_properties, surviving_created_at, logged_at)
                SELECT s.project_id,
                       coalesce(n.last, 0) + row_number() OVER (PARTITION BY s.project_id ORDER BY s.step),
                       'merge', s.kind, s.message_id, s.distinct_id, s.other_id, s.surviving, s.absorbed,
                       coalesce(h.ids, []), s.absorbed_properties, s.absorbed_created_at,
                       s.surviving_properties, s.surviving_created_at, now()
                FROM _mlog s
                LEFT JOIN {_NEXT_IDS} n ON n.project_id = s.project_id
                LEFT JOIN (SELECT m.step, list(i.distinct_id ORDER BY i.distinct_id) AS ids
                           FROM (SELECT step, project_id, unnest(held) AS person_id FROM _mlog) m
                           JOIN {held_ids} i ON i.project_id = m.project_id AND i.person_id = m.person_id
                           GROUP BY m.step) h ON h.step = s.step"""
        )
    finally:
        cur.unregister("_mlog")


def log_unbind(cur: duckdb.DuckDBPyConnection, op: Unbind, previous: str, fresh: str) -> None:
    cur.execute(
        f"""INSERT INTO merge_log (project_id, merge_id, action, kind, distinct_id, surviving_person_id,
                absorbed_person_id, moved_distinct_ids, logged_at)
            SELECT $pid, coalesce(n.last, 0) + 1, 'unbind', 'unbind', $did, $prev, $fresh, [$did], now()
            FROM (SELECT 1) LEFT JOIN {_NEXT_IDS} n ON n.project_id = $pid""",
        {"pid": op.project_id, "did": op.distinct_id, "prev": previous, "fresh": fresh},
    )


# -- planning an unmerge (read-only; run by the action to check, and by the writer to apply) --------
@dataclass
class Plan:
    split: list[str]  # the ids that leave the person
    cut: list[int]  # the active merges whose link the split breaks (they get undone_by)
    absorbed_side: list[int]  # those of ``cut`` whose absorbed side leaves
    undoes: int | None  # the merge named by the operator, else the latest of ``cut``
    restore: int | None  # the merge whose absorbed person comes back (the latest of ``absorbed_side``)


class Refused(Exception):
    """Why an unmerge cannot be planned: (code, message, field, status)."""

    def __init__(self, code: str, message: str, field: str | None = None, status: int = 409):
        super().__init__(message)
        self.error = UserloopError(code, message, field, status=status)


def _rows(cur: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    rel = cur.execute(sql, params)
    cols = [d[0] for d in rel.description or []]
    return [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]


def plan_unmerge(cur: duckdb.DuckDBPyConnection, op: Unmerge) -> Plan:
    """Which ids leave ``op.person_id`` and which merges that undoes; :class:`Refused` if none."""
    base = {"pid": op.project_id, "person": op.person_id}
    nodes = _rows(
        cur,
        "SELECT list(distinct_id ORDER BY distinct_id) AS ids FROM identities "
        "WHERE project_id = $pid AND person_id = $person",
        base,
    )[0]["ids"] or []
    if not nodes:
        raise Refused("person_not_found", f"no person {op.person_id!r}", "id", 404)
    if op.merge_id is not None:
        found = _rows(
            cur,
            "SELECT action, distinct_id, other_id, moved_distinct_ids, undone_by FROM merge_log "
            "WHERE project_id = $pid AND merge_id = $mid",
            {"pid": op.project_id, "mid": op.merge_id},
        )
        if not found:
            raise Refused("merge_not_found", f"no merge {op.merge_id} in this project", "merge", 404)
        m = found[0]
        if m["action"] != "merge":
            raise Refused("not_a_merge", f"log entry {op.merge_id} is an {m['action']}, not a merge", "merge", 400)
        if m["undone_by"] is not None:
            raise Refused("merge_already_undone", f"merge {op.merge_id} was undone by {m['undone_by']}", "merge")
        split = _rows(
            cur,
            """WITH RECURSIVE
                 nodes AS (SELECT distinct_id AS id FROM identities WHERE project_id = $pid AND person_id = $person),
                 edges AS (SELECT distinct_id AS a, other_id AS b FROM merge_log
                           WHERE project_id = $pid AND action = 'merge' AND undone_by IS NULL AND merge_id <> $mid
                             AND distinct_id IN (SELECT id FROM nodes) AND other_id IN (SELECT id FROM nodes)),
                 links AS (SELECT a, b FROM edges UNION ALL SELECT b, a FROM edges),
                 keep(id) AS (SELECT id FROM nodes WHERE id = $keep
                              UNION SELECT l.b FROM keep JOIN links l ON l.a = keep.id),
                 leave(id) AS (SELECT id FROM nodes WHERE id = $other OR list_contains($moved, id)
                               UNION SELECT l.b FROM leave JOIN links l ON l.a = leave.id)
               SELECT list(id ORDER BY id) AS ids FROM leave WHERE id NOT IN (SELECT id FROM keep)""",
            {**base, "mid": op.merge_id, "keep": m["distinct_id"], "other": m["other_id"],
             "moved": m["moved_distinct_ids"] or []},
        )[0]["ids"] or []
        if not split:
            if {m["other_id"], *(m["moved_distinct_ids"] or [])} & set(nodes):
                raise Refused("still_linked", f"the ids merge {op.merge_id} moved are still linked to its survivor "
                              "by other merges; undo those too, or split by distinct_ids", "merge")
            raise Refused("merge_not_in_person", f"none of the ids merge {op.merge_id} moved are in this person",
                          "merge")
        if len(split) == len(nodes):
            raise Refused("nothing_to_split", f"merge {op.merge_id}'s surviving id is no longer in this person; "
                          "split by distinct_ids instead", "merge")
        return Plan(split=split, cut=[op.merge_id], absorbed_side=[op.merge_id], undoes=op.merge_id,
                    restore=op.merge_id)
    wanted = list(dict.fromkeys(op.distinct_ids))
    if not wanted:
        raise Refused("bad_unmerge", "give a merge id or the distinct ids to split off", "merge", 400)
    inside = set(nodes)
    for i, did in enumerate(wanted):
        if did not in inside:
            raise Refused("distinct_id_not_in_person", f"{did!r} is not an id of this person",
                          f"distinct_ids[{i}]", 400)
    if len(wanted) == len(nodes):
        raise Refused("nothing_to_split", "the person would be left without ids", "distinct_ids", 400)
    split = sorted(wanted)
    cut = _rows(
        cur,
        """SELECT coalesce(list(merge_id ORDER BY merge_id), []) AS cut,
                  coalesce(list(merge_id ORDER BY merge_id) FILTER (WHERE list_contains($split, other_id)), [])
                    AS absorbed_side
           FROM merge_log
           WHERE project_id = $pid AND action = 'merge' AND undone_by IS NULL
             AND list_contains($nodes, distinct_id) AND list_contains($nodes, other_id)
             AND list_contains($split, distinct_id) <> list_contains($split, other_id)""",
        {"pid": op.project_id, "split": split, "nodes": nodes},
    )[0]
    return Plan(split=split, cut=cut["cut"], absorbed_side=cut["absorbed_side"],
                undoes=max(cut["cut"], default=None), restore=max(cut["absorbed_side"], default=None))


# -- writer side: applying an unmerge ---------------------------------------------------------------
def apply_unmerge(cur: duckdb.DuckDBPyConnection, op: Unmerge) -> None:
    """Split the planned ids off into their own person, in the writer's transaction.

    Never raises for a request the state no longer allows (the caller checked it, but merges may
    have been applied since): it then changes nothing and the caller finds no log row.
    """
    try:
        plan = plan_unmerge(cur, op)
    except Refused:
        return
    p: dict[str, Any] = {
        "pid": op.project_id, "person": op.person_id, "split": plan.split, "cut": plan.cut,
        "absorbed_side": plan.absorbed_side, "restore": plan.restore,
    }
    # the cut merges with their split-side and staying-side snapshots, and the merges made inside the
    # split side after the first cut one (their absorbed persons joined the split side)
    snaps = """
        cut AS (SELECT merge_id,
                       CASE WHEN list_contains($absorbed_side, merge_id) THEN absorbed_properties
                            ELSE surviving_properties END AS leave_props,
                       CASE WHEN list_contains($absorbed_side, merge_id) THEN surviving_properties
                            ELSE absorbed_properties END AS stay_props,
                       CASE WHEN list_contains($absorbed_side, merge_id) THEN absorbed_created_at
                            ELSE surviving_created_at END AS leave_created,
                       CASE WHEN list_contains($absorbed_side, merge_id) THEN absorbed_person_id
                            ELSE surviving_person_id END AS leave_person
                FROM merge_log WHERE project_id = $pid AND list_contains($cut, merge_id)),
        inner_merges AS (SELECT merge_id, absorbed_properties AS leave_props, surviving_properties AS stay_props,
                                absorbed_created_at AS leave_created
                         FROM merge_log
                         WHERE project_id = $pid AND action = 'merge' AND undone_by IS NULL
                           AND list_contains($split, distinct_id) AND list_contains($split, other_id)
                           AND merge_id > (SELECT coalesce(min(merge_id), 0) FROM cut)),
        ranked AS (SELECT 0 AS tier, -merge_id AS rank, leave_props, leave_created FROM cut
                   UNION ALL SELECT 1, merge_id, leave_props, leave_created FROM inner_merges),
        leaving AS (SELECT merge_id, leave_props, stay_props FROM cut
                    UNION ALL SELECT merge_id, leave_props, stay_props FROM inner_merges)"""
    restored = _rows(
        cur,
        f"""WITH {snaps},
              undone AS (SELECT r.merge_id, r.absorbed_properties, r.surviving_properties
                         FROM merge_log r JOIN cut c ON r.surviving_person_id = c.leave_person
                         WHERE r.project_id = $pid AND r.action = 'merge' AND r.undone_by IS NOT NULL
                           AND r.merge_id < c.merge_id),
              undone_a AS (SELECT u.merge_id, j.key, j.value
                           FROM undone u, json_each(coalesce(u.absorbed_properties, '{{}}')) j),
              undone_s AS (SELECT u.merge_id, j.key FROM undone u, json_each(coalesce(u.surviving_properties, '{{}}')) j),
              foreign_kv AS (SELECT a.key, a.value FROM undone_a a
                             WHERE NOT EXISTS (SELECT 1 FROM undone_s s WHERE s.merge_id = a.merge_id AND s.key = a.key)),
              kv AS (SELECT j.key, j.value, row_number() OVER (PARTITION BY j.key ORDER BY r.tier, r.rank) AS n
                     FROM ranked r, json_each(coalesce(r.leave_props, '{{}}')) j
                     WHERE NOT EXISTS (SELECT 1 FROM foreign_kv f WHERE f.key = j.key AND f.value = j.value)),
              leave_keys AS (SELECT c.merge_id, j.key, j.value FROM leaving c, json_each(coalesce(c.leave_props, '{{}}')) j),
              stay_kv AS (SELECT c.merge_id, j.key, j.value FROM leaving c, json_each(coalesce(c.stay_props, '{{}}')) j),
              -- a key still holding the value the leaving side brought: back to the staying side's value, or gone
              revert AS (SELECT l.key, l.value, any_value(s.value) AS stay_value FROM leave_keys l
                         LEFT JOIN stay_kv s ON s.merge_id = l.merge_id AND s.key = l.key GROUP BY l.key, l.value),
              current AS (SELECT j.key, CASE WHEN r.key IS NULL THEN j.value ELSE r.stay_value END AS value
                          FROM persons p, json_each(p.properties) j
                          LEFT JOIN revert r ON r.key = j.key AND r.value = j.value
                          WHERE p.project_id = $pid AND p.person_id = $person)
            SELECT (SELECT coalesce(json_group_object(key, value), '{{}}') FROM kv WHERE n = 1) AS props,
                   (SELECT min(leave_created) FROM ranked) AS created,
                   (SELECT coalesce(json_group_object(key, value), '{{}}') FROM current WHERE value IS NOT NULL)
                     AS stay_props,
                   (SELECT absorbed_person_id FROM merge_log WHERE project_id = $pid AND merge_id = $restore)
                     AS old_person,
                   EXISTS (SELECT 1 FROM persons x JOIN merge_log l ON x.person_id = l.absorbed_person_id
                           WHERE x.project_id = $pid AND l.project_id = $pid AND l.merge_id = $restore) AS taken""",
        p,
    )[0]
    new_person = restored["old_person"] if restored["old_person"] and not restored["taken"] else uuid.uuid4().hex
    log_id = _rows(cur, "SELECT coalesce(max(merge_id), 0) + 1 AS n FROM merge_log WHERE project_id = $pid",
                   {"pid": op.project_id})[0]["n"]
    p |= {"new": new_person, "props": restored["props"], "created": restored["created"],
          "stay": restored["stay_props"], "kind": op.kind, "request": op.request_id, "log": log_id,
          "undoes": plan.undoes}
    cur.execute(
        "INSERT INTO persons (project_id, person_id, properties, created_at, updated_at) "
        "VALUES ($pid, $new, $props, coalesce($created, now()), now())",
        {k: p[k] for k in ("pid", "new", "props", "created")},
    )
    cur.execute(
        "UPDATE persons SET properties = $stay, updated_at = now() WHERE project_id = $pid AND person_id = $person",
        {k: p[k] for k in ("pid", "person", "stay")},
    )
    cur.execute(
        "UPDATE identities SET person_id = $new "
        "WHERE project_id = $pid AND distinct_id IN (SELECT unnest($split))",
        {k: p[k] for k in ("pid", "new", "split")},
    )
    cur.execute(
        "INSERT INTO person_overrides SELECT $pid, unnest($split), $new "
        "ON CONFLICT DO UPDATE SET person_id = excluded.person_id",
        {k: p[k] for k in ("pid", "new", "split")},
    )
    cur.execute(
        """INSERT INTO merge_log (project_id, merge_id, action, kind, distinct_id, other_id,
                surviving_person_id, absorbed_person_id, moved_distinct_ids, absorbed_properties,
                absorbed_created_at, surviving_properties, undoes, request_id, logged_at)
            SELECT $pid, $log, 'unmerge', $kind, u.distinct_id, u.other_id, $person, $new,
                   $split, $props, coalesce($created, now()), $stay, $undoes, $request, now()
            FROM (SELECT 1) LEFT JOIN (SELECT distinct_id, other_id FROM merge_log
                                       WHERE project_id = $pid AND merge_id = $undoes) u ON TRUE""",
        {k: p[k] for k in ("pid", "log", "kind", "person", "new", "split", "props", "created", "stay", "undoes",
                           "request")},
    )
    cur.execute(
        "UPDATE merge_log SET undone_by = $log WHERE project_id = $pid AND list_contains($cut, merge_id)",
        {k: p[k] for k in ("pid", "log", "cut")},
    )


# -- read side --------------------------------------------------------------------------------------
def resolve_person(store: Store, project_id: int, ident: str) -> tuple[str, list[str]]:
    """A distinct id or a person id -> (person id, its distinct ids); a distinct id wins a tie."""
    found = store.query(
        """SELECT h.person_id FROM (
             SELECT person_id, 0 AS pref FROM identities WHERE project_id = $pid AND distinct_id = $id
             UNION ALL SELECT person_id, 1 FROM persons WHERE project_id = $pid AND person_id = $id) h
           WHERE EXISTS (SELECT 1 FROM persons p WHERE p.project_id = $pid AND p.person_id = h.person_id)
           ORDER BY h.pref""",
        {"pid": project_id, "id": ident},
    )
    if not found:
        raise NotFound("person_not_found", f"no person with distinct id or person id {ident!r}", "id")
    person = str(found[0]["person_id"])
    ids = store.query(
        "SELECT coalesce(list(distinct_id ORDER BY distinct_id), []) AS ids FROM identities "
        "WHERE project_id = $pid AND person_id = $person",
        {"pid": project_id, "person": person},
    )[0]["ids"]
    return person, list(ids)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: _iso(v) for k, v in row.items()}
    for key in ("absorbed_properties", "surviving_properties"):
        out[key] = msgspec.json.decode(row[key]) if row.get(key) else None
    out["active"] = row["action"] == "merge" and row["undone_by"] is None
    return out


_HISTORY_WHERE = """project_id = $pid AND (surviving_person_id = $person OR absorbed_person_id = $person
    OR list_contains($ids, distinct_id) OR list_contains($ids, other_id) OR list_has_any(moved_distinct_ids, $ids))"""


def merge_history(store: Store, project_id: int, person_id: str, ids: list[str]) -> list[dict[str, Any]]:
    """Every log entry that touched the person or one of its current ids, oldest first."""
    rows = store.query(
        f"SELECT {LOG_COLUMNS} FROM merge_log WHERE {_HISTORY_WHERE} ORDER BY merge_id",
        {"pid": project_id, "person": person_id, "ids": ids},
    )
    return [_entry(r) for r in rows]


def history_count_sql() -> str:
    """The number of entries :func:`merge_history` lists (``$pid``, ``$person``, ``$ids``)."""
    return f"SELECT count(*) AS n FROM merge_log WHERE {_HISTORY_WHERE}"


@action("persons.merges")
def merges_action(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    ident = _id_param(params)
    person_id, ids = resolve_person(ctx.store, ctx.project.id, ident)
    return {"person_id": person_id, "distinct_ids": ids,
            "merges": merge_history(ctx.store, ctx.project.id, person_id, ids)}


def _id_param(params: dict[str, Any]) -> str:
    ident = params.get("id")
    if not isinstance(ident, str) or not ident:
        raise UserloopError("bad_parameter", "id must be a distinct id or a person id", "id")
    return ident


T = TypeVar("T")
_AT = re.compile(r" - at `\$\.?(.*)`$")


def decode_params(params: dict[str, Any], model: type[T]) -> T:
    """Parameters -> a typed request; 400 ``unknown_field`` / ``invalid_field`` naming the field."""
    try:
        return msgspec.convert(params, model)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.search(text)
        field = at.group(1) if at else None
        unknown = re.search(r"unknown field `([^`]*)`", text)
        if unknown:
            raise UserloopError("unknown_field", _AT.sub("", text), unknown.group(1)) from None
        raise UserloopError("invalid_field", _AT.sub("", text), field) from None


class UnmergeRequest(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    merge: int | None = None
    distinct_ids: list[str] | None = None


@action("persons.unmerge")
def unmerge_action(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Check the request, apply it through the writer, answer the log entry and both persons."""
    req = decode_params(params, UnmergeRequest)
    if (req.merge is None) == (req.distinct_ids is None):
        raise UserloopError("bad_unmerge", "give exactly one of merge (a merge id) or distinct_ids", "merge")
    person_id, _ = resolve_person(ctx.store, ctx.project.id, req.id)
    op = Unmerge(project_id=ctx.project.id, person_id=person_id, request_id=uuid.uuid4().hex,
                 merge_id=req.merge, distinct_ids=req.distinct_ids or [])
    try:
        plan_unmerge(ctx.store.cursor(), op)
    except Refused as exc:
        raise exc.error from None
    if ctx.writer is None:
        raise UserloopError("no_writer", "this front cannot write", status=503)
    ctx.writer.submit(Payload(ops=[op], accepted=1)).result()
    sync = getattr(ctx.writer, "sync", None)  # a spooling writer acknowledges before DuckDB has it
    if sync is not None:
        sync()
    rows = ctx.store.query(
        f"SELECT {LOG_COLUMNS} FROM merge_log WHERE project_id = $pid AND action = 'unmerge' AND request_id = $r",
        {"pid": ctx.project.id, "r": op.request_id},
    )
    if not rows:
        raise UserloopError("unmerge_conflict", "the person changed while the unmerge was applied; "
                            "look at its merges again", "id", status=409)
    entry = _entry(rows[0])
    stay_id, stay_ids = resolve_person(ctx.store, ctx.project.id, person_id)
    return {
        "unmerge": entry,
        "person": {"person_id": stay_id, "distinct_ids": stay_ids},
        "split_off": {"person_id": entry["absorbed_person_id"], "distinct_ids": entry["moved_distinct_ids"]},
    }
