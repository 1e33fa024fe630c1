"""Tiny hand-built interaction sets for the recommender tests."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from userloop.recommend.data import HOUR, Interactions, Items

NOW = 1_000 * HOUR  # "now" of every hand-built set: hour 1000 after the epoch


def items(
    n: int,
    *,
    types: list[str] | None = None,
    type_of: list[int] | None = None,
    tags: list[list[str]] | None = None,
    category: list[str | None] | None = None,
    created_hours_ago: list[float | None] | None = None,
    active: list[bool] | None = None,
) -> Items:
    """``n`` items (ids "i0".."i{n-1}") with the given types, tags, categories and ages."""
    type_names = types or ["item"]
    tag_lists = tags or [[] for _ in range(n)]
    tag_names = sorted({t for ts in tag_lists for t in ts})
    rows = [i for i, ts in enumerate(tag_lists) for _ in ts]
    cols = [tag_names.index(t) for ts in tag_lists for t in ts]
    cats = category or [None] * n
    cat_names = sorted({c for c in cats if c is not None})
    created = [np.nan if h is None else NOW - h * HOUR for h in (created_hours_ago or [None] * n)]
    return Items(
        item_type=np.array(type_of or [0] * n, np.int16),
        item_id=np.array([f"i{i}" for i in range(n)], dtype=object),
        types=type_names,
        tags=sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, len(tag_names))),
        tag_names=tag_names,
        category=np.array([-1 if c is None else cat_names.index(c) for c in cats], np.int32),
        categories=cat_names,
        created=np.array(created, np.float64),
        active=np.array(active or [True] * n, bool),
        title=np.array([f"title {i}" for i in range(n)], dtype=object),
    )


def interactions(
    meta: Items,
    events: list[tuple[int, int, float, float, bool]],
    n_users: int | None = None,
) -> Interactions:
    """Events (user, item, hours before NOW, weight, bought)."""
    arr = np.array([(u, i, NOW - h * HOUR, w, b) for u, i, h, w, b in events], dtype=float).reshape(-1, 5)
    n_users = n_users if n_users is not None else (int(arr[:, 0].max()) + 1 if len(arr) else 0)
    return Interactions.from_events(
        arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2], arr[:, 3], arr[:, 4].astype(bool),
        users=np.array([f"u{u}" for u in range(n_users)], dtype=object), items=meta, now=NOW,
    )


def baskets(meta: Items, sets: list[list[int]], hours_ago: float = 1.0) -> Interactions:
    """Each user touched each item of their set once (weight 1), ``hours_ago`` before NOW."""
    return interactions(meta, [(u, i, hours_ago, 1.0, False) for u, s in enumerate(sets) for i in s], len(sets))
