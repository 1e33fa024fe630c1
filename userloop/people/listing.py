"""The person list: search, person-property filters, a saved segment, newest first, in pages.

``persons.list`` (the console's user list; the CLI and API can call it by name like every action)::

    {"search": "alice", "filters": [{"property": "city", "operator": "=", "value": "Beijing"}],
     "segment": "beijing-regulars", "limit": 50, "offset": 0}

``search`` matches a person id exactly, or any distinct id or the person properties' text
(case-insensitive substring). Filters are query filters on person properties. One SQL statement:
the matching persons numbered by (created_at desc, person_id), the page's rows joined to their
distinct ids, and the total.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from userloop.actions import ActionContext, action
from userloop.errors import UserloopError
from userloop.people.audit import decode_params
from userloop.query.model import PropertyFilter, check_filter
from userloop.query.sql import Ctx, filter_sql

MAX_PAGE = 200
MAX_SEARCH = 200


class ListRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    search: str | None = None
    filters: list[PropertyFilter] = []
    segment: str | None = None
    limit: int = 50
    offset: int = 0


def _decode(params: dict[str, Any]) -> ListRequest:
    req = decode_params(params, ListRequest)
    if not 1 <= req.limit <= MAX_PAGE:
        raise UserloopError("bad_parameter", f"limit must be between 1 and {MAX_PAGE}", "limit")
    if req.offset < 0:
        raise UserloopError("bad_parameter", "offset must be 0 or more", "offset")
    if req.search is not None and len(req.search) > MAX_SEARCH:
        raise UserloopError("bad_parameter", f"search is at most {MAX_SEARCH} characters", "search")
    for i, f in enumerate(req.filters):
        f.type = "person"
        check_filter(f, f"filters[{i}]")
    return req


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def list_persons(ctx: Ctx, req: ListRequest) -> dict[str, Any]:
    pid = ctx.p(ctx.project.id)
    where = [f"p.project_id = {pid}"]
    join = ""
    if req.segment:
        exists = ctx.store.query("SELECT 1 FROM segments WHERE project_id = ? AND name = ?", [ctx.project.id, req.segment])
        if not exists:
            raise UserloopError("unknown_segment", f"no segment named {req.segment!r}", "segment")
        join = (f"JOIN segment_members s ON s.project_id = p.project_id AND s.person_id = p.person_id "
                f"AND s.segment = {ctx.p(req.segment)}")  # fmt: skip
    if req.search and req.search.strip():
        needle = ctx.p(req.search.strip())
        where.append(
            f"(p.person_id = {needle} OR contains(lower(CAST(p.properties AS VARCHAR)), lower({needle})) "
            f"OR p.person_id IN (SELECT i.person_id FROM identities i WHERE i.project_id = {pid} "
            f"AND contains(lower(i.distinct_id), lower({needle}))))"
        )
    outer = " AND ".join(f"({filter_sql(ctx, f, 'e')})" for f in req.filters) or "TRUE"
    lo, hi = ctx.p(req.offset), ctx.p(req.offset + req.limit)
    sql = f"""
        WITH m AS (
            SELECT e.person_id, e.properties, e.created_at, e.updated_at,
                   row_number() OVER (ORDER BY e.created_at DESC, e.person_id) AS n, count(*) OVER () AS total
            FROM (SELECT p.person_id, p.properties, p.properties AS person_properties, p.created_at, p.updated_at
                  FROM persons p {join} WHERE {' AND '.join(where)}) e
            WHERE {outer}
        ), page AS (SELECT * FROM m WHERE n > {lo} AND n <= {hi})
        SELECT page.person_id, page.properties, page.created_at, page.updated_at, page.n, page.total,
               list(i.distinct_id ORDER BY i.distinct_id) FILTER (WHERE i.distinct_id IS NOT NULL) AS distinct_ids
        FROM page LEFT JOIN identities i ON i.project_id = {pid} AND i.person_id = page.person_id
        GROUP BY ALL ORDER BY page.n"""
    rows = ctx.fetch(sql)
    total = int(rows[0]["total"]) if rows else _count(ctx, req)
    return {
        "total": total,
        "offset": req.offset,
        "limit": req.limit,
        "results": [
            {"person_id": r["person_id"], "distinct_ids": r["distinct_ids"] or [],
             "properties": msgspec.json.decode(r["properties"]) if r["properties"] else {},
             "created_at": _iso(r["created_at"]), "updated_at": _iso(r["updated_at"])}
            for r in rows
        ],
    }  # fmt: skip


def _count(ctx: Ctx, req: ListRequest) -> int:
    """The total when the page is empty (an offset past the end)."""
    if req.offset == 0:
        return 0
    first = list_persons(ctx, msgspec.structs.replace(req, offset=0, limit=1))
    return int(first["total"])


@action("persons.list")
def list_action(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return list_persons(Ctx(store=ctx.store, project=ctx.project), _decode(params))
