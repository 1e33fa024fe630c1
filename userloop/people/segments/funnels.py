"""``funnel`` conditions: the persons who reached step k of a funnel but not step k + 1.

The funnel analysis (:mod:`userloop.analytics.funnel`) does the work: its SQL selects the step
events, its engine computes each person's deepest step. We keep the 64-bit person keys (the
dialect's ``hash64`` of the person id, the funnel's own key) of those whose deepest step is k; the
segment query matches them against ``hash64(persons.person_id)``.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import numpy as np

from userloop.analytics._funnel_engine import compute, packable
from userloop.analytics.funnel import FunnelQuery, funnel_sql
from userloop.people.segments.model import FunnelDrop
from userloop.query.sql import Ctx

_PLACEHOLDER = re.compile(r"\$(p\d+)\b")


def dropped_keys(ctx: Ctx, node: FunnelDrop, date_from: date, date_to: date) -> np.ndarray:
    q = FunnelQuery(
        project=ctx.project.id,
        date_from=date_from,
        date_to=date_to,
        filters=node.filters,
        steps=node.steps,
        window_seconds=node.window_seconds,
        dropped_after_step=node.dropped_after_step,
        dropped_limit=0,
    )
    q.validate()
    fctx = Ctx(store=ctx.store, project=ctx.project, dialect=ctx.dialect)
    n = len(q.steps)
    span = timedelta(days=(date_to - date_from).days + 2, seconds=q.window_seconds)  # + a DST hour
    packed = packable(span // timedelta(microseconds=1), n)
    sql = funnel_sql(fctx, q, packed=packed)
    used = set(_PLACEHOLDER.findall(sql))
    params = {k: v for k, v in fctx.params.items() if k in used}
    cols = ctx.store.cursor().sql(sql, params=params).fetchnumpy()
    window_us = q.window_seconds * 1_000_000
    if packed:
        lv = compute(cols["h"], cols["k"], None, n, window_us, per_person=True)
    else:
        lv = compute(cols["h"], cols["t"], cols["m"], n, window_us, per_person=True)
    assert lv.person is not None and lv.level is not None
    return np.asarray(lv.person[lv.level == q.dropped_after_step], dtype=np.uint64)
