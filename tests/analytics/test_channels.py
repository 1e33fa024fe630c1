"""Channels: first/last-touch attribution against pandas and by hand (Asia/Shanghai), costs, demo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.errors import UserloopError

RANGE = {"date_from": "2026-03-01", "date_to": "2026-03-02"}  # local: [2026-02-28T16:00Z, 2026-03-02T16:00Z)
START, END = pd.Timestamp("2026-02-28T16:00Z"), pd.Timestamp("2026-03-02T16:00Z")


@pytest.fixture
def shop(world: World) -> World:
    world.add([
        # u1: first touch douyin (before the range), wechat right before signing up, weibo on a later purchase
        {"distinct_id": "u1", "event": "pv", "ts": "2026-02-20T02:00:00", "channel": "douyin"},
        {"distinct_id": "u1", "event": "pv", "ts": "2026-03-01T02:00:00", "channel": "wechat"},
        {"distinct_id": "u1", "event": "sign_up", "ts": "2026-03-01T03:00:00"},
        {"distinct_id": "u1", "event": "purchase", "ts": "2026-03-02T01:00:00", "channel": "weibo",
         "properties": {"revenue": 100}},
        # anon a2 arrives from weibo at 00:30 local on Mar 1 (still Feb 28 in UTC), signs up as u2 (direct)
        {"distinct_id": "a2", "event": "pv", "ts": "2026-02-28T16:30:00", "channel": "weibo"},
        {"distinct_id": "u2", "event": "sign_up", "ts": "2026-02-28T17:00:00", "channel": "direct"},
        {"distinct_id": "u2", "event": "purchase", "ts": "2026-03-01T05:00:00", "properties": {"revenue": 50.5}},
        {"distinct_id": "u2", "event": "purchase", "ts": "2026-03-02T15:59:00", "properties": {"revenue": "20"}},
        {"distinct_id": "u2", "event": "purchase", "ts": "2026-03-02T16:00:00", "properties": {"revenue": 999}},  # Mar 3
        # u3: only outside the range (23:59 local on Feb 28, and Mar 3)
        {"distinct_id": "u3", "event": "pv", "ts": "2026-02-28T15:59:00", "channel": "search"},
        {"distinct_id": "u3", "event": "sign_up", "ts": "2026-03-02T16:30:00", "channel": "search"},
        # u4: no channel in the range; zhihu only after it
        {"distinct_id": "u4", "event": "pv", "ts": "2026-03-01T08:00:00"},
        {"distinct_id": "u4", "event": "pv", "ts": "2026-03-03T08:00:00", "channel": "zhihu"},
        # u5 registered long ago from wechat, buys in the range after a douyin visit
        {"distinct_id": "u5", "event": "sign_up", "ts": "2026-02-10T08:00:00", "channel": "wechat"},
        {"distinct_id": "u5", "event": "pv", "ts": "2026-03-01T09:00:00", "channel": "douyin"},
        {"distinct_id": "u5", "event": "purchase", "ts": "2026-03-01T09:10:00", "properties": {"revenue": 30}},
        # u6 never converts: wechat, then douyin, then an event without a channel
        {"distinct_id": "u6", "event": "pv", "ts": "2026-03-01T10:00:00", "channel": "wechat"},
        {"distinct_id": "u6", "event": "pv", "ts": "2026-03-02T10:00:00", "channel": "douyin"},
        {"distinct_id": "u6", "event": "pv", "ts": "2026-03-02T11:00:00"},
    ])
    world.merge("u2", "a2")
    return world


def expected(world: World, attribution: str, exclude: tuple[str, ...] = ()) -> pd.DataFrame:
    """The same rules in pandas: one value per person active in the range."""
    df = world.frame()
    df["ts"] = pd.to_datetime(df.ts, utc=True)
    df = df[df.ts < END].copy()
    df["v"] = df["channel"].where(~df["channel"].isin(exclude)) if "channel" in df else None
    inr = df[df.ts >= START]
    rows = []
    for pid, mine in inr.groupby("person_id"):
        conv = mine[mine.event.isin(["sign_up", "purchase"])]
        cutoff = conv.ts.min() if len(conv) else mine.ts.max()
        touches = df[(df.person_id == pid) & df.v.notna() & (df.ts <= cutoff)].sort_values("ts")
        value = "$none" if touches.empty else touches.v.iloc[0 if attribution == "first_touch" else -1]
        buys = mine[mine.event == "purchase"]
        revenue = pd.to_numeric(buys.properties.map(lambda p: p.get("revenue")), errors="coerce").sum()
        rows.append({"value": value, "registered": int((mine.event == "sign_up").any()),
                     "buyers": int(len(buys) > 0), "purchases": len(buys), "revenue": float(revenue)})
    out = pd.DataFrame(rows).groupby("value").agg(
        visitors=("value", "size"), registered=("registered", "sum"), buyers=("buyers", "sum"),
        purchases=("purchases", "sum"), revenue=("revenue", "sum"))
    return out


def got(r: dict[str, Any]) -> pd.DataFrame:
    cols = ["visitors", "registered", "buyers", "purchases", "revenue"]
    return pd.DataFrame(r["results"]).set_index("value")[cols].sort_index()


@pytest.mark.parametrize("attribution", ["first_touch", "last_touch"])
def test_attribution_matches_pandas(shop: World, attribution: str) -> None:
    r = shop.query(kind="channels", attribution=attribution, **RANGE)
    exp = expected(shop, attribution).sort_index()
    pd.testing.assert_frame_equal(got(r), exp, check_dtype=False, check_names=False)
    t = r["totals"]
    assert (t["visitors"], t["registered"], t["buyers"], t["purchases"]) == (5, 2, 3, 4)
    assert t["revenue"] == pytest.approx(200.5)  # 100 + 50.5 + "20" + 30; 999 is on Mar 3 local


def test_first_vs_last_touch_by_hand(shop: World) -> None:
    first = {x["value"]: x for x in shop.query(kind="channels", attribution="first_touch", **RANGE)["results"]}
    last = {x["value"]: x for x in shop.query(kind="channels", attribution="last_touch", **RANGE)["results"]}
    # first touch: u1 douyin (all history), u2 weibo (anon merged), u4 none, u5 wechat, u6 wechat
    assert {k: v["visitors"] for k, v in first.items()} == {"douyin": 1, "weibo": 1, "$none": 1, "wechat": 2}
    # last touch before the conversion point: u1 wechat (sign-up before the weibo purchase),
    # u2 direct (its sign-up carries it), u4 none (zhihu is after the range), u5 douyin, u6 douyin
    assert {k: v["visitors"] for k, v in last.items()} == {"wechat": 1, "direct": 1, "$none": 1, "douyin": 2}
    assert first["weibo"]["revenue"] == pytest.approx(70.5) and first["weibo"]["purchases"] == 2
    assert last["douyin"]["buyers"] == 1 and last["douyin"]["registered"] == 0
    assert first["wechat"]["registration_rate"] == 0 and first["wechat"]["purchase_rate"] == 0.5
    assert [x["value"] for x in shop.query(kind="channels", attribution="last_touch", **RANGE)["results"]] == [
        "douyin", "$none", "direct", "wechat"]  # visitors desc, then value


def test_exclude_values_gives_last_non_direct_touch(shop: World) -> None:
    r = shop.query(kind="channels", attribution="last_touch", exclude_values=["direct"], **RANGE)
    pd.testing.assert_frame_equal(got(r), expected(shop, "last_touch", ("direct",)).sort_index(),
                                  check_dtype=False, check_names=False)
    assert {x["value"]: x["visitors"] for x in r["results"]}["weibo"] == 1  # u2 again


def test_new_visitors_and_utm_dimension(world: World) -> None:
    world.add([
        {"distinct_id": "old", "event": "pv", "ts": "2026-02-01T00:00:00", "utm_source": "baidu"},
        {"distinct_id": "old", "event": "pv", "ts": "2026-03-01T00:00:00"},
        {"distinct_id": "new", "event": "pv", "ts": "2026-03-01T00:00:00", "utm_source": "baidu"},
        {"distinct_id": "new", "event": "pv", "ts": "2026-03-01T01:00:00", "utm_source": "bing"},
    ])
    r = world.query(kind="channels", dimension="utm_source", **RANGE)
    assert [(x["value"], x["visitors"], x["new_visitors"]) for x in r["results"]] == [("baidu", 2, 1)]
    r = world.query(kind="channels", dimension="utm_source", attribution="last_touch", **RANGE)
    assert [(x["value"], x["visitors"], x["new_visitors"]) for x in r["results"]] == [("baidu", 1, 0), ("bing", 1, 1)]


def test_costs(shop: World) -> None:
    r = shop.query(kind="channels", attribution="last_touch", **RANGE, costs=[
        {"channel": "douyin", "cost": 100}, {"channel": "douyin", "cost": 50},
        {"channel": "direct", "cost": 35.5}, {"channel": "bilibili", "cost": 70},
    ])
    rows = {x["value"]: x for x in r["results"]}
    d = rows["douyin"]  # u5 (buyer, 30) and u6: 2 visitors, 0 registered, 1 buyer
    assert d["cost"] == 150 and d["cost_per_registered"] is None and d["cost_per_buyer"] == 150
    assert d["roi"] == pytest.approx(30 / 150)
    direct = rows["direct"]  # u2: registered, buyer, revenue 70.5
    assert direct["cost_per_registered"] == pytest.approx(35.5) and direct["roi"] == pytest.approx(70.5 / 35.5)
    b = rows["bilibili"]  # spend without visitors still shows
    assert (b["visitors"], b["cost"], b["cost_per_buyer"], b["roi"]) == (0, 70, None, 0)
    assert rows["wechat"]["cost"] is None and rows["wechat"]["roi"] is None
    t = r["totals"]
    assert t["cost"] == pytest.approx(255.5)
    # cost metrics of the totals count only the values that have a cost: douyin, direct, bilibili
    assert t["cost_per_registered"] == pytest.approx(255.5 / 1)
    assert t["cost_per_buyer"] == pytest.approx(255.5 / 2)
    assert t["roi"] == pytest.approx((30 + 70.5) / 255.5)
    assert [x["value"] for x in r["results"]][-1] == "bilibili"


def test_limit_folds_the_rest_into_other(shop: World) -> None:
    r = shop.query(kind="channels", attribution="last_touch", limit=1, costs=[{"channel": "wechat", "cost": 9}], **RANGE)
    assert [(x["value"], x["visitors"], x["cost"]) for x in r["results"]] == [("douyin", 2, None), ("$other", 3, 9)]
    assert r["results"][1]["cost_per_registered"] == 9  # wechat's u1 registered
    assert r["totals"]["visitors"] == 5


def test_filters_and_empty_range(shop: World) -> None:
    r = shop.query(kind="channels", **RANGE, filters=[{"property": "distinct_id", "operator": "in", "value": ["u5", "u6"]}])
    assert {x["value"]: x["visitors"] for x in r["results"]} == {"wechat": 2}
    r = shop.query(kind="channels", date_from="2027-01-01", date_to="2027-01-02")
    assert r["results"] == [] and r["totals"]["visitors"] == 0 and r["totals"]["registration_rate"] is None


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"costs": [{"utm_source": "x", "cost": 1}]}, "bad_cost", "costs[0].utm_source"),
    ({"costs": [{"channel": "x", "cost": -1}]}, "bad_cost", "costs[0].cost"),
    ({"costs": [{"channel": "x", "cost": 1, "colour": 2}]}, "unknown_field", "costs[0].colour"),
    ({"dimension": "city"}, "invalid_field", "dimension"),
    ({"attribution": "linear"}, "invalid_field", "attribution"),
    ({"register_event": "nope"}, "unknown_event", "register_event"),
    ({"limit": 0}, "bad_limit", "limit"),
    ({"revenue_property": "amount"}, "unknown_property", "revenue_property"),
    ({"filters": [{"property": "colour", "value": "red"}]}, "unknown_property", "filters[0].property"),
])
def test_bad_queries_name_the_field(shop: World, body: dict, code: str, field: str) -> None:
    with pytest.raises(UserloopError) as exc:
        shop.query(kind="channels", **RANGE, **body)
    assert (exc.value.code, exc.value.field) == (code, field)


# -- the demo data set ------------------------------------------------------------------------------
DEMO_END = date(2026, 3, 15)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, int]]:
    from userloop.backend import LocalBackend
    from userloop.demo import load_demo

    backend = LocalBackend(tmp_path_factory.mktemp("demo") / "d.duckdb")
    result = load_demo(backend, users=200, days=30, seed=3, end=DEMO_END)
    yield backend, int(result["project"]["id"])
    backend.close()


def test_demo_is_consistent_with_trends(demo: tuple[Any, int]) -> None:
    backend, pid = demo
    body = {"project": pid, "date_from": "2026-02-20", "date_to": "2026-03-14"}

    def q(**kw: Any) -> dict[str, Any]:
        return backend.query(pid, json.dumps({**body, **kw}).encode())

    trends = q(kind="trends", interval="week", series=[
        {"event": "sign_up", "math": "uv"}, {"event": "purchase", "math": "uv"},
        {"event": "purchase"}, {"event": "purchase", "math": "sum", "property": "revenue"}])
    reg, buyers, purchases, revenue = (s["total"] for s in trends["results"])
    visitors = backend.store.query(
        "SELECT count(DISTINCT coalesce(o.person_id, e.person_id)) AS n FROM events e LEFT JOIN person_overrides o "
        "ON o.project_id = e.project_id AND o.distinct_id = e.distinct_id WHERE e.project_id = ? "
        "AND e.timestamp >= TIMESTAMPTZ '2026-02-19 16:00:00+00' AND e.timestamp < TIMESTAMPTZ '2026-03-14 16:00:00+00'",
        [pid])[0]["n"]
    for attribution in ("first_touch", "last_touch"):
        for dimension in ("channel", "utm_source", "utm_campaign", "referring_domain"):
            r = q(kind="channels", attribution=attribution, dimension=dimension, limit=1000)
            rows, t = r["results"], r["totals"]
            assert rows and t["visitors"] == visitors > 0
            assert (t["registered"], t["buyers"], t["purchases"]) == (reg, buyers, purchases)
            assert t["revenue"] == pytest.approx(revenue)
            for key in ("visitors", "new_visitors", "registered", "buyers", "purchases"):
                assert sum(x[key] for x in rows) == t[key]
            assert sum(x["revenue"] for x in rows) == pytest.approx(t["revenue"])
            for x in rows:
                assert x["registered"] <= x["visitors"] and x["buyers"] <= x["visitors"]
                assert x["new_visitors"] <= x["visitors"] and x["buyers"] <= x["purchases"]
    first = {x["value"] for x in q(kind="channels")["results"]}
    assert {"wechat", "direct"} <= first
