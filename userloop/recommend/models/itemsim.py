"""Item-to-item recommenders: co-occurrence, cosine, content (tags), item-kNN and cross-type.

Each builds a sparse items x items similarity ``sim`` whose row ``j`` holds the nearest items of
item ``j`` (at most ``neighbours`` per row, the item itself excluded). ``similar(j)`` reads that
row ("similar items" on a detail page); the personal score of item ``i`` is ``sum_j x_uj *
sim[j, i]`` over the person's history ("guess you like": each item the person touched votes for
its neighbours). The rows are computed in blocks (dense ``block x items`` at a time), so memory
stays bounded at 100k items.

- ``cooccurrence``: how many people interacted with both items;
- ``cosine``: co-occurrence / sqrt(n_i * n_j);
- ``content``: cosine of TF-IDF vectors of tags and category (works for items nobody touched yet);
- ``itemknn``: cosine with shrinkage ``c_ij / (sqrt(n_i n_j) + shrink)``, ``neighbours`` per item;
- ``crosstype``: behaviour cosine plus ``content_weight`` x content, neighbours of *other* types
  only (from a post to courses and products, from a product to related works).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from userloop.recommend.data import Interactions, top_k
from userloop.recommend.models.base import Candidates, Recommender, keep_top_per_row, row_normalize

ROW_BLOCK = 2048
Block = Callable[[np.ndarray], sp.csr_matrix]  # item rows -> sparse [len(rows), n_items] similarity
Pair = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (row items, column items) -> bool: may pair


def blocked_neighbours(n: int, block: Block, k: int, mask: Pair | None = None) -> sp.csr_matrix:
    """Sparse [n, n]: per row the ``k`` largest positive values of ``block(rows)`` (ties: lower
    column first), diagonal excluded; ``mask(row_items, col_items)`` says which pairs may be kept."""
    parts: list[sp.csr_matrix] = []
    for lo in range(0, n, ROW_BLOCK):
        rows = np.arange(lo, min(lo + ROW_BLOCK, n))
        c = sp.coo_matrix(block(rows))
        keep = (c.data > 0) & (rows[c.row] != c.col)
        if mask is not None:
            keep &= mask(rows[c.row], c.col)
        pruned = sp.csr_matrix(
            (c.data[keep].astype(np.float32), (c.row[keep], c.col[keep])), shape=(len(rows), n)
        )
        parts.append(keep_top_per_row(pruned, k))
    return sp.csr_matrix(sp.vstack(parts, format="csr")) if parts else sp.csr_matrix((0, 0), dtype=np.float32)


def content_features(data: Interactions) -> sp.csr_matrix:
    """items x (tags + categories), TF-IDF weighted, rows of unit length."""
    items = data.items
    n = items.n
    has_cat = items.category >= 0
    cats = sp.csr_matrix(
        (np.ones(int(has_cat.sum()), np.float32), (np.flatnonzero(has_cat), items.category[has_cat])),
        shape=(n, max(len(items.categories), 1)),
    )
    f = sp.hstack([sp.csr_matrix(items.tags, dtype=np.float32), cats]).tocsr()
    df = np.asarray((f > 0).sum(axis=0)).ravel()
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    return row_normalize(sp.csr_matrix(f @ sp.diags(idf.astype(np.float32))))


class ItemSimilarity(Recommender):
    """Shared scoring and ``similar`` over ``sim`` (built by each subclass's ``build``)."""

    kind = "item"
    sim: sp.csr_matrix

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"neighbours": 100}

    def build(self, data: Interactions) -> sp.csr_matrix:
        raise NotImplementedError

    def fit(self, data: Interactions) -> Self:
        self.data = data
        self.sim = self.build(data)
        return self

    def history(self, users: np.ndarray) -> sp.csr_matrix:
        return self.data.binary[np.asarray(users)]

    def pruned(self, neighbours: int) -> Self:
        """A copy keeping only the ``neighbours`` nearest items of each item (no refit)."""
        out = copy.copy(self)
        out.params = {**self.params, "neighbours": neighbours}
        out.sim = keep_top_per_row(self.sim, neighbours)
        return out

    def scores(self, users: np.ndarray) -> np.ndarray:
        s = np.asarray((self.history(users) @ self.sim).todense(), np.float32)
        s[~(s > 0)] = -np.inf
        return s

    def similar(self, items: np.ndarray, k: int, *, item_mask: np.ndarray | None = None) -> Candidates:
        s = np.asarray(self.sim[np.asarray(items)].todense(), np.float32)
        s[~(s > 0)] = -np.inf
        allowed = self.data.items.active if item_mask is None else item_mask
        s[:, ~allowed] = -np.inf
        idx, val = top_k(s, k)
        return Candidates(idx, val)


def _cooc_block(b: sp.csc_matrix) -> Block:
    bt = sp.csr_matrix(b.T)
    return lambda rows: sp.csr_matrix(bt[rows] @ b)


class Cooccurrence(ItemSimilarity):
    name = "cooccurrence"
    reason = "together"

    def build(self, data: Interactions) -> sp.csr_matrix:
        b = sp.csc_matrix(data.binary)
        return blocked_neighbours(data.n_items, _cooc_block(b), self.params["neighbours"])


def _cosine_block(b: sp.csc_matrix, shrink: float) -> Block:
    bt = sp.csr_matrix(b.T)
    norms = np.sqrt(np.asarray(b.sum(axis=0)).ravel()).astype(np.float32)

    def block(rows: np.ndarray) -> sp.csr_matrix:
        c = sp.coo_matrix(bt[rows] @ b)
        c.data = c.data / (norms[rows[c.row]] * norms[c.col] + shrink + 1e-12)
        return sp.csr_matrix(c)

    return block


class Cosine(ItemSimilarity):
    name = "cosine"
    reason = "similar"

    def build(self, data: Interactions) -> sp.csr_matrix:
        b = sp.csc_matrix(data.binary)
        return blocked_neighbours(data.n_items, _cosine_block(b, 0.0), self.params["neighbours"])


class Content(ItemSimilarity):
    """Tags and category only. Items with the same features tie; the more popular (distinct people)
    wins, by a bonus of at most ``TIE`` that never beats a real difference in similarity."""

    name = "content"
    reason = "content"
    TIE = 1e-3

    def build(self, data: Interactions) -> sp.csr_matrix:
        self.features = f = content_features(data)
        ft = sp.csr_matrix(f.T)
        counts = np.asarray(data.binary.sum(axis=0)).ravel()
        self.bonus = (self.TIE * counts / max(counts.max(initial=0), 1.0)).astype(np.float32)
        bonus = self.bonus

        def block(rows: np.ndarray) -> sp.csr_matrix:
            c = sp.coo_matrix(f[rows] @ ft)
            c.data = c.data + bonus[c.col]
            return sp.csr_matrix(c)

        return blocked_neighbours(data.n_items, block, self.params["neighbours"])

    def scores(self, users: np.ndarray) -> np.ndarray:
        """``profile . features`` of each item, the profile being the sum of the history's features
        (not limited to the pruned neighbour lists)."""
        profile = self.history(users) @ self.features
        s = np.asarray((profile @ self.features.T).todense(), np.float32)
        s = np.where(s > 0, s + self.bonus[None, :], -np.inf).astype(np.float32)
        return s


class ItemKNN(ItemSimilarity):
    name = "itemknn"
    reason = "because"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"neighbours": 100, "shrink": 10.0, "weighted": False}

    def build(self, data: Interactions) -> sp.csr_matrix:
        b = sp.csc_matrix(data.binary)
        return blocked_neighbours(data.n_items, _cosine_block(b, self.params["shrink"]), self.params["neighbours"])

    def history(self, users: np.ndarray) -> sp.csr_matrix:
        if self.params["weighted"]:
            m = self.data.matrix[np.asarray(users)]
            m.data = np.log1p(m.data)
            return m
        return self.data.binary[np.asarray(users)]


class CrossType(ItemSimilarity):
    """Neighbours of other types: behaviour cosine + ``content_weight`` x content similarity."""

    name = "crosstype"
    reason = "related"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"neighbours": 50, "content_weight": 0.5}

    def build(self, data: Interactions) -> sp.csr_matrix:
        b = sp.csc_matrix(data.binary)
        beh = _cosine_block(b, 0.0)
        f = content_features(data)
        ft = sp.csr_matrix(f.T)
        cw = float(self.params["content_weight"])
        types = data.items.item_type

        def block(rows: np.ndarray) -> sp.csr_matrix:
            return sp.csr_matrix(beh(rows) + cw * (f[rows] @ ft))

        return blocked_neighbours(
            data.n_items, block, self.params["neighbours"], mask=lambda r, c: types[r] != types[c]
        )
