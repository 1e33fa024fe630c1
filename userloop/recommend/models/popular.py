"""Non-personal recommenders: latest, popular (time-decayed), trending, and interest tags (cold start).

- ``latest``: freshness ``2^(-age / half_life)`` of the item's creation time (first interaction
  when the catalogue has none).
- ``popular``: ``sum(weight * 2^(-age / half_life))`` over the item's events (hour resolution, age
  from the middle of the hour), optionally only the last ``window_days``.
- ``trending``: growth of the last window over the one before, ``(cur + 1) / (prev + 1) - 1``,
  for items with at least ``min_events`` events in the last window.
- ``interest``: a person's chosen tags (cold start): popular items carrying those tags, scored
  ``popularity * number of chosen tags the item has``.

All can be restricted to a type or a tag with :meth:`GlobalRecommender.ranking`.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from userloop.recommend.data import DAY, HOUR, Interactions
from userloop.recommend.models.base import Recommender


def decayed_popularity(data: Interactions, half_life_days: float, window_days: float | None = None) -> np.ndarray:
    age = data.now - (data.hour_start + HOUR / 2)
    w = data.hour_weight * np.exp2(-np.maximum(age, 0.0) / (half_life_days * DAY))
    if window_days is not None:
        w = np.where(data.hour_start >= data.now - window_days * DAY, w, 0.0)
    return np.bincount(data.hour_item, weights=w, minlength=data.n_items).astype(np.float64)


class GlobalRecommender(Recommender):
    """One score per item, the same for everyone; ``item_scores`` is set by ``fit``."""

    kind = "global"
    item_scores: np.ndarray

    def scores(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores.astype(np.float32), (len(users), self.data.n_items))

    def ranking(self, type_code: int | None = None, tag: int | None = None, k: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` active items (of a type, with a tag) and their scores, best first."""
        ok = np.isfinite(self.item_scores) & self.data.items.active
        if type_code is not None:
            ok &= self.data.items.item_type == type_code
        if tag is not None:
            has = np.zeros(self.data.n_items, bool)
            if 0 <= tag < self.data.items.tags.shape[1]:
                has[self.data.items.tags[:, tag].nonzero()[0]] = True
            ok &= has
        idx = np.flatnonzero(ok)
        order = np.lexsort((idx, -self.item_scores[idx]))[:k]
        return idx[order].astype(np.int32), self.item_scores[idx[order]].astype(np.float32)


class Latest(GlobalRecommender):
    name = "latest"
    reason = "new"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"half_life_days": 3.0}

    def fit(self, data: Interactions) -> Self:
        self.data = data
        created = data.items.created.copy()
        first = np.full(data.n_items, np.nan)
        if len(data.pair_item):
            seen = np.full(data.n_items, np.inf)
            np.minimum.at(seen, data.pair_item, data.pair_first)
            first = np.where(np.isfinite(seen), seen, np.nan)
        created = np.where(np.isnan(created), first, created)
        age = np.maximum(data.now - created, 0.0)
        fresh = np.exp2(-age / (self.params["half_life_days"] * DAY))
        self.item_scores = np.where(np.isnan(created) | (created > data.now), -np.inf, fresh)
        return self


class Popular(GlobalRecommender):
    name = "popular"
    reason = "popular"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"half_life_days": 7.0, "window_days": None}

    def fit(self, data: Interactions) -> Self:
        self.data = data
        pop = decayed_popularity(data, self.params["half_life_days"], self.params["window_days"])
        self.item_scores = np.where(pop > 0, pop, -np.inf)
        return self


class Trending(GlobalRecommender):
    name = "trending"
    reason = "trending"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"window_hours": 24.0, "min_events": 2}

    def fit(self, data: Interactions) -> Self:
        self.data = data
        w = self.params["window_hours"] * HOUR
        start = data.hour_start
        cur_rows = (start >= data.now - w) & (start < data.now)
        prev_rows = (start >= data.now - 2 * w) & (start < data.now - w)
        cur = np.bincount(data.hour_item[cur_rows], weights=data.hour_events[cur_rows], minlength=data.n_items)
        prev = np.bincount(data.hour_item[prev_rows], weights=data.hour_events[prev_rows], minlength=data.n_items)
        growth = (cur + 1.0) / (prev + 1.0) - 1.0
        self.current, self.previous = cur.astype(np.int64), prev.astype(np.int64)
        self.item_scores = np.where((cur >= self.params["min_events"]) & (growth > 0), growth, -np.inf)
        return self


class Interest(Recommender):
    """Cold start: popular items of the tags a person picked (``interests``: users x tags)."""

    name = "interest"
    kind = "personal"
    reason = "interest"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"half_life_days": 7.0}

    def fit(self, data: Interactions) -> Self:
        self.data = data
        pop = decayed_popularity(data, self.params["half_life_days"])
        # items nobody touched yet still rank, below every item with events, by freshness
        self.pop = pop + 1e-6 * Latest(half_life_days=30.0).fit(data).item_scores.clip(0, None)
        self.interests = sp.csr_matrix((data.n_users, data.items.tags.shape[1]), dtype=np.float32)
        return self

    def with_interests(self, interests: sp.csr_matrix) -> Self:
        self.interests = sp.csr_matrix(interests, dtype=np.float32)
        return self

    def for_tags(self, tag_rows: sp.csr_matrix) -> np.ndarray:
        """Dense scores for rows of chosen tags (rows x tags, 1 where chosen)."""
        matches = np.asarray((tag_rows @ self.data.items.tags.T).todense(), np.float64)
        s = matches * self.pop[None, :]
        return np.where(matches > 0, s, -np.inf).astype(np.float32)

    def scores(self, users: np.ndarray) -> np.ndarray:
        return self.for_tags(self.interests[np.asarray(users)])
