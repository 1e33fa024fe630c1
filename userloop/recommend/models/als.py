"""Matrix factorisation with alternating least squares (the ``implicit`` library, CPU).

Confidence ``alpha * x_ui`` on the users x items matrix (binary, or ``log1p`` of the summed event
weights with ``weighted``); scores are dot products of user and item factors.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from userloop.recommend.data import Interactions
from userloop.recommend.models.base import Recommender


class ALS(Recommender):
    name = "als"
    kind = "personal"
    reason = "taste"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"factors": 64, "regularization": 0.05, "alpha": 2.0, "iterations": 15, "weighted": False, "seed": 0}

    def fit(self, data: Interactions) -> Self:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        self.data = data
        m = sp.csr_matrix(data.matrix, dtype=np.float32)
        if self.params["weighted"]:
            m.data = np.log1p(m.data)
        else:
            m.data[:] = 1.0
        p = self.params
        with threadpool_limits(1, "blas"):  # implicit parallelises itself; BLAS threads only contend
            model = AlternatingLeastSquares(
                factors=int(p["factors"]), regularization=float(p["regularization"]), alpha=float(p["alpha"]),
                iterations=int(p["iterations"]), random_state=int(p["seed"]), num_threads=2,
                calculate_training_loss=False,
            )
            model.fit(m, show_progress=False)
        self.user_factors = np.asarray(model.user_factors, np.float32)
        self.item_factors = np.asarray(model.item_factors, np.float32)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        out = np.full((len(users), self.data.n_items), -np.inf, np.float32)
        known = users < len(self.user_factors)
        out[known] = self.user_factors[users[known]] @ self.item_factors.T
        active = self.data.activity[users[known]] > 0 if known.any() else np.zeros(0, bool)
        out[np.flatnonzero(known)[~active]] = -np.inf  # no history: factors are noise
        return out
