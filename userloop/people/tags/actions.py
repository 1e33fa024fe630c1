"""The tag operations, registered once for REST, CLI and console (``userloop/actions.py``).

``tags.create|list|get|update|delete|compute|import|coverage|history|catalogue``. Saving a
definition and its first compute are one transaction: a definition that cannot compute (a SQL tag
that does not run, say) is not saved, and a failed update leaves the old definition and values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from userloop.actions import ActionContext, action
from userloop.errors import UserloopError
from userloop.people.tags import inputs, reports
from userloop.people.tags.compute import compute, load, materialize, run, tag_lock, transaction
from userloop.people.tags.model import TIMESTAMP, TagDef, decode, to_dict
from userloop.query.sql import Ctx, check_events, check_properties, filter_properties
from userloop.schedule import reload_current
from userloop.store.duckdb import Project, Store

_COLUMNS = ("source", "category", "schedule", "created_at", "updated_at", "computed_at", "compute_ms", "last_error")


def _name(params: dict[str, Any]) -> str:
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise UserloopError("missing_field", "name is required", "name")
    return name


def _time(params: dict[str, Any], key: str) -> datetime | None:
    raw = params.get(key)
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        value = raw
    else:
        try:
            value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError as exc:
            raise UserloopError("invalid_field", f"{key} must be an ISO 8601 time", key) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _check_names(ctx: Ctx, tag: TagDef) -> None:
    """Events and properties a rule names must exist in the project (400 naming the field)."""
    rule = tag.rule
    if rule is None:
        return
    if rule.event is not None:
        check_events(ctx, [rule.event], "rule.event")
    wanted = filter_properties(rule.filters, "rule.filters")
    if rule.property is not None and rule.property != TIMESTAMP:
        wanted.insert(0, (rule.property, "event", "rule.property"))
    check_properties(ctx, wanted)


def describe(store: Store, project: Project, name: str) -> dict[str, Any]:
    tag, row = load(store, project, name)
    persons = store.query("SELECT count(*) AS n FROM tag_values WHERE project_id = ? AND tag = ?", [project.id, name])
    return {"description": "", **to_dict(tag), **{k: row[k] for k in _COLUMNS}, "persons": persons[0]["n"]}


def _save_row(tag: TagDef, now: datetime) -> tuple[str, list[Any]]:
    values = [tag.kind, tag.source, tag.category, tag.description, msgspec.json.encode(tag).decode(), tag.schedule]
    return "kind = ?, source = ?, category = ?, description = ?, definition = ?, schedule = ?", [*values, now]


@action("tags.create")
def create(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Save a definition and compute it (``as_of``: the first compute's time, for backfills)."""
    as_of = _time(params, "as_of")
    tag = decode({k: v for k, v in params.items() if k != "as_of"})
    qctx = Ctx(store=ctx.store, project=ctx.project)
    _check_names(qctx, tag)
    now = as_of or datetime.now(UTC)
    with tag_lock(ctx.project.id, tag.name), transaction(ctx.store) as cur:
        if cur.execute("SELECT 1 FROM tags WHERE project_id = ? AND name = ?", [ctx.project.id, tag.name]).fetchall():
            raise UserloopError("tag_exists", f"a tag named {tag.name!r} already exists", "name", status=409)
        saved = datetime.now(UTC)
        _, values = _save_row(tag, saved)
        cur.execute(
            "INSERT INTO tags (project_id, name, kind, source, category, description, definition, schedule, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [ctx.project.id, tag.name, *values, saved],
        )
        stats = materialize(cur, qctx, tag, now)
    reload_current()
    out = describe(ctx.store, ctx.project, tag.name)
    return {**out, "compute": stats} if tag.computed else out


@action("tags.list")
def list_tags(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    where: list[str] = ["t.project_id = ?"]
    args: list[Any] = [ctx.project.id, ctx.project.id]
    if params.get("kind"):
        where.append("t.kind = ?")
        args.append(str(params["kind"]))
    if params.get("category"):
        category = str(params["category"]).strip().lower()
        where.append("(t.category = ? OR starts_with(t.category, ? || '/'))")
        args += [category, category]
    rows = ctx.store.query(
        f"""SELECT t.name, t.kind, t.source, t.category, t.description, t.schedule, t.computed_at, t.last_error,
                   coalesce(v.n, 0) AS persons
            FROM tags t LEFT JOIN (SELECT tag, count(*) AS n FROM tag_values WHERE project_id = ? GROUP BY tag) v
              ON v.tag = t.name
            WHERE {' AND '.join(where)} ORDER BY t.category, t.name""",
        args,
    )
    return {"tags": rows}


@action("tags.get")
def get(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return describe(ctx.store, ctx.project, _name(params))


@action("tags.update")
def update(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Change fields of a definition (``null`` resets a field); ``replace: true`` replaces it whole.
    The tag is recomputed at once (``as_of``: at that time)."""
    name = _name(params)
    as_of = _time(params, "as_of")
    fields = {k: v for k, v in params.items() if k not in ("name", "replace", "as_of")}
    with tag_lock(ctx.project.id, name):
        old, row = load(ctx.store, ctx.project, name)
        raw = {"name": name, **fields} if params.get("replace") else {**to_dict(old), **fields}
        tag = decode({k: v for k, v in raw.items() if v is not None})
        qctx = Ctx(store=ctx.store, project=ctx.project)
        _check_names(qctx, tag)
        now = as_of or datetime.now(UTC)
        last = row["computed_at"]
        if old.kind == "dynamic" and tag.kind == "dynamic" and last is not None and now <= last:
            if as_of is not None:
                raise UserloopError("invalid_as_of", f"as_of must be after the last compute ({last.isoformat()})",
                                    "as_of")
            now = last + timedelta(microseconds=1)
        with transaction(ctx.store) as cur:
            assignments, values = _save_row(tag, datetime.now(UTC))
            cur.execute(f"UPDATE tags SET {assignments}, updated_at = ? WHERE project_id = ? AND name = ?",
                        [*values, ctx.project.id, name])
            if tag.computed:
                cur.execute("DELETE FROM tag_inputs WHERE project_id = ? AND tag = ?", [ctx.project.id, name])
            if old.kind == "dynamic" and tag.kind != "dynamic":  # history stops here
                cur.execute("UPDATE tag_history SET valid_to = ? WHERE project_id = ? AND tag = ? AND valid_to IS NULL",
                            [now, ctx.project.id, name])
            stats = materialize(cur, qctx, tag, now)
    reload_current()
    out = describe(ctx.store, ctx.project, name)
    return {**out, "compute": stats} if tag.computed else out


@action("tags.delete")
def delete(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    name = _name(params)
    with tag_lock(ctx.project.id, name):
        load(ctx.store, ctx.project, name)
        qctx = Ctx(store=ctx.store, project=ctx.project)
        with transaction(ctx.store) as cur:
            counts = {}
            for table, key in (("tag_values", "tag"), ("tag_history", "tag"), ("tag_inputs", "tag"), ("tags", "name")):
                sql = f"DELETE FROM {table} WHERE project_id = {qctx.p(ctx.project.id)} AND {key} = {qctx.p(name)}"
                counts[table] = run(cur, qctx, sql)[0][0]
    reload_current()
    return {"deleted": name, "values": counts["tag_values"], "history_rows": counts["tag_history"]}


@action("tags.compute")
def compute_now(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return compute(ctx.store, ctx.project, _name(params), _time(params, "as_of"))


@action("tags.import")
def import_values(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """``{"name", "csv": text}`` or ``{"name", "values": [...]}``; ``replace: true`` drops values not given."""
    name = _name(params)
    if ("csv" in params) == ("values" in params):
        raise UserloopError("missing_field", "give csv (text) or values (a list)", "values")
    if "csv" in params:
        if not isinstance(params["csv"], str):
            raise UserloopError("invalid_csv", "csv must be the text of a CSV file", "file")
        rows = inputs.parse_csv(params["csv"])
    else:
        rows = inputs.parse_list(params["values"])
    return inputs.apply(ctx.store, ctx.project, name, rows, replace=bool(params.get("replace")))


@action("tags.coverage")
def coverage(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    limit = params.get("limit", 20)
    try:
        limit = int(limit)
    except (TypeError, ValueError) as exc:
        raise UserloopError("bad_parameter", "limit must be an integer", "limit") from exc
    return reports.coverage(ctx.store, ctx.project, _name(params), limit)


@action("tags.history")
def history(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    person = params.get("person")
    if not isinstance(person, str) or not person:
        raise UserloopError("missing_field", "person (a distinct id or person id) is required", "person")
    return reports.history(ctx.store, ctx.project, _name(params), person, _time(params, "at"))


@action("tags.catalogue")
def catalogue(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return reports.catalogue(ctx.store, ctx.project)
