"""Saved segments: definitions, computing their members, membership history, the schedule.

Computing a segment is one transaction: the members query (one SQL statement, see ``compile.py``)
fills a temporary table; the persons who left get ``left_at`` in ``segment_history`` and are
deleted from ``segment_members``; those who entered get a history row and a member row. Rows of
persons who stay are not touched. Creating or changing a definition writes the definition and its
members in the same transaction: an invalid rule or a failing query leaves nothing behind.

Dynamic segments with a ``schedule`` are recomputed by the server's scheduler
(``userloop/schedule.py``); static ones only on creation, on a rule change and on "compute".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import duckdb
import msgspec

from userloop.errors import NotFound, UserloopError
from userloop.people.segments.compile import Compiled, Saved, Strategy, bound, compile_rule, execute
from userloop.people.segments.model import (
    Rule,
    SegmentDef,
    check_definition,
    decode,
    decode_rule,
    encode_rule,
    referenced_segments,
)
from userloop.people.segments.validate import check_against_store
from userloop.query.sql import Ctx
from userloop.schedule import ScheduledJob, parse_trigger, register_provider, reload_current
from userloop.store.duckdb import Project, Store

_COLUMNS = "name, type, rule, schedule, description, member_count, computed_at, created_at, updated_at"
_locks: dict[tuple[int, str], threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _locked(project_id: int, name: str) -> Iterator[None]:
    """One writer per segment in this process (scheduler and "compute now" may meet)."""
    with _locks_guard:
        lock = _locks.setdefault((project_id, name), threading.Lock())
    with lock:
        yield


# -- reading definitions ------------------------------------------------------------------------------


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {**r, "rule": decode_rule(r["rule"])}


def find(store: Store, project: Project, name: str) -> dict[str, Any] | None:
    rows = store.query(
        f"SELECT {_COLUMNS} FROM segments WHERE project_id = ? AND name = ?", [project.id, name]
    )
    return _row(rows[0]) if rows else None


def get(store: Store, project: Project, name: str) -> dict[str, Any]:
    row = find(store, project, name)
    if row is None:
        raise NotFound("segment_not_found", f"no segment named {name!r}", "name")
    return row


def all_rules(store: Store, project: Project) -> dict[str, Rule]:
    rows = store.query("SELECT name, rule FROM segments WHERE project_id = ?", [project.id])
    return {r["name"]: decode_rule(r["rule"]) for r in rows}


def list_all(store: Store, project: Project) -> list[dict[str, Any]]:
    rows = store.query(f"SELECT {_COLUMNS} FROM segments WHERE project_id = ? ORDER BY name", [project.id])
    return [_row(r) for r in rows]


def resolver(store: Store, project: Project) -> Any:
    def resolve(name: str) -> Saved:
        row = get(store, project, name)
        return Saved(name=name, type=row["type"], rule=row["rule"])

    return resolve


def compiled(
    store: Store, project: Project, rule: Rule, as_of: datetime | None = None, strategy: Strategy = "columns"
) -> Compiled:
    ctx = Ctx(store=store, project=project)
    return compile_rule(ctx, rule, as_of or datetime.now(UTC), resolver(store, project), strategy)


def checked(store: Store, project: Project, rule: Rule, name: str | None = None) -> None:
    check_against_store(Ctx(store=store, project=project), rule, lambda: all_rules(store, project), name)


# -- writing -----------------------------------------------------------------------------------------


def _write_members(
    cur: duckdb.DuckDBPyConnection, project: Project, name: str, c: Compiled, at: datetime
) -> dict[str, int]:
    """Inside the caller's transaction: the new members, history rows for the changes."""
    key = {"pid": project.id, "seg": name, "at": at}
    mine = "project_id = $pid AND segment = $seg"

    def run(sql: str) -> int:
        rows = cur.execute(sql, bound(sql, key)).fetchall()
        return int(rows[0][0]) if rows else 0

    execute(cur, c, f"CREATE OR REPLACE TEMP TABLE _seg_new AS {c.sql}")
    left = run(
        f"UPDATE segment_history SET left_at = $at WHERE {mine} AND left_at IS NULL "
        "AND person_id NOT IN (SELECT person_id FROM _seg_new)"
    )
    run(f"DELETE FROM segment_members WHERE {mine} AND person_id NOT IN (SELECT person_id FROM _seg_new)")
    entered = run(
        f"INSERT INTO segment_history SELECT $pid, $seg, person_id, $at, NULL FROM _seg_new "
        f"WHERE person_id NOT IN (SELECT person_id FROM segment_members WHERE {mine})"
    )
    run(
        f"INSERT INTO segment_members SELECT $pid, $seg, person_id, $at FROM _seg_new "
        f"WHERE person_id NOT IN (SELECT person_id FROM segment_members WHERE {mine})"
    )
    key["n"] = count = run("SELECT count(*) FROM _seg_new")
    run("UPDATE segments SET member_count = $n, computed_at = $at WHERE project_id = $pid AND name = $seg")
    run("DROP TABLE _seg_new")
    return {"members": count, "entered": entered, "left": left}


@contextmanager
def _transaction(store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
    cur = store.new_cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    finally:
        cur.close()


def compute(store: Store, project: Project, name: str, as_of: datetime | None = None) -> dict[str, Any]:
    """Recompute the members of a saved segment now (or as of ``as_of``); the changes go to history."""
    with _locked(project.id, name):
        row = get(store, project, name)
        at = as_of or datetime.now(UTC)
        c = compiled(store, project, row["rule"], at)
        with _transaction(store) as cur:
            counts = _write_members(cur, project, name, c, at)
    return {"name": name, "computed_at": at, **counts}


def _validated(store: Store, project: Project, d: SegmentDef) -> None:
    check_definition(d)
    if d.schedule is not None:
        parse_trigger(d.schedule, project.timezone)
    checked(store, project, d.rule, d.name)


def create(
    store: Store, project: Project, params: dict[str, Any], as_of: datetime | None = None
) -> dict[str, Any]:
    d: SegmentDef = decode(params, SegmentDef)
    _validated(store, project, d)
    with _locked(project.id, d.name):
        if find(store, project, d.name) is not None:
            raise UserloopError(
                "segment_exists", f"a segment named {d.name!r} already exists", "name", status=409
            )
        at = as_of or datetime.now(UTC)
        c = compiled(store, project, d.rule, at)
        with _transaction(store) as cur:
            cur.execute(
                f"INSERT INTO segments (project_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)",
                [project.id, d.name, d.type, encode_rule(d.rule), d.schedule, d.description, at, at],
            )
            counts = _write_members(cur, project, d.name, c, at)
    reload_current()
    return {**get(store, project, d.name), **{k: counts[k] for k in ("entered", "left")}}


def update(
    store: Store, project: Project, name: str, params: dict[str, Any], as_of: datetime | None = None
) -> dict[str, Any]:
    """Change a definition (fields not given stay); a new rule or type recomputes the members."""
    if "name" in params and params["name"] != name:
        raise UserloopError("rename_unsupported", "a segment cannot be renamed; create a new one", "name")
    with _locked(project.id, name):
        old = get(store, project, name)
        merged = {
            "name": name,
            "type": old["type"],
            "rule": msgspec.to_builtins(old["rule"]),
            "schedule": old["schedule"],
            "description": old["description"],
            **params,
        }
        d: SegmentDef = decode(merged, SegmentDef)
        _validated(store, project, d)
        at = as_of or datetime.now(UTC)
        recompute = encode_rule(d.rule) != encode_rule(old["rule"]) or d.type != old["type"]
        c = compiled(store, project, d.rule, at) if recompute else None
        with _transaction(store) as cur:
            cur.execute(
                "UPDATE segments SET type = ?, rule = ?, schedule = ?, description = ?, updated_at = ? "
                "WHERE project_id = ? AND name = ?",
                [d.type, encode_rule(d.rule), d.schedule, d.description, at, project.id, name],
            )
            counts = _write_members(cur, project, name, c, at) if c is not None else {"entered": 0, "left": 0}
    reload_current()
    return {**get(store, project, name), "entered": counts["entered"], "left": counts["left"]}


def delete(store: Store, project: Project, name: str) -> dict[str, Any]:
    """Delete a definition, its members and its history; refused while another segment uses it."""
    with _locked(project.id, name):
        get(store, project, name)
        users = sorted(
            n for n, r in all_rules(store, project).items() if name in referenced_segments(r) and n != name
        )
        if users:
            raise UserloopError(
                "segment_in_use", f"segment {name!r} is used by {', '.join(users)}", "name", status=409
            )
        with _transaction(store) as cur:
            for table, col in (
                ("segment_history", "segment"),
                ("segment_members", "segment"),
                ("segments", "name"),
            ):
                cur.execute(f"DELETE FROM {table} WHERE project_id = ? AND {col} = ?", [project.id, name])
    reload_current()
    return {"deleted": name}


# -- the schedule -------------------------------------------------------------------------------------


def _jobs(store: Store, writer: Any) -> list[ScheduledJob]:
    rows = store.query(
        "SELECT project_id, name, schedule FROM segments WHERE type = 'dynamic' AND schedule IS NOT NULL "
        "ORDER BY project_id, name"
    )
    jobs = []
    for r in rows:
        project = store.project(r["project_id"])

        def run(project: Project = project, name: str = r["name"]) -> None:
            if find(store, project, name) is not None:
                compute(store, project, name)

        jobs.append(ScheduledJob(f"segment:{project.id}:{r['name']}", r["schedule"], run, project.timezone))
    return jobs


register_provider("segments", _jobs)
