"""The blended feed on a hand-built artifact: fusion, warm-up, removal of seen/purchased items,
recent behaviour with its explanation, interests, detail-page seeds and diversity."""

from __future__ import annotations

import numpy as np
import pytest

from tests.recommend.helpers import items
from userloop.recommend.artifact import Artifact
from userloop.recommend.blend import SRC, Fused, Request, Weights, diversify, fuse
from userloop.recommend.lists import Lists

OFF = {k: 0.0 for k in ("cf", "recent", "interest", "popular", "trending", "latest", "similar", "cross")}


def lists(rows: list[list[tuple[int, float]]]) -> Lists:
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    flat = [x for r in rows for x in r]
    return Lists(indptr, np.array([i for i, _ in flat], np.int32), np.array([s for _, s in flat], np.float32))


def artifact(n_users: int = 1, **given: list[list[tuple[int, float]]]) -> Artifact:
    meta = items(6, types=["a", "b"], type_of=[0, 0, 0, 1, 1, 1], tags=[["x"], [], [], ["x"], [], []],
                 category=["k", "k", "m", None, "k", None])
    empty = [[] for _ in range(n_users)]
    per_item = [[] for _ in range(6)]
    return Artifact(
        items=meta, users=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        history=lists(given.get("history", empty)), cf=lists(given.get("cf", empty)),
        people=lists(empty), similar=lists(given.get("similar", per_item)), cross=lists(given.get("cross", per_item)),
        tag_popular=lists(given.get("tag_popular", [[]])), popular=lists(given.get("popular", [[]])),
        trending=lists([[]]), latest=lists([[]]), trained_at=0.0,
    )


def weights(**w: float) -> Weights:
    return Weights(**{**OFF, "warm_up": 0.0, **w})


def row(f: Fused) -> list[tuple[int, float, str]]:
    names = {v: k for k, v in SRC.items()}
    return [(int(i), round(float(s), 6), names[int(src)]) for i, s, src in zip(f.items[0], f.scores[0], f.source[0], strict=True) if i >= 0]


ART = dict(history=[[(0, 0.0)]], cf=[[(1, 4.0), (2, 2.0)]], popular=[[(2, 10.0), (3, 5.0), (0, 8.0)]])


def test_sources_are_normalised_weighted_and_summed_and_seen_items_removed() -> None:
    art = artifact(**ART)
    f = fuse(art, Request(users=np.array([0])), weights(cf=1.0, popular=0.6), 10)
    # i2: cf 2/4 + 0.6 * 10/10 = 1.1 (popular leads); i1: cf 4/4 = 1; i3: 0.6 * 5/10 = 0.3; i0 was seen
    assert row(f) == [(2, 1.1, "popular"), (1, 1.0, "cf"), (3, 0.3, "popular")]


def test_personal_sources_warm_up_with_the_history_length() -> None:
    art = artifact(**ART)
    f = fuse(art, Request(users=np.array([0])), weights(cf=1.0, popular=0.6, warm_up=1.0), 10)
    # one item of history: cf counts 1 / (1 + 1) = half
    assert row(f) == [(2, 0.85, "popular"), (1, 0.5, "cf"), (3, 0.3, "popular")]
    cold = fuse(art, Request(users=np.array([-1])), weights(cf=1.0, popular=0.6, warm_up=1.0), 10)
    assert row(cold) == [(2, 0.6, "popular"), (0, 0.48, "popular"), (3, 0.3, "popular")]  # nothing seen, no cf


def test_purchased_items_are_removed_even_when_seen_ones_may_show() -> None:
    art = artifact(history=[[(3, 1.0), (0, 0.0)]], popular=[[(3, 5.0), (0, 4.0), (1, 2.0)]])
    w = weights(popular=1.0)
    assert [i for i, *_ in row(fuse(art, Request(users=np.array([0])), w, 10))] == [1]
    kept = fuse(art, Request(users=np.array([0])), w, 10, exclude_seen=False, exclude_purchased=True)
    assert [i for i, *_ in row(kept)] == [0, 1]  # i3 was bought; i0 only seen
    everything = fuse(art, Request(users=np.array([0])), w, 10, exclude_seen=False, exclude_purchased=False)
    assert [i for i, *_ in row(everything)] == [3, 0, 1]


def test_recent_items_pull_their_neighbours_and_explain_them() -> None:
    similar = [[(4, 1.0), (5, 0.5)], [], [(5, 1.0)], [], [], []]
    # history: i2 most recent, then i0; the r-th latest item counts decay ** r
    art = artifact(history=[[(2, 0.0), (0, 0.0)]], similar=similar)
    f = fuse(art, Request(users=np.array([0])), weights(recent=1.0, recent_decay=0.5), 10)
    # i5: 1.0 (from i2) + 0.5 * 0.5 (from i0) = 1.25; i4: 0.5 * 1.0; normalised by the best, 1.25
    assert row(f) == [(5, 1.0, "recent"), (4, 0.4, "recent")]
    assert f.because[0][:2].tolist() == [2, 0]  # i5 mostly because of i2, i4 because of i0
    # behaviour since the training (fresh) comes first and is not shown again
    f2 = fuse(art, Request(users=np.array([0]), fresh=[np.array([4])]), weights(recent=1.0, recent_decay=0.5), 10)
    assert 4 not in f2.items[0]


def test_interest_tags_give_a_cold_start_feed() -> None:
    art = artifact(tag_popular=[[(3, 6.0), (0, 3.0)]])  # tag 0 ("x"): i3, i0
    f = fuse(art, Request(users=np.array([-1]), interests=[np.array([0])]), weights(interest=1.0), 10)
    assert row(f) == [(3, 1.0, "interest"), (0, 0.5, "interest")]


def test_detail_page_seed_is_never_recommended_and_type_filter_applies() -> None:
    similar = [[(1, 1.0), (0, 0.9)], [(0, 1.0), (2, 0.5)], [], [], [], []]
    cross = [[], [(4, 1.0), (3, 0.5)], [], [], [], []]
    art = artifact(similar=similar, cross=cross)
    req = Request(users=np.array([-1]), seed_items=np.array([1]))
    assert row(fuse(art, req, weights(similar=1.0, cross=1.0), 10)) == [
        (0, 1.0, "similar"), (4, 1.0, "cross"), (2, 0.5, "similar"), (3, 0.5, "cross")]
    req.type_code = 1
    assert [i for i, *_ in row(fuse(art, req, weights(similar=1.0, cross=1.0), 10))] == [4, 3]


def test_boost_multiplies_and_allowed_masks() -> None:
    art = artifact(popular=[[(1, 10.0), (2, 8.0), (3, 5.0)]])
    boost = np.ones(6, np.float32)
    boost[3] = 3.0
    allowed = np.array([True, False, True, True, True, True])
    f = fuse(art, Request(users=np.array([-1])), weights(popular=1.0), 10, allowed=allowed, boost=boost)
    assert row(f) == [(3, 1.5, "popular"), (2, 0.8, "popular")]


def test_diversity_discounts_repeated_types_and_categories() -> None:
    # candidates: i0 (a, k) 1.0, i1 (a, k) 0.9, i2 (a, m) 0.8, i4 (b, k) 0.5, i3 (b, -) 0.4
    f = Fused(np.array([[0, 1, 2, 4, 3]], np.int32), np.array([[1.0, 0.9, 0.8, 0.5, 0.4]], np.float32),
              np.zeros((1, 5), np.int8), np.full((1, 5), -1, np.int32))
    meta = items(6, types=["a", "b"], type_of=[0, 0, 0, 1, 1, 1], category=["k", "k", "m", None, "k", None])
    plain = diversify(f, meta.item_type, meta.category, 5, 0.0)
    assert plain.items[0].tolist() == [0, 1, 2, 4, 3]
    d = diversify(f, meta.item_type, meta.category, 5, 0.5)
    # after i0 (a, k): i1 0.9 * .25 = .225, i2 0.8 * .5 = .4, i4 0.5 * .5 = .25, i3 0.4 -> i2 and i3 tie at 0.4:
    # argmax takes the first, i2; then a again halves i1 (.1125), i4 .25 -> i3 0.4 (b) -> i4 .125 vs i1 .1125
    assert d.items[0].tolist() == [0, 2, 3, 4, 1]
    assert d.scores[0].tolist() == pytest.approx([1.0, 0.8, 0.4, 0.5, 0.9])  # the fused scores are kept
