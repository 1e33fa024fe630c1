"""Visitors (new / returning, DAU / WAU / MAU) against pandas: hand-built Shanghai edges, merges,
random data and the Taobao sample."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.errors import UserloopError

TZ = "Asia/Shanghai"


def add(world: World, events: list[dict]) -> None:
    """``world.add`` with message ids unique across calls."""
    n = len(world.rows)
    world.add([{"message_id": f"t{n + i}", **e} for i, e in enumerate(events)])
    assert len(world.store.query("SELECT message_id FROM events")) == len(world.rows)


def bucket(day: pd.Series, interval: str) -> pd.Series:
    if interval == "day":
        return day
    if interval == "week":
        return day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    return day.dt.to_period("M").dt.to_timestamp()


def expected(df: pd.DataFrame, date_from: str, date_to: str, interval: str = "day", event: str | None = None,
             person: str = "person_id", tz: str = TZ) -> dict:
    """New / returning per interval and rolling DAU / WAU / MAU, with pandas only."""
    df = df if event is None else df[df.event == event]
    df = df.assign(day=pd.to_datetime(df["ts"], utc=True).dt.tz_convert(tz).dt.tz_localize(None).dt.normalize())
    df = df.assign(b=bucket(df["day"], interval))
    first_b = df.groupby(person)["day"].min().pipe(lambda s: bucket(s, interval))
    lo, hi = pd.Timestamp(date_from), pd.Timestamp(date_to)
    inside = df[(df.day >= lo) & (df.day <= hi)]
    starts = sorted(set(bucket(pd.Series(pd.date_range(lo, hi)), interval)))
    active, new = [], []
    for b in starts:
        persons = set(inside[inside.b == b][person])
        active.append(len(persons))
        new.append(sum(1 for p in persons if first_b[p] == b))
    daily: dict[str, list] = {"dau": [], "wau": [], "mau": []}
    days = pd.date_range(lo, hi)
    for d in days:
        for name, w in (("dau", 1), ("wau", 7), ("mau", 30)):
            daily[name].append(df[(df.day > d - pd.Timedelta(days=w)) & (df.day <= d)][person].nunique())
    return {
        "dates": [b.strftime("%Y-%m-%d") for b in starts], "active": active, "new": new,
        "returning": [a - n for a, n in zip(active, new, strict=True)],
        "total": {"active": inside[person].nunique(), "new": sum(new), "returning": inside[person].nunique() - sum(new)},
        "daily": {"dates": [d.strftime("%Y-%m-%d") for d in days], **daily,
                  "stickiness": [a / m if m else 0.0 for a, m in zip(daily["dau"], daily["mau"], strict=True)]},
    }


@pytest.fixture
def site(world: World) -> World:
    add(world, [  # later events first: delivery order does not matter
        {"distinct_id": "a", "event": "pv", "ts": "2026-03-10T04:00:00"},
        {"distinct_id": "a", "event": "login", "ts": "2026-03-03T04:00:00"},
    ])
    add(world, [
        {"distinct_id": "a", "event": "pv", "ts": "2026-01-20T04:00:00"},  # long before the range: a returns
        # Mar 1 15:59:59 UTC = Mar 1 23:59:59 local; 16:00 UTC = Mar 2 00:00 local
        {"distinct_id": "b", "event": "pv", "ts": "2026-03-01T15:59:59"},
        {"distinct_id": "b", "event": "pv", "ts": "2026-03-01T16:00:00"},
        {"distinct_id": "c", "event": "signup", "ts": "2026-02-28T16:30:00"},  # Mar 1 00:30 local: new on Mar 1
        {"distinct_id": "c", "event": "pv", "ts": "2026-03-04T02:00:00"},
        # merge in the middle: anonymous k browsed in February, logged-in K is therefore returning
        {"distinct_id": "k", "event": "pv", "ts": "2026-02-10T02:00:00"},
        {"distinct_id": "K", "event": "pv", "ts": "2026-03-02T02:00:00"},
        {"distinct_id": "late", "event": "pv", "ts": "2026-03-15T16:00:00"},  # Mar 16 local: after the range
        {"distinct_id": "late", "event": "pv", "ts": "2026-03-20T02:00:00"},
        # Monday Mar 2 is the week start; Sunday Mar 1 belongs to the week of Feb 23 (range starts Mar 1)
        {"distinct_id": "w", "event": "pv", "ts": "2026-02-23T02:00:00"},  # Mon Feb 23: before the range
        {"distinct_id": "w", "event": "pv", "ts": "2026-03-01T02:00:00"},  # same week, inside the range
    ])
    world.merge("K", "k")
    return world


def test_daily_new_returning_and_rolling_match_pandas(site: World) -> None:
    r = site.query(kind="visitors", date_from="2026-03-01", date_to="2026-03-15", interval="day")
    exp = expected(site.frame(), "2026-03-01", "2026-03-15")
    got = {k: r[k] for k in exp}
    assert got == exp
    assert r["kind"] == "visitors" and r["event"] is None
    # by hand: Mar 1 b (23:59:59, new), c (00:30, new), w (first seen Feb 23: returning)
    assert (r["active"][0], r["new"][0], r["returning"][0]) == (3, 2, 1)
    # Mar 2: b (second day: returning), K (k seen in February: returning)
    assert (r["active"][1], r["new"][1], r["returning"][1]) == (2, 0, 2)
    assert r["total"] == {"active": 5, "new": 2, "returning": 3}
    d = r["daily"]
    # MAU on Mar 1 covers Jan 31 - Mar 1: K (Feb 10), w, b, c; a (Jan 20) joins on Mar 3
    assert d["mau"][:3] == [4, 4, 5] and d["mau"][14] == 5
    # WAU: Mar 7 = a, b, c, K, w (Mar 1-7); Mar 8 loses w (Mar 1); Mar 9 loses b and K (Mar 2)
    assert d["wau"][6:9] == [5, 4, 2]
    assert d["dau"][:3] == [3, 2, 1] and d["stickiness"][0] == 0.75


def test_activity_event_and_week_buckets(site: World) -> None:
    r = site.query(kind="visitors", date_from="2026-03-01", date_to="2026-03-15", interval="week", event="pv")
    exp = expected(site.frame(), "2026-03-01", "2026-03-15", "week", event="pv")
    assert {k: r[k] for k in exp} == exp
    assert r["dates"] == ["2026-02-23", "2026-03-02", "2026-03-09"]
    # week of Feb 23 (only Sunday Mar 1 in range): b new, w new (first pv Mon Feb 23, same week); c's signup is not a pv
    assert (r["active"][0], r["new"][0]) == (2, 2)
    r = site.query(kind="visitors", date_from="2026-03-01", date_to="2026-03-31", interval="month")
    exp = expected(site.frame(), "2026-03-01", "2026-03-31", "month")
    assert {k: r[k] for k in exp} == exp
    assert (r["active"], r["new"]) == ([6], [3])  # a, b, c, K, late, w; new: b, c, late


def test_filters_and_empty_range(site: World) -> None:
    r = site.query(kind="visitors", date_from="2026-03-01", date_to="2026-03-05",
                   filters=[{"property": "distinct_id", "operator": "in", "value": ["b", "c"]}])
    assert r["active"] == [2, 1, 0, 1, 0]
    r = site.query(kind="visitors", date_from="2025-01-01", date_to="2025-01-03")
    assert r["active"] == [0, 0, 0] and r["total"] == {"active": 0, "new": 0, "returning": 0}
    assert r["daily"]["mau"] == [0, 0, 0] and r["daily"]["stickiness"] == [0.0, 0.0, 0.0]


def test_bad_fields(site: World) -> None:
    with pytest.raises(UserloopError) as exc:
        site.query(kind="visitors", date_from="2026-03-01", date_to="2026-03-05", event="nope")
    assert (exc.value.code, exc.value.field) == ("unknown_event", "event")
    with pytest.raises(UserloopError) as exc:
        site.query(kind="visitors", date_from="2026-03-01", date_to="2026-03-05", interval="hour")
    assert exc.value.code == "invalid_field"
    with pytest.raises(UserloopError) as exc:
        site.query(kind="visitors", date_from="2026-03-01", date_to="2026-03-05",
                   filters=[{"property": "nope", "operator": "=", "value": 1}])
    assert (exc.value.code, exc.value.field) == ("unknown_property", "filters[0].property")


def test_random_world_matches_pandas(world: World) -> None:
    rng = np.random.default_rng(3)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    n = 3000
    users = rng.integers(0, 250, n) ** 2 // 250  # some heavy users
    offsets = rng.integers(0, 120 * 86400, n)
    names = rng.choice(["pv", "pv", "buy"], n)
    add(world, [{"distinct_id": f"u{u}", "event": str(e), "ts": t0 + timedelta(seconds=int(s))}
                for u, s, e in zip(users, offsets, names, strict=True)])
    for i in range(0, 40, 4):
        world.merge(f"u{i}", f"u{i + 1}")
    for interval in ("day", "week"):
        r = world.query(kind="visitors", date_from="2026-02-10", date_to="2026-04-05", interval=interval)
        exp = expected(world.frame(), "2026-02-10", "2026-04-05", interval)
        assert {k: r[k] for k in exp} == exp
    r = world.query(kind="visitors", date_from="2026-03-01", date_to="2026-03-31", interval="month", event="buy")
    exp = expected(world.frame(), "2026-03-01", "2026-03-31", "month", event="buy")
    assert {k: r[k] for k in exp} == exp


def test_taobao_daily_matches_pandas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import require_shared
    from userloop.backend import LocalBackend
    from userloop.ingest.files import ImportSpec, iter_chunks

    path = require_shared("taobao_userbehavior", "userbehavior_head_sample.csv")
    b = LocalBackend(tmp_path / "tb.duckdb")
    try:
        project = b.create_project("tb", TZ)
        for chunk in iter_chunks(ImportSpec(path=path, project_id=project["id"], preset="taobao")):
            b.import_table(project["id"], chunk)
        body = {"kind": "visitors", "project": project["id"], "date_from": "2017-11-26", "date_to": "2017-12-03",
                "interval": "day"}
        r = b.query(project["id"], json.dumps(body).encode())
        body["event"] = "buy"
        r_buy = b.query(project["id"], json.dumps(body).encode())
    finally:
        b.close()
    df = pd.read_csv(path, header=None, names=["user", "item", "cat", "event", "ts"])
    df["ts"] = pd.to_datetime(df.ts, unit="s", utc=True)
    for got, event in ((r, None), (r_buy, "buy")):
        exp = expected(df, "2017-11-26", "2017-12-03", event=event, person="user")
        assert {k: got[k] for k in exp} == exp
    assert r["new"][0] > 0 and r["returning"][-1] > 0
    assert date.fromisoformat(r["daily"]["dates"][0]) == date(2017, 11, 26)


def test_daylight_saving_days(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from userloop.store.duckdb import Store
    from userloop.store.writer import Writer

    store = Store(tmp_path / "ny.duckdb")
    project = store.create_project("ny", "America/New_York")
    with Writer(store) as writer:
        w = World(store=store, writer=writer, project=project, rows=[])
        rng = np.random.default_rng(5)
        t0 = datetime(2026, 2, 20, tzinfo=UTC)
        secs = rng.integers(0, 40 * 86400, 600)
        # and events a minute either side of local midnight around the change (Mar 8 2026, 02:00 -> 03:00)
        edges = [datetime(2026, 3, d, h, m, tzinfo=UTC) for d, h in ((8, 4), (8, 5), (9, 3), (9, 4)) for m in (0, 59)]
        add(w, [{"distinct_id": f"u{i % 40}", "event": "pv", "ts": t0 + timedelta(seconds=int(x))}
                for i, x in enumerate(secs)] + [{"distinct_id": f"e{i}", "event": "pv", "ts": t} for i, t in enumerate(edges)])
        for interval in ("day", "week"):
            r = w.query(kind="visitors", date_from="2026-03-05", date_to="2026-03-20", interval=interval)
            exp = expected(w.frame(), "2026-03-05", "2026-03-20", interval, tz="America/New_York")
            assert {k: r[k] for k in exp} == exp
    store.close()
