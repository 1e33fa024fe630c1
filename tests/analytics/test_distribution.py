"""Distributions (events per person, property sum per person, time between two events) against
pandas: hand-built Shanghai edges, merges, equal timestamps, random data and the Taobao sample."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.analytics.distribution import COUNT_BINS, SUM_BINS, TIME_BINS
from userloop.errors import UserloopError

TZ = "Asia/Shanghai"
PCT = [25.0, 50.0, 75.0, 90.0, 95.0, 99.0]


def add(world: World, events: list[dict]) -> None:
    """``world.add`` with message ids unique across calls."""
    n = len(world.rows)
    world.add([{"message_id": f"t{n + i}", **e} for i, e in enumerate(events)])
    assert len(world.store.query("SELECT message_id FROM events")) == len(world.rows)


def in_range(df: pd.DataFrame, date_from: str, date_to: str) -> pd.Series:
    day = pd.to_datetime(df["ts"], utc=True).dt.tz_convert(TZ).dt.tz_localize(None).dt.normalize()
    return (day >= pd.Timestamp(date_from)) & (day <= pd.Timestamp(date_to))


def values(df: pd.DataFrame, measure: str, date_from: str, date_to: str, event: str = "", prop: str = "",
           a: str = "", b: str = "", window: float | None = None, person: str = "person_id") -> pd.Series:
    """One value per person, with pandas (NaN: time_between without B)."""
    df = df.assign(ts=pd.to_datetime(df["ts"], utc=True))
    inside = df[in_range(df, date_from, date_to)]
    if measure == "count":
        return inside[inside.event == event].groupby(person).size().astype(float)
    if measure == "sum":
        rows = inside[inside.event == event]
        v = pd.to_numeric(rows["properties"].map(lambda p: p.get(prop) if isinstance(p, dict) else None), errors="coerce")
        return v.groupby(rows[person]).sum(min_count=0)
    end = pd.Timestamp(date_to, tz=TZ) + pd.Timedelta(days=1)
    ta = inside[inside.event == a].groupby(person)["ts"].min()
    bs = df[(df.event == b) & (df.ts >= pd.Timestamp(date_from, tz=TZ))]
    bs = bs[bs.ts < (end if window is None else end + pd.Timedelta(seconds=window))]
    out = {}
    for pid, t in ta.items():
        cand = bs[(bs[person] == pid) & (bs.ts >= t)].ts.sort_values()
        if window is not None:
            cand = cand[cand <= t + pd.Timedelta(seconds=window)]
        if a == b:
            cand = cand.iloc[1:] if len(cand) and cand.iloc[0] == t else cand  # the first A itself
        out[pid] = (cand.iloc[0] - t).total_seconds() if len(cand) else np.nan
    return pd.Series(out, dtype=float)


def expected(v: pd.Series, edges: list[float], trim: bool = True, pct: list[float] = PCT) -> dict:
    got = v.dropna().to_numpy()
    idx = np.searchsorted(np.array(edges), got, side="right") - 1
    counts = [int((idx == i).sum()) for i in range(len(edges))]
    last = max([i for i in range(len(edges)) if counts[i]], default=0) if trim else len(edges) - 1
    return {
        "counts": counts[: last + 1],
        "below": int((idx == -1).sum()),
        "n": len(got),
        "min": float(got.min()) if len(got) else None,
        "max": float(got.max()) if len(got) else None,
        "mean": float(got.mean()) if len(got) else None,
        "percentiles": [float(x) for x in np.percentile(got, pct)] if len(got) else [None] * len(pct),
    }


def summary(r: dict) -> dict:
    s = r["stats"]
    return {
        "counts": [b["persons"] for b in r["buckets"]],
        "below": r["below"],
        "n": r["converted"] if r["measure"] == "time_between" else r["persons"],
        "min": None if s["min"] is None else float(s["min"]),
        "max": None if s["max"] is None else float(s["max"]),
        "mean": s["mean"],
        "percentiles": list(s["percentiles"].values()),
    }


def same(got: dict, exp: dict) -> None:
    assert {k: got[k] for k in ("counts", "below", "n")} == {k: exp[k] for k in ("counts", "below", "n")}
    for k in ("min", "max", "mean"):
        assert got[k] == pytest.approx(exp[k])
    assert got["percentiles"] == pytest.approx(exp["percentiles"])


def L(day: str, hm: str) -> str:
    """A Shanghai wall-clock time as a UTC ISO string."""
    return datetime.fromisoformat(f"{day}T{hm}").replace(tzinfo=None).isoformat() + "+08:00"


@pytest.fixture
def shop(world: World) -> World:
    add(world, [  # out of order on purpose
        {"distinct_id": "e", "event": "buy", "ts": L("2026-03-05", "09:00"), "properties": {"revenue": 1000}},
        {"distinct_id": "a", "event": "pv", "ts": L("2026-03-03", "23:59:59")},
        {"distinct_id": "a", "event": "pv", "ts": L("2026-03-01", "10:00")},
    ])
    add(world, [
        {"distinct_id": "a", "event": "pv", "ts": L("2026-02-28", "23:59")},  # before the range
        {"distinct_id": "a", "event": "pv", "ts": L("2026-03-01", "00:30")},
        {"distinct_id": "a", "event": "pv", "ts": L("2026-03-04", "00:00")},  # after the range
        {"distinct_id": "a", "event": "buy", "ts": L("2026-03-01", "12:00"), "properties": {"revenue": 10}},
        {"distinct_id": "a", "event": "buy", "ts": L("2026-03-02", "12:00"), "properties": {"revenue": "7.5"}},
        {"distinct_id": "b", "event": "pv", "ts": L("2026-03-02", "10:00")},
        {"distinct_id": "anon", "event": "pv", "ts": L("2026-03-02", "11:00")},
        {"distinct_id": "anon", "event": "buy", "ts": L("2026-03-02", "12:00"), "properties": {"revenue": 100}},
        {"distinct_id": "b", "event": "buy", "ts": L("2026-03-03", "12:00"), "properties": {"revenue": -20}},
        *[{"distinct_id": "c", "event": "pv", "ts": L("2026-03-02", f"10:{i:02d}")} for i in range(12)],
        {"distinct_id": "c", "event": "buy", "ts": L("2026-03-03", "08:00")},  # no revenue: sums to 0
        {"distinct_id": "d", "event": "pv", "ts": L("2026-03-03", "09:00")},
        {"distinct_id": "d", "event": "buy", "ts": L("2026-03-03", "09:00"), "properties": {"revenue": -5}},
        *[{"distinct_id": "e", "event": "pv", "ts": L("2026-03-01", f"0{i}:00")} for i in range(5)],
        {"distinct_id": "f", "event": "buy", "ts": L("2026-03-01", "09:00"), "properties": {"revenue": 1}},
        {"distinct_id": "f", "event": "pv", "ts": L("2026-03-02", "09:00")},  # buys only before its pv
        {"distinct_id": "g", "event": "pv", "ts": L("2026-03-02", "09:00")},
        {"distinct_id": "g", "event": "pv", "ts": L("2026-03-02", "09:00")},  # same instant: 0 s to the next
    ])
    world.merge("b", "anon")
    return world


def test_events_per_person(shop: World) -> None:
    r = shop.query(kind="distribution", date_from="2026-03-01", date_to="2026-03-03", event="pv")
    v = values(shop.frame(), "count", "2026-03-01", "2026-03-03", event="pv")
    same(summary(r), expected(v, COUNT_BINS))
    # a 3 (Mar 1 00:30, 10:00, Mar 3 23:59:59), b 2 (with anon), c 12, d 1, e 5, f 1, g 2
    assert [(b["label"], b["persons"]) for b in r["buckets"]] == [
        ("1", 2), ("2", 2), ("3", 1), ("4", 0), ("5-9", 1), ("10-19", 1)]
    assert r["persons"] == 7 and r["stats"]["sum"] == 26 and r["stats"]["max"] == 12
    assert r["stats"]["percentiles"]["p50"] == 2.0


def test_property_sum_per_person(shop: World) -> None:
    r = shop.query(kind="distribution", measure="sum", date_from="2026-03-01", date_to="2026-03-03",
                   event="buy", property="revenue")
    v = values(shop.frame(), "sum", "2026-03-01", "2026-03-03", event="buy", prop="revenue")
    same(summary(r), expected(v, SUM_BINS))
    # a 17.5, b 100 - 20 = 80, c 0 (no revenue), d -5 (below), f 1; e's buy is after the range
    got = {b["label"]: b["persons"] for b in r["buckets"] if b["persons"]}
    assert got == {"0-1": 1, "1-2": 1, "10-20": 1, "50-100": 1}
    assert r["below"] == 1 and r["stats"]["sum"] == pytest.approx(93.5)
    r = shop.query(kind="distribution", measure="sum", date_from="2026-03-01", date_to="2026-03-03",
                   event="buy", property="revenue", bins=[-10, 0, 50])
    assert [(b["label"], b["from"], b["to"], b["persons"]) for b in r["buckets"]] == [
        ("-10-0", -10, 0, 1), ("0-50", 0, 50, 3), ("50+", 50, None, 1)]
    assert r["below"] == 0


def test_time_between_two_events(shop: World) -> None:
    body = {"kind": "distribution", "measure": "time_between", "date_from": "2026-03-01", "date_to": "2026-03-03",
            "from_event": "pv", "to_event": "buy"}
    r = shop.query(**body)
    v = values(shop.frame(), "time_between", "2026-03-01", "2026-03-03", a="pv", b="buy")
    same(summary(r), expected(v, TIME_BINS))
    # a 11.5 h, b 2 h (anon's buy), c 22 h, d 0 s (same instant), e none in range, f none after, g none
    assert r["persons"] == 7 and r["converted"] == 4
    assert sorted(v.dropna()) == [0.0, 7200.0, 41400.0, 79200.0]
    labels = {b["label"]: b["persons"] for b in r["buckets"] if b["persons"]}
    assert labels == {"0s-10s": 1, "2h-3h": 1, "6h-12h": 1, "12h-1d": 1}
    # a window lets B fall after date_to: e's buy on Mar 5 (5 days after e's first pv)
    r = shop.query(**body, window_seconds=7 * 86400)
    v = values(shop.frame(), "time_between", "2026-03-01", "2026-03-03", a="pv", b="buy", window=7 * 86400)
    same(summary(r), expected(v, TIME_BINS))
    assert r["converted"] == 5
    r = shop.query(**body, window_seconds=3600)
    assert r["converted"] == 1  # only d


def test_time_between_same_event(shop: World) -> None:
    r = shop.query(kind="distribution", measure="time_between", date_from="2026-03-01", date_to="2026-03-03",
                   from_event="pv", to_event="pv", percentiles=[50, 100])
    v = values(shop.frame(), "time_between", "2026-03-01", "2026-03-03", a="pv", b="pv")
    same(summary(r), expected(v, TIME_BINS, pct=[50, 100]))
    # a 9.5 h, b 1 h (anon), c 60 s, e 1 h, g 0 s (two at the same instant); d and f have one pv
    assert sorted(v.dropna()) == [0.0, 60.0, 3600.0, 3600.0, 34200.0]
    assert r["stats"]["percentiles"] == {"p50": 3600.0, "p100": 34200.0}


def test_bad_fields(shop: World) -> None:
    base = {"kind": "distribution", "date_from": "2026-03-01", "date_to": "2026-03-03"}
    for body, code, field in [
        ({}, "field_required", "event"),
        ({"measure": "sum", "event": "buy"}, "field_required", "property"),
        ({"measure": "time_between", "from_event": "pv"}, "field_required", "to_event"),
        ({"event": "pv", "property": "revenue"}, "unused_field", "property"),
        ({"event": "pv", "bins": [1, 1]}, "bad_bins", "bins"),
        ({"event": "pv", "percentiles": [101]}, "bad_percentiles", "percentiles"),
        ({"event": "nope"}, "unknown_event", "event"),
        ({"measure": "sum", "event": "buy", "property": "nope"}, "unknown_property", "property"),
        ({"event": "pv", "filters": [{"property": "nope", "operator": "is_set"}]}, "unknown_property",
         "filters[0].property"),
        ({"measure": "time_between", "from_event": "pv", "to_event": "nope"}, "unknown_event", "to_event"),
        ({"measure": "time_between", "from_event": "pv", "to_event": "buy", "window_seconds": 0}, "bad_window",
         "window_seconds"),
    ]:
        with pytest.raises(UserloopError) as exc:
            shop.query(**base, **body)
        assert (exc.value.code, exc.value.field) == (code, field), body


def test_empty_result(shop: World) -> None:
    r = shop.query(kind="distribution", date_from="2025-01-01", date_to="2025-01-02", event="pv")
    assert r["persons"] == 0 and r["buckets"] == [{"label": "1", "from": 1.0, "to": 2.0, "persons": 0}]
    assert r["stats"]["mean"] is None and r["stats"]["percentiles"]["p50"] is None


def test_random_world_matches_pandas(world: World) -> None:
    rng = np.random.default_rng(11)
    t0 = datetime(2026, 2, 1, tzinfo=UTC)
    n = 2500
    users = rng.integers(0, 200, n) ** 2 // 200
    secs = rng.integers(0, 40 * 86400, n)
    copy = rng.integers(0, n, 400)  # 400 more events of the same person at the same instant
    users, secs = np.concatenate([users, users[copy]]), np.concatenate([secs, secs[copy]])
    n += len(copy)
    names = rng.choice(["pv", "pv", "pv", "cart", "buy"], n)
    revenue = rng.integers(-50, 500, n) / 4
    add(world, [{"distinct_id": f"u{u}", "event": str(e), "ts": t0 + timedelta(seconds=int(s)),
                 "properties": {"revenue": float(x)}}
                for u, s, e, x in zip(users, secs, names, revenue, strict=True)])
    for i in range(0, 30, 3):
        world.merge(f"u{i}", f"u{i + 1}")
    df = world.frame()
    lo, hi = "2026-02-05", "2026-03-01"
    for body, v, edges, trim in [
        ({"event": "pv"}, values(df, "count", lo, hi, event="pv"), COUNT_BINS, True),
        ({"event": "pv", "bins": [2, 3, 5, 8]}, values(df, "count", lo, hi, event="pv"), [2, 3, 5, 8], False),
        ({"measure": "sum", "event": "buy", "property": "revenue"},
         values(df, "sum", lo, hi, event="buy", prop="revenue"), SUM_BINS, True),
        ({"measure": "time_between", "from_event": "cart", "to_event": "buy"},
         values(df, "time_between", lo, hi, a="cart", b="buy"), TIME_BINS, True),
        ({"measure": "time_between", "from_event": "pv", "to_event": "pv", "window_seconds": 3 * 86400},
         values(df, "time_between", lo, hi, a="pv", b="pv", window=3 * 86400), TIME_BINS, True),
    ]:
        r = world.query(kind="distribution", date_from=lo, date_to=hi, **body)
        same(summary(r), expected(v, [float(e) for e in edges], trim))


def test_taobao_matches_pandas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import require_shared
    from userloop.backend import LocalBackend
    from userloop.ingest.files import ImportSpec, iter_chunks

    path = require_shared("taobao_userbehavior", "userbehavior_head_sample.csv")
    b = LocalBackend(tmp_path / "tb.duckdb")
    try:
        project = b.create_project("tb", TZ)
        pid = project["id"]
        for chunk in iter_chunks(ImportSpec(path=path, project_id=pid, preset="taobao")):
            b.import_table(pid, chunk)
        base = {"kind": "distribution", "project": pid, "date_from": "2017-11-25", "date_to": "2017-12-03"}
        counts = b.query(pid, json.dumps({**base, "event": "pv"}).encode())
        gaps = b.query(pid, json.dumps({**base, "measure": "time_between", "from_event": "cart",
                                        "to_event": "buy"}).encode())
    finally:
        b.close()
    df = pd.read_csv(path, header=None, names=["user", "item", "cat", "event", "ts"])
    df["ts"] = pd.to_datetime(df.ts, unit="s", utc=True)
    lo, hi = "2017-11-25", "2017-12-03"
    same(summary(counts), expected(values(df, "count", lo, hi, event="pv", person="user"), COUNT_BINS))
    v = values(df, "time_between", lo, hi, a="cart", b="buy", person="user")
    same(summary(gaps), expected(v, TIME_BINS))
    assert gaps["converted"] > 10
