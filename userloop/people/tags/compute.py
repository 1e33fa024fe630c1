"""Computing a tag: one set-based transaction from its source into ``tag_values`` (and history).

Steps, each one statement: the source's rows into a temp table (persons that exist, non-empty
values); for dynamic tags, close the open history rows whose value changed or went away and open
rows for new values; delete the values of persons who no longer qualify; upsert the new or changed
values. A compute holds a per-tag lock, so a scheduled run and "compute now" never interleave.
An SQL tag's query is interrupted after ``config.TAG_SQL_TIMEOUT_SECONDS`` (400 ``tag_timeout``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import msgspec

from userloop import config
from userloop.errors import NotFound, UserloopError
from userloop.people.tags import sandbox
from userloop.people.tags.model import TagDef
from userloop.people.tags.sources import bound, num_sql, source_sql
from userloop.query.sql import Ctx
from userloop.schedule import ScheduledJob, register_provider
from userloop.store.duckdb import Project, Store

log = logging.getLogger("userloop.tags")

_guard = threading.Lock()
_locks: dict[tuple[int, str], threading.RLock] = {}


@contextmanager
def tag_lock(project_id: int, name: str) -> Iterator[None]:
    with _guard:
        lock = _locks.setdefault((project_id, name), threading.RLock())
    with lock:
        yield


@contextmanager
def transaction(store: Store) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh cursor inside BEGIN ... COMMIT (ROLLBACK on any error); Python replacement scans off."""
    cur = store.new_cursor()
    try:
        cur.execute("SET python_enable_replacements = false")
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    finally:
        cur.close()


def run(cur: duckdb.DuckDBPyConnection, ctx: Ctx, sql: str) -> list[tuple[Any, ...]]:
    return cur.execute(sql, bound(ctx, sql)).fetchall()


def load(store: Store, project: Project, name: str) -> tuple[TagDef, dict[str, Any]]:
    rows = store.query("SELECT * FROM tags WHERE project_id = ? AND name = ?", [project.id, name])
    if not rows:
        raise NotFound("tag_not_found", f"no tag named {name!r}", "name")
    row = rows[0]
    return msgspec.json.decode(row["definition"], type=TagDef), row


def materialize(cur: duckdb.DuckDBPyConnection, ctx: Ctx, tag: TagDef, now: datetime) -> dict[str, Any]:
    """Bring the tag's values (and history) up to date with its source, inside the caller's transaction."""
    started = time.perf_counter()
    src = source_sql(cur, ctx, tag, now)
    pid, name, at = ctx.p(ctx.project.id), ctx.p(tag.name), ctx.p(now)
    # only the user's SQL is capped in time (400 tag_timeout); the caller's transaction then rolls back
    cap = sandbox.time_cap(cur, config.TAG_SQL_TIMEOUT_SECONDS) if tag.sql is not None else nullcontext()
    try:
        with cap:
            run(cur, ctx, f"""CREATE OR REPLACE TEMP TABLE _tag_new AS
                SELECT s.person_id, s.value, {num_sql('s.value')} AS num_value
                FROM ({src}) s JOIN persons p ON p.project_id = {pid} AND p.person_id = s.person_id
                WHERE s.value IS NOT NULL AND s.value <> ''""")
    except duckdb.Error as exc:
        if tag.sql is None:
            raise
        raise UserloopError("compute_failed", f"the query failed: {str(exc).splitlines()[0]}", "sql") from exc
    if tag.sql is not None:
        dup = run(cur, ctx, "SELECT person_id FROM _tag_new GROUP BY 1 HAVING count(*) > 1 LIMIT 1")
        if dup:
            raise UserloopError("compute_failed", f"the query returned several rows for person {dup[0][0]!r}", "sql")
    current = f"(SELECT person_id, value FROM tag_values WHERE project_id = {pid} AND tag = {name})"
    counts = run(cur, ctx, f"""SELECT count(*), count(*) FILTER (WHERE v.person_id IS NULL),
            count(*) FILTER (WHERE v.person_id IS NOT NULL AND v.value <> n.value)
        FROM _tag_new n LEFT JOIN {current} v ON v.person_id = n.person_id""")[0]
    removed = run(cur, ctx, f"""SELECT count(*) FROM {current} v
        WHERE NOT EXISTS (SELECT 1 FROM _tag_new n WHERE n.person_id = v.person_id)""")[0][0]
    history = 0
    if tag.kind == "dynamic":
        run(cur, ctx, f"""UPDATE tag_history SET valid_to = {at}
            WHERE project_id = {pid} AND tag = {name} AND valid_to IS NULL AND NOT EXISTS (
                SELECT 1 FROM _tag_new n WHERE n.person_id = tag_history.person_id AND n.value = tag_history.value)""")
        history = run(cur, ctx, f"""INSERT INTO tag_history
            SELECT {pid}, {name}, n.person_id, n.value, n.num_value, {at}, NULL FROM _tag_new n
            WHERE NOT EXISTS (SELECT 1 FROM tag_history h WHERE h.project_id = {pid} AND h.tag = {name}
                              AND h.person_id = n.person_id AND h.valid_to IS NULL)""")[0][0]
    run(cur, ctx, f"""DELETE FROM tag_values WHERE project_id = {pid} AND tag = {name}
        AND NOT EXISTS (SELECT 1 FROM _tag_new n WHERE n.person_id = tag_values.person_id)""")
    run(cur, ctx, f"""INSERT INTO tag_values
        SELECT {pid}, {name}, n.person_id, n.value, n.num_value, {at} FROM _tag_new n
        WHERE NOT EXISTS (SELECT 1 FROM {current} v WHERE v.person_id = n.person_id AND v.value = n.value)
        ON CONFLICT (project_id, tag, person_id) DO UPDATE
        SET value = excluded.value, num_value = excluded.num_value, updated_at = excluded.updated_at""")
    cur.execute("DROP TABLE _tag_new")
    ms = round((time.perf_counter() - started) * 1000, 1)
    run(cur, ctx, f"UPDATE tags SET computed_at = {at}, compute_ms = {ctx.p(ms)}, last_error = NULL "
                  f"WHERE project_id = {pid} AND name = {name}")
    return {"tag": tag.name, "computed_at": now, "persons": counts[0], "added": counts[1], "changed": counts[2],
            "removed": removed, "history_rows": history, "ms": ms}


def compute(store: Store, project: Project, name: str, as_of: datetime | None = None) -> dict[str, Any]:
    """Compute one tag now (or as of ``as_of``: windows end there, history is stamped with it)."""
    with tag_lock(project.id, name):
        tag, row = load(store, project, name)
        last = row["computed_at"]
        now = as_of or datetime.now(UTC)
        if tag.kind == "dynamic" and last is not None and now <= last:
            if as_of is not None:
                raise UserloopError("invalid_as_of", f"as_of must be after the last compute ({last.isoformat()}): "
                                    "history is written in time order", "as_of")
            now = last + timedelta(microseconds=1)
        try:
            with transaction(store) as cur:
                return materialize(cur, Ctx(store=store, project=project), tag, now)
        except Exception as exc:
            store.cursor().execute("UPDATE tags SET last_error = ? WHERE project_id = ? AND name = ?",
                                   [str(exc)[:2000], project.id, name])
            raise


def _provider(store: Store, writer: object) -> list[ScheduledJob]:
    """Scheduled recomputes: one job per tag with a schedule, in its project's time zone."""
    jobs = []
    for r in store.query("SELECT project_id, name, schedule FROM tags WHERE schedule IS NOT NULL ORDER BY 1, 2"):
        try:
            project = store.project(r["project_id"])
        except NotFound:
            continue

        def job(project: Project = project, name: str = r["name"]) -> None:
            try:
                compute(store, project, name)
            except NotFound:
                pass  # deleted since the schedule was read

        jobs.append(ScheduledJob(id=f"tag:{project.id}:{r['name']}", trigger=r["schedule"], run=job,
                                 timezone=project.timezone))
    return jobs


register_provider("tags", _provider)
