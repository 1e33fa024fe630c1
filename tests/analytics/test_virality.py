"""Virality: K per period against pandas and by hand (Asia/Shanghai), identity merges, windows, demo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.errors import UserloopError

RANGE = {"date_from": "2026-03-01", "date_to": "2026-03-03"}  # local: [2026-02-28T16:00Z, 2026-03-03T16:00Z)
START, END = pd.Timestamp("2026-02-28T16:00Z"), pd.Timestamp("2026-03-03T16:00Z")
TZ = "Asia/Shanghai"


@pytest.fixture
def invites(world: World) -> World:
    world.add([
        # a1 shares anonymously (Mar 1 00:20 local), then signs up as s1 and shares again on Mar 1 23:50 local
        {"distinct_id": "a1", "event": "pv", "ts": "2026-02-28T16:10:00"},
        {"distinct_id": "a1", "event": "share", "ts": "2026-02-28T16:20:00", "properties": {"item_id": "x"}},
        {"distinct_id": "s1", "event": "sign_up", "ts": "2026-03-01T03:00:00"},
        {"distinct_id": "s1", "event": "share", "ts": "2026-03-01T15:50:00", "properties": {"item_id": "y"}},
        {"distinct_id": "s1", "event": "share", "ts": "2026-03-03T16:30:00", "properties": {"item_id": "y"}},  # Mar 4
        # n1 arrives on Mar 2 local (still Mar 1 in UTC) naming the anonymous id; signs up as n1u
        {"distinct_id": "b1", "event": "pv", "ts": "2026-03-01T17:00:00", "properties": {"inviter_id": "a1"}},
        {"distinct_id": "n1u", "event": "sign_up", "ts": "2026-03-01T17:05:00", "properties": {"inviter_id": "a1"}},
        # n2 names the user id (the same person), on Mar 3 local
        {"distinct_id": "n2", "event": "pv", "ts": "2026-03-02T16:30:00", "properties": {"inviter_id": "s1"}},
        # n3: the inviter is not on the first event; n4: an unknown inviter
        {"distinct_id": "n3", "event": "pv", "ts": "2026-03-02T01:00:00"},
        {"distinct_id": "n3", "event": "pv", "ts": "2026-03-02T01:05:00", "properties": {"inviter_id": "a1"}},
        {"distinct_id": "n4", "event": "pv", "ts": "2026-03-02T02:00:00", "properties": {"inviter_id": "ghost"}},
        # s2 shared before the range: n5 is no conversion of any period in it
        {"distinct_id": "s2", "event": "share", "ts": "2026-02-27T00:00:00", "properties": {"item_id": "z"}},
        {"distinct_id": "s2", "event": "pv", "ts": "2026-03-02T05:00:00"},
        {"distinct_id": "n5", "event": "pv", "ts": "2026-03-02T06:00:00", "properties": {"inviter_id": "s2"}},
        # after the range: n9 still converts s1's Mar 1 share; n8 comes after s1's Mar 4 share
        {"distinct_id": "n9", "event": "pv", "ts": "2026-03-03T16:10:00", "properties": {"inviter_id": "s1"}},
        {"distinct_id": "n8", "event": "pv", "ts": "2026-03-03T17:00:00", "properties": {"inviter_id": "s1"}},
        # s4 shares on Mar 2 10:00 local, n10 comes exactly an hour later
        {"distinct_id": "s4", "event": "share", "ts": "2026-03-02T02:00:00", "properties": {"item_id": "x"}},
        {"distinct_id": "n10", "event": "pv", "ts": "2026-03-02T03:00:00", "properties": {"inviter_id": "s4"}},
        # an old user, active on Mar 1
        {"distinct_id": "old", "event": "pv", "ts": "2026-02-20T00:00:00"},
        {"distinct_id": "old", "event": "pv", "ts": "2026-03-01T00:00:00"},
    ])
    world.merge("s1", "a1")
    world.merge("n1u", "b1")
    return world


def expected(world: World, interval: str, window: int = 7 * 86400) -> pd.DataFrame:
    """The rules in pandas, per local period (the bucket start as text)."""
    df = world.frame()
    df["ts"] = pd.to_datetime(df.ts, utc=True)
    df["inviter"] = df.properties.map(lambda p: p.get("inviter_id") if isinstance(p, dict) else None)
    freq = {"day": "D", "week": "W-MON", "month": "MS"}[interval]

    def bucket(ts: pd.Series) -> pd.Series:
        local = ts.dt.tz_convert(TZ).dt.tz_localize(None)
        if interval == "week":
            return (local.dt.normalize() - pd.to_timedelta(local.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
        return local.dt.to_period(freq[0]).dt.start_time.dt.strftime("%Y-%m-%d")

    until = END + pd.Timedelta(seconds=window)
    inr = df[(df.ts >= START) & (df.ts < END)]
    shares = df[(df.event == "share") & (df.ts >= START) & (df.ts < until)]
    persons = world.persons()
    conv = []
    for pid, mine in df[df.ts < until].groupby("person_id"):
        t0 = mine.ts.min()
        first = mine[mine.ts == t0]
        named = first.inviter.dropna()
        if t0 < START or named.empty:
            continue
        inviter = persons.get(named.iloc[0])
        if inviter is None or inviter == pid:
            continue
        theirs = shares[(shares.person_id == inviter) & (shares.ts <= t0)]
        if theirs.empty:
            continue
        at = theirs.ts.max()
        if at < END and (t0 - at).total_seconds() <= window:
            conv.append({"at": at, "cycle": (t0 - at).total_seconds()})
    conv_df = pd.DataFrame(conv, columns=["at", "cycle"])
    firsts = df.groupby("person_id").ts.min()
    new = firsts[(firsts >= START) & (firsts < END)]
    inv = shares[shares.ts < END]
    out = pd.DataFrame({
        "active_users": inr.groupby(bucket(inr.ts)).person_id.nunique(),
        "new_users": new.groupby(bucket(new)).size(),
        "invites": inv.groupby(bucket(inv.ts)).size(),
        "inviters": inv.groupby(bucket(inv.ts)).person_id.nunique(),
        "conversions": conv_df.groupby(bucket(conv_df["at"])).size() if len(conv_df) else pd.Series(dtype=int),
    }).fillna(0).astype(int)
    out.loc["total"] = [inr.person_id.nunique(), len(new), len(inv), inv.person_id.nunique(), len(conv_df)]
    out["cycle"] = conv_df.groupby(bucket(conv_df["at"])).cycle.median() if len(conv_df) else None
    out.loc["total", "cycle"] = conv_df.cycle.median() if len(conv_df) else None
    return out


def table(r: dict[str, Any]) -> pd.DataFrame:
    rows = [*r["results"], {**r["totals"], "date": "total"}]
    df = pd.DataFrame(rows).set_index("date")
    return df[["active_users", "new_users", "invites", "inviters", "conversions"]]


@pytest.mark.parametrize("interval", ["day", "week", "month"])
def test_periods_match_pandas(invites: World, interval: str) -> None:
    r = invites.query(kind="virality", interval=interval, **RANGE)
    exp = expected(invites, interval)
    got = table(r)
    exp = exp[["active_users", "new_users", "invites", "inviters", "conversions"]].reindex(got.index, fill_value=0)
    pd.testing.assert_frame_equal(got, exp, check_dtype=False, check_names=False)
    for x in r["results"]:
        if x["active_users"]:
            assert x["k"] == pytest.approx(x["invites_per_user"] * (x["conversion_rate"] or 0))


def test_daily_by_hand(invites: World) -> None:
    r = invites.query(kind="virality", interval="day", **RANGE)
    rows = {x["date"]: x for x in r["results"]}
    assert list(rows) == ["2026-03-01", "2026-03-02", "2026-03-03"]
    d1, d2, d3 = rows.values()
    # Mar 1: s1 (a1 merged) and old are active; 2 invites by s1; n1, n2 and n9 convert them
    assert (d1["active_users"], d1["new_users"], d1["invites"], d1["inviters"], d1["conversions"]) == (2, 1, 2, 1, 3)
    assert (d1["invites_per_user"], d1["conversion_rate"], d1["k"]) == (1.0, 1.5, 1.5)
    assert d1["cycle_time_seconds"] == 88800  # median of 70 min, 24 h 40 min, 48 h 20 min
    # Mar 2: n1, n3, n4, s2, n5, s4, n10; s4's invite converts n10 an hour later
    assert (d2["active_users"], d2["new_users"], d2["invites"], d2["conversions"]) == (7, 6, 1, 1)
    assert d2["k"] == pytest.approx(1 / 7) and d2["cycle_time_seconds"] == 3600
    # Mar 3: n2 only, no invites
    assert (d3["active_users"], d3["invites"], d3["conversions"], d3["conversion_rate"], d3["k"]) == (1, 0, 0, None, 0)
    assert d3["cycle_time_seconds"] is None
    t = r["totals"]
    assert (t["active_users"], t["new_users"], t["invites"], t["inviters"], t["conversions"]) == (10, 8, 3, 2, 4)
    assert t["k"] == pytest.approx(0.4) and t["conversion_rate"] == pytest.approx(4 / 3)
    assert t["cycle_time_seconds"] == pytest.approx((4200 + 88800) / 2)
    exp = expected(invites, "day")
    assert exp.loc["2026-03-01", "cycle"] == d1["cycle_time_seconds"]


def test_weeks_start_on_local_monday(invites: World) -> None:
    # Mar 1 2026 is a Sunday; n1 at Mar 1 17:00 UTC is Monday Mar 2 in Shanghai
    r = invites.query(kind="virality", interval="week", **RANGE)
    assert [(x["date"], x["active_users"], x["invites"], x["conversions"]) for x in r["results"]] == [
        ("2026-02-23", 2, 2, 3), ("2026-03-02", 8, 1, 1)]


def test_window_is_inclusive(invites: World) -> None:
    r = invites.query(kind="virality", interval="day", window_seconds=3600, **RANGE)
    assert [x["conversions"] for x in r["results"]] == [0, 1, 0]  # n10 exactly 3600 s after s4's share
    assert table(r).equals(table(r))
    exp = expected(invites, "day", 3600)
    assert r["totals"]["conversions"] == exp.loc["total", "conversions"] == 1


def test_invite_event_and_filters(invites: World) -> None:
    # explicit message id: the fixture's generated ids repeat across add() calls
    invites.add([{"distinct_id": "s4", "event": "invite", "ts": "2026-03-02T02:30:00", "message_id": "invite-1"}])
    r = invites.query(kind="virality", interval="month", invite_event="invite", **RANGE)
    assert [(x["invites"], x["conversions"]) for x in r["results"]] == [(1, 1)]
    assert r["results"][0]["cycle_time_seconds"] == 1800
    r = invites.query(kind="virality", interval="month", **RANGE,
                      filters=[{"property": "distinct_id", "operator": "not_in", "value": ["s4"]}])
    assert r["totals"]["invites"] == 2 and r["totals"]["conversions"] == 3  # s4's share is filtered out


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"interval": "hour"}, "invalid_field", "interval"),
    ({"window_seconds": -1}, "bad_window", "window_seconds"),
    ({"invite_event": "nope"}, "unknown_event", "invite_event"),
    ({"inviter_property": ""}, "property_required", "inviter_property"),
    ({"inviter_property": "referrer_id"}, "unknown_property", "inviter_property"),
    ({"filters": [{"property": "colour", "value": "red"}]}, "unknown_property", "filters[0].property"),
])
def test_bad_queries_name_the_field(invites: World, body: dict, code: str, field: str) -> None:
    with pytest.raises(UserloopError) as exc:
        invites.query(kind="virality", **RANGE, **body)
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

    trends = q(kind="trends", interval="week", series=[{"event": "share"}, {"event": "share", "math": "uv"}])
    v = q(kind="virality", interval="week")
    rows, t = v["results"], v["totals"]
    assert [x["date"] for x in rows] == trends["results"][0]["dates"]
    assert [x["invites"] for x in rows] == trends["results"][0]["values"]
    assert [x["inviters"] for x in rows] == trends["results"][1]["values"]
    assert t["invites"] == trends["results"][0]["total"] > 0 and t["inviters"] == trends["results"][1]["total"]
    assert t["conversions"] > 0 and t["conversions"] == sum(x["conversions"] for x in rows)
    assert t["new_users"] == sum(x["new_users"] for x in rows) <= t["active_users"]
    for x in rows:
        assert x["inviters"] <= x["active_users"] and x["new_users"] <= x["active_users"]
        assert x["inviters"] <= x["invites"]
    # every conversion lands within the window: their count is at most the newcomers that name an inviter
    invited = backend.store.query(
        "SELECT count(DISTINCT distinct_id) AS n FROM events WHERE project_id = ? "
        "AND json_extract_string(properties, '$.inviter_id') IS NOT NULL", [pid])[0]["n"]
    assert t["conversions"] <= invited
    daily = q(kind="virality", interval="day")
    assert daily["totals"] == {**t} and len(daily["results"]) == 30
