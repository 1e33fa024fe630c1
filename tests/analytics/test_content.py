"""Content: per-article reads, readers, shares, new users by shares and conversions, against pandas
and by hand (Asia/Shanghai edges, identity merges, windows), and on the demo data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.errors import UserloopError
from userloop.ingest.event import ItemOp

RANGE = {"date_from": "2026-03-01", "date_to": "2026-03-02"}  # local: [2026-02-28T16:00Z, 2026-03-02T16:00Z)
START, END = pd.Timestamp("2026-02-28T16:00Z"), pd.Timestamp("2026-03-02T16:00Z")
METRICS = ["reads", "readers", "shares", "sharers", "conversions"]


@pytest.fixture
def articles(world: World) -> World:
    world.add([
        # ra reads A from 00:05 local on Mar 1 (Feb 28 in UTC), shares it, signs up as ru
        {"distinct_id": "ra", "event": "view_article", "ts": "2026-02-28T16:05:00", "properties": {"article_id": "A"}},
        {"distinct_id": "ra", "event": "view_article", "ts": "2026-03-01T01:00:00", "properties": {"article_id": "A"}},
        {"distinct_id": "ra", "event": "read_article", "ts": "2026-03-01T01:02:00", "properties": {"article_id": "A"}},
        {"distinct_id": "ra", "event": "share", "ts": "2026-03-01T01:10:00", "properties": {"item_id": "A"}},
        {"distinct_id": "ru", "event": "sign_up", "ts": "2026-03-01T02:00:00"},
        # rb: A at 23:59 local on Feb 28 (outside), B and A in the range, signs up 8 days after A
        {"distinct_id": "rb", "event": "view_article", "ts": "2026-02-28T15:59:00", "properties": {"article_id": "A"}},
        {"distinct_id": "rb", "event": "view_article", "ts": "2026-03-01T05:00:00", "properties": {"article_id": "B"}},
        {"distinct_id": "rb", "event": "view_article", "ts": "2026-03-01T06:00:00", "properties": {"article_id": "A"}},
        {"distinct_id": "rb", "event": "sign_up", "ts": "2026-03-09T06:00:00"},
        # rc: B at 23:59 local on Mar 2 (in) and 00:00 on Mar 3 (out); shares B, then a share naming C
        {"distinct_id": "rc", "event": "view_article", "ts": "2026-03-02T15:59:00", "properties": {"article_id": "B"}},
        {"distinct_id": "rc", "event": "view_article", "ts": "2026-03-02T16:00:00", "properties": {"article_id": "B"}},
        {"distinct_id": "rc", "event": "share", "ts": "2026-03-02T15:59:10", "properties": {"item_id": "B"}},
        {"distinct_id": "rc", "event": "share", "ts": "2026-03-02T15:59:20", "properties": {"item_id": "B", "article_id": "C"}},
        # newcomers: nA lands on A naming the anonymous ra and signs up; nB names ru (no article: ru's
        # latest share, A); nC arrives between rc's two shares (B); nX names nobody known
        {"distinct_id": "nA", "event": "view_article", "ts": "2026-03-01T03:00:00",
         "properties": {"article_id": "A", "inviter_id": "ra"}},
        {"distinct_id": "nA", "event": "sign_up", "ts": "2026-03-01T03:30:00"},
        {"distinct_id": "nB", "event": "$pageview", "ts": "2026-03-02T04:00:00", "properties": {"inviter_id": "ru"}},
        {"distinct_id": "nC", "event": "$pageview", "ts": "2026-03-02T15:59:15", "properties": {"inviter_id": "rc"}},
        {"distinct_id": "nX", "event": "view_article", "ts": "2026-03-01T07:00:00",
         "properties": {"article_id": "A", "inviter_id": "ghost"}},
    ], ops=[ItemOp(project_id=world.project.id, item_type="article", item_id="A", op="set",
                   properties={"title": "Alpha"})])
    world.merge("ru", "ra")
    return world


def expected(world: World, reads: tuple[str, ...] = ("view_article",), window: int = 7 * 86400) -> pd.DataFrame:
    df = world.frame()
    df["ts"] = pd.to_datetime(df.ts, utc=True)
    props = df.properties.map(lambda p: p if isinstance(p, dict) else {})
    df["cid"] = props.map(lambda p: p.get("article_id"))
    df["share_cid"] = props.map(lambda p: p.get("article_id") or p.get("item_id"))
    inr = df[(df.ts >= START) & (df.ts < END)]
    r = inr[inr.event.isin(reads) & inr.cid.notna()]
    s = inr[(inr.event == "share") & inr.share_cid.notna()]
    signups = df[df.event == "sign_up"]
    first = r.groupby(["cid", "person_id"]).ts.min().reset_index()

    def converted(row: pd.Series) -> bool:
        mine = signups[(signups.person_id == row.person_id) & (signups.ts >= row.ts)]
        return bool(len(mine)) and (mine.ts.min() - row.ts).total_seconds() <= window

    first["conv"] = first.apply(converted, axis=1) if len(first) else []
    out = pd.DataFrame({
        "reads": r.groupby("cid").size(),
        "readers": r.groupby("cid").person_id.nunique(),
        "shares": s.groupby("share_cid").size(),
        "sharers": s.groupby("share_cid").person_id.nunique(),
        "conversions": first[first.conv].groupby("cid").size(),
    }).fillna(0).astype(int)
    out.loc["total"] = [len(r), r.person_id.nunique(), len(s), s.person_id.nunique(),
                        first[first.conv].person_id.nunique()]
    return out


def table(res: dict[str, Any]) -> pd.DataFrame:
    rows = [*res["results"], {**res["totals"], "content_id": "total"}]
    return pd.DataFrame(rows).set_index("content_id")


def test_matches_pandas(articles: World) -> None:
    r = articles.query(kind="content", **RANGE)
    got = table(r)
    exp = expected(articles).reindex(got.index)
    pd.testing.assert_frame_equal(got[METRICS], exp, check_dtype=False, check_names=False)
    assert r["read_events"] == ["view_article"]


def test_by_hand(articles: World) -> None:
    r = articles.query(kind="content", **RANGE)
    rows = {x["content_id"]: x for x in r["results"]}
    assert list(rows) == ["A", "B", "C"]  # by reads
    a, b, c = rows["A"], rows["B"], rows["C"]
    # A: ra (2, merged with ru), rb (1), nA (1), nX (1); shared once by ra; nA and nB brought by shares
    assert (a["reads"], a["readers"], a["shares"], a["sharers"], a["new_users"], a["conversions"]) == (5, 4, 1, 1, 2, 2)
    assert a["title"] == "Alpha" and a["conversion_rate"] == 0.5 and a["share_rate"] == 0.2
    # B: rb and rc (rc's Mar 3 read is outside); nC came between rc's share of B and its share of C
    assert (b["reads"], b["readers"], b["shares"], b["new_users"], b["conversions"], b["conversion_rate"]) == (2, 2, 1, 1, 0, 0)
    assert b["title"] is None
    assert (c["reads"], c["shares"], c["sharers"], c["new_users"], c["conversion_rate"], c["share_rate"]) == (0, 1, 1, 0, None, None)
    t = r["totals"]
    assert (t["reads"], t["readers"], t["shares"], t["sharers"], t["new_users"], t["conversions"]) == (7, 5, 3, 2, 3, 2)
    assert t["conversion_rate"] == pytest.approx(2 / 5)


def test_window_and_read_events(articles: World) -> None:
    # rb signed up exactly 8 days after first reading A (counts) and 8 days 1 hour after B (does not)
    r = articles.query(kind="content", window_seconds=8 * 86400, **RANGE)
    assert [(x["content_id"], x["conversions"]) for x in r["results"]] == [("A", 3), ("B", 0), ("C", 0)]
    exp = expected(articles, window=8 * 86400)
    assert r["totals"]["conversions"] == exp.loc["total", "conversions"] == 3
    r = articles.query(kind="content", read_event=["view_article", "read_article"], **RANGE)
    exp = expected(articles, reads=("view_article", "read_article"))
    pd.testing.assert_frame_equal(table(r)[METRICS], exp.reindex(table(r).index), check_dtype=False, check_names=False)
    assert r["results"][0]["reads"] == 6
    r = articles.query(kind="content", read_event="read_article", **RANGE)
    assert [(x["content_id"], x["reads"], x["readers"]) for x in r["results"]][0] == ("A", 1, 1)


def test_sort_limit_and_content_ids(articles: World) -> None:
    def order(**kw: Any) -> list[str]:
        return [x["content_id"] for x in articles.query(kind="content", **RANGE, **kw)["results"]]

    assert order(sort="new_users") == ["A", "B", "C"]
    assert order(sort="conversion_rate") == ["A", "B", "C"]  # null last
    assert order(sort="shares") == ["A", "B", "C"]  # ties by id
    assert order(sort="shares", limit=2) == ["A", "B"]
    r = articles.query(kind="content", content_ids=["B", "C"], **RANGE)
    assert [x["content_id"] for x in r["results"]] == ["B", "C"]
    t = r["totals"]
    assert (t["reads"], t["readers"], t["shares"], t["new_users"], t["conversions"]) == (2, 2, 2, 1, 0)


def test_default_read_event_falls_back_to_read_article(world: World) -> None:
    world.add([{"distinct_id": "x", "event": "read_article", "ts": "2026-03-01T00:00:00", "properties": {"article_id": "Q"}}])
    r = world.query(kind="content", **RANGE)
    assert r["read_events"] == ["read_article"] and r["results"][0]["reads"] == 1


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"read_event": "nope"}, "unknown_event", "read_event"),
    ({"read_event": ["view_article", "nope"]}, "unknown_event", "read_event[1]"),
    ({"conversion_event": "nope"}, "unknown_event", "conversion_event"),
    ({"sort": "title"}, "invalid_field", "sort"),
    ({"limit": 0}, "bad_limit", "limit"),
    ({"window_seconds": -5}, "bad_window", "window_seconds"),
    ({"content_property": "course_id"}, "unknown_property", "content_property"),
    ({"filters": [{"property": "colour", "value": "red"}]}, "unknown_property", "filters[0].property"),
])
def test_bad_queries_name_the_field(articles: World, body: dict, code: str, field: str) -> None:
    with pytest.raises(UserloopError) as exc:
        articles.query(kind="content", **RANGE, **body)
    assert (exc.value.code, exc.value.field) == (code, field)


# -- the demo data set ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, int]]:
    from userloop.backend import LocalBackend
    from userloop.demo import load_demo

    backend = LocalBackend(tmp_path_factory.mktemp("demo") / "d.duckdb")
    result = load_demo(backend, users=200, days=30, seed=3, end=date(2026, 3, 15))
    yield backend, int(result["project"]["id"])
    backend.close()


def test_demo_is_consistent_with_trends(demo: tuple[Any, int]) -> None:
    backend, pid = demo
    body = {"project": pid, "date_from": "2026-02-13", "date_to": "2026-03-14"}

    def q(**kw: Any) -> dict[str, Any]:
        return backend.query(pid, json.dumps({**body, **kw}).encode())

    trends = q(kind="trends", interval="month", series=[
        {"event": "view_article"}, {"event": "view_article", "math": "uv"},
        {"event": "share"}, {"event": "share", "math": "uv"}])
    views, viewers, shares, sharers = (s["total"] for s in trends["results"])
    r = q(kind="content", limit=10_000)
    rows, t = r["results"], r["totals"]
    assert rows and r["read_events"] == ["view_article"]
    assert (t["reads"], t["readers"], t["shares"], t["sharers"]) == (views, viewers, shares, sharers)
    assert t["new_users"] > 0 and t["conversions"] > 0
    for key in ("reads", "shares", "new_users"):
        assert sum(x[key] for x in rows) == t[key]
    for key in ("readers", "sharers", "conversions"):
        assert sum(x[key] for x in rows) >= t[key]
    for x in rows:
        assert x["readers"] <= x["reads"] and x["conversions"] <= x["readers"] and x["sharers"] <= x["shares"]
        assert x["title"]  # every demo article is in the catalogue
    assert [x["reads"] for x in rows] == sorted((x["reads"] for x in rows), reverse=True)
    # every person brought by a share named an inviter on their first event
    v = q(kind="virality", interval="month", window_seconds=366 * 86400)
    assert t["new_users"] <= v["totals"]["new_users"]
    assert q(kind="content", sort="new_users", limit=3)["results"][0]["new_users"] == max(x["new_users"] for x in rows)
