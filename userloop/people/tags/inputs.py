"""Values set by API (``PUT /api/tags/{name}/values``) or CSV import, for tags with no computed source.

Rows are decoded here (CSV text or a JSON list) into one Arrow table; everything else is SQL in one
transaction: ids resolved to persons (a ``person_id`` row is stored for each distinct id of that
person), unknown ids and bad rows reported, ``tag_inputs`` upserted (later rows win), and the tag
re-materialised into ``tag_values``. Values are kept per distinct id so that merges move them.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from userloop.errors import UserloopError
from userloop.people.tags.compute import load, materialize, run, tag_lock, transaction
from userloop.query.sql import Ctx
from userloop.store.duckdb import Project, Store

MAX_VALUE_CHARS = 10_000
MAX_REPORTED = 100
ID_COLUMNS = ("distinct_id", "person_id")


class Rows:
    """Decoded input rows; ``where`` is the CSV line or the list index of each."""

    def __init__(self, where_name: str):
        self.where_name = where_name
        self.where: list[int] = []
        self.distinct_id: list[str | None] = []
        self.person_id: list[str | None] = []
        self.value: list[str | None] = []
        self.error: list[str | None] = []

    def add(self, where: int, did: str | None, pid: str | None, value: str | None, error: str | None) -> None:
        self.where.append(where)
        self.distinct_id.append(did)
        self.person_id.append(pid)
        self.value.append(value)
        self.error.append(error)

    def table(self) -> pa.Table:
        return pa.table({
            "pos": pa.array(self.where, pa.int64()),
            "distinct_id": pa.array(self.distinct_id, pa.string()),
            "person_id": pa.array(self.person_id, pa.string()),
            "value": pa.array(self.value, pa.string()),
            "error": pa.array(self.error, pa.string()),
        })


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError


def parse_csv(text: str) -> Rows:
    """CSV with a header naming ``value`` and one of ``distinct_id``/``person_id`` (other columns ignored)."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise UserloopError("invalid_csv", "the CSV file is empty", "file") from None
    except csv.Error as exc:
        raise UserloopError("invalid_csv", f"cannot read the CSV header: {exc}", "file") from exc
    ids = [c for c in ID_COLUMNS if c in header]
    if len(ids) != 1 or "value" not in header:
        raise UserloopError("invalid_csv", "the header must name 'value' and one of distinct_id or person_id "
                            f"(got {', '.join(header)})", "file")
    id_col, value_col, width = header.index(ids[0]), header.index("value"), len(header)
    rows = Rows("line")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # a broken quote: report the line and stop reading
            rows.add(reader.line_num, None, None, None, f"unreadable CSV: {exc}")
            break
        if not row or row == [""]:
            continue
        key = row[id_col].strip() if len(row) == width else None
        value = row[value_col] if len(row) == width else None
        error = None
        if len(row) != width:
            error = f"expected {width} fields, found {len(row)}"
        elif not key:
            error = f"{ids[0]} is empty"
        elif value is None or not value.strip():
            error = "value is empty"
        elif len(value) > MAX_VALUE_CHARS:
            error = f"value is longer than {MAX_VALUE_CHARS} characters"
        did, pid = (key, None) if ids[0] == "distinct_id" else (None, key)
        rows.add(reader.line_num, did if not error else None, pid if not error else None, value, error)
    return rows


def parse_list(items: Any) -> Rows:
    """``[{"distinct_id"|"person_id": ..., "value": text|number|bool|null}]``; null removes the value."""
    if not isinstance(items, list):
        raise UserloopError("invalid_values", "values must be a list of {distinct_id or person_id, value}", "values")
    rows = Rows("index")
    for i, item in enumerate(items):
        error, did, pid, value = None, None, None, None
        if not isinstance(item, dict):
            error = "not an object"
        elif set(item) - {"distinct_id", "person_id", "value"}:
            error = f"unknown field {sorted(set(item) - {'distinct_id', 'person_id', 'value'})[0]!r}"
        elif ("distinct_id" in item) == ("person_id" in item):
            error = "give one of distinct_id or person_id"
        elif "value" not in item:
            error = "value is missing (null removes the value)"
        else:
            key = item.get("distinct_id", item.get("person_id"))
            if not isinstance(key, str) or not key:
                error = "the id must be a non-empty string"
            else:
                try:
                    value = None if item["value"] is None else _text(item["value"])
                except ValueError:
                    error = "value must be text, a number, a boolean or null"
                if value is not None and not value.strip():
                    error = "value is empty (null removes the value)"
                elif value is not None and len(value) > MAX_VALUE_CHARS:
                    error = f"value is longer than {MAX_VALUE_CHARS} characters"
                if not error:
                    did, pid = (key, None) if "distinct_id" in item else (None, key)
        rows.add(i, did, pid, value, error)
    return rows


def apply(store: Store, project: Project, name: str, rows: Rows, replace: bool = False) -> dict[str, Any]:
    """Store the good rows (all in one transaction) and report the rest."""
    with tag_lock(project.id, name):
        tag, _ = load(store, project, name)
        if tag.computed:
            raise UserloopError("tag_not_settable", f"tag {name!r} is computed from its {tag.source}; its values "
                                "cannot be set or imported", "name")
        now = datetime.now(UTC)
        ctx = Ctx(store=store, project=project)
        pid, tname, at = ctx.p(project.id), ctx.p(name), ctx.p(now)
        with transaction(store) as cur:
            cur.register("_tag_in", rows.table())
            try:
                run(cur, ctx, f"""CREATE OR REPLACE TEMP TABLE _tag_res AS
                    SELECT r.pos, r.distinct_id AS key, r.distinct_id AS did, r.value, i.person_id IS NOT NULL AS known
                    FROM _tag_in r LEFT JOIN identities i ON i.project_id = {pid} AND i.distinct_id = r.distinct_id
                    WHERE r.error IS NULL AND r.distinct_id IS NOT NULL
                    UNION ALL
                    SELECT r.pos, r.person_id, i.distinct_id, r.value, i.distinct_id IS NOT NULL
                    FROM _tag_in r LEFT JOIN identities i ON i.project_id = {pid} AND i.person_id = r.person_id
                    WHERE r.error IS NULL AND r.person_id IS NOT NULL""")
                bad = run(cur, ctx, "SELECT pos, error FROM _tag_in WHERE error IS NOT NULL ORDER BY pos")
            finally:
                cur.unregister("_tag_in")
            unknown = run(cur, ctx, "SELECT key FROM _tag_res WHERE NOT known GROUP BY key ORDER BY min(pos)")
            # the latest row for each distinct id; later rows win for one person (set_at + row order)
            run(cur, ctx, """CREATE OR REPLACE TEMP TABLE _tag_last AS SELECT did, value, pos FROM _tag_res
                WHERE known QUALIFY row_number() OVER (PARTITION BY did ORDER BY pos DESC) = 1""")
            if replace:
                run(cur, ctx, f"""DELETE FROM tag_inputs WHERE project_id = {pid} AND tag = {tname} AND NOT EXISTS
                    (SELECT 1 FROM _tag_last l WHERE l.did = tag_inputs.distinct_id AND l.value IS NOT NULL)""")
            removed = run(cur, ctx, f"""DELETE FROM tag_inputs WHERE project_id = {pid} AND tag = {tname}
                AND distinct_id IN (SELECT did FROM _tag_last WHERE value IS NULL)""")[0][0]
            stored = run(cur, ctx, f"""INSERT INTO tag_inputs
                SELECT {pid}, {tname}, did, value, {at} + to_microseconds(pos) FROM _tag_last WHERE value IS NOT NULL
                ON CONFLICT (project_id, tag, distinct_id) DO UPDATE SET value = excluded.value, set_at = excluded.set_at
                """)[0][0]
            cur.execute("DROP TABLE _tag_res")
            cur.execute("DROP TABLE _tag_last")
            result = materialize(cur, ctx, tag, now)
    return {
        "tag": name,
        "rows": len(rows.where),
        "stored": stored,
        "removed": removed,
        "unknown": {"count": len(unknown), "sample": [r[0] for r in unknown[:MAX_REPORTED]]},
        "rejected": {"count": len(bad), "rows": [{rows.where_name: r[0], "error": r[1]} for r in bad[:MAX_REPORTED]]},
        "persons": result["persons"],
    }
