"""Retention against pandas on hand-built events (Asia/Shanghai periods) and the Taobao sample."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.errors import UserloopError
from userloop.ingest.event import ProfileOp

TZ = "Asia/Shanghai"


def period_starts(local: pd.Series, interval: str) -> pd.Series:
    """Naive local start of the day / Monday week / month of each timestamp."""
    day = local.dt.tz_localize(None).dt.normalize()
    if interval == "day":
        return day
    if interval == "week":
        return day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    return day.dt.to_period("M").dt.to_timestamp()


def period_diff(a: pd.Series, b: pd.Series, interval: str) -> pd.Series:
    if interval == "month":
        return (b.dt.year - a.dt.year) * 12 + (b.dt.month - a.dt.month)
    days = (b - a).dt.days
    return days // 7 if interval == "week" else days


def all_cohorts(date_from: str, date_to: str, interval: str) -> list[pd.Timestamp]:
    first = period_starts(pd.Series(pd.to_datetime([date_from])).dt.tz_localize(TZ), interval)[0]
    freq = {"day": "D", "week": "7D", "month": "MS"}[interval]
    return list(pd.date_range(first, pd.Timestamp(date_to), freq=freq))


def expected(df: pd.DataFrame, start: str, back: str, interval: str, periods: int, date_from: str, date_to: str,
             tz: str = TZ, person: str = "person_id", ts: str = "ts") -> list[dict]:
    """The retention table computed with pandas only."""
    df = df.copy()
    df["local"] = pd.to_datetime(df[ts], utc=True).dt.tz_convert(tz)
    df["day"] = df["local"].dt.tz_localize(None).dt.normalize()
    df["period"] = period_starts(df["local"], interval)
    lo, hi = pd.Timestamp(date_from), pd.Timestamp(date_to)
    firsts = df[(df.event == start) & (df.day >= lo) & (df.day <= hi)].sort_values("local").groupby(person).head(1)
    cohort = firsts.set_index(person)["period"]
    ret = df[df.event == back][[person, "period"]].drop_duplicates()
    ret = ret[ret[person].isin(cohort.index)]
    ret["cohort"] = ret[person].map(cohort)
    ret["k"] = period_diff(ret["cohort"], ret["period"], interval)
    ret = ret[(ret.k >= 1) & (ret.k < periods)]
    out = []
    for c in all_cohorts(date_from, date_to, interval):
        size = int((cohort == c).sum())
        hits = ret[ret.cohort == c].groupby("k")[person].nunique()
        out.append({"start": c.strftime("%Y-%m-%d"), "size": size,
                    "retained": [size] + [int(hits.get(k, 0)) for k in range(1, periods)]})
    return out


def add(world: World, events: list[dict], ops: list | None = None) -> None:
    """``world.add`` with message ids unique across calls (the fixture's own can repeat from one call
    to the next, and the store then drops the later event as a duplicate)."""
    n = len(world.rows)
    world.add([{"message_id": f"t{n + i}", **e} for i, e in enumerate(events)], ops)
    assert len(world.store.query("SELECT message_id FROM events")) == len(world.rows)


def strip(cohorts: list[dict]) -> list[dict]:
    return [{k: c[k] for k in ("start", "size", "retained")} for c in cohorts]


@pytest.fixture
def app(world: World) -> World:
    # delivered out of order: a's later events arrive first
    add(world, [
        {"distinct_id": "a", "event": "buy", "ts": "2026-03-03T15:59:00", "properties": {"plan": "pro"}},  # Mar 3 23:59
        {"distinct_id": "a", "event": "buy", "ts": "2026-03-01T16:10:00"},  # Mar 2 00:10 local
    ])
    add(world, [
        # Feb 28 16:30 UTC is Mar 1 00:30 in Shanghai: a's cohort is Mar 1
        {"distinct_id": "a", "event": "pv", "ts": "2026-02-28T16:30:00", "properties": {"plan": "pro"}},
        {"distinct_id": "b", "event": "pv", "ts": "2026-03-01T15:59:59", "properties": {"plan": "free"}},  # Mar 1 23:59:59
        {"distinct_id": "b", "event": "pv", "ts": "2026-03-02T01:00:00", "properties": {"plan": "pro"}},
        {"distinct_id": "anon", "event": "pv", "ts": "2026-02-28T10:00:00"},  # Feb 28 18:00 local: before the range
        {"distinct_id": "anon", "event": "buy", "ts": "2026-03-02T02:00:00"},  # b's after the merge: day 1
        {"distinct_id": "c", "event": "pv", "ts": "2026-02-27T02:00:00"},  # before the range
        {"distinct_id": "c", "event": "pv", "ts": "2026-03-03T02:00:00", "properties": {"plan": "free"}},
        {"distinct_id": "c", "event": "buy", "ts": "2026-03-06T02:00:00"},  # after date_to: day 3 still counts
        {"distinct_id": "c", "event": "buy", "ts": "2026-03-07T02:00:00"},  # day 4: beyond 4 periods
        {"distinct_id": "d", "event": "buy", "ts": "2026-03-02T02:00:00"},  # no start event: no cohort
        {"distinct_id": "e", "event": "pv", "ts": "2026-03-04T16:00:00"},  # Mar 5 00:00 local: after the range
        # identity merge in the middle: anonymous x starts, logged-in X returns
        {"distinct_id": "x", "event": "pv", "ts": "2026-03-02T03:00:00", "properties": {"plan": "free"}},
        {"distinct_id": "X", "event": "buy", "ts": "2026-03-03T03:00:00"},
        # y's anonymous start is earlier than y's own: after the merge the cohort is Mar 1
        {"distinct_id": "y", "event": "pv", "ts": "2026-03-03T05:00:00"},
        {"distinct_id": "y", "event": "buy", "ts": "2026-03-04T05:00:00"},
        {"distinct_id": "y-anon", "event": "pv", "ts": "2026-03-01T05:00:00", "properties": {"plan": "trial"}},
    ])
    world.merge("b", "anon")
    world.merge("X", "x")
    world.merge("y", "y-anon")
    return world


def test_daily_pv_to_buy_matches_pandas_and_hand_values(app: World) -> None:
    r = app.query(kind="retention", date_from="2026-03-01", date_to="2026-03-04", interval="day", periods=4,
                  start_event="pv", return_event="buy")
    assert r["kind"] == "retention" and r["interval"] == "day" and r["periods"] == 4
    assert strip(r["cohorts"]) == expected(app.frame(), "pv", "buy", "day", 4, "2026-03-01", "2026-03-04")
    assert strip(r["cohorts"]) == [
        # a (Mar 1 00:30), b (23:59:59), y via y-anon; a returns days 1 and 2, b day 1 (anon's buy), y day 3
        {"start": "2026-03-01", "size": 3, "retained": [3, 2, 1, 1]},
        {"start": "2026-03-02", "size": 1, "retained": [1, 1, 0, 0]},  # x -> X
        {"start": "2026-03-03", "size": 1, "retained": [1, 0, 0, 1]},  # c: first pv in range; Mar 6 buy
        {"start": "2026-03-04", "size": 0, "retained": [0, 0, 0, 0]},  # empty cohort present
    ]
    c = r["cohorts"][0]
    assert c["percentages"] == pytest.approx([100.0, 200 / 3, 100 / 3, 100 / 3])
    assert r["cohorts"][3]["percentages"] == [None] * 4
    # weighted over the cohorts: day 1 = (2 + 1 + 0 + 0) / (3 + 1 + 1 + 0), day 3 = (1 + 0 + 1 + 0) / 5
    assert r["average"] == pytest.approx([100.0, 60.0, 20.0, 40.0])


def test_pv_to_pv_same_event(app: World) -> None:
    r = app.query(kind="retention", date_from="2026-03-01", date_to="2026-03-03", interval="day", periods=3,
                  start_event="pv", return_event="pv")
    assert strip(r["cohorts"]) == expected(app.frame(), "pv", "pv", "day", 3, "2026-03-01", "2026-03-03")
    # b's second pv (Mar 2 09:00 local) and y's own pv (Mar 3) return
    assert r["cohorts"][0]["retained"] == [3, 1, 1]


@pytest.mark.parametrize("interval", ["week", "month"])
def test_weekly_and_monthly_match_pandas(app: World, interval: str) -> None:
    add(app, [
        {"distinct_id": "f", "event": "pv", "ts": "2026-03-08T15:59:00"},  # Sunday Mar 8 23:59 local: week of Mar 2
        {"distinct_id": "f", "event": "buy", "ts": "2026-03-08T16:00:00"},  # Monday Mar 9 00:00 local: next week
        {"distinct_id": "g", "event": "pv", "ts": "2026-03-31T16:30:00"},  # Apr 1 local
        {"distinct_id": "g", "event": "buy", "ts": "2026-05-20T00:00:00"},
        {"distinct_id": "a", "event": "buy", "ts": "2026-04-10T00:00:00"},
    ])
    r = app.query(kind="retention", date_from="2026-03-01", date_to="2026-04-05", interval=interval, periods=3,
                  start_event="pv", return_event="buy")
    exp = expected(app.frame(), "pv", "buy", interval, 3, "2026-03-01", "2026-04-05")
    assert strip(r["cohorts"]) == exp
    if interval == "week":
        # Sunday Mar 1 belongs to the week of Monday Feb 23
        assert [c["start"] for c in r["cohorts"]][:2] == ["2026-02-23", "2026-03-02"]
        assert r["cohorts"][1]["size"] == 4 and r["cohorts"][1]["retained"][1] == 1  # f only
    else:
        assert exp == [
            {"start": "2026-03-01", "size": 7, "retained": [7, 1, 0]},  # a, b, c, e, f, X, y; a in April
            {"start": "2026-04-01", "size": 1, "retained": [1, 1, 0]},  # g in May
        ]


def test_filters_and_event_property_breakdown(app: World) -> None:
    r = app.query(kind="retention", date_from="2026-03-01", date_to="2026-03-04", periods=4,
                  start_event="pv", return_event="buy", breakdown={"property": "plan"},
                  start_filters=[{"property": "plan", "operator": "is_set"}])
    frame = app.frame()
    starts = frame[frame.event == "pv"]
    has_plan = starts.properties.map(lambda p: isinstance(p, dict) and "plan" in p)
    kept = pd.concat([starts[has_plan], frame[frame.event == "buy"]])
    assert strip(r["cohorts"]) == expected(kept, "pv", "buy", "day", 4, "2026-03-01", "2026-03-04")
    got = {b["breakdown_value"]: strip(b["cohorts"]) for b in r["breakdown"]}
    # breakdown value: the plan on the person's first start event (y's anonymous pv says "trial")
    assert [b["breakdown_value"] for b in r["breakdown"]] == ["free", "pro", "trial"]
    assert [c["retained"] for c in got["free"]] == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]]
    assert [c["retained"] for c in got["pro"]][0] == [1, 1, 1, 0]
    assert [c["retained"] for c in got["trial"]][0] == [1, 0, 0, 1]
    # limit 1: the rest is "$other"; the total does not change
    r2 = app.query(kind="retention", date_from="2026-03-01", date_to="2026-03-04", periods=4,
                   start_event="pv", return_event="buy", breakdown={"property": "plan", "limit": 1},
                   start_filters=[{"property": "plan", "operator": "is_set"}])
    assert [b["breakdown_value"] for b in r2["breakdown"]] == ["free", "$other"]
    assert r2["cohorts"] == r["cohorts"]
    # a filter on every event: only buys of plan "pro" return (a's Mar 3 buy); pvs need plan pro too
    r3 = app.query(kind="retention", date_from="2026-03-01", date_to="2026-03-04", periods=4,
                   start_event="pv", return_event="buy",
                   filters=[{"property": "plan", "operator": "=", "value": "pro"}])
    assert strip(r3["cohorts"])[:2] == [
        {"start": "2026-03-01", "size": 1, "retained": [1, 0, 1, 0]},  # a
        {"start": "2026-03-02", "size": 1, "retained": [1, 0, 0, 0]},  # b's first *pro* pv is on Mar 2
    ]


def test_person_property_breakdown_and_filter(app: World) -> None:
    app.add([], ops=[ProfileOp(project_id=app.project.id, distinct_id=d, op="set", properties={"tier": "gold"})
                     for d in ("b", "x")])  # x is X's person since the merge
    body = {"kind": "retention", "date_from": "2026-03-01", "date_to": "2026-03-04", "periods": 4,
            "start_event": "pv", "return_event": "buy"}
    r = app.query(**body, breakdown={"property": "tier", "type": "person"})
    got = {b["breakdown_value"]: [c["retained"] for c in b["cohorts"]] for b in r["breakdown"]}
    assert got == {
        "$none": [[2, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0]],  # a, y; c
        "gold": [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],  # b; X
    }
    r = app.query(**body, filters=[{"property": "tier", "type": "person", "operator": "=", "value": "gold"}])
    assert [c["retained"] for c in r["cohorts"]] == got["gold"]


def test_periods_one_and_no_data(app: World) -> None:
    r = app.query(kind="retention", date_from="2026-01-01", date_to="2026-01-02", periods=1,
                  start_event="pv", return_event="buy")
    assert strip(r["cohorts"]) == [{"start": "2026-01-01", "size": 0, "retained": [0]},
                                   {"start": "2026-01-02", "size": 0, "retained": [0]}]
    assert r["average"] == [None]


def test_average_leaves_out_periods_not_begun(world: World) -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)
    today = now.astimezone(ZoneInfo(TZ)).date()
    add(world, [{"distinct_id": "n", "event": "pv", "ts": now}])
    r = world.query(kind="retention", date_from=str(today), date_to=str(today), periods=3,
                    start_event="pv", return_event="pv")
    assert r["cohorts"][0]["retained"] == [1, 0, 0]
    assert r["average"] == [100.0, None, None]


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"start_event": "nope", "return_event": "buy"}, "unknown_event", "start_event"),
    ({"start_event": "pv", "return_event": "nope"}, "unknown_event", "return_event"),
    ({"start_event": "pv", "return_event": "buy", "periods": 0}, "bad_periods", "periods"),
    ({"start_event": "pv", "return_event": "buy", "interval": "hour"}, "invalid_field", "interval"),
    ({"start_event": "pv"}, "invalid_field", None),
    ({"start_event": "pv", "return_event": "buy", "breakdown": "nope"}, "unknown_property", "breakdown"),
    ({"start_event": "pv", "return_event": "buy", "breakdown": {"property": "nope", "type": "person"}},
     "unknown_property", "breakdown"),
    ({"start_event": "pv", "return_event": "buy", "start_filters": [{"property": "nope", "operator": "is_set"}]},
     "unknown_property", "start_filters[0].property"),
    ({"start_event": "pv", "return_event": "buy", "return_filters": [{"property": "p", "operator": "in", "value": []}]},
     "bad_filter", "return_filters[0].value"),
])
def test_bad_queries_name_the_field(app: World, body: dict, code: str, field: str | None) -> None:
    with pytest.raises(UserloopError) as exc:
        app.query(kind="retention", date_from="2026-03-01", date_to="2026-03-04", **body)
    assert exc.value.code == code
    if field is not None:
        assert exc.value.field == field


@pytest.fixture(scope="module")
def taobao(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.conftest import require_shared
    from userloop.backend import LocalBackend
    from userloop.ingest.files import ImportSpec, iter_chunks

    path = require_shared("taobao_userbehavior", "userbehavior_head_sample.csv")
    b = LocalBackend(tmp_path_factory.mktemp("tb") / "tb.duckdb")
    project = b.create_project("tb", TZ)
    for chunk in iter_chunks(ImportSpec(path=path, project_id=project["id"], preset="taobao")):
        b.import_table(project["id"], chunk)
    df = pd.read_csv(path, header=None, names=["user", "item", "cat", "event", "ts"])
    df["ts"] = pd.to_datetime(df.ts, unit="s", utc=True)
    yield b, project["id"], df
    b.close()


@pytest.mark.parametrize(("start", "back"), [("pv", "buy"), ("pv", "pv"), ("cart", "buy")])
def test_taobao_daily_retention_matches_pandas(taobao, start: str, back: str) -> None:  # type: ignore[no-untyped-def]
    b, pid, df = taobao
    body = {"kind": "retention", "project": pid, "date_from": "2017-11-25", "date_to": "2017-12-01",
            "interval": "day", "periods": 5, "start_event": start, "return_event": back}
    r = b.query(pid, json.dumps(body).encode())
    exp = expected(df, start, back, "day", 5, "2017-11-25", "2017-12-01", person="user")
    assert strip(r["cohorts"]) == exp
    assert sum(c["size"] for c in exp) > 100 and exp[0]["retained"][1] > 0


def test_taobao_weekly_retention_matches_pandas(taobao) -> None:  # type: ignore[no-untyped-def]
    b, pid, df = taobao
    body = {"kind": "retention", "project": pid, "date_from": "2017-11-20", "date_to": "2017-12-03",
            "interval": "week", "periods": 3, "start_event": "pv", "return_event": "pv"}
    r = b.query(pid, json.dumps(body).encode())
    assert strip(r["cohorts"]) == expected(df, "pv", "pv", "week", 3, "2017-11-20", "2017-12-03", person="user")
    assert date.fromisoformat(r["cohorts"][0]["start"]).weekday() == 0


@pytest.mark.parametrize("tz", ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu",
                                "America/Santiago", "Asia/Shanghai", "UTC"])
def test_local_time_by_offsets_matches_time_zone_lookups(tmp_path, tz: str) -> None:  # type: ignore[no-untyped-def]
    from userloop.query.sql import Ctx, local_between, offsets
    from userloop.store.duckdb import Store

    store = Store(tmp_path / "z.duckdb")
    try:
        ctx = Ctx(store=store, project=store.create_project("z", tz))
        lo, hi = datetime(2025, 3, 1, 5, tzinfo=UTC), datetime(2026, 12, 1, 7, tzinfo=UTC)
        changes = [int(t.timestamp()) for t, _ in offsets(ctx, lo, hi)[1:]]
        assert len(changes) == {"Asia/Shanghai": 0, "UTC": 0, "Asia/Kathmandu": 0}.get(tz, 4)
        near = [c + dx for c in changes for dx in (-3601, -1, 0, 1, 3600)]
        fast = local_between(ctx, "t", lo, hi)
        rows = ctx.fetch(
            f"WITH i AS (SELECT to_timestamp(x) AS t FROM range({int(lo.timestamp())}, {int(hi.timestamp())}, 599) r(x) "
            f"UNION ALL SELECT to_timestamp(unnest({ctx.p(near or [0])})) WHERE {ctx.p(bool(near))}) "
            f"SELECT count(*) AS n, count(*) FILTER (WHERE {fast} <> timezone({ctx.p(tz)}, t)) AS wrong FROM i"
        )
        assert rows[0]["n"] > 90_000 and rows[0]["wrong"] == 0
        # outside [lo, hi) the order with respect to the range's own local times is kept
        rows = ctx.fetch(
            f"SELECT bool_and({local_between(ctx, 't', lo, hi)} < timezone({ctx.p(tz)}, {ctx.p(lo)})) AS before "
            f"FROM (SELECT to_timestamp(x) AS t FROM range({int(lo.timestamp()) - 90 * 86400}, {int(lo.timestamp())}, 997) r(x))"
        )
        assert rows[0]["before"]
    finally:
        store.close()


def test_retention_across_daylight_saving_changes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from userloop.store.duckdb import Store
    from userloop.store.writer import Writer

    store = Store(tmp_path / "ny.duckdb")
    project = store.create_project("ny", "America/New_York")
    with Writer(store) as writer:
        w = World(store=store, writer=writer, project=project, rows=[])
        # Mar 8 2026 02:00 EST -> 03:00 EDT; Nov 1 2026 02:00 EDT -> 01:00 EST
        add(w, [
            {"distinct_id": "p", "event": "pv", "ts": "2026-03-08T04:59:00"},  # Mar 7 23:59 EST
            {"distinct_id": "p", "event": "pv", "ts": "2026-03-08T05:00:00"},  # Mar 8 00:00 EST
            {"distinct_id": "q", "event": "pv", "ts": "2026-03-09T03:59:00"},  # Mar 8 23:59 EDT
            {"distinct_id": "q", "event": "pv", "ts": "2026-03-09T04:00:00"},  # Mar 9 00:00 EDT
            {"distinct_id": "r", "event": "pv", "ts": "2026-03-08T07:30:00"},  # Mar 8 03:30 EDT
            {"distinct_id": "r", "event": "pv", "ts": "2026-03-10T03:59:59"},  # Mar 9 23:59:59 EDT
            {"distinct_id": "s", "event": "pv", "ts": "2026-11-01T05:30:00"},  # Nov 1 01:30 EDT
            {"distinct_id": "s", "event": "pv", "ts": "2026-11-01T06:30:00"},  # Nov 1 01:30 EST (again)
            {"distinct_id": "s", "event": "pv", "ts": "2026-11-02T04:59:00"},  # Nov 1 23:59 EST
            {"distinct_id": "s", "event": "pv", "ts": "2026-11-02T05:00:00"},  # Nov 2 00:00 EST
        ])
        for lo, hi in (("2026-03-07", "2026-03-09"), ("2026-10-31", "2026-11-02")):
            r = w.query(kind="retention", date_from=lo, date_to=hi, periods=3, start_event="pv", return_event="pv")
            assert strip(r["cohorts"]) == expected(w.frame(), "pv", "pv", "day", 3, lo, hi, tz="America/New_York")
            r = w.query(kind="retention", date_from=lo, date_to=hi, interval="week", periods=2,
                        start_event="pv", return_event="pv")
            assert strip(r["cohorts"]) == expected(w.frame(), "pv", "pv", "week", 2, lo, hi, tz="America/New_York")
        r = w.query(kind="retention", date_from="2026-03-07", date_to="2026-03-09", periods=3,
                    start_event="pv", return_event="pv")
        assert [c["retained"] for c in r["cohorts"]] == [[1, 1, 0], [2, 2, 0], [0, 0, 0]]
    store.close()
