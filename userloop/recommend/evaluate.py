"""Offline evaluation: splits, metrics, hyper-parameter tuning on a validation part of the training data.

Splits of an :class:`EventLog` (events as arrays):

- ``loo`` (leave last out): each person's most recently *discovered* item (latest first
  interaction) is the test item; everything else of theirs trains. Persons with one item are not tested.
- ``time`` (global time split): events before the cut (the ``1 - test_fraction`` quantile of event
  times) train; each person's items first touched after it (and not before) are the test items.
  Most test persons may be new: the cut is global.

Validation applies the same split to the training part, so tuning never sees the test part.
Metrics at 10: NDCG (binary gains, ideal over ``min(|relevant|, 10)``), HR (any hit), recall
(hits / |relevant|) and catalogue coverage (distinct recommended items / items). Items the
person touched in training are never recommended.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

import msgspec
import numpy as np
import scipy.sparse as sp

from userloop.recommend.blend import Request, Weights, diversify, fuse
from userloop.recommend.build import ModelParams, build_artifact, make, similar_items
from userloop.recommend.data import Interactions, Items
from userloop.recommend.models import PERSONAL_CF
from userloop.recommend.models.base import Recommender

SplitKind = Literal["loo", "time"]
K = 10

# hyper-parameter grids of the tuned recommenders (the references of the benchmark)
GRIDS: dict[str, dict[str, list[Any]]] = {
    "popular": {"half_life_days": [0.5, 2.0, 7.0, 30.0, 120.0, 1e6]},
    "itemknn": {"neighbours": [20, 50, 100, 200], "shrink": [0.0, 10.0, 50.0]},
    "als": {"factors": [32, 64, 128], "regularization": [0.01, 0.1, 1.0], "alpha": [1.0, 5.0, 20.0]},
    "ease": {"l2": [20.0, 100.0, 300.0, 1000.0, 3000.0]},
}
# blend weights searched coordinate-wise, in this order, twice
BLEND_GRID: dict[str, list[float]] = {
    "popular": [0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 3.0],
    "recent": [0.0, 0.25, 0.5, 1.0],
    "warm_up": [0.0, 1.0, 3.0, 10.0, 30.0],
    "latest": [0.0, 0.05, 0.2],
    "trending": [0.0, 0.05, 0.2],
}


@dataclass
class EventLog:
    user: np.ndarray  # int64 user index
    item: np.ndarray  # int64 item index
    ts: np.ndarray  # float64 epoch seconds
    weight: np.ndarray  # float32
    bought: np.ndarray  # bool
    users: np.ndarray  # object: user names
    items: Items
    count: np.ndarray | None = None  # events per row (1 when absent)

    def subset(self, mask: np.ndarray) -> EventLog:
        return replace(self, user=self.user[mask], item=self.item[mask], ts=self.ts[mask],
                       weight=self.weight[mask], bought=self.bought[mask],
                       count=None if self.count is None else self.count[mask])

    def interactions(self, now: float | None = None) -> Interactions:
        return Interactions.from_events(self.user, self.item, self.ts, self.weight, self.bought,
                                        self.users, self.items, now=now, count=self.count)


@dataclass
class Split:
    kind: SplitKind
    train: Interactions
    users: np.ndarray  # int64 test users
    relevant: sp.csr_matrix  # len(users) x items
    new_users: int  # test users without training interactions


def _first_touch(log: EventLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, first time) per distinct pair."""
    key = log.user * log.items.n + log.item
    uniq, inv = np.unique(key, return_inverse=True)
    first = np.full(len(uniq), np.inf)
    np.minimum.at(first, inv, log.ts)
    return uniq // log.items.n, uniq % log.items.n, first


def split(log: EventLog, kind: SplitKind, test_fraction: float = 0.2) -> Split:
    n_items = log.items.n
    pu, pi, pf = _first_touch(log)
    if kind == "loo":
        order = np.lexsort((pi, pf, pu))  # per user by first time; the last one is the test item
        last = np.r_[pu[order][1:] != pu[order][:-1], True]
        counts = np.bincount(pu, minlength=len(log.users))
        test = order[last & (counts[pu[order]] >= 2)]
        test_key = np.sort(pu[test] * n_items + pi[test])
        ev_key = log.user * n_items + log.item
        pos = np.minimum(np.searchsorted(test_key, ev_key), max(len(test_key) - 1, 0))
        in_test = (test_key[pos] == ev_key) if len(test_key) else np.zeros(len(ev_key), bool)
        train = log.subset(~in_test)
        now = float(train.ts.max()) + 1.0
        tu, ti = pu[test], pi[test]
    else:
        cut = float(np.quantile(log.ts, 1.0 - test_fraction))
        train = log.subset(log.ts < cut)
        now = cut
        sel = pf >= cut
        tu, ti = pu[sel], pi[sel]
    users, inv = np.unique(tu, return_inverse=True)
    relevant = sp.csr_matrix((np.ones(len(tu), np.float32), (inv, ti)), shape=(len(users), n_items))
    data = train.interactions(now=now)
    return Split(kind, data, users.astype(np.int64), relevant, int((data.activity[users] == 0).sum()))


def metrics(recs: np.ndarray, relevant: sp.csr_matrix, n_items: int) -> dict[str, float]:
    """NDCG@K, HR@K, recall@K (means over rows) and coverage of ``recs`` ([rows, K], -1 pads)."""
    recs = recs[:, :K]
    rows = np.repeat(np.arange(recs.shape[0]), recs.shape[1])
    flat = recs.ravel()
    ok = flat >= 0
    rel = relevant.tocoo()
    rel_keys = np.sort(rel.row.astype(np.int64) * n_items + rel.col)
    keys = rows.astype(np.int64) * n_items + np.maximum(flat, 0)
    pos = np.minimum(np.searchsorted(rel_keys, keys), max(len(rel_keys) - 1, 0))
    hit = ok & (rel_keys[pos] == keys) if len(rel_keys) else np.zeros(len(flat), bool)
    hit = hit.reshape(recs.shape)
    n_rel = np.diff(relevant.indptr)
    disc = 1.0 / np.log2(np.arange(2, recs.shape[1] + 2))
    dcg = (hit * disc[None, :]).sum(axis=1)
    ideal = np.cumsum(np.r_[0.0, disc])[np.minimum(n_rel, recs.shape[1])]
    valid = n_rel > 0
    return {
        "ndcg@10": float(np.mean(dcg[valid] / ideal[valid])) if valid.any() else 0.0,
        "hr@10": float(np.mean(hit[valid].any(axis=1))) if valid.any() else 0.0,
        "recall@10": float(np.mean(hit[valid].sum(axis=1) / n_rel[valid])) if valid.any() else 0.0,
        "coverage": float(len(np.unique(flat[ok])) / max(n_items, 1)),
    }


def score_model(model: Recommender, s: Split) -> dict[str, float]:
    return metrics(model.recommend(s.users, K).items, s.relevant, s.train.n_items)


def blend_recs(art: Any, s: Split, w: Weights, diversity: float = 0.0) -> np.ndarray:
    req = Request(users=s.users)
    f = fuse(art, req, w, 3 * K if diversity > 0 else K)
    if diversity > 0:
        f = diversify(f, art.items.item_type, art.items.category, K, diversity)
    return f.items


def _grid(grid: dict[str, list[Any]]) -> Iterable[dict[str, Any]]:
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def _coordinate(grid: dict[str, list[Any]], score: Callable[[dict[str, Any]], float]) -> tuple[dict[str, Any], float]:
    """Coordinate search from the middle of each axis, two passes (first best on ties)."""
    point = {k: v[len(v) // 2] for k, v in grid.items()}
    seen: dict[tuple[Any, ...], float] = {}

    def value(p: dict[str, Any]) -> float:
        key = tuple(p[k] for k in grid)
        if key not in seen:
            seen[key] = score(p)
        return seen[key]

    best = value(point)
    for _ in range(2):
        for key, values in grid.items():
            for v in values:
                cand = {**point, key: v}
                got = value(cand)
                if got > best + 1e-12:
                    point, best = cand, got
    return point, best


def tune_model(name: str, valid: Split, grid: dict[str, list[Any]] | None = None) -> tuple[dict[str, Any], float]:
    """The grid point with the best validation NDCG@10 and that NDCG: an exhaustive search for small
    grids, a coordinate search for larger ones (ALS)."""
    from userloop.recommend.models import RECOMMENDERS
    from userloop.recommend.models.itemsim import ItemKNN

    grid = GRIDS.get(name, {}) if grid is None else grid
    best: tuple[dict[str, Any], float] = ({}, -1.0)
    if name == "itemknn":  # one similarity per shrink; fewer neighbours are a prefix of more
        for shrink in grid.get("shrink", [10.0]):
            full = ItemKNN(neighbours=max(grid.get("neighbours", [100])), shrink=shrink).fit(valid.train)
            for k in grid.get("neighbours", [100]):
                v = score_model(full.pruned(k), valid)["ndcg@10"]
                if v > best[1]:
                    best = ({"neighbours": k, "shrink": shrink}, v)
        return best

    def score(point: dict[str, Any]) -> float:
        return score_model(RECOMMENDERS[name](**point).fit(valid.train), valid)["ndcg@10"]

    if int(np.prod([len(v) for v in grid.values()])) > 12:
        return _coordinate(grid, score)
    for point in _grid(grid):
        v = score(point)
        if v > best[1]:
            best = (point, v)
    return best


CONTENT_WEIGHTS = [0.0, 0.3, 1.0, 3.0]


def tune_blend(valid: Split, params: ModelParams, cf: str, log: Callable[[str], None] | None = None) -> tuple[ModelParams, float]:
    """On one artifact of the validation training part: the content share of "similar items"
    (rebuilding only that list), then a coordinate search over ``BLEND_GRID`` (two passes)."""
    from userloop.recommend.lists import Lists
    from userloop.recommend.models.itemsim import Content, ItemKNN

    art = build_artifact(valid.train, params, cf)
    knn = ItemKNN(**{**params.itemknn, "neighbours": max(params.neighbours, 1)}).fit(valid.train)
    content = Content(neighbours=params.neighbours).fit(valid.train).sim

    def ndcg(w: Weights) -> float:
        return metrics(blend_recs(art, valid, w), valid.relevant, valid.train.n_items)["ndcg@10"]

    best_cw, best = params.content_weight, -1.0
    lists = {}
    for cw in CONTENT_WEIGHTS:
        lists[cw] = Lists.from_csr(similar_items(valid.train, msgspec.structs.replace(params, content_weight=cw), knn, content))
        art.similar = lists[cw]
        got = ndcg(params.weights)
        if got > best + 1e-12:
            best_cw, best = cw, got
    art.similar = lists[best_cw]
    w = params.weights
    for _ in range(2):
        for key, values in BLEND_GRID.items():
            for v in values:
                cand = msgspec.structs.replace(w, **{key: v})
                got = ndcg(cand)
                if got > best + 1e-12:
                    w, best = cand, got
        if log:
            log(f"blend: content_weight={best_cw} weights {msgspec.to_builtins(w)} ndcg={best:.4f}")
    return msgspec.structs.replace(params, weights=w, content_weight=best_cw), best


@dataclass
class Row:
    name: str
    metrics: dict[str, float]
    train_s: float
    params: dict[str, Any]
    reference: bool = False


TUNED = ("popular", "itemknn", "als", "ease")
UNTUNED = ("latest", "trending", "cooccurrence", "cosine", "content")


def evaluate(log: EventLog, kind: SplitKind, *, tune: bool = True, models: tuple[str, ...] = TUNED + UNTUNED,
             say: Callable[[str], None] | None = None, test_fraction: float = 0.2) -> dict[str, Any]:
    """Every recommender, tuned on validation, then the default blend; one row each on the test part."""
    say = say or (lambda _m: None)
    test = split(log, kind, test_fraction)
    valid = split(log.subset(_train_mask(log, test)), kind, test_fraction) if tune else None
    params = ModelParams()
    tuned: dict[str, float] = {}
    rows: list[Row] = []
    for name in models:
        point: dict[str, Any] = {}
        if tune and valid is not None and name in TUNED:
            t = time.perf_counter()
            point, v = tune_model(name, valid)
            tuned[name] = v
            say(f"{kind}: tuned {name} {point} validation ndcg={v:.4f} ({time.perf_counter() - t:.1f}s)")
        elif tune and valid is not None and name in PERSONAL_CF:  # content: no grid, but a feed candidate
            tuned[name] = score_model(make(name, params).fit(valid.train), valid)["ndcg@10"]
        if name in TUNED:
            params = msgspec.structs.replace(params, **{name: point})
        t = time.perf_counter()
        model = make(name, params).fit(test.train)
        fit_s = time.perf_counter() - t
        rows.append(Row(name, score_model(model, test), fit_s, point, reference=name in TUNED))
    cf = max((n for n in PERSONAL_CF if n in tuned), key=lambda n: tuned[n], default="ease")
    params = msgspec.structs.replace(params, cf=cf)  # type: ignore[arg-type]
    if tune and valid is not None:
        params, v = tune_blend(valid, params, cf, say)
        say(f"{kind}: blend on {cf}: validation ndcg={v:.4f}")
    t = time.perf_counter()
    art = build_artifact(test.train, params, cf)
    fit_s = time.perf_counter() - t
    rows.append(Row("default (blend)", metrics(blend_recs(art, test, params.weights), test.relevant, test.train.n_items),
                    fit_s, {"cf": cf, "content_weight": params.content_weight, **msgspec.to_builtins(params.weights)}))
    return {
        "split": kind, "test_users": len(test.users), "new_test_users": test.new_users,
        "train_interactions": len(test.train.pair_user), "items": test.train.n_items, "cf": cf,
        "rows": [{"recommender": r.name, "reference": r.reference, **{k: round(v, 4) for k, v in r.metrics.items()},
                  "train_s": round(r.train_s, 2), "params": r.params} for r in rows],
        "params": msgspec.to_builtins(params),
    }


def _train_mask(log: EventLog, s: Split) -> np.ndarray:
    """Events of ``log`` that are in the split's training part."""
    if s.kind == "time":
        return log.ts < s.train.now
    rel = s.relevant.tocoo()
    key = np.sort(s.users[rel.row] * log.items.n + rel.col)
    ev = log.user * log.items.n + log.item
    pos = np.minimum(np.searchsorted(key, ev), max(len(key) - 1, 0))
    return ~((key[pos] == ev) if len(key) else np.zeros(len(ev), bool))
