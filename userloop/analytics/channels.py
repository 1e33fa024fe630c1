"""Channels: first-touch / last-touch attribution of visitors, sign-ups, buyers and revenue.

Each person active in the range is attributed to exactly one value of the dimension (so the rows
add up to the totals): the value of their first (``first_touch``) or last (``last_touch``) event
with a non-null value at or before their *conversion point*, looking back over all their history.
The conversion point is the person's first ``register_event`` or ``purchase_event`` in the range,
whichever is earlier; for a person with neither, it is their last event in the range. A person
with no such touch is attributed to ``$none``. Optional costs per value give cost per acquisition
and the input-output ratio (revenue / cost).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from userloop.errors import UserloopError
from userloop.query.model import Query
from userloop.query.runner import register
from userloop.query.sql import Ctx, check_events, check_properties, events_sql, filter_properties, prop

Dimension = Literal["channel", "utm_source", "utm_medium", "utm_campaign", "referring_domain"]
DIMENSIONS: tuple[str, ...] = Dimension.__args__  # type: ignore[attr-defined]
OTHER = "$other"
NONE = "$none"
REGISTER, PURCHASE, REVENUE = "sign_up", "purchase", "revenue"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # "all history": touches and first visits look back to here


class Cost(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Spend on one value of the query's dimension: ``{"channel": "douyin", "cost": 1200}``."""

    cost: float
    channel: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    referring_domain: str | None = None

    def value(self, dimension: str) -> str | None:
        return getattr(self, dimension)


class ChannelsQuery(Query, tag="channels"):
    attribution: Literal["first_touch", "last_touch"] = "first_touch"
    dimension: Dimension = "channel"
    register_event: str = REGISTER
    purchase_event: str = PURCHASE
    revenue_property: str = REVENUE
    costs: list[Cost] = []
    exclude_values: list[str] = []  # values that are not a touch (e.g. "direct": last non-direct touch)
    limit: int = 50  # the top N values by visitors; the rest are "$other"

    def validate(self) -> None:
        super().validate()
        if self.limit < 1:
            raise UserloopError("bad_limit", "limit must be at least 1", "limit")
        if not self.revenue_property:
            raise UserloopError("property_required", "revenue_property is empty", "revenue_property")
        for i, c in enumerate(self.costs):
            keys = [k for k in DIMENSIONS if c.value(k) is not None]
            if keys != [self.dimension]:
                wrong = next((k for k in keys if k != self.dimension), self.dimension)
                raise UserloopError(
                    "bad_cost", f"each cost names one {self.dimension!r} value (the query's dimension)",
                    f"costs[{i}].{wrong}",
                )
            if not c.cost >= 0:
                raise UserloopError("bad_cost", "cost must be a number >= 0", f"costs[{i}].cost")


def channels_sql(ctx: Ctx, q: ChannelsQuery) -> str:
    """Per value (top N, then "$other"), and a grand total row (``whole`` = 1)."""
    d = ctx.dialect
    start, end = ctx.range(q.date_from, q.date_to)
    base = events_sql(ctx, EPOCH, end, filters=q.filters)
    reg, buy, s = ctx.p(q.register_event), ctx.p(q.purchase_event), ctx.p(start)
    value = prop(ctx, q.dimension)
    if q.exclude_values:
        excluded = ", ".join(ctx.p(v) for v in q.exclude_values)
        value = f"CASE WHEN {value} IN ({excluded}) THEN NULL ELSE {value} END"
    revenue = d.number(prop(ctx, q.revenue_property))
    if q.attribution == "first_touch":
        # the earliest touch counts when it is at or before the conversion point: one pass
        firsts = (f"min(CASE WHEN v IS NOT NULL THEN ts END) AS first_touch_at, "
                  f"{d.arg_min('v', '(ts, v)')} AS first_v")  # fmt: skip
        touch = "t AS (SELECT pid, first_v AS v FROM p WHERE first_touch_at <= cutoff)"
    else:
        # the latest touch at or before the conversion point: a second pass joined to the persons
        firsts = "NULL AS first_v"
        touch = (
            f"t AS (SELECT x.pid, {d.arg_max('x.v', '(x.ts, x.v)')} AS v FROM x JOIN p ON p.pid = x.pid "
            f"WHERE x.v IS NOT NULL AND x.ts <= p.cutoff GROUP BY x.pid)"
        )
    # the entered costs as rows (plain UNION ALL: no dialect-specific VALUES syntax)
    costs = " UNION ALL ".join(
        f"SELECT CAST({ctx.p(c.value(q.dimension))} AS VARCHAR) AS v, CAST({ctx.p(float(c.cost))} AS DOUBLE) AS cost"
        for c in q.costs
    ) or "SELECT CAST(NULL AS VARCHAR) AS v, CAST(NULL AS DOUBLE) AS cost WHERE FALSE"
    return f"""
WITH x AS (
    SELECT e.person_id AS pid, e.timestamp AS ts, {value} AS v, e.timestamp >= {s} AS in_range,
           e.event = {reg} AS is_reg, e.event = {buy} AS is_buy,
           CASE WHEN e.event = {buy} AND e.timestamp >= {s} THEN {revenue} END AS rev
    FROM ({base}) e
),
p AS (
    SELECT pid, min(ts) AS first_seen,
           coalesce(min(CASE WHEN in_range AND (is_reg OR is_buy) THEN ts END), max(ts)) AS cutoff,
           max(CASE WHEN in_range AND is_reg THEN 1 ELSE 0 END) AS registered,
           max(CASE WHEN in_range AND is_buy THEN 1 ELSE 0 END) AS buyer,
           sum(CASE WHEN in_range AND is_buy THEN 1 ELSE 0 END) AS purchases,
           sum(rev) AS revenue, {firsts}
    FROM x GROUP BY pid HAVING max(CASE WHEN in_range THEN 1 ELSE 0 END) = 1
),
{touch},
g AS (
    SELECT coalesce(t.v, {ctx.p(NONE)}) AS v, count(*) AS visitors,
           sum(CASE WHEN p.first_seen >= {s} THEN 1 ELSE 0 END) AS new_visitors,
           sum(p.registered) AS registered, sum(p.buyer) AS buyers, sum(p.purchases) AS purchases,
           coalesce(sum(p.revenue), 0) AS revenue
    FROM p LEFT JOIN t ON t.pid = p.pid
    GROUP BY 1
),
c AS (SELECT v, sum(cost) AS cost FROM ({costs}) c0 GROUP BY v),
j AS (
    SELECT coalesce(g.v, c.v) AS v, coalesce(g.visitors, 0) AS visitors, coalesce(g.new_visitors, 0) AS new_visitors,
           coalesce(g.registered, 0) AS registered, coalesce(g.buyers, 0) AS buyers,
           coalesce(g.purchases, 0) AS purchases, coalesce(g.revenue, 0) AS revenue, c.cost
    FROM g FULL JOIN c ON c.v = g.v
),
r AS (
    SELECT CASE WHEN row_number() OVER (ORDER BY visitors DESC, v) <= {ctx.p(q.limit)} THEN v
                ELSE {ctx.p(OTHER)} END AS v,
           visitors, new_visitors, registered, buyers, purchases, revenue, cost
    FROM j
)
SELECT v, grouping(v) AS whole, sum(visitors) AS visitors, sum(new_visitors) AS new_visitors,
       sum(registered) AS registered, sum(buyers) AS buyers, sum(purchases) AS purchases,
       sum(revenue) AS revenue, sum(cost) AS cost,
       sum(CASE WHEN cost IS NOT NULL THEN registered ELSE 0 END) AS costed_registered,
       sum(CASE WHEN cost IS NOT NULL THEN buyers ELSE 0 END) AS costed_buyers,
       sum(CASE WHEN cost IS NOT NULL THEN revenue ELSE 0 END) AS costed_revenue
FROM r GROUP BY GROUPING SETS ((v), ())
"""


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _row(r: dict[str, Any]) -> dict[str, Any]:
    visitors, registered, buyers = int(r["visitors"] or 0), int(r["registered"] or 0), int(r["buyers"] or 0)
    revenue = round(float(r["revenue"] or 0), 6)  # parallel float sums differ in the last bits
    cost = None if r["cost"] is None else float(r["cost"])
    return {
        "value": None if r["whole"] else r["v"],
        "visitors": visitors,
        "new_visitors": int(r["new_visitors"] or 0),
        "registered": registered,
        "buyers": buyers,
        "purchases": int(r["purchases"] or 0),
        "revenue": revenue,
        "registration_rate": _ratio(registered, visitors),
        "purchase_rate": _ratio(buyers, visitors),
        "revenue_per_visitor": _ratio(revenue, visitors),
        "cost": cost,
        # over the values that have a cost (all of a single value's row; part of "$other" and the totals)
        "cost_per_registered": _ratio(cost, r["costed_registered"]),
        "cost_per_buyer": _ratio(cost, r["costed_buyers"]),
        "roi": _ratio(None if cost is None else float(r["costed_revenue"] or 0), cost),
    }


def run_channels(ctx: Ctx, q: ChannelsQuery) -> dict[str, Any]:
    # events left at their default may be absent from a project (their counts are zeros)
    for name, default, field in ((q.register_event, REGISTER, "register_event"), (q.purchase_event, PURCHASE, "purchase_event")):
        if name != default:
            check_events(ctx, [name], field)
    wanted = filter_properties(q.filters, "filters")
    if q.revenue_property != REVENUE:
        wanted.append((q.revenue_property, "event", "revenue_property"))
    check_properties(ctx, wanted)
    rows = [_row(r) for r in ctx.fetch(channels_sql(ctx, q))]
    empty = dict.fromkeys(("visitors", "new_visitors", "registered", "buyers", "purchases", "revenue",
                           "costed_registered", "costed_buyers", "costed_revenue"), 0)  # fmt: skip
    totals = next((r for r in rows if r["value"] is None), _row({**empty, "whole": 1, "v": None, "cost": None}))
    results = sorted(
        (r for r in rows if r["value"] is not None),
        key=lambda r: (r["value"] == OTHER, -r["visitors"], -(r["cost"] or 0), str(r["value"])),
    )
    return {"attribution": q.attribution, "dimension": q.dimension, "results": results, "totals": totals}


register(ChannelsQuery, run_channels)
