"""Trends against pandas on hand-built events (Asia/Shanghai buckets) and the Taobao sample."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.errors import UserloopError


def local(df: pd.DataFrame, tz: str = "Asia/Shanghai") -> pd.Series:
    return pd.to_datetime(df["ts"], utc=True).dt.tz_convert(tz)


@pytest.fixture
def shop(world: World) -> World:
    world.add([
        # 2026-03-01 23:30 Shanghai is 15:30 UTC: the day bucket is local
        {"distinct_id": "a", "event": "pv", "ts": "2026-03-01T15:30:00", "channel": "wechat", "properties": {"price": 10}},
        {"distinct_id": "a", "event": "pv", "ts": "2026-03-01T16:30:00", "channel": "wechat", "properties": {"price": 5}},
        {"distinct_id": "b", "event": "pv", "ts": "2026-03-01T16:31:00", "channel": "weibo", "properties": {"price": "7.5"}},
        {"distinct_id": "anon", "event": "pv", "ts": "2026-03-03T01:00:00", "channel": "weibo"},
        {"distinct_id": "c", "event": "pv", "ts": "2026-03-03T02:00:00", "channel": "douyin"},
        {"distinct_id": "c", "event": "buy", "ts": "2026-03-03T03:00:00", "properties": {"price": 99}},
        {"distinct_id": "a", "event": "pv", "ts": "2026-02-25T03:00:00", "channel": "wechat"},  # previous period
        {"distinct_id": "a", "event": "pv", "ts": "2026-03-05T00:00:00", "channel": "wechat"},  # after the range
    ])
    world.merge("b", "anon")  # anon's pv belongs to b now
    return world


def test_daily_counts_uv_and_zero_days(shop: World) -> None:
    r = shop.query(kind="trends", date_from="2026-03-01", date_to="2026-03-04",
                   series=[{"event": "pv"}, {"event": "pv", "math": "uv"}], interval="day")
    df = shop.frame()
    df = df[df.event == "pv"]
    df["day"] = local(df).dt.strftime("%Y-%m-%d")
    days = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    in_range = df[df.day.isin(days)]
    counts = in_range.groupby("day").size().reindex(days, fill_value=0)
    uv = in_range.groupby("day").person_id.nunique().reindex(days, fill_value=0)
    total, unique = r["results"]
    assert total["dates"] == days
    assert total["values"] == counts.tolist() == [1, 2, 2, 0]
    assert total["total"] == len(in_range) == 5
    assert unique["values"] == uv.tolist() == [1, 2, 2, 0]
    # distinct persons over the range: a, b(+anon), c -> 3, not the sum of the days (5)
    assert unique["total"] == in_range.person_id.nunique() == 3


def test_sum_avg_per_user_and_filters(shop: World) -> None:
    r = shop.query(kind="trends", date_from="2026-03-01", date_to="2026-03-03", interval="day", series=[
        {"event": "pv", "math": "sum", "property": "price"},
        {"event": "pv", "math": "avg", "property": "price"},
        {"event": "pv", "math": "per_user"},
        {"event": "pv", "filters": [{"property": "channel", "operator": "in", "value": ["weibo", "douyin"]}]},
        {"event": "pv", "filters": [{"property": "price", "operator": ">", "value": 6}]},
    ])
    s, a, per_user, filtered, priced = r["results"]
    assert s["values"] == [10.0, 12.5, 0.0] and s["total"] == 22.5
    assert a["values"] == [10.0, 6.25, 0] and a["total"] == pytest.approx(7.5)
    assert per_user["values"] == [1.0, 1.0, 1.0] and per_user["total"] == pytest.approx(5 / 3)
    assert filtered["values"] == [0, 1, 2] and filtered["total"] == 3
    assert priced["values"] == [1, 1, 0] and priced["total"] == 2


def test_breakdown_top_n_and_other(shop: World) -> None:
    r = shop.query(kind="trends", date_from="2026-03-01", date_to="2026-03-04", interval="week",
                   series=[{"event": "pv"}], breakdown={"property": "channel", "limit": 2})
    got = {x["breakdown_value"]: (x["dates"], x["values"], x["total"]) for x in r["results"]}
    # week of Monday 2026-02-23 holds Mar 1 (Sunday); Mar 2-4 fall in the week of Mar 2
    assert got == {
        "wechat": (["2026-02-23", "2026-03-02"], [1, 1], 2),
        "weibo": (["2026-02-23", "2026-03-02"], [0, 2], 2),
        "$other": (["2026-02-23", "2026-03-02"], [0, 1], 1),
    }
    assert [x["breakdown_value"] for x in r["results"]] == ["wechat", "weibo", "$other"]


def test_compare_previous_period(shop: World) -> None:
    r = shop.query(kind="trends", date_from="2026-03-01", date_to="2026-03-04", interval="day",
                   series=[{"event": "pv"}], compare=True)
    current, previous = r["results"]
    assert (current["compare"], previous["compare"]) == ("current", "previous")
    assert previous["dates"] == ["2026-02-25", "2026-02-26", "2026-02-27", "2026-02-28"]
    assert previous["values"] == [1, 0, 0, 0]


def test_hour_and_month_buckets(utc_world: World) -> None:
    utc_world.add([
        {"distinct_id": "x", "event": "e", "ts": "2026-01-31T23:59:59"},
        {"distinct_id": "x", "event": "e", "ts": "2026-02-01T00:00:00"},
    ])
    r = utc_world.query(kind="trends", date_from="2026-01-31", date_to="2026-02-01", interval="hour", series=[{"event": "e"}])
    vals = r["results"][0]["values"]
    assert len(vals) == 48 and vals[23] == 1 and vals[24] == 1 and sum(vals) == 2
    r = utc_world.query(kind="trends", date_from="2026-01-15", date_to="2026-02-10", interval="month", series=[{"event": "e"}])
    assert r["results"][0]["dates"] == ["2026-01-01", "2026-02-01"]
    assert r["results"][0]["values"] == [1, 1]


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"kind": "trends", "date_from": "2026-03-01", "date_to": "2026-03-04", "series": [{"event": "nope"}]}, "unknown_event", "series[0].event"),
    ({"kind": "trends", "date_from": "2026-03-04", "date_to": "2026-03-01", "series": [{"event": "pv"}]}, "bad_date_range", "date_to"),
    ({"kind": "trends", "date_from": "2026-03-01", "date_to": "2026-03-04", "series": []}, "series_empty", "series"),
    ({"kind": "trends", "date_from": "2026-03-01", "date_to": "2026-03-04", "series": [{"event": "pv", "math": "sum"}]}, "property_required", "series[0].property"),
    ({"kind": "trends", "date_from": "2026-03-01", "date_to": "2026-03-04", "series": [{"event": "pv"}], "colour": 1}, "unknown_field", "colour"),
    ({"kind": "trends", "date_from": "2026-03-01", "date_to": "2026-03-04", "series": [{"event": "pv", "math": "sum", "property": "prize"}]}, "unknown_property", "series[0].property"),
    ({"kind": "trends", "date_from": "2026-03-01", "date_to": "2026-03-04", "series": [{"event": "pv"}], "breakdown": {"property": "age", "type": "person"}}, "unknown_property", "breakdown"),
    ({"kind": "trends", "date_from": "2026-03-01", "date_to": "2026-03-04", "series": [{"event": "pv"}],
      "filters": [{"property": "colour", "value": "red"}]}, "unknown_property", "filters[0].property"),
    ({"kind": "nope", "date_from": "2026-03-01", "date_to": "2026-03-04"}, "unknown_kind", "kind"),
    ({"kind": "trends", "date_from": "March", "date_to": "2026-03-04", "series": [{"event": "pv"}]}, "invalid_field", "date_from"),
    ({"kind": "trends", "date_from": "2026-03-01", "date_to": "2026-03-04", "series": [{"event": "pv"}],
      "filters": [{"property": "x", "operator": "in", "value": 3}]}, "bad_filter", "filters[0].value"),
])
def test_bad_queries_name_the_field(shop: World, body: dict, code: str, field: str) -> None:
    with pytest.raises(UserloopError) as exc:
        shop.query(**body)
    assert (exc.value.code, exc.value.field) == (code, field)


def test_taobao_daily_pv_uv_match_pandas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import require_shared
    from userloop.backend import LocalBackend
    from userloop.ingest.files import ImportSpec, iter_chunks

    path = require_shared("taobao_userbehavior", "userbehavior_head_sample.csv")
    b = LocalBackend(tmp_path / "tb.duckdb")
    try:
        project = b.create_project("tb", "Asia/Shanghai")
        for chunk in iter_chunks(ImportSpec(path=path, project_id=project["id"], preset="taobao")):
            b.import_table(project["id"], chunk)
        body = {"kind": "trends", "project": project["id"], "date_from": "2017-11-25", "date_to": "2017-12-03",
                "interval": "day",
                "series": [{"event": "pv"}, {"event": "pv", "math": "uv"}, {"event": "buy", "math": "uv"}]}
        r = b.query(project["id"], json.dumps(body).encode())
    finally:
        b.close()
    df = pd.read_csv(path, header=None, names=["user", "item", "cat", "kind", "ts"])
    df["day"] = pd.to_datetime(df.ts, unit="s", utc=True).dt.tz_convert("Asia/Shanghai").dt.date
    days = [date(2017, 11, 25) + timedelta(days=i) for i in range(9)]
    df = df[df.day.isin(days)]
    pv = df[df.kind == "pv"]
    buy = df[df.kind == "buy"]
    expect_pv = pv.groupby("day").size().reindex(days, fill_value=0).tolist()
    expect_uv = pv.groupby("day").user.nunique().reindex(days, fill_value=0).tolist()
    expect_buyers = buy.groupby("day").user.nunique().reindex(days, fill_value=0).tolist()
    got_pv, got_uv, got_buyers = r["results"]
    assert got_pv["values"] == expect_pv
    assert got_uv["values"] == expect_uv
    assert got_uv["total"] == pv.user.nunique()
    assert got_buyers["values"] == expect_buyers


def test_segment_filter_counts_only_current_members(shop: World) -> None:
    """``"segment": NAME`` restricts every analysis to the saved segment's members (here: who bought)."""
    from userloop.actions import ActionContext, run_action

    ctx = ActionContext(store=shop.store, writer=shop.writer, project=shop.project)
    run_action("segments.create", ctx, {"name": "buyers", "type": "static",
                                        "rule": {"kind": "event", "event": "buy", "operator": ">=", "times": 1}})
    r = shop.query(kind="trends", date_from="2026-03-01", date_to="2026-03-04", interval="day",
                   series=[{"event": "pv"}, {"event": "pv", "math": "uv"}], segment="buyers")
    total, unique = r["results"]
    df = shop.frame()
    buyers = set(df[df.event == "buy"].person_id)
    assert buyers == {shop.persons()["c"]}
    assert total["values"] == [0, 0, 1, 0] and unique["total"] == 1  # c's one pv on Mar 3 (local)
    with pytest.raises(UserloopError) as exc:
        shop.query(kind="trends", date_from="2026-03-01", date_to="2026-03-04", series=[{"event": "pv"}],
                   segment="nope")
    assert (exc.value.code, exc.value.field) == ("unknown_segment", "segment")
