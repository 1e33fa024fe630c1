"""Offline evaluation: metrics and splits worked out by hand; the public data sets load as documented."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from tests.conftest import require_shared
from tests.recommend.helpers import items
from userloop.recommend.evaluate import EventLog, evaluate, metrics, split


def test_metrics_by_hand() -> None:
    recs = np.array([[1, 2, 3], [4, 5, 6], [7, -1, -1]])
    relevant = sp.csr_matrix(([1, 1, 1, 1], ([0, 1, 1, 2], [2, 7, 4, 0])), shape=(3, 10))
    m = metrics(recs, relevant, 10)
    ndcg = [1 / math.log2(3), 1 / (1 + 1 / math.log2(3)), 0.0]  # row 1: 2 relevant, hit at rank 1
    assert m["ndcg@10"] == pytest.approx(sum(ndcg) / 3)
    assert m["hr@10"] == pytest.approx(2 / 3)
    assert m["recall@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["coverage"] == pytest.approx(7 / 10)  # items 1..7


def log(rows: list[tuple[int, int, float]], n_items: int = 4, n_users: int = 3) -> EventLog:
    a = np.array(rows, dtype=float)
    return EventLog(user=a[:, 0].astype(np.int64), item=a[:, 1].astype(np.int64), ts=a[:, 2],
                    weight=np.ones(len(a), np.float32), bought=np.zeros(len(a), bool),
                    users=np.array([f"u{i}" for i in range(n_users)], dtype=object), items=items(n_items))


def test_leave_last_out_holds_out_the_last_new_item() -> None:
    # u0: i0 at 1, i1 at 2, i0 again at 5 -> the last *new* item is i1; u1: only i2 -> not tested;
    # u2: i3 at 3, i2 at 4
    s = split(log([(0, 0, 1), (0, 1, 2), (0, 0, 5), (1, 2, 1), (2, 3, 3), (2, 2, 4)]), "loo")
    assert s.users.tolist() == [0, 2]
    assert s.relevant.toarray().tolist() == [[0, 1, 0, 0], [0, 0, 1, 0]]
    train = {(int(u), int(i)) for u, i in zip(s.train.pair_user, s.train.pair_item, strict=True)}
    assert train == {(0, 0), (1, 2), (2, 3)}
    assert s.train.now == 5 + 1 and s.new_users == 0


def test_time_split_cuts_all_users_at_one_time() -> None:
    # times 1..10: the cut is the 0.8 quantile, 8.2
    rows = [(0, 0, 1), (0, 1, 2), (1, 0, 3), (1, 1, 4), (0, 2, 5), (1, 2, 6), (0, 0, 7), (0, 3, 9), (2, 1, 10), (1, 1, 8)]
    s = split(log(rows), "time")
    assert s.train.now == pytest.approx(8.2)
    # u0: i3 is new after the cut (i0 again is not); u2 is new and touched i1
    assert s.users.tolist() == [0, 2]
    assert s.relevant.toarray().tolist() == [[0, 0, 0, 1], [0, 1, 0, 0]]
    assert s.new_users == 1


def test_movielens_100k_loads_and_evaluates() -> None:
    from userloop.recommend.datasets import movielens_100k

    data = movielens_100k(require_shared("movielens_100k"))
    assert (len(data.user), len(data.users), data.items.n, len(data.items.tag_names)) == (100_000, 943, 1682, 19)
    assert str(data.items.title[0]) == "Toy Story (1995)" and data.items.tags[0].indices.tolist() == [3, 4, 5]
    r = evaluate(data, "time", tune=False, models=("popular",))
    # test persons without any rating before the cut, counted independently
    cut = np.quantile(data.ts, 0.8)
    before = set(data.user[data.ts < cut].tolist())
    test_users = set(data.user[data.ts >= cut].tolist())
    assert r["test_users"] == len(test_users) and r["new_test_users"] == len(test_users - before)
    assert [row["recommender"] for row in r["rows"]] == ["popular", "default (blend)"]


def test_taobao_sample_loads_without_out_of_window_rows() -> None:
    from userloop.recommend.datasets import taobao

    data = taobao(require_shared("taobao_userbehavior"))
    assert len(data.user) == 84_475 - 35 and len(data.users) == 815
    assert int(data.bought.sum()) == int((data.weight == 4).sum())
    assert data.ts.min() >= 1511539200 and data.ts.max() < 1512316800
