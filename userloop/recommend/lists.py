"""Ragged candidate lists (CSR-like): one list of (item, score) per key (a user, an item, a tag).

The serving artifact is made of these; :meth:`Lists.gather` reads the lists of many keys at once
(no Python loop per key), which the feed uses for one request and the evaluation for thousands
of users alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from userloop.recommend.models.base import Candidates


@dataclass
class Lists:
    indptr: np.ndarray  # int64 [keys + 1]
    items: np.ndarray  # int32
    scores: np.ndarray  # float32

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    @staticmethod
    def empty(n: int) -> Lists:
        return Lists(np.zeros(n + 1, np.int64), np.empty(0, np.int32), np.empty(0, np.float32))

    @staticmethod
    def from_candidates(c: Candidates) -> Lists:
        ok = c.items >= 0
        indptr = np.r_[0, np.cumsum(ok.sum(axis=1))].astype(np.int64)
        return Lists(indptr, c.items[ok].astype(np.int32), c.scores[ok].astype(np.float32))

    @staticmethod
    def from_csr(m: sp.csr_matrix, k: int | None = None) -> Lists:
        """Each row's entries sorted by value, best first (at most ``k``)."""
        m = sp.csr_matrix(m)
        m.sort_indices()
        counts = np.diff(m.indptr)
        rows = np.repeat(np.arange(m.shape[0]), counts)
        order = np.lexsort((m.indices, -m.data, rows))
        rank = np.arange(len(order)) - m.indptr[rows[order]]
        keep = order[rank < k] if k is not None else order
        kept_rows = rows[keep]
        indptr = np.r_[0, np.cumsum(np.bincount(kept_rows, minlength=m.shape[0]))].astype(np.int64)
        return Lists(indptr, m.indices[keep].astype(np.int32), m.data[keep].astype(np.float32))

    def row(self, key: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[key], self.indptr[key + 1]
        return self.items[lo:hi], self.scores[lo:hi]

    def gather(self, keys: np.ndarray, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The lists of ``keys`` ([rows, m] ints; -1 or out of range: none), at most ``limit``
        entries of each: flat (row, column of the key, item, score)."""
        keys = np.asarray(keys, np.int64)
        if keys.ndim == 1:
            keys = keys[:, None]
        valid = (keys >= 0) & (keys < self.n)
        r, c = np.nonzero(valid)
        k = keys[r, c]
        starts = self.indptr[k]
        lens = self.indptr[k + 1] - starts
        if limit is not None:
            lens = np.minimum(lens, limit)
        total = int(lens.sum())
        if total == 0:
            e = np.empty(0, np.int64)
            return e, e, np.empty(0, np.int32), np.empty(0, np.float32)
        offsets = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens)
        pos = offsets + np.arange(total)
        return np.repeat(r, lens), np.repeat(c, lens), self.items[pos], self.scores[pos]
