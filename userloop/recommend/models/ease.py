"""EASE (Steck 2019): a closed-form item-item linear model, ``B = -P / diag(P)``, ``P = (X'X + l I)^-1``.

Dense in the number of items, so it is fit on the ``max_items`` most popular items (the rest score
nothing); at a few thousand items the inversion takes seconds.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from userloop.recommend.data import Interactions
from userloop.recommend.models.base import Recommender


class EASE(Recommender):
    name = "ease"
    kind = "personal"
    reason = "taste"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"l2": 200.0, "max_items": 5000, "weighted": False}

    def fit(self, data: Interactions) -> Self:
        self.data = data
        m = sp.csr_matrix(data.matrix, dtype=np.float64)
        if self.params["weighted"]:
            m.data = np.log1p(m.data)
        else:
            m.data[:] = 1.0
        counts = np.asarray(data.binary.sum(axis=0)).ravel()
        top = np.flatnonzero(counts > 0)
        top = top[np.lexsort((top, -counts[top]))][: int(self.params["max_items"])]
        self.cols = np.sort(top)
        x = sp.csc_matrix(m)[:, self.cols]
        g = (x.T @ x).toarray()
        g[np.diag_indices_from(g)] += float(self.params["l2"])
        p = la.inv(g, overwrite_a=True, check_finite=False)
        b = p / (-np.diag(p))[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.b = b.astype(np.float32)
        self.x = sp.csr_matrix(x, dtype=np.float32)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        out = np.full((len(users), self.data.n_items), -np.inf, np.float32)
        known = users < self.x.shape[0]
        rows = self.x[users[known]]
        s = np.asarray(rows @ self.b, np.float32)
        has = np.diff(rows.indptr) > 0
        s[~has] = -np.inf
        out[np.ix_(np.flatnonzero(known), self.cols)] = s
        return out
