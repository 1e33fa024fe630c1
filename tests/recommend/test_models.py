"""Each recommender alone on hand-built data whose answer is worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.recommend.helpers import NOW, baskets, interactions, items
from userloop.recommend.data import HOUR
from userloop.recommend.models import RECOMMENDERS
from userloop.recommend.models.als import ALS
from userloop.recommend.models.ease import EASE
from userloop.recommend.models.itemsim import Content, Cooccurrence, Cosine, CrossType, ItemKNN
from userloop.recommend.models.people import People
from userloop.recommend.models.popular import Interest, Latest, Popular, Trending


def test_latest_scores_freshness_and_skips_unknown_or_future_items() -> None:
    # i0 made 24 h ago, i1 72 h ago, i2 unknown and never touched, i3 "made" in the future,
    # i4 unknown creation but first touched 48 h ago (its first interaction stands in)
    meta = items(5, created_hours_ago=[24, 72, None, -5, None])
    data = interactions(meta, [(0, 4, 48, 1, False), (0, 4, 10, 1, False)])
    m = Latest(half_life_days=3.0).fit(data)
    assert m.item_scores[0] == pytest.approx(2 ** (-1 / 3))
    assert m.item_scores[1] == pytest.approx(0.5)
    assert m.item_scores[4] == pytest.approx(2 ** (-2 / 3))
    assert np.isneginf(m.item_scores[2]) and np.isneginf(m.item_scores[3])
    order, _ = m.ranking()
    assert order.tolist() == [0, 4, 1]


def test_popular_is_time_decayed_per_type_and_per_tag() -> None:
    meta = items(4, types=["post", "course"], type_of=[0, 0, 1, 1], tags=[["x"], ["y"], ["x"], []])
    # (user, item, hours ago, weight): ages count from the middle of the event's hour
    data = interactions(meta, [
        (0, 0, 1, 1, False), (1, 0, 1, 1, False),   # i0: 2 x weight 1, 1 h ago
        (0, 1, 25, 3, False),                        # i1: weight 3, 25 h ago
        (2, 2, 49, 4, False),                        # i2: weight 4, 49 h ago
        (1, 3, 1, 0.5, False),                       # i3: weight 0.5, 1 h ago
    ])
    m = Popular(half_life_days=1.0).fit(data)

    def decayed(weight: float, hours_ago: float) -> float:  # the event's hour starts ``hours_ago`` before NOW
        return weight * 2 ** (-(hours_ago - 0.5) / 24)

    expected = [2 * decayed(1, 1), decayed(3, 25), decayed(4, 49), decayed(0.5, 1)]
    assert m.item_scores.tolist() == pytest.approx(expected)
    # 1.98, 1.52, 1.03, 0.49
    assert m.ranking()[0].tolist() == [0, 1, 2, 3]
    assert m.ranking(type_code=1)[0].tolist() == [2, 3]
    assert m.ranking(tag=meta.tag_code("x"))[0].tolist() == [0, 2]
    assert m.ranking(type_code=0, tag=meta.tag_code("y"))[0].tolist() == [1]
    # a window keeps only recent events
    w = Popular(half_life_days=1.0, window_days=1.5).fit(data)
    assert np.isneginf(w.item_scores[2]) and w.item_scores[1] == pytest.approx(decayed(3, 25))


def test_trending_is_growth_over_the_previous_window() -> None:
    meta = items(4)
    ev = []
    ev += [(0, 0, 2, 1, False)] * 4 + [(0, 0, 30, 1, False)]   # i0: 4 now, 1 before -> 5/2 - 1 = 1.5
    ev += [(0, 1, 3, 1, False)] * 2                             # i1: 2 now, 0 before -> 3/1 - 1 = 2.0
    ev += [(0, 2, 3, 1, False)]                                 # i2: 1 now: below min_events
    ev += [(0, 3, 3, 1, False)] * 3 + [(0, 3, 40, 1, False)] * 5  # i3: 3 now, 5 before: shrinking
    m = Trending(window_hours=24, min_events=2).fit(interactions(meta, ev))
    assert m.current.tolist() == [4, 2, 1, 3] and m.previous.tolist() == [1, 0, 0, 5]
    assert m.item_scores[0] == pytest.approx(1.5) and m.item_scores[1] == pytest.approx(2.0)
    assert np.isneginf(m.item_scores[2]) and np.isneginf(m.item_scores[3])
    assert m.ranking()[0].tolist() == [1, 0]


def test_interest_recommends_popular_items_of_the_chosen_tags() -> None:
    import scipy.sparse as sp

    meta = items(4, tags=[["x"], ["x", "y"], ["y"], ["z"]])
    # popularity (no decay to speak of): i0 5, i1 3, i2 4, i3 10
    ev = [(0, 0, 1, 5, False), (0, 1, 1, 3, False), (0, 2, 1, 4, False), (0, 3, 1, 10, False)]
    m = Interest(half_life_days=1e9).fit(interactions(meta, ev, n_users=2))
    picked = sp.csr_matrix(([1.0, 1.0], ([0, 0], [meta.tag_code("x"), meta.tag_code("y")])), shape=(2, 3))
    m.with_interests(picked)
    got = m.recommend(np.array([0]), 4, exclude=sp.csr_matrix((2, 4)))
    # x and y: i1 has both -> 3 * 2 = 6, i0 5 * 1, i2 4 * 1; i3 (z) is not one of them
    assert got.items[0].tolist() == [1, 0, 2, -1]
    assert got.scores[0][:3] == pytest.approx([6.0, 5.0, 4.0], rel=1e-5)
    assert (m.recommend(np.array([1]), 2, exclude=sp.csr_matrix((2, 4))).items == -1).all()  # no tags picked


# users: u0 {A,B,C}, u1 {A,B}, u2 {B,C}, u3 {A,D} with A=0 B=1 C=2 D=3
SETS = [[0, 1, 2], [0, 1], [1, 2], [0, 3]]


def test_cooccurrence_counts_people_who_touched_both() -> None:
    m = Cooccurrence().fit(baskets(items(4), SETS))
    got = m.similar(np.array([0]), 3, item_mask=np.ones(4, bool))
    # A with B: u0, u1 -> 2; with C: u0 -> 1; with D: u3 -> 1 (tie: lower index first)
    assert got.items[0].tolist() == [1, 2, 3] and got.scores[0].tolist() == [2.0, 1.0, 1.0]


def test_cosine_normalises_by_item_popularity() -> None:
    m = Cosine().fit(baskets(items(4), SETS))
    got = m.similar(np.array([0]), 3, item_mask=np.ones(4, bool))
    # n_A = 3, n_B = 3, n_C = 2, n_D = 1: B 2/3, D 1/sqrt(3), C 1/sqrt(6)
    assert got.items[0].tolist() == [1, 3, 2]
    assert got.scores[0].tolist() == pytest.approx([2 / 3, 1 / math.sqrt(3), 1 / math.sqrt(6)], rel=1e-5)


def test_itemknn_sums_shrunk_similarities_over_the_history() -> None:
    data = baskets(items(4), SETS)
    m = ItemKNN(shrink=1.0, neighbours=10).fit(data)
    got = m.recommend(np.array([1]), 4)  # u1 saw A, B
    c = 1 / (math.sqrt(6) + 1) + 2 / (math.sqrt(6) + 1)  # from A (1 common) and B (2 common)
    d = 1 / (math.sqrt(3) + 1)  # from A only
    assert got.items[0].tolist() == [2, 3, -1, -1]
    assert got.scores[0][:2].tolist() == pytest.approx([c, d], rel=1e-5)
    # one neighbour per item: A keeps B, B keeps A (2/(3+1)) and... C and D vote only via their own lists
    one = m.pruned(1)
    assert one.sim.getnnz(axis=1).tolist() == [1, 1, 1, 1]
    assert one.sim[0].indices.tolist() == [1] and one.sim[3].indices.tolist() == [0]


def test_content_similarity_from_tags_for_items_nobody_touched() -> None:
    meta = items(4, tags=[["x", "y"], ["x", "y"], ["x"], ["z"]])
    m = Content().fit(baskets(meta, [[]], 1.0))
    got = m.similar(np.array([0]), 3)
    # idf = ln((1 + 4) / (1 + df)) + 1: x (df 3) 1.2231, y (df 2) 1.5108; i2 has only x
    x, y = math.log(5 / 4) + 1, math.log(5 / 3) + 1
    assert got.items[0].tolist() == [1, 2, -1]
    assert got.scores[0][:2].tolist() == pytest.approx([1.0, x / math.hypot(x, y)], rel=1e-5)


def test_crosstype_links_other_types_only() -> None:
    # p1=0, p2=1 posts, c1=2 a course, d1=3 a product; u0 {p1,c1}, u1 {p1,c1,d1}, u2 {p2,d1}
    meta = items(4, types=["post", "course", "product"], type_of=[0, 0, 1, 2])
    m = CrossType(content_weight=0.0).fit(baskets(meta, [[0, 2], [0, 2, 3], [1, 3]]))
    got = m.similar(np.array([0, 3]), 3)
    assert got.items[0].tolist() == [2, 3, -1]  # p1 -> c1 (2/2 = 1.0), d1 (1/2); never p2
    assert got.scores[0][:2].tolist() == pytest.approx([1.0, 0.5])
    assert got.items[1].tolist() == [1, 0, 2]  # d1 -> p2 (1/sqrt 2), p1 and c1 (1/2 each, lower index first)
    assert got.scores[1].tolist() == pytest.approx([1 / math.sqrt(2), 0.5, 0.5], rel=1e-5)


@pytest.mark.parametrize("cls", [ALS, EASE])
def test_factorisation_models_complete_a_cluster(cls: type) -> None:
    # items 0-3 are one taste, 4-7 another; ten people each; u20 lacks item 3, u21 lacks item 7
    sets = [[0, 1, 2, 3]] * 10 + [[4, 5, 6, 7]] * 10 + [[0, 1, 2], [4, 5, 6], []]
    data = baskets(items(8), sets)
    params = {"factors": 4, "iterations": 20, "regularization": 0.01, "alpha": 10.0} if cls is ALS else {"l2": 1.0}
    m = cls(**params).fit(data)
    got = m.recommend(np.array([20, 21, 22]), 2)
    assert got.items[0][0] == 3 and got.items[1][0] == 7
    assert (got.items[2] == -1).all()  # no history: nothing personal to say


def test_people_you_may_like_weighs_similarity_by_activity() -> None:
    # u0 {A,B}, u1 {A,B,C}, u2 {A}, u3 {D}
    m = People().fit(baskets(items(4), [[0, 1], [0, 1, 2], [0], [3]]))
    got = m.recommend(np.array([0]), 3)
    s1 = 2 / (math.sqrt(2) * math.sqrt(3)) * math.log1p(3)
    s2 = 1 / math.sqrt(2) * math.log1p(1)
    assert got.items[0].tolist() == [1, 2, -1]  # never oneself, never u3 (nothing in common)
    assert got.scores[0][:2].tolist() == pytest.approx([s1, s2], rel=1e-5)


def test_recommend_removes_seen_and_inactive_items() -> None:
    meta = items(4, active=[True, True, False, True])
    data = baskets(meta, [[0], [0, 1, 2, 3]])
    m = Popular(half_life_days=1e9).fit(data)  # i0 2, i1..i3 1 each
    got = m.recommend(np.array([0]), 4)
    assert got.items[0].tolist() == [1, 3, -1, -1]  # i0 seen, i2 inactive


def test_registry_names_every_recommender() -> None:
    assert sorted(RECOMMENDERS) == sorted(
        ["latest", "popular", "trending", "interest", "cooccurrence", "cosine", "content", "itemknn", "crosstype",
         "als", "ease", "people"])
    assert NOW == 1000 * HOUR
