"""Reading segments: preview a rule without saving, list members, membership history, export.

Exports are written by DuckDB (``COPY (SELECT ...) TO file``): the members with the chosen person
properties as columns (text, as stored), sorted by ``person_id``.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import msgspec

from userloop.errors import UserloopError
from userloop.people.segments import saved
from userloop.people.segments.compile import Strategy, execute
from userloop.people.segments.model import Preview, check_rule, decode
from userloop.query.sql import DUCKDB, json_path
from userloop.store.duckdb import Project, Store

MAX_SAMPLE = 100
MAX_PAGE = 10_000
MAX_EXPORT_PROPERTIES = 100
_PROPERTY = re.compile(r"^[^\x00-\x1f]{1,200}$")

Format = Literal["csv", "parquet"]


def preview(
    store: Store,
    project: Project,
    params: dict[str, Any],
    as_of: datetime | None = None,
    strategy: Strategy = "columns",
) -> dict[str, Any]:
    """``{"count": n, "sample": [{person_id, distinct_ids, properties}, ...]}`` for a rule."""
    p: Preview = decode(params, Preview)
    if not 0 <= p.sample <= MAX_SAMPLE:
        raise UserloopError("bad_sample", f"sample must be between 0 and {MAX_SAMPLE}", "sample")
    check_rule(p.rule)
    saved.checked(store, project, p.rule)
    c = saved.compiled(store, project, p.rule, as_of, strategy)
    sample = f"min(person_id, {int(p.sample)})" if p.sample else "[]"
    rows = execute(store.cursor(), c, f"SELECT count(*), {sample} FROM ({c.sql}) m")
    count, ids = rows[0]
    return {"count": int(count), "sample": persons(store, project, list(ids or []))}


def persons(store: Store, project: Project, ids: list[str]) -> list[dict[str, Any]]:
    """Each person's properties and distinct ids, in ``person_id`` order."""
    if not ids:
        return []
    rows = store.query(
        """SELECT p.person_id, p.properties,
                  list(i.distinct_id ORDER BY i.distinct_id) FILTER (WHERE i.distinct_id IS NOT NULL) AS distinct_ids
           FROM persons p
           LEFT JOIN identities i ON i.project_id = p.project_id AND i.person_id = p.person_id
           WHERE p.project_id = ? AND p.person_id IN (SELECT unnest(?::VARCHAR[]))
           GROUP BY p.person_id, p.properties ORDER BY p.person_id""",
        [project.id, ids],
    )
    return [
        {
            "person_id": r["person_id"],
            "distinct_ids": r["distinct_ids"] or [],
            "properties": msgspec.json.decode(r["properties"] or "{}"),
        }
        for r in rows
    ]


def _page(limit: Any, offset: Any) -> tuple[int, int]:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_PAGE:
        raise UserloopError("bad_limit", f"limit must be between 0 and {MAX_PAGE}", "limit")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise UserloopError("bad_offset", "offset must be a whole number >= 0", "offset")
    return limit, offset


def members(store: Store, project: Project, name: str, limit: Any = 100, offset: Any = 0) -> dict[str, Any]:
    """One page of the current members (``person_id`` order), when each entered, and the count."""
    limit, offset = _page(limit, offset)
    row = saved.get(store, project, name)
    rows = store.query(
        """SELECT person_id, entered_at FROM segment_members WHERE project_id = ? AND segment = ?
           ORDER BY person_id LIMIT ? OFFSET ?""",
        [project.id, name, limit, offset],
    )
    return {
        "name": name,
        "count": row["member_count"] or 0,
        "computed_at": row["computed_at"],
        "members": rows,
    }


def history(
    store: Store,
    project: Project,
    name: str,
    person_id: str | None = None,
    limit: Any = 1000,
    offset: Any = 0,
) -> dict[str, Any]:
    """Who entered and left, and when (newest first); ``left_at`` is null while still a member."""
    limit, offset = _page(limit, offset)
    saved.get(store, project, name)
    where, args = "project_id = ? AND segment = ?", [project.id, name]
    if person_id is not None:
        where += " AND person_id = ?"
        args.append(person_id)
    rows = store.query(
        f"""SELECT person_id, entered_at, left_at FROM segment_history WHERE {where}
            ORDER BY greatest(entered_at, coalesce(left_at, entered_at)) DESC, person_id, entered_at
            LIMIT ? OFFSET ?""",
        [*args, limit, offset],
    )
    return {"name": name, "history": rows}


def export_properties(value: Any) -> list[str]:
    """A list, or comma-separated text, of person property names (the export's columns)."""
    if value is None or value == "":
        return []
    names = [x.strip() for x in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(x, str) and _PROPERTY.match(x) for x in names):
        raise UserloopError(
            "bad_properties", "properties must be property names (comma-separated)", "properties"
        )
    if len(names) > MAX_EXPORT_PROPERTIES:
        raise UserloopError("bad_properties", f"at most {MAX_EXPORT_PROPERTIES} properties", "properties")
    if len(set(names)) != len(names) or "person_id" in names or "distinct_ids" in names:
        raise UserloopError(
            "bad_properties", "property names must be distinct and not person_id/distinct_ids", "properties"
        )
    return names


def export(
    store: Store,
    project: Project,
    name: str,
    path: Path,
    format: Any = "csv",
    properties: Any = None,
    distinct_ids: bool = False,
) -> dict[str, Any]:
    """Write the members to ``path`` (CSV with a header, or Parquet): ``person_id``, optionally
    ``distinct_ids`` (a list; in CSV joined by ``,``), then one text column per property."""
    if format not in ("csv", "parquet"):
        raise UserloopError("bad_format", "format must be csv or parquet", "format")
    names = export_properties(properties)
    saved.get(store, project, name)
    cols = ["m.person_id"]
    params: dict[str, Any] = {"pid": project.id, "seg": name}
    if distinct_ids:
        ids = (
            "(SELECT list(i.distinct_id ORDER BY i.distinct_id) FROM identities i "
            "WHERE i.project_id = m.project_id AND i.person_id = m.person_id)"
        )
        cols.append(
            f"array_to_string({ids}, ',') AS distinct_ids" if format == "csv" else f"{ids} AS distinct_ids"
        )
    for i, prop_name in enumerate(names):
        params[f"k{i}"] = json_path(prop_name)
        cols.append(f"json_extract_string(p.properties, $k{i}) AS {DUCKDB.ident(prop_name)}")
    query = (
        f"SELECT {', '.join(cols)} FROM segment_members m "
        "LEFT JOIN persons p ON p.project_id = m.project_id AND p.person_id = m.person_id "
        "WHERE m.project_id = $pid AND m.segment = $seg ORDER BY m.person_id"
    )
    options = "FORMAT csv, HEADER" if format == "csv" else "FORMAT parquet, COMPRESSION zstd"
    target = str(Path(path).resolve()).replace("'", "''")
    cur = store.new_cursor()
    try:
        rows = cur.execute(f"COPY ({query}) TO '{target}' ({options})", params).fetchall()
    finally:
        cur.close()
    columns = ["person_id", *(["distinct_ids"] if distinct_ids else []), *names]
    return {
        "name": name,
        "file": str(path),
        "format": format,
        "rows": int(rows[0][0]) if rows else 0,
        "columns": columns,
    }
