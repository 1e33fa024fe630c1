"""The one interface every recommender implements.

A recommender is *fit* on :class:`~userloop.recommend.data.Interactions` and then produces
candidates with scores:

- ``scores(users)``: a dense users x items block (personal and global recommenders);
- ``recommend(users, k)``: the top ``k`` per user, seen and inactive items removed;
- ``similar(items, k)``: for item-to-item recommenders, the nearest items of an item.

Each class names the reason shown to people (``reason``) and its hyper-parameters (``params``,
tuned by ``userloop/recommend/evaluate.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp

from userloop.recommend.data import Interactions, top_k

Kind = Literal["global", "personal", "item", "people"]
BATCH = 512


@dataclass
class Candidates:
    """``items[r]``: the candidates of row ``r``, best first (-1 pads); ``scores`` alike."""

    items: np.ndarray  # int32 [n, k]
    scores: np.ndarray  # float32 [n, k]

    @staticmethod
    def empty(n: int, k: int) -> Candidates:
        return Candidates(np.full((n, k), -1, np.int32), np.full((n, k), -np.inf, np.float32))


class Recommender(ABC):
    name: ClassVar[str]
    kind: ClassVar[Kind]
    reason: ClassVar[str]
    data: Interactions

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults())
        if unknown:
            raise TypeError(f"{self.name}: unknown parameters {sorted(unknown)}")
        self.params: dict[str, Any] = {**self.defaults(), **params}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {}

    @abstractmethod
    def fit(self, data: Interactions) -> Self: ...

    @abstractmethod
    def scores(self, users: np.ndarray) -> np.ndarray:
        """Dense float32 [len(users), n_items]; -inf where an item cannot be recommended."""

    def recommend(
        self,
        users: np.ndarray,
        k: int,
        *,
        exclude: sp.csr_matrix | None = None,
        item_mask: np.ndarray | None = None,
    ) -> Candidates:
        """Top ``k`` per user. ``exclude``: users x items (default: what each user has seen);
        ``item_mask``: items allowed (default: the active items)."""
        users = np.asarray(users, np.int64)
        exclude = self.data.seen if exclude is None else exclude
        allowed = self.data.items.active if item_mask is None else item_mask
        out = Candidates.empty(len(users), k)
        for lo in range(0, len(users), BATCH):
            batch = users[lo : lo + BATCH]
            s = np.asarray(self.scores(batch), np.float32).copy()
            s[:, ~allowed] = -np.inf
            known = batch < exclude.shape[0]
            if known.any():
                ex = exclude[batch[known]].tocoo()
                rows = np.flatnonzero(known)[ex.row]
                s[rows, ex.col] = -np.inf
            idx, val = top_k(s, k)  # fewer columns than k when there are fewer items
            out.items[lo : lo + BATCH, : idx.shape[1]], out.scores[lo : lo + BATCH, : idx.shape[1]] = idx, val
        return out

    def similar(self, items: np.ndarray, k: int, *, item_mask: np.ndarray | None = None) -> Candidates:
        raise NotImplementedError(f"{self.name} does not find similar items")


def row_normalize(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (empty rows stay empty)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ m)


def keep_top_per_row(s: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest values of each row (ties: the lower column first)."""
    s = sp.csr_matrix(s)
    s.sort_indices()
    counts = np.diff(s.indptr)
    if counts.max(initial=0) <= k:
        return s
    rows = np.repeat(np.arange(s.shape[0]), counts)
    order = np.lexsort((s.indices, -s.data, rows))
    rank = np.arange(len(order)) - s.indptr[rows[order]]
    keep = np.sort(order[rank < k])
    kept = np.bincount(rows[keep], minlength=s.shape[0])
    return sp.csr_matrix((s.data[keep], s.indices[keep], np.r_[0, np.cumsum(kept)]), shape=s.shape)
