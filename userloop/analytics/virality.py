"""Virality: the viral coefficient K per period, from invites (shares) and the new people they bring.

K = (invites sent per active user) x (conversion of invites) = conversions / active users. A
*conversion* is a new person whose first event names an inviter (``inviter_property``, a distinct
id of the sharing person) who is another person and who sent an invite at or before that first
event; it is credited to the period of the inviter's **latest invite at or before it** when it
arrives within ``window_seconds`` of that invite. The cycle time is the median of those delays.

:func:`newcomers_sql` and :func:`invited_sql` (the rule for "brought by an invite") are shared with
the content analysis.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from userloop.errors import UserloopError
from userloop.query.buckets import buckets, label
from userloop.query.model import PropertyFilter, Query
from userloop.query.runner import register
from userloop.query.sql import Ctx, check_events, check_properties, events_sql, filter_properties, prop

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # first events look back over the whole history
INVITE, INVITER = "share", "inviter_id"
MAX_WINDOW = 366 * 86400


class ViralityQuery(Query, tag="virality"):
    interval: Literal["day", "week", "month"] = "week"
    invite_event: str = INVITE
    inviter_property: str = INVITER
    window_seconds: int = 7 * 86400  # a newcomer arriving later than this after the invite is not its conversion

    def validate(self) -> None:
        super().validate()
        if not self.inviter_property:
            raise UserloopError("property_required", "inviter_property is empty", "inviter_property")
        if not 0 <= self.window_seconds <= MAX_WINDOW:
            raise UserloopError("bad_window", f"window_seconds must be between 0 and {MAX_WINDOW}", "window_seconds")


def newcomers_sql(
    ctx: Ctx,
    since: datetime,
    until: datetime,
    inviter_property: str,
    filters: list[PropertyFilter],
    landing: str = "NULL",
) -> str:
    """Persons whose first event lies in [since, until): ``pid``, ``t0`` (that event's time) and,
    from the events at ``t0`` that carry ``inviter_property``: ``inviter`` (its value, a distinct
    id; NULL when none does) and ``landing`` (an expression over ``e``, e.g. the content id).

    Two passes: the first time of every person (no properties read), then the properties of the
    events at that time only.
    """
    base = events_sql(ctx, EPOCH, until, filters=filters)
    s = ctx.p(since)
    firsts = f"SELECT e.person_id AS pid, min(e.timestamp) AS t0 FROM ({base}) e GROUP BY e.person_id HAVING min(e.timestamp) >= {s}"
    at_first = events_sql(ctx, since, until, filters=filters)
    inv = prop(ctx, inviter_property)
    return (
        f"SELECT f.pid, f.t0, min({inv}) AS inviter, min(CASE WHEN {inv} IS NOT NULL THEN {landing} END) AS landing "
        f"FROM ({firsts}) f LEFT JOIN ({at_first}) e ON e.person_id = f.pid AND e.timestamp = f.t0 "
        f"GROUP BY f.pid, f.t0"
    )


def invited_sql(ctx: Ctx, newcomers: str, invites: str) -> str:
    """Newcomers (``newcomers_sql``) whose first event names an inviter who is another known person
    with an invite at or before it. ``invites`` selects ``share_pid``, ``share_ts`` (and any more
    ``share_*`` columns) of invite events; the result adds ``ipid`` (the inviter's person) and the
    columns of the matched invite (the inviter's latest at or before the newcomer's first event)."""
    return (
        f"SELECT n.pid, n.t0, n.landing, ids.person_id AS ipid, sh.* FROM ({newcomers}) n "
        f"JOIN identities ids ON ids.project_id = {ctx.p(ctx.project.id)} AND ids.distinct_id = n.inviter "
        f"ASOF JOIN ({invites}) sh ON sh.share_pid = ids.person_id AND n.t0 >= sh.share_ts "
        f"WHERE ids.person_id <> n.pid"
    )


def virality_sql(ctx: Ctx, q: ViralityQuery) -> str:
    d = ctx.dialect
    start, end = ctx.range(q.date_from, q.date_to)
    until = end + timedelta(seconds=q.window_seconds)
    us = d.epoch_micros
    trunc = lambda ts: d.trunc(q.interval, ctx.local(ts))  # noqa: E731
    firsts = newcomers_sql(ctx, start, until, q.inviter_property, q.filters)
    shares = events_sql(ctx, start, until, events=[q.invite_event], filters=q.filters)
    invites = f"SELECT e.person_id AS share_pid, e.timestamp AS share_ts FROM ({shares}) e"
    active = events_sql(ctx, start, end, filters=q.filters)
    e = ctx.p(end)
    return f"""
WITH f AS ({firsts}),
sh AS ({invites}),
m AS ({invited_sql(ctx, "SELECT * FROM f", "SELECT * FROM sh")}),
conv AS (
    SELECT {trunc("m.share_ts")} AS b, (({us("m.t0")}) - ({us("m.share_ts")})) / 1000000.0 AS cycle
    FROM m
    WHERE m.share_ts < {e} AND ({us("m.t0")}) - ({us("m.share_ts")}) <= {ctx.p(q.window_seconds * 1_000_000)}
)
SELECT 'active' AS metric, b, grouping(b) AS whole, count(DISTINCT pid) AS n, 0 AS n2, CAST(NULL AS DOUBLE) AS med
FROM (SELECT {trunc("e.timestamp")} AS b, e.person_id AS pid FROM ({active}) e) a GROUP BY GROUPING SETS ((b), ())
UNION ALL
SELECT 'invites', b, grouping(b), count(*), count(DISTINCT pid), NULL
FROM (SELECT {trunc("sh.share_ts")} AS b, sh.share_pid AS pid FROM sh WHERE sh.share_ts < {e}) i
GROUP BY GROUPING SETS ((b), ())
UNION ALL
SELECT 'new', b, grouping(b), count(*), 0, NULL
FROM (SELECT {trunc("f.t0")} AS b FROM f WHERE f.t0 < {e}) n GROUP BY GROUPING SETS ((b), ())
UNION ALL
SELECT 'conversions', b, grouping(b), count(*), 0, {d.median("cycle")} FROM conv GROUP BY GROUPING SETS ((b), ())
"""


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _period(date_: str | None, cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    def get(metric: str, key: str = "n") -> Any:
        row = cells.get(metric)
        return row[key] if row else None

    active, invites, conversions = int(get("active") or 0), int(get("invites") or 0), int(get("conversions") or 0)
    cycle = get("conversions", "med")
    return {
        "date": date_,
        "active_users": active,
        "new_users": int(get("new") or 0),
        "inviters": int(get("invites", "n2") or 0),
        "invites": invites,
        "invites_per_user": _ratio(invites, active),
        "conversions": conversions,
        "conversion_rate": _ratio(conversions, invites),
        "k": _ratio(conversions, active),
        "cycle_time_seconds": None if cycle is None else float(cycle),
    }


def run_virality(ctx: Ctx, q: ViralityQuery) -> dict[str, Any]:
    if q.invite_event != INVITE:  # names left at their default may be absent (zeros)
        check_events(ctx, [q.invite_event], "invite_event")
    wanted = filter_properties(q.filters, "filters")
    if q.inviter_property != INVITER:
        wanted.append((q.inviter_property, "event", "inviter_property"))
    check_properties(ctx, wanted)
    rows = ctx.fetch(virality_sql(ctx, q))
    by_bucket: dict[datetime | None, dict[str, dict[str, Any]]] = {}
    for r in rows:
        b = None if r["whole"] else r["b"]
        if isinstance(b, date) and not isinstance(b, datetime):
            b = datetime.combine(b, datetime.min.time())
        by_bucket.setdefault(b, {})[r["metric"]] = r
    starts = buckets(q.date_from, q.date_to, q.interval)
    return {
        "interval": q.interval,
        "window_seconds": q.window_seconds,
        "results": [_period(label(b, q.interval), by_bucket.get(b, {})) for b in starts],
        "totals": _period(None, by_bucket.get(None, {})),
    }


register(ViralityQuery, run_virality)
