"""The blended feed: candidates from several sources, fused, filtered, re-ranked and explained.

For a batch of requests (one in serving, thousands in evaluation; the same code) each *source*
yields candidates with scores, read from the artifact's precomputed lists:

``cf``        the person's list from the personal model that won offline (item-kNN, ALS, EASE or content)
``recent``    neighbours of the person's most recent items (recency-decayed: behaviour as it arrives)
``interest``  popular items of the tags the person picked (cold start)
``popular``   time-decayed popularity; ``trending``; ``latest``  (per type when a type is asked)
``similar``   neighbours of the item on screen (detail page); ``cross``: its related other types

Each source's scores are divided by the row's best, multiplied by the source weight (personal
sources also by ``n / (n + warm_up)``, ``n`` = the person's history length, so behaviour blends in
as it arrives) and summed per item. Seen / purchased and inactive items are removed, then
business rules (exclude, boost, pin) and diversity (a greedy pass that discounts items whose type
or category is already shown) produce the final order. Each item keeps the source that
contributed most, and the item that explains it ("because you viewed ...").
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

from userloop.recommend.artifact import Artifact
from userloop.recommend.lists import Lists

SOURCES = ("cf", "recent", "interest", "popular", "trending", "latest", "similar", "cross")
PERSONAL = ("cf", "recent")
SRC = {name: i for i, name in enumerate(SOURCES)}


class Weights(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cf: float = 1.0
    recent: float = 0.5
    interest: float = 1.0
    popular: float = 0.1
    trending: float = 0.0
    latest: float = 0.0
    similar: float = 2.0
    cross: float = 2.0
    warm_up: float = 3.0  # history length at which personal sources reach half weight
    recent_items: int = 10  # how many of the latest items seed ``recent``
    recent_decay: float = 0.8  # weight of the r-th latest item: decay ** r


@dataclass
class Fused:
    """[rows, m] candidates, best first (-1 pads), with the leading source and explaining item."""

    items: np.ndarray
    scores: np.ndarray
    source: np.ndarray  # int8 index into SOURCES, -1 pads
    because: np.ndarray  # int32 item index, -1 none


@dataclass
class Request:
    """A batch of feed requests against one artifact."""

    users: np.ndarray  # int64 user index per row, -1 for a person the model does not know
    interests: list[np.ndarray] | None = None  # tag codes per row
    seed_items: np.ndarray | None = None  # int64 item on screen per row, -1 none
    fresh: list[np.ndarray] | None = None  # items touched since training per row, most recent first
    type_code: int | None = None  # only items of this type (-2: a type the catalogue lacks)


def _flat(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, because: np.ndarray, n_items: int):  # type: ignore[no-untyped-def]
    """Sum duplicate (row, item) entries; ``because`` follows the largest contribution."""
    if len(rows) == 0:
        return rows, items, scores, because
    key = rows.astype(np.int64) * n_items + items
    order = np.lexsort((-scores, key))
    key_sorted = key[order]
    first = np.r_[True, key_sorted[1:] != key_sorted[:-1]]
    groups = np.cumsum(first) - 1
    total = np.bincount(groups, weights=scores[order]).astype(np.float32)
    lead = order[first]
    return rows[lead], items[lead], total, because[lead]


def _normalise(rows: np.ndarray, scores: np.ndarray, n_rows: int) -> np.ndarray:
    if len(rows) == 0:
        return scores
    best = np.full(n_rows, -np.inf, np.float32)
    np.maximum.at(best, rows, scores)
    best[~(best > 0)] = 1.0
    return (scores / best[rows]).astype(np.float32)


def _history_keys(art: Artifact, req: Request, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """[rows, limit] most recent items per row (fresh ones first), -1 padded; and history lengths."""
    n = len(req.users)
    keys = np.full((n, limit), -1, np.int64)
    rows, _, items, _ = art.history.gather(req.users, limit)
    if len(rows):  # position within the row's history: gather returns each row's list in order
        start = np.r_[0, np.flatnonzero(np.diff(rows)) + 1]
        counts = np.diff(np.r_[start, len(rows)])
        pos = np.arange(len(rows)) - np.repeat(start, counts)
        keys[rows, pos] = items
    lengths = np.zeros(n, np.int64)
    known = (req.users >= 0) & (req.users < art.history.n)
    lengths[known] = np.diff(art.history.indptr)[req.users[known]]
    if req.fresh is not None:
        for r, f in enumerate(req.fresh):  # serving: one row; a few items since the last training
            if len(f):
                merged = np.r_[np.asarray(f, np.int64), keys[r][keys[r] >= 0]]
                _, first = np.unique(merged, return_index=True)
                merged = merged[np.sort(first)][:limit]
                keys[r] = -1
                keys[r, : len(merged)] = merged
                lengths[r] += len(f)
    return keys, lengths


def sources(art: Artifact, req: Request, w: Weights, per_source: int = 200) -> list[tuple[int, tuple]]:  # type: ignore[type-arg]
    """(source index, (rows, items, weighted normalised scores, because)) for each source with weight."""
    n = len(req.users)
    out: list[tuple[int, tuple]] = []  # type: ignore[type-arg]
    hist, lengths = _history_keys(art, req, max(int(w.recent_items), 1))
    warm = (lengths / (lengths + w.warm_up)).astype(np.float32) if w.warm_up > 0 else (lengths > 0).astype(np.float32)

    def add(name: str, rows: np.ndarray, items: np.ndarray, scores: np.ndarray, because: np.ndarray,
            row_weight: np.ndarray | None = None) -> None:
        weight = getattr(w, name)
        if weight <= 0 or len(rows) == 0:
            return
        rows, items, scores, because = _flat(rows, items, scores, because, art.n_items)
        s = _normalise(rows, scores, n) * weight
        if row_weight is not None:
            s = s * row_weight[rows]
        out.append((SRC[name], (rows, items, s, because)))

    none = np.full(0, -1, np.int64)
    if w.cf > 0:
        rows, _, items, scores = art.cf.gather(req.users, per_source)
        add("cf", rows, items, scores, np.full(len(rows), -1, np.int64), warm)
    if w.recent > 0:
        rows, cols, items, scores = art.similar.gather(hist, per_source)
        decay = np.power(float(w.recent_decay), cols).astype(np.float32)
        add("recent", rows, items, scores * decay, hist[rows, cols], warm)
    if w.interest > 0 and req.interests is not None:
        width = max((len(t) for t in req.interests), default=0)
        if width:
            tags = np.full((n, width), -1, np.int64)
            for r, t in enumerate(req.interests):  # one row per request; a handful of tags each
                tags[r, : len(t)] = t
            rows, _, items, scores = art.tag_popular.gather(tags, per_source)
            add("interest", rows, items, scores, np.full(len(rows), -1, np.int64))
    type_key = 0 if req.type_code is None or req.type_code < 0 else req.type_code + 1
    for name in ("popular", "trending", "latest"):
        if getattr(w, name) > 0:
            lst: Lists = getattr(art, name)
            items, scores = lst.row(type_key) if type_key < lst.n else (none.astype(np.int32), none.astype(np.float32))
            items, scores = items[:per_source], scores[:per_source]
            rows = np.repeat(np.arange(n), len(items))
            add(name, rows, np.tile(items, n), np.tile(scores, n), np.full(len(rows), -1, np.int64))
    if req.seed_items is not None:
        seeds = np.asarray(req.seed_items, np.int64)
        for name in ("similar", "cross"):
            if getattr(w, name) > 0:
                lst = getattr(art, name)
                rows, _, items, scores = lst.gather(seeds, per_source)
                add(name, rows, items, scores, seeds[rows])
    return out


def fuse(art: Artifact, req: Request, w: Weights, m: int, *, exclude_seen: bool = True,
         exclude_purchased: bool = True, allowed: np.ndarray | None = None,
         boost: np.ndarray | None = None) -> Fused:
    """The best ``m`` candidates per row after summing the sources and removing what may not be shown
    (``allowed``: items that may be shown, default the active ones; ``boost``: a factor per item)."""
    n = len(req.users)
    parts = sources(art, req, w)
    out = Fused(np.full((n, m), -1, np.int32), np.full((n, m), -np.inf, np.float32),
                np.full((n, m), -1, np.int8), np.full((n, m), -1, np.int32))
    if not parts:
        return out
    rows = np.concatenate([p[1][0] for p in parts])
    items = np.concatenate([p[1][1] for p in parts]).astype(np.int64)
    scores = np.concatenate([p[1][2] for p in parts]).astype(np.float32)
    because = np.concatenate([p[1][3] for p in parts]).astype(np.int64)
    src = np.concatenate([np.full(len(p[1][0]), p[0], np.int64) for p in parts])
    # the leading source of each (row, item): sort by contribution, keep the first per key
    key = rows.astype(np.int64) * art.n_items + items
    order = np.lexsort((-scores, key))
    ks = key[order]
    first = np.r_[True, ks[1:] != ks[:-1]] if len(ks) else np.zeros(0, bool)
    total = np.bincount(np.cumsum(first) - 1, weights=scores[order]).astype(np.float32)
    lead = order[first]
    rows, items, src, because = rows[lead], items[lead], src[lead], because[lead]
    if boost is not None:
        total = total * boost[items]
    keep = art.items.active[items] if allowed is None else allowed[items]
    if req.type_code is not None:
        keep &= art.items.item_type[items] == req.type_code
    if req.seed_items is not None:
        keep &= items != np.asarray(req.seed_items, np.int64)[rows]
    if exclude_seen or exclude_purchased:
        hr, _, hi, bought = art.history.gather(req.users)
        if not exclude_seen:
            hr, hi = hr[bought > 0], hi[bought > 0]
        banned = np.sort(hr.astype(np.int64) * art.n_items + hi)
        if req.fresh is not None and exclude_seen:
            fr = np.concatenate([np.full(len(f), r, np.int64) for r, f in enumerate(req.fresh)] or [np.empty(0, np.int64)])
            fi = np.concatenate([np.asarray(f, np.int64) for f in req.fresh] or [np.empty(0, np.int64)])
            banned = np.sort(np.r_[banned, fr * art.n_items + fi])
        k = rows.astype(np.int64) * art.n_items + items
        pos = np.searchsorted(banned, k)
        hit = np.zeros(len(k), bool)
        inside = pos < len(banned)
        hit[inside] = banned[pos[inside]] == k[inside]
        keep &= ~hit
    rows, items, total, src, because = rows[keep], items[keep], total[keep], src[keep], because[keep]
    order = np.lexsort((items, -total, rows))
    rows, items, total, src, because = rows[order], items[order], total[order], src[order], because[order]
    start = np.searchsorted(rows, np.arange(n))
    rank = np.arange(len(rows)) - start[rows]
    sel = rank < m
    r, c = rows[sel], rank[sel]
    out.items[r, c], out.scores[r, c] = items[sel], total[sel]
    out.source[r, c], out.because[r, c] = src[sel], because[sel]
    return out


def diversify(f: Fused, item_type: np.ndarray, category: np.ndarray, n: int, diversity: float) -> Fused:
    """Greedy re-ranking: each pick multiplies the remaining items of the same type and of the same
    category by ``1 - diversity`` (0: keep the order)."""
    rows, m = f.items.shape
    k = min(n, m)
    if diversity <= 0 or m == 0:
        return Fused(f.items[:, :k], f.scores[:, :k], f.source[:, :k], f.because[:, :k])
    valid = f.items >= 0
    it = np.where(valid, f.items, 0)
    types = np.where(valid, item_type[it], -1)
    cats = np.where(valid, category[it], -1)
    adj = np.where(valid, f.scores, -np.inf).astype(np.float64)
    factor = 1.0 - diversity
    picks = np.full((rows, k), -1, np.int64)
    rr = np.arange(rows)
    for p in range(k):  # positions, not persons: each step is vectorised over all rows
        j = np.argmax(adj, axis=1)
        ok = np.isfinite(adj[rr, j])
        picks[ok, p] = j[ok]
        t, c = types[rr, j][:, None], cats[rr, j][:, None]
        same = (types == t).astype(np.int8) + ((cats == c) & (c >= 0)).astype(np.int8)
        adj = np.where(same > 0, adj * np.power(factor, same), adj)
        adj[rr, j] = -np.inf
        adj[~ok] = -np.inf
    safe = np.maximum(picks, 0)
    got = picks >= 0

    def take(a: np.ndarray, pad: float) -> np.ndarray:
        v = np.take_along_axis(a, safe, axis=1)
        return np.where(got, v, pad).astype(a.dtype)

    return Fused(take(f.items, -1), take(f.scores, -np.inf), take(f.source, -1), take(f.because, -1))
