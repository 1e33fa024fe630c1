"""People you may like: persons with similar interests who are active.

A person's profile is the items they touched plus those items' tags (each part of unit length),
the whole row of unit length. Candidates are the ``pool`` most active persons; the score of person
``v`` for ``u`` is ``cosine(u, v) * log1p(activity of v)`` (``activity``: distinct items touched).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from userloop.recommend.data import Interactions, top_k
from userloop.recommend.models.base import BATCH, Candidates, Recommender, row_normalize


class People(Recommender):
    name = "people"
    kind = "people"
    reason = "people"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"pool": 2000}

    def fit(self, data: Interactions) -> Self:
        self.data = data
        b = data.binary
        parts = [row_normalize(b)]
        if data.items.tags.shape[1]:
            parts.append(row_normalize(sp.csr_matrix(b @ data.items.tags)))
        self.profile = row_normalize(sp.hstack(parts).tocsr())
        act = data.activity
        active = np.flatnonzero(act > 0)
        self.pool = active[np.lexsort((active, -act[active]))][: int(self.params["pool"])]
        self.pool_profile_t = sp.csr_matrix(self.profile[self.pool].T)
        self.pool_weight = np.log1p(act[self.pool]).astype(np.float32)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        """Dense [len(users), len(pool)] scores (-inf for oneself and unrelated persons)."""
        users = np.asarray(users)
        cos = np.asarray((self.profile[users] @ self.pool_profile_t).todense(), np.float32)
        s = cos * self.pool_weight[None, :]
        s[users[:, None] == self.pool[None, :]] = -np.inf
        s[~(s > 0)] = -np.inf
        return s

    def recommend(self, users: np.ndarray, k: int, *, exclude: sp.csr_matrix | None = None,
                  item_mask: np.ndarray | None = None) -> Candidates:
        """Top ``k`` persons (user indexes) per user."""
        users = np.asarray(users, np.int64)
        out = Candidates.empty(len(users), k)
        for lo in range(0, len(users), BATCH):
            idx, val = top_k(self.scores(users[lo : lo + BATCH]), k)
            width = idx.shape[1]
            if width:
                out.items[lo : lo + BATCH, :width] = np.where(idx >= 0, self.pool[np.maximum(idx, 0)], -1)
                out.scores[lo : lo + BATCH, :width] = val
        return out
