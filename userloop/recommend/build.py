"""From interactions to a serving :class:`~userloop.recommend.artifact.Artifact`: fit each recommender
once and keep its candidates as compact lists.

``ModelParams`` are the hyper-parameters (per recommender) and list lengths; the blend weights live
in ``userloop/recommend/blend.py``. The personal model of the feed is ``cf`` (the collaborative
filters ``itemknn``, ``als``, ``ease``, or ``content``; ``auto`` is resolved by ``userloop/recommend/train.py`` on a
validation split).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
import numpy as np
import scipy.sparse as sp

from userloop.recommend.artifact import Artifact
from userloop.recommend.blend import Weights
from userloop.recommend.data import Interactions
from userloop.recommend.lists import Lists
from userloop.recommend.models import RECOMMENDERS
from userloop.recommend.models.base import Recommender
from userloop.recommend.models.itemsim import Content, CrossType, ItemKNN, blocked_neighbours
from userloop.recommend.models.people import People
from userloop.recommend.models.popular import GlobalRecommender, Latest, Popular, Trending

CF = Literal["auto", "itemknn", "als", "ease", "content"]


class ModelParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    cf: CF = "auto"
    itemknn: dict[str, Any] = {}
    als: dict[str, Any] = {}
    ease: dict[str, Any] = {}
    popular: dict[str, Any] = {}
    latest: dict[str, Any] = {}
    trending: dict[str, Any] = {}
    people: dict[str, Any] = {}
    crosstype: dict[str, Any] = {}
    content_weight: float = 0.3  # content similarity's share in "similar items" (new items have only it)
    candidates: int = 100  # CF candidates kept per person
    neighbours: int = 50  # similar / related items kept per item
    people_per_user: int = 20
    tag_items: int = 100  # popular items kept per tag
    global_items: int = 200  # popular / trending / latest items kept per type
    weights: Weights = msgspec.field(default_factory=Weights)


def make(name: str, params: ModelParams) -> Recommender:
    """A recommender with the hyper-parameters ``params`` gives it."""
    cls = RECOMMENDERS[name]
    return cls(**getattr(params, name, {}) or {})


def similar_items(data: Interactions, params: ModelParams, knn: ItemKNN | None = None,
                  content: sp.csr_matrix | None = None) -> sp.csr_matrix:
    """Behaviour (item-kNN cosine) plus ``content_weight`` x content similarity, ``neighbours`` per item
    (``knn`` and ``content``: already fitted parts to reuse)."""
    knn = knn or ItemKNN(**{**params.itemknn, "neighbours": max(params.neighbours, 1)}).fit(data)
    if content is None:
        content = Content(neighbours=params.neighbours).fit(data).sim
    combined = sp.csr_matrix(knn.sim + params.content_weight * content)
    return blocked_neighbours(data.n_items, lambda rows: combined[rows], params.neighbours)


def per_type(model: GlobalRecommender, k: int) -> Lists:
    """Key 0: all types; key t + 1: type t."""
    codes: list[int | None] = [None, *range(len(model.data.items.types))]
    ranked = [model.ranking(type_code=c, k=k) for c in codes]
    indptr = np.r_[0, np.cumsum([len(i) for i, _ in ranked])].astype(np.int64)
    return Lists(indptr, np.concatenate([i for i, _ in ranked]).astype(np.int32),
                 np.concatenate([s for _, s in ranked]).astype(np.float32))


def tag_lists(pop: Popular, k: int) -> Lists:
    """Per tag, its most popular active items (tags x items of popularity, best ``k`` per row)."""
    data = pop.data
    score = np.where(np.isfinite(pop.item_scores) & data.items.active, pop.item_scores, 0.0)
    # items nobody touched yet still appear, after those with events, newest first
    fresh = Latest(half_life_days=30.0).fit(data).item_scores
    score = score + 1e-6 * np.where(np.isfinite(fresh) & data.items.active, fresh, 0.0)
    m = sp.csr_matrix(sp.csr_matrix(data.items.tags.T) @ sp.diags(score.astype(np.float32)))
    m.eliminate_zeros()
    return Lists.from_csr(m, k)


def build_artifact(data: Interactions, params: ModelParams, cf: str, model_id: int = 0) -> Artifact:
    """Fit every recommender the feed uses on ``data`` and keep their candidate lists."""
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        t = time.perf_counter()
        out = fn()
        timings[name] = round(time.perf_counter() - t, 3)
        return out

    active_users = np.flatnonzero(data.activity > 0)
    cf_model = timed("cf", lambda: make(cf, params).fit(data))
    cand = timed("cf_candidates", lambda: cf_model.recommend(active_users, params.candidates))
    full = Lists.empty(data.n_users)
    counts = np.zeros(data.n_users, np.int64)
    ok = cand.items >= 0
    counts[active_users] = ok.sum(axis=1)
    full = Lists(np.r_[0, np.cumsum(counts)].astype(np.int64), cand.items[ok], cand.scores[ok])
    knn = cf_model if isinstance(cf_model, ItemKNN) and cf_model.params["neighbours"] >= params.neighbours else None
    similar = timed("similar", lambda: similar_items(data, params, knn))
    cross = timed("cross", lambda: CrossType(**{**params.crosstype, "neighbours": params.neighbours}).fit(data).sim)
    people_model = timed("people", lambda: People(**params.people).fit(data))
    ppl = people_model.recommend(active_users, params.people_per_user)
    pcounts = np.zeros(data.n_users, np.int64)
    pok = ppl.items >= 0
    pcounts[active_users] = pok.sum(axis=1)
    people = Lists(np.r_[0, np.cumsum(pcounts)].astype(np.int64), ppl.items[pok], ppl.scores[pok])
    pop = timed("popular", lambda: Popular(**params.popular).fit(data))
    trending = Trending(**params.trending).fit(data)
    latest = Latest(**params.latest).fit(data)
    # history, most recent first, scores = bought flag
    order = np.lexsort((-data.pair_last, data.pair_user))
    hist = Lists(
        np.r_[0, np.cumsum(np.bincount(data.pair_user, minlength=data.n_users))].astype(np.int64),
        data.pair_item[order].astype(np.int32), data.pair_bought[order].astype(np.float32),
    )
    art = Artifact(
        items=data.items, users=data.users, history=hist, cf=full, people=people,
        similar=Lists.from_csr(similar), cross=Lists.from_csr(cross),
        tag_popular=tag_lists(pop, params.tag_items),
        popular=per_type(pop, params.global_items), trending=per_type(trending, params.global_items),
        latest=per_type(latest, params.global_items), trained_at=data.now,
    )
    art.meta = {
        "model_id": model_id, "cf": cf, "trained_at": data.now, "types": data.items.types,
        "tag_names": data.items.tag_names, "categories": data.items.categories,
        "params": msgspec.to_builtins(params), "fit_seconds": timings,
        "trending_counts": {"window_hours": trending.params["window_hours"]},
    }
    return art
