"""Content: per article (or any content id) reads, readers, shares, new users brought by shares and
conversions after reading; the top N by a chosen metric, and totals over all content.

Totals count distinct persons over all content (a person reading two articles is one reader), so
``readers``, ``sharers`` and ``conversions`` of the totals are not the sums of the rows. New users
are credited by the rule of :func:`userloop.analytics.virality.invited_sql`: the content is the one
on the newcomer's first event that names the inviter, else the content of the inviter's latest
share before it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from userloop.analytics.virality import INVITE, INVITER, MAX_WINDOW, invited_sql, newcomers_sql
from userloop.errors import UserloopError
from userloop.query.model import Query
from userloop.query.runner import register
from userloop.query.sql import (
    Ctx,
    check_events,
    check_properties,
    events_sql,
    filter_properties,
    json_path,
    prop,
)

Sort = Literal["reads", "readers", "shares", "sharers", "new_users", "conversions", "conversion_rate", "share_rate"]
CONTENT = "article_id"
READ_EVENTS = ("view_article", "read_article")  # the default: the first one the project has
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ContentQuery(Query, tag="content"):
    content_property: str = CONTENT
    read_event: str | list[str] | None = None
    share_event: str = INVITE
    share_content_property: str | None = None  # default: content_property, else "item_id"
    inviter_property: str = INVITER
    conversion_event: str = "sign_up"
    window_seconds: int = 7 * 86400
    content_ids: list[str] = []  # only these content ids (all when empty)
    item_type: str | None = "article"  # titles from the items catalogue of this type
    sort: Sort = "reads"
    limit: int = 20

    def validate(self) -> None:
        super().validate()
        for name in ("content_property", "inviter_property", "share_event", "conversion_event"):
            if not getattr(self, name):
                raise UserloopError("property_required", f"{name} is empty", name)
        if isinstance(self.read_event, list) and not self.read_event:
            raise UserloopError("bad_event", "read_event is an empty list", "read_event")
        if not 0 <= self.window_seconds <= MAX_WINDOW:
            raise UserloopError("bad_window", f"window_seconds must be between 0 and {MAX_WINDOW}", "window_seconds")
        if not 1 <= self.limit <= 10_000:
            raise UserloopError("bad_limit", "limit must be between 1 and 10000", "limit")


def read_events(ctx: Ctx, q: ContentQuery) -> list[str]:
    """The read events: as given (each must exist), or the first of READ_EVENTS the project has."""
    if isinstance(q.read_event, str):
        check_events(ctx, [q.read_event], "read_event")
        return [q.read_event]
    if q.read_event:
        check_events(ctx, q.read_event, "read_event[{i}]")
        return q.read_event
    rows = ctx.store.query(
        f"SELECT DISTINCT event FROM events WHERE project_id = ? AND event IN ({', '.join('?' for _ in READ_EVENTS)})",
        [ctx.project.id, *READ_EVENTS],
    )
    seen = {r["event"] for r in rows}
    return [next((e for e in READ_EVENTS if e in seen), READ_EVENTS[0])]


def content_sql(ctx: Ctx, q: ContentQuery, reads: list[str]) -> str:
    """The totals row (``whole`` = 1) first, then the top ``limit`` content ids by ``sort``."""
    d = ctx.dialect
    us = d.epoch_micros
    start, end = ctx.range(q.date_from, q.date_to)
    cid = prop(ctx, q.content_property)
    share_cid = prop(ctx, q.share_content_property) if q.share_content_property else (
        f"coalesce({cid}, {prop(ctx, 'item_id')})"
    )
    only = f" AND cid IN ({', '.join(ctx.p(c) for c in q.content_ids)})" if q.content_ids else ""
    read_rows = events_sql(ctx, start, end, events=reads, filters=q.filters)
    conv_rows = events_sql(ctx, start, end + timedelta(seconds=q.window_seconds), events=[q.conversion_event],
                           filters=q.filters)  # fmt: skip
    share_rows = events_sql(ctx, start, end, events=[q.share_event], filters=q.filters)
    newcomers = newcomers_sql(ctx, start, end, q.inviter_property, q.filters, landing=cid)
    all_shares = events_sql(ctx, EPOCH, end, events=[q.share_event], filters=q.filters)
    invites = f"SELECT e.person_id AS share_pid, e.timestamp AS share_ts, {share_cid} AS share_cid FROM ({all_shares}) e"
    title = "NULL"
    items = ""
    if q.item_type:
        title = d.json_text("it.properties", ctx.p(json_path("title")))
        items = (f"LEFT JOIN items it ON it.project_id = {ctx.p(ctx.project.id)} AND it.item_type = "
                 f"{ctx.p(q.item_type)} AND it.item_id = j.cid")  # fmt: skip
    key = "coalesce({0}.cid, '') = coalesce({1}.cid, '') AND {0}.whole = {1}.whole"
    return f"""
WITH rp AS (
    SELECT pid, cid, min(ts) AS first_read, count(*) AS n
    FROM (SELECT e.person_id AS pid, {cid} AS cid, e.timestamp AS ts FROM ({read_rows}) e) r
    WHERE cid IS NOT NULL{only} GROUP BY pid, cid
),
cv AS (SELECT e.person_id AS pid, e.timestamp AS ts FROM ({conv_rows}) e),
rc AS (
    SELECT rp.pid, rp.cid, rp.n,
           CASE WHEN cv.ts IS NOT NULL AND {us("cv.ts")} - {us("rp.first_read")} <= {ctx.p(q.window_seconds * 1_000_000)}
                THEN rp.pid END AS converted
    FROM rp ASOF LEFT JOIN cv ON rp.pid = cv.pid AND rp.first_read <= cv.ts
),
s AS (
    SELECT pid, cid FROM (SELECT e.person_id AS pid, {share_cid} AS cid FROM ({share_rows}) e) s0
    WHERE cid IS NOT NULL{only}
),
nw AS (
    SELECT pid, cid FROM (
        SELECT m.pid, coalesce(m.landing, m.share_cid) AS cid
        FROM ({invited_sql(ctx, newcomers, invites)}) m
    ) n0 WHERE cid IS NOT NULL{only}
),
a AS (
    SELECT cid, grouping(cid) AS whole, sum(n) AS reads, count(DISTINCT pid) AS readers,
           count(DISTINCT converted) AS conversions
    FROM rc GROUP BY GROUPING SETS ((cid), ())
),
b AS (SELECT cid, grouping(cid) AS whole, count(*) AS shares, count(DISTINCT pid) AS sharers FROM s GROUP BY GROUPING SETS ((cid), ())),
c AS (SELECT cid, grouping(cid) AS whole, count(DISTINCT pid) AS new_users FROM nw GROUP BY GROUPING SETS ((cid), ())),
j AS (
    SELECT coalesce(a.cid, b.cid, c.cid) AS cid, coalesce(a.whole, b.whole, c.whole) AS whole,
           coalesce(a.reads, 0) AS reads, coalesce(a.readers, 0) AS readers, coalesce(b.shares, 0) AS shares,
           coalesce(b.sharers, 0) AS sharers, coalesce(c.new_users, 0) AS new_users,
           coalesce(a.conversions, 0) AS conversions
    FROM a FULL JOIN b ON {key.format("a", "b")}
    FULL JOIN c ON coalesce(a.cid, b.cid, '') = coalesce(c.cid, '') AND coalesce(a.whole, b.whole) = c.whole
),
k AS (
    SELECT j.*, CASE WHEN readers > 0 THEN conversions / readers END AS conversion_rate,
           CASE WHEN reads > 0 THEN shares / reads END AS share_rate
    FROM j
)
SELECT j.*, {title} AS title
FROM k AS j {items}
ORDER BY j.whole DESC, j.{q.sort} DESC NULLS LAST, j.cid
LIMIT {ctx.p(q.limit + 1)}
"""


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "content_id": r["cid"],
        "title": r["title"],
        "reads": int(r["reads"]),
        "readers": int(r["readers"]),
        "shares": int(r["shares"]),
        "sharers": int(r["sharers"]),
        "new_users": int(r["new_users"]),
        "conversions": int(r["conversions"]),
        "conversion_rate": None if r["conversion_rate"] is None else float(r["conversion_rate"]),
        "share_rate": None if r["share_rate"] is None else float(r["share_rate"]),
    }


def run_content(ctx: Ctx, q: ContentQuery) -> dict[str, Any]:
    reads = read_events(ctx, q)
    for name, default, field in ((q.share_event, INVITE, "share_event"), (q.conversion_event, "sign_up", "conversion_event")):
        if name != default:
            check_events(ctx, [name], field)
    wanted = filter_properties(q.filters, "filters")
    for name, default, field in ((q.content_property, CONTENT, "content_property"),
                                 (q.share_content_property, None, "share_content_property"),
                                 (q.inviter_property, INVITER, "inviter_property")):  # fmt: skip
        if name is not None and name != default:
            wanted.append((name, "event", field))
    check_properties(ctx, wanted)
    rows = ctx.fetch(content_sql(ctx, q, reads))
    totals = next((_row(r) for r in rows if r["whole"]), None) or _row(
        {"cid": None, "title": None, "reads": 0, "readers": 0, "shares": 0, "sharers": 0, "new_users": 0,
         "conversions": 0, "conversion_rate": None, "share_rate": None})  # fmt: skip
    totals.pop("content_id")
    totals.pop("title")
    return {
        "content_property": q.content_property,
        "read_events": reads,
        "sort": q.sort,
        "results": [_row(r) for r in rows if not r["whole"]],
        "totals": totals,
    }


register(ContentQuery, run_content)
