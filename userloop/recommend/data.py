"""Interactions and item metadata as numpy arrays and sparse matrices: what every recommender fits on.

The same structure comes from a project (``userloop/recommend/interactions.py``, one SQL query over
the events) and from an evaluation data set (MovieLens, Taobao): a list of *events* (user, item,
time, weight, bought) is aggregated here, in numpy, into

- ``pairs``: one row per (user, item) with the summed weight, the first and last time and whether
  the user bought it; ``matrix`` is the users x items CSR of the weights;
- ``hourly``: one row per (item, hour) with the summed weight and the number of events, for
  time-decayed popularity and trending.

Item metadata (``Items``) holds the type, tags, category, creation time and active flag of each item
index, so content similarity, per-type and per-tag lists, and business rules read arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

HOUR = 3600.0
DAY = 86400.0


@dataclass
class Items:
    """Metadata per item index (all arrays have one entry per item)."""

    item_type: np.ndarray  # int16 code into ``types``
    item_id: np.ndarray  # object: the item id text
    types: list[str]
    tags: sp.csr_matrix  # items x tags, 1.0 where the item has the tag
    tag_names: list[str]
    category: np.ndarray  # int32 code into ``categories``, -1 without one
    categories: list[str]
    created: np.ndarray  # float64 epoch seconds, NaN when unknown
    active: np.ndarray  # bool: recommendable (active and not deleted)
    title: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))

    @property
    def n(self) -> int:
        return len(self.item_id)

    @cached_property
    def keys(self) -> np.ndarray:
        """``type:id`` per item (object array)."""
        types = np.array(self.types, dtype=object)
        return types[self.item_type] + ":" + self.item_id.astype(str).astype(object)

    @staticmethod
    def plain(n: int, item_type: str = "item") -> Items:
        """``n`` items with ids ``0..n-1``, one type, no tags (evaluation data sets)."""
        return Items(
            item_type=np.zeros(n, np.int16), item_id=np.arange(n).astype(str).astype(object), types=[item_type],
            tags=sp.csr_matrix((n, 0), dtype=np.float32), tag_names=[], category=np.full(n, -1, np.int32),
            categories=[], created=np.full(n, np.nan), active=np.ones(n, bool),
            title=np.full(n, "", dtype=object),
        )

    def type_code(self, name: str | None) -> int | None:
        """The code of type ``name``; -2 (matches nothing) for a type the catalogue does not have."""
        if name is None:
            return None
        return self.types.index(name) if name in self.types else -2

    def tag_code(self, name: str) -> int:
        return self.tag_names.index(name) if name in self.tag_names else -1


@dataclass
class Interactions:
    """Aggregated interactions of ``n_users`` persons with the items of ``items``."""

    users: np.ndarray  # object: person id (or data set user id) per user index
    items: Items
    pair_user: np.ndarray  # int32
    pair_item: np.ndarray  # int32
    pair_weight: np.ndarray  # float32, summed event weights
    pair_first: np.ndarray  # float64 epoch seconds
    pair_last: np.ndarray  # float64 epoch seconds
    pair_bought: np.ndarray  # bool
    hour_item: np.ndarray  # int32
    hour_start: np.ndarray  # float64 epoch seconds of the hour
    hour_weight: np.ndarray  # float32
    hour_events: np.ndarray  # int32
    now: float  # the end of the observed window (epoch seconds)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return self.items.n

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """users x items, summed weights."""
        return sp.csr_matrix(
            (self.pair_weight.astype(np.float32), (self.pair_user, self.pair_item)),
            shape=(self.n_users, self.n_items),
        )

    @cached_property
    def binary(self) -> sp.csr_matrix:
        m = self.matrix.copy()
        m.data[:] = 1.0
        return m

    @cached_property
    def seen(self) -> sp.csr_matrix:
        """users x items, 1 where the user interacted (for removing seen items)."""
        return self.binary

    @cached_property
    def bought(self) -> sp.csr_matrix:
        sel = self.pair_bought
        return sp.csr_matrix(
            (np.ones(int(sel.sum()), np.float32), (self.pair_user[sel], self.pair_item[sel])),
            shape=(self.n_users, self.n_items),
        )

    @cached_property
    def activity(self) -> np.ndarray:
        """Interactions (distinct items) per user."""
        return np.bincount(self.pair_user, minlength=self.n_users).astype(np.int32)

    def recent_items(self, limit: int) -> sp.csr_matrix:
        """Per user, the ``limit`` most recent items, as a CSR whose data is the recency rank + 1
        (1 = most recent); row order within a user: most recent first."""
        order = np.lexsort((-self.pair_last, self.pair_user))
        users = self.pair_user[order]
        starts = np.searchsorted(users, np.arange(self.n_users))
        rank = np.arange(len(order)) - starts[users]
        keep = rank < limit
        return sp.csr_matrix(
            ((rank[keep] + 1).astype(np.float32), (users[keep], self.pair_item[order][keep])),
            shape=(self.n_users, self.n_items),
        )

    @staticmethod
    def from_events(
        user: np.ndarray,
        item: np.ndarray,
        ts: np.ndarray,
        weight: np.ndarray,
        bought: np.ndarray,
        users: np.ndarray,
        items: Items,
        now: float | None = None,
        count: np.ndarray | None = None,
    ) -> Interactions:
        """Aggregate event rows (integer user and item indexes; ``count``: events per row, 1 if
        absent) into pairs and item-hours."""
        user = np.asarray(user, np.int64)
        item = np.asarray(item, np.int64)
        ts = np.asarray(ts, np.float64)
        weight = np.asarray(weight, np.float32)
        bought = np.asarray(bought, bool)
        count = np.ones(len(user), np.int32) if count is None else np.asarray(count, np.int32)
        n_items = items.n
        key = user * n_items + item
        uniq, inv = np.unique(key, return_inverse=True)
        pw = np.bincount(inv, weights=weight, minlength=len(uniq)).astype(np.float32)
        first = np.full(len(uniq), np.inf)
        np.minimum.at(first, inv, ts)
        last = np.full(len(uniq), -np.inf)
        np.maximum.at(last, inv, ts)
        pb = np.bincount(inv, weights=bought.astype(np.float64), minlength=len(uniq)) > 0
        hour = np.floor(ts / HOUR)
        hkey = item * 10_000_000 + (hour - (hour.min() if len(hour) else 0)).astype(np.int64)
        huniq, hinv = np.unique(hkey, return_inverse=True)
        hw = np.bincount(hinv, weights=weight, minlength=len(huniq)).astype(np.float32)
        hn = np.bincount(hinv, weights=count, minlength=len(huniq)).astype(np.int32)
        base = hour.min() if len(hour) else 0.0
        return Interactions(
            users=users, items=items,
            pair_user=(uniq // n_items).astype(np.int32), pair_item=(uniq % n_items).astype(np.int32),
            pair_weight=pw, pair_first=first, pair_last=last, pair_bought=pb,
            hour_item=(huniq // 10_000_000).astype(np.int32),
            hour_start=((huniq % 10_000_000) + base) * HOUR,
            hour_weight=hw, hour_events=hn,
            now=float(now if now is not None else (ts.max() + 1 if len(ts) else 0.0)),
        )


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indexes and values of the ``k`` highest finite scores, best first
    (index -1 and score -inf where a row has fewer). Ties: the lower index first."""
    n, m = scores.shape
    k = min(k, m)
    if k <= 0:
        return np.empty((n, 0), np.int32), np.empty((n, 0), np.float32)
    if k < m and n * m > 4_000_000:  # big: partition first (ties at the cut are arbitrary)
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (n, m)).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)[:, :k].astype(np.int32)
    vals = np.take_along_axis(vals, order, axis=1)[:, :k].astype(np.float32)
    bad = ~np.isfinite(vals)
    idx[bad] = -1
    vals[bad] = -np.inf
    return idx, vals
