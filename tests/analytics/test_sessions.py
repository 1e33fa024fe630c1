"""Sessions (visits) against hand-computed values and an independent pandas sessionisation.

Hand-built events live in an Asia/Shanghai project; the range 2026-03-01..03 (local) is
[2026-02-28T16:00Z, 2026-03-03T16:00Z). The pandas reference sorts each person's events by
(timestamp, message id), starts a visit at a gap >= the timeout, and keeps visits whose first
event is inside the range.
"""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.errors import UserloopError

DAYS = ["2026-03-01", "2026-03-02", "2026-03-03"]
RANGE = (pd.Timestamp("2026-02-28T16:00Z"), pd.Timestamp("2026-03-03T16:00Z"))
PAGEVIEWS = ("$pageview", "$screen")


def visits_frame(
    df: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    timeout_minutes: float = 30,
    pageviews: tuple[str, ...] | None = PAGEVIEWS,
    page: str = "path",
    breakdown: str | None = None,
    tz: str = "Asia/Shanghai",
    freq: str = "D",
) -> pd.DataFrame:
    """One row per visit starting in [start, end): person, bucket, pvs, duration, entry, exit, bd."""
    df = df.copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df = df.sort_values(["person_id", "ts", "message_id"]).reset_index(drop=True)
    gap = df.groupby("person_id")["ts"].diff()
    new = gap.isna() | (gap >= pd.Timedelta(minutes=timeout_minutes))
    df["vid"] = new.astype(int).groupby(df["person_id"]).cumsum()
    df["pv"] = True if pageviews is None else df["event"].isin(pageviews)
    if page not in df:
        df[page] = None
    df["page"] = df[page].where(df[page].notna(), "$none")
    keys = ["person_id", "vid"]
    v = df.groupby(keys).agg(start=("ts", "min"), last=("ts", "max"), pvs=("pv", "sum"))
    pv = df[df["pv"]]
    v["entry"] = pv.drop_duplicates(keys, keep="first").set_index(keys)["page"]
    v["exit"] = pv.drop_duplicates(keys, keep="last").set_index(keys)["page"]
    if breakdown:
        first = df.drop_duplicates(keys, keep="first").set_index(keys)
        v["bd"] = first[breakdown].where(first[breakdown].notna(), "$none")
    v = v[(v["start"] >= start) & (v["start"] < end)].reset_index()
    local = v["start"].dt.tz_convert(tz).dt.tz_localize(None)
    v["bucket"] = (local.dt.to_period("W").dt.start_time if freq == "W" else local.dt.floor("D")).dt.strftime("%Y-%m-%d")
    v["duration"] = (v["last"] - v["start"]).dt.total_seconds()
    v["bounce"] = v["pvs"] == 1
    return v


def metrics(v: pd.DataFrame) -> dict[str, float]:
    n = len(v)
    if not n:
        return {"visits": 0, "visitors": 0, "pageviews": 0, "bounces": 0, "depth": 0, "avg_duration_seconds": 0,
                "bounce_rate": 0}  # fmt: skip
    return {
        "visits": n,
        "visitors": v["person_id"].nunique(),
        "pageviews": int(v["pvs"].sum()),
        "bounces": int(v["bounce"].sum()),
        "depth": v["pvs"].sum() / n,
        "avg_duration_seconds": v["duration"].sum() / n,
        "bounce_rate": v["bounce"].sum() / n,
    }


def assert_matches(result: dict, v: pd.DataFrame, dates: list[str], limit: int = 10) -> None:
    assert result["dates"] == dates
    for i, d in enumerate(dates):
        expect = metrics(v[v["bucket"] == d])
        for k, x in expect.items():
            assert result[k][i] == pytest.approx(x), (d, k)
    for k, x in metrics(v).items():
        assert result["total"][k] == pytest.approx(x), k
    for col, key in (("entry", "entry_pages"), ("exit", "exit_pages")):
        counts = v[v[col].notna()].groupby(col).size()
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
        assert [(p["page"], p["visits"]) for p in result[key]] == top, key
    bounces = v[v["entry"].notna()].groupby("entry")["bounce"].sum()
    for p in result["entry_pages"]:
        assert p["bounces"] == bounces[p["page"]]


_ids = itertools.count()


def pv(did: str, ts: str, path: str | None = None, event: str = "$pageview", **extra: object) -> dict:
    # explicit message ids: World.add's default ids repeat across calls
    return {"distinct_id": did, "event": event, "ts": ts, "path": path, "message_id": f"s{next(_ids)}", **extra}


@pytest.fixture
def site(world: World) -> World:
    world.add([
        # 29:59 keeps the visit, 30:00 starts a new one
        pv("p", "2026-03-01T02:00:00", "/home", channel="wechat"),
        pv("p", "2026-03-01T02:29:59", "/a", channel="direct"),
        pv("p", "2026-03-01T02:59:59", "/b", channel="search"),
        # one page view and a click: a bounce that lasts 5 minutes
        pv("q", "2026-03-01T05:00:00", "/home", channel="direct"),
        pv("q", "2026-03-01T05:05:00", None, event="click"),
        # anonymous then logged in: one visit after the merge
        pv("anon", "2026-03-02T03:00:00", "/landing", channel="wechat"),
        pv("u", "2026-03-02T03:10:00", "/login", event="login"),
        pv("u", "2026-03-02T03:12:00", "/course"),
        # 23:50 -> 00:10 local: the visit belongs to Mar 1; 50 minutes later a Mar 2 visit
        pv("tz", "2026-03-01T15:50:00", "/x", channel="search"),
        pv("tz", "2026-03-01T16:10:00", "/y"),
        pv("tz", "2026-03-01T17:00:00", "/z", channel="search"),
        # under way before the range (23:45 local Feb 28): not counted
        pv("early", "2026-02-28T15:45:00", "/old"),
        pv("early", "2026-02-28T16:05:00", "/cont"),
        pv("early", "2026-02-28T16:20:00", "/cont2"),
        # 40 minutes after an old event, at local midnight: a Mar 1 visit
        pv("early2", "2026-02-28T15:20:00", "/old"),
        pv("early2", "2026-02-28T16:00:00", "/new", channel="direct"),
        # starts 23:50 Mar 3 local, ends after the range: counted in full; its successor is not
        pv("late", "2026-03-03T15:50:00", "/l1", channel="direct"),
        pv("late", "2026-03-03T16:15:00", "/l2"),
        pv("late", "2026-03-03T16:50:00", "/l3"),
        # no page view at all: a visit with 0 page views, not a bounce
        pv("srv", "2026-03-03T08:00:00", None, event="purchase"),
        # out of order: the last event arrives first
        pv("ooo", "2026-03-02T10:20:00", "/third", channel="wechat"),
    ])
    world.add([pv("ooo", "2026-03-02T10:00:00", "/first", channel="search"), pv("ooo", "2026-03-02T10:10:00", "/second")])
    world.merge("u", "anon")
    return world


def test_hand_computed_days(site: World) -> None:
    r = site.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-03")
    assert r["pageview_events"] == ["$pageview", "$screen"]
    (res,) = r["results"]
    assert res["dates"] == DAYS
    # Mar 1: p x2, q, tz (23:50), early2 (00:00); Mar 2: anon+u, tz (01:00), ooo; Mar 3: late, srv
    assert res["visits"] == [5, 3, 2]
    assert res["visitors"] == [4, 3, 2]
    assert res["pageviews"] == [7, 6, 2]
    assert res["bounces"] == [3, 1, 0]
    assert res["avg_duration_seconds"] == [pytest.approx((1799 + 0 + 300 + 1200 + 0) / 5), 640, 750]
    assert res["depth"] == [7 / 5, 2, 1]
    assert res["bounce_rate"] == [3 / 5, 1 / 3, 0]
    assert res["total"] == {"visits": 10, "visitors": 8, "pageviews": 15, "bounces": 4, "depth": 1.5,
                            "avg_duration_seconds": pytest.approx(6719 / 10), "bounce_rate": 0.4}  # fmt: skip
    assert res["entry_pages"][0] == {"page": "/home", "visits": 2, "share": 0.2, "bounces": 1, "bounce_rate": 0.5}
    assert [p["page"] for p in res["entry_pages"]] == ["/home", "/b", "/first", "/l1", "/landing", "/new", "/x", "/z"]
    exits = {p["page"]: p["visits"] for p in res["exit_pages"]}
    assert exits == {"/a": 1, "/b": 1, "/home": 1, "/y": 1, "/new": 1, "/course": 1, "/z": 1, "/third": 1, "/l2": 1}
    v = visits_frame(site.frame(), *RANGE)
    assert_matches(res, v, DAYS)


def test_boundary_gap_and_timeout_option(site: World) -> None:
    r = site.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-01", timeout_minutes=20)
    (res,) = r["results"]
    v = visits_frame(site.frame(), RANGE[0], RANGE[0] + pd.Timedelta(days=1), timeout_minutes=20)
    # at 20 minutes p's 29:59 gap splits too (3 visits), and the 20-minute gap of early's visit under way
    # at the start of the range splits exactly there, so that visit now starts inside the range
    assert res["visits"] == [7]
    assert_matches(res, v, DAYS[:1])
    r = site.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-01", timeout_minutes=30.0 + 1 / 60)
    assert r["results"][0]["visits"] == [4]  # at 30:01 the 30:00 gap no longer splits


def test_pageview_events_option(site: World) -> None:
    r = site.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-03", pageview_events="all")
    (res,) = r["results"]
    assert r["pageview_events"] == "all"
    assert_matches(res, visits_frame(site.frame(), *RANGE, pageviews=None), DAYS)
    assert res["total"]["bounces"] == 4  # p's 2nd, tz's 2nd, early2, srv (q now has 2 views)
    r = site.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-03", pageview_events=["login", "click"])
    (res,) = r["results"]
    assert_matches(res, visits_frame(site.frame(), *RANGE, pageviews=("login", "click")), DAYS)
    assert res["total"]["pageviews"] == 2 and res["entry_pages"] == [
        {"page": "$none", "visits": 1, "share": 0.1, "bounces": 1, "bounce_rate": 1.0},
        {"page": "/login", "visits": 1, "share": 0.1, "bounces": 1, "bounce_rate": 1.0},
    ]


def test_breakdown_week_and_filters(site: World) -> None:
    r = site.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-03", interval="week",
                   breakdown={"property": "channel", "limit": 2}, pages_limit=3)
    v = visits_frame(site.frame(), *RANGE, breakdown="channel", freq="W")
    got = {x["breakdown_value"]: x for x in r["results"]}
    # first events: direct (q, early2, late), search (p's 2nd, tz x2, ooo), wechat (p's 1st, anon), none (srv)
    assert [x["breakdown_value"] for x in r["results"]] == ["search", "direct", "$other"]
    v["bd"] = v["bd"].where(v["bd"].isin(["search", "direct"]), "$other")
    for value, res in got.items():
        assert_matches(res, v[v["bd"] == value], ["2026-02-23", "2026-03-02"], limit=3)
    r = site.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-03",
                   filters=[{"property": "path", "operator": "contains", "value": "/l"}])
    df = site.frame()
    df = df[df["path"].fillna("").str.contains("/l")]
    assert_matches(r["results"][0], visits_frame(df, *RANGE), DAYS)
    assert r["results"][0]["visits"] == [0, 1, 1]  # /landing + /login; /l1 + /l2


def test_no_events_gives_zero_intervals(world: World) -> None:
    world.add([pv("a", "2026-01-01T00:00:00", "/")])
    r = world.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-02")
    (res,) = r["results"]
    assert res["visits"] == [0, 0] and res["total"]["visits"] == 0 and res["entry_pages"] == []


def test_random_events_match_pandas(world: World) -> None:
    rnd = random.Random(7)
    rows = []
    gaps = [timedelta(minutes=30), timedelta(minutes=29, seconds=59), timedelta(seconds=1), timedelta(0),
            timedelta(minutes=5), timedelta(hours=3), timedelta(minutes=31)]  # fmt: skip
    for p in range(40):
        t = datetime(2026, 2, 28, 12, tzinfo=UTC) + timedelta(minutes=rnd.randrange(0, 600))
        for _ in range(rnd.randrange(1, 30)):
            t += rnd.choice(gaps)
            did = f"u{p}" if rnd.random() < 0.6 else f"anon{p}"
            rows.append(pv(did, t.isoformat(), rnd.choice(["/", "/a", "/b", "/c", None]),
                           event=rnd.choice(["$pageview", "$pageview", "$screen", "click"]),
                           channel=rnd.choice(["wechat", "search", None])))  # fmt: skip
    rnd.shuffle(rows)
    world.add(rows[: len(rows) // 2])
    world.add(rows[len(rows) // 2 :])
    for p in range(0, 40, 3):
        world.merge(f"u{p}", f"anon{p}")
    df = world.frame()
    r = world.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-03", breakdown="channel")
    v = visits_frame(df, *RANGE, breakdown="channel")
    assert sum(x["total"]["visits"] for x in r["results"]) == len(v) > 100
    for res in r["results"]:
        assert_matches(res, v[v["bd"] == res["breakdown_value"]], DAYS)
    r = world.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-03", timeout_minutes=10, pages_limit=2)
    assert_matches(r["results"][0], visits_frame(df, *RANGE, timeout_minutes=10), DAYS, limit=2)


@pytest.mark.parametrize(("extra", "code", "field"), [
    ({"timeout_minutes": 0}, "bad_timeout", "timeout_minutes"),
    ({"pageview_events": []}, "bad_pageview_events", "pageview_events"),
    ({"pageview_events": ["$pageview", "nope"]}, "unknown_event", "pageview_events[1]"),
    ({"pageview_events": "some"}, "invalid_field", "pageview_events"),
    ({"pages_limit": 0}, "bad_limit", "pages_limit"),
    ({"interval": "year"}, "invalid_field", "interval"),
    ({"colour": 1}, "unknown_field", "colour"),
    ({"page_property": "nope"}, "unknown_property", "page_property"),
    ({"page_property": ["path", "nope"]}, "unknown_property", "page_property[1]"),
    ({"breakdown": "nope"}, "unknown_property", "breakdown"),
    ({"filters": [{"property": "nope", "value": 1}]}, "unknown_property", "filters[0].property"),
])
def test_bad_queries_name_the_field(site: World, extra: dict, code: str, field: str) -> None:
    with pytest.raises(UserloopError) as exc:
        site.query(kind="sessions", date_from="2026-03-01", date_to="2026-03-03", **extra)
    assert (exc.value.code, exc.value.field) == (code, field)


def test_taobao_visits_per_day_match_pandas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import require_shared
    from userloop.backend import LocalBackend
    from userloop.ingest.files import ImportSpec, iter_chunks

    path = require_shared("taobao_userbehavior", "userbehavior_head_sample.csv")
    b = LocalBackend(tmp_path / "tb.duckdb")
    try:
        project = b.create_project("tb", "Asia/Shanghai")
        for chunk in iter_chunks(ImportSpec(path=path, project_id=project["id"], preset="taobao")):
            b.import_table(project["id"], chunk)
        body = {"kind": "sessions", "project": project["id"], "date_from": "2017-11-25", "date_to": "2017-12-03"}
        r = b.query(project["id"], json.dumps(body).encode())
    finally:
        b.close()
    df = pd.read_csv(path, header=None, names=["user", "item", "cat", "event", "ts"])
    df["person_id"] = df["user"]
    df["message_id"] = df.index  # ties do not change these metrics
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    start = pd.Timestamp("2017-11-24T16:00Z")
    v = visits_frame(df, start, start + pd.Timedelta(days=9), pageviews=None, page="item")
    days = [(date(2017, 11, 25) + timedelta(days=i)).isoformat() for i in range(9)]
    assert r["pageview_events"] == "all"  # no $pageview in this log: every action is a view
    (res,) = r["results"]
    for i, d in enumerate(days):
        expect = metrics(v[v["bucket"] == d])
        for k, x in expect.items():
            assert res[k][i] == pytest.approx(x), (d, k)
    assert res["total"]["visits"] == len(v) > 5000
    assert res["total"]["visitors"] == v["person_id"].nunique()
