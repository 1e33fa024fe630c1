"""LTV by acquisition cohort against pandas: hand-built Shanghai edges, merges, revenue before the
acquisition, periods past date_to, and the Online Retail data (monthly LTV, repeat purchase)."""

from __future__ import annotations

import json

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


def L(day: str, hm: str) -> str:
    """A Shanghai wall-clock time (ISO with its offset)."""
    return f"{day}T{hm}+08:00"


def period(local: pd.Series, interval: str) -> pd.Series:
    day = local.dt.tz_localize(None).dt.normalize()
    if interval == "day":
        return day
    if interval == "week":
        return day - pd.to_timedelta(day.dt.day_of_week, unit="D")
    return day.dt.to_period("M").dt.to_timestamp()


def diff(a: pd.Series, b: pd.Series, interval: str) -> pd.Series:
    if interval == "month":
        return (b.dt.year - a.dt.year) * 12 + (b.dt.month - a.dt.month)
    days = (b - a).dt.days
    return days // 7 if interval == "week" else days


def expected(df: pd.DataFrame, date_from: str, date_to: str, interval: str, periods: int, revenue_event: str,
             value: pd.Series, cohort_event: str | None = None, tz: str = TZ, person: str = "person_id") -> list[dict]:
    """Cohorts with pandas only; ``value`` is the revenue of each row of ``df`` (NaN = none)."""
    df = df.assign(local=pd.to_datetime(df["ts"], utc=True).dt.tz_convert(tz), value=value)
    df = df.assign(p=period(df["local"], interval))
    firsts = df if cohort_event is None else df[df.event == cohort_event]
    t0 = firsts.groupby(person)["local"].min()
    lo = pd.Timestamp(date_from, tz=tz)
    hi = pd.Timestamp(date_to, tz=tz) + pd.Timedelta(days=1)
    t0 = t0[(t0 >= lo) & (t0 < hi)]
    cohort = period(t0.to_frame()["local"], interval)
    rev = df[(df.event == revenue_event) & df[person].isin(t0.index)].copy()
    rev = rev[rev["local"] >= rev[person].map(t0)]
    rev["cohort"] = rev[person].map(cohort)
    rev["k"] = diff(rev["cohort"], rev["p"], interval)
    rev = rev[rev.k < periods]
    starts = pd.date_range(period(pd.Series([lo]), interval)[0], hi.tz_localize(None) - pd.Timedelta(days=1),
                           freq={"day": "D", "week": "7D", "month": "MS"}[interval])
    out = []
    for c in starts:
        size = int((cohort == c).sum())
        mine = rev[rev.cohort == c]
        per = [float(mine[mine.k == k]["value"].fillna(0).sum()) for k in range(periods)]
        cum = list(np.cumsum(per)) if per else []
        n = mine.groupby(person).size()
        out.append({"start": c.strftime("%Y-%m-%d"), "size": size, "revenue": per,
                    "ltv": [x / size if size else None for x in cum],
                    "buyers": int((n >= 1).sum()), "repeat_buyers": int((n >= 2).sum())})
    return out


def same(got: list[dict], exp: list[dict]) -> None:
    assert [(c["start"], c["size"], c["buyers"], c["repeat_buyers"]) for c in got] == [
        (c["start"], c["size"], c["buyers"], c["repeat_buyers"]) for c in exp]
    for g, e in zip(got, exp, strict=True):
        assert g["revenue"] == pytest.approx(e["revenue"], rel=1e-9, abs=1e-6)
        assert [x is None for x in g["ltv"]] == [x is None for x in e["ltv"]]
        assert [x for x in g["ltv"] if x is not None] == pytest.approx([x for x in e["ltv"] if x is not None],
                                                                       rel=1e-9, abs=1e-6)


def revenue_of(df: pd.DataFrame, key: str = "revenue") -> pd.Series:
    raw = df["properties"].map(lambda p: p.get(key) if isinstance(p, dict) else None)
    return pd.to_numeric(raw, errors="coerce")


@pytest.fixture
def shop(world: World) -> World:
    add(world, [  # out of order: b's later purchases first
        {"distinct_id": "b", "event": "buy", "ts": L("2026-03-04", "09:00"), "properties": {"revenue": 20}},
        {"distinct_id": "b", "event": "buy", "ts": L("2026-03-05", "09:00"), "properties": {"revenue": 100}},
    ])
    add(world, [
        {"distinct_id": "a", "event": "signup", "ts": L("2026-02-28", "23:30")},  # before the range: no cohort
        {"distinct_id": "a", "event": "buy", "ts": L("2026-03-02", "09:00"), "properties": {"revenue": 999}},
        {"distinct_id": "b", "event": "pv", "ts": L("2026-03-01", "00:10")},  # Feb 28 16:10 UTC: cohort Mar 1
        {"distinct_id": "b", "event": "buy", "ts": L("2026-03-01", "09:00"), "properties": {"revenue": 10}},
        {"distinct_id": "b", "event": "buy", "ts": L("2026-03-02", "09:00"), "properties": {"revenue": "5.5"}},
        # c's anonymous visit on Feb 27 makes c an earlier customer after the merge: no cohort
        {"distinct_id": "c-anon", "event": "pv", "ts": L("2026-02-27", "09:00")},
        {"distinct_id": "c", "event": "pv", "ts": L("2026-03-02", "09:00")},
        {"distinct_id": "c", "event": "buy", "ts": L("2026-03-02", "09:30"), "properties": {"revenue": 50}},
        {"distinct_id": "d", "event": "pv", "ts": L("2026-03-02", "10:00")},
        {"distinct_id": "d", "event": "signup", "ts": L("2026-03-02", "10:00")},
        {"distinct_id": "d", "event": "buy", "ts": L("2026-03-02", "10:00"), "properties": {"revenue": 7}},
        {"distinct_id": "d-app", "event": "buy", "ts": L("2026-03-03", "10:00"), "properties": {"revenue": 3}},
        {"distinct_id": "e", "event": "buy", "ts": L("2026-03-03", "23:59:59"), "properties": {"revenue": 1}},
        {"distinct_id": "f", "event": "pv", "ts": L("2026-03-03", "08:00")},
        {"distinct_id": "f", "event": "buy", "ts": L("2026-03-04", "08:00"), "properties": {"revenue": "n/a"}},
        {"distinct_id": "g", "event": "buy", "ts": L("2026-03-02", "08:00"), "properties": {"revenue": 4}},
        {"distinct_id": "g", "event": "signup", "ts": L("2026-03-02", "12:00")},
        {"distinct_id": "g", "event": "buy", "ts": L("2026-03-03", "12:00"), "properties": {"revenue": 30}},
    ])
    world.merge("c", "c-anon")
    world.merge("d", "d-app")
    return world


def test_daily_cohorts_by_first_event(shop: World) -> None:
    r = shop.query(kind="ltv", date_from="2026-03-01", date_to="2026-03-03", interval="day", periods=4,
                   revenue_event="buy", revenue_property="revenue")
    df = shop.frame()
    same(r["cohorts"], expected(df, "2026-03-01", "2026-03-03", "day", 4, "buy", revenue_of(df)))
    c1, c2, c3 = r["cohorts"]
    # Mar 1: b; Mar 4 (after date_to) is period 3, Mar 5 is past the 4 periods
    assert (c1["size"], c1["revenue"], c1["cumulative_revenue"]) == (1, [10.0, 5.5, 0.0, 20.0], [10.0, 15.5, 15.5, 35.5])
    # Mar 2: d (and d-app's buy) and g (its first event is a buy); c is out (anonymous Feb 27 visit)
    assert (c2["size"], c2["revenue"], c2["ltv"]) == (2, [11.0, 33.0, 0.0, 0.0], [5.5, 22.0, 22.0, 22.0])
    assert (c2["buyers"], c2["repeat_buyers"], c2["repeat_rate"]) == (2, 2, 1.0)
    # Mar 3: e (23:59:59 local) and f (a buy without a readable revenue still makes a buyer)
    assert (c3["size"], c3["revenue"], c3["buyers"], c3["repeat_buyers"]) == (2, [1.0, 0.0, 0.0, 0.0], 2, 0)
    avg = r["average"]
    assert avg["ltv"] == pytest.approx([22 / 5, 60.5 / 5, 60.5 / 5, 80.5 / 5])
    assert (avg["size"], avg["buyers"], avg["repeat_buyers"], avg["repeat_rate"]) == (5, 5, 3, 0.6)


def test_cohort_event(shop: World) -> None:
    r = shop.query(kind="ltv", date_from="2026-03-01", date_to="2026-03-03", interval="day", periods=3,
                   revenue_event="buy", cohort_event="signup")
    df = shop.frame()
    same(r["cohorts"], expected(df, "2026-03-01", "2026-03-03", "day", 3, "buy", revenue_of(df), "signup"))
    # d at 10:00 (its buy at the same instant counts), g at 12:00 (its 08:00 buy came before: left out)
    assert [c["size"] for c in r["cohorts"]] == [0, 2, 0]
    assert r["cohorts"][1]["revenue"] == [7.0, 33.0, 0.0]
    assert (r["cohorts"][1]["buyers"], r["cohorts"][1]["repeat_buyers"]) == (2, 1)
    assert r["cohorts"][0]["ltv"] == [None, None, None]


def test_month_and_week_edges(shop: World) -> None:
    add(shop, [
        {"distinct_id": "h", "event": "pv", "ts": "2026-03-31T16:30:00"},  # Apr 1 00:30 local: April cohort
        {"distinct_id": "h", "event": "buy", "ts": "2026-04-30T16:00:00", "properties": {"revenue": 8}},  # May 1
        {"distinct_id": "i", "event": "pv", "ts": "2026-03-31T15:30:00"},  # Mar 31 23:30 local
        {"distinct_id": "i", "event": "buy", "ts": "2026-03-31T15:45:00", "properties": {"revenue": 2}},
    ])
    df = shop.frame()
    for interval, lo, hi in (("month", "2026-03-01", "2026-04-30"), ("week", "2026-03-01", "2026-04-05")):
        r = shop.query(kind="ltv", date_from=lo, date_to=hi, interval=interval, periods=3, revenue_event="buy")
        same(r["cohorts"], expected(df, lo, hi, interval, 3, "buy", revenue_of(df)))
    r = shop.query(kind="ltv", date_from="2026-03-01", date_to="2026-04-30", interval="month", periods=3,
                   revenue_event="buy")
    assert [c["start"] for c in r["cohorts"]] == ["2026-03-01", "2026-04-01"]
    assert r["cohorts"][1]["revenue"] == [0.0, 8.0, 0.0]


def test_bad_fields(shop: World) -> None:
    base = {"kind": "ltv", "date_from": "2026-03-01", "date_to": "2026-03-03"}
    for body, code, field in [
        ({"revenue_event": "nope"}, "unknown_event", "revenue_event"),
        ({"revenue_event": "buy", "cohort_event": "nope"}, "unknown_event", "cohort_event"),
        ({"revenue_event": "buy", "periods": 0}, "bad_periods", "periods"),
        ({"revenue_event": "buy", "revenue_property": ""}, "property_required", "revenue_property"),
        ({"revenue_event": "buy", "interval": "hour"}, "invalid_field", "interval"),
        ({"revenue_event": "buy", "revenue_property": "price"}, "unknown_property", "revenue_property"),
    ]:
        with pytest.raises(UserloopError) as exc:
            shop.query(**base, **body)
        assert (exc.value.code, exc.value.field) == (code, field), body


def retail_invoices(path) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """Invoices from the raw CSV with exact money: price in thousandths (at most 3 decimals)."""
    raw = pd.read_csv(path, dtype=str)
    raw = raw[raw.CustomerID.notna()].copy()
    raw["milli"] = raw.Quantity.astype(int) * (raw.UnitPrice.astype(float) * 1000).round().astype(int)
    raw["when"] = pd.to_datetime(raw.InvoiceDate)
    inv = raw.groupby("InvoiceNo").agg(customer=("CustomerID", "first"), when=("when", "min"), milli=("milli", "sum"))
    cents = (inv.milli.abs() + 5) // 10 * np.sign(inv.milli)  # round half away from zero, as DuckDB's DECIMAL
    inv["revenue"] = cents / 100
    inv["event"] = np.where(inv.index.str.startswith("C"), "purchase_cancelled", "purchase")
    inv["ts"] = inv.when.dt.tz_localize("Europe/London").dt.tz_convert("UTC")
    return inv.reset_index()


def test_online_retail_monthly_ltv_and_repeat_purchase(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import require_shared
    from userloop.backend import LocalBackend
    from userloop.ingest.files import ImportSpec, iter_chunks

    path = require_shared("online_retail", "online_retail.csv.gz")
    b = LocalBackend(tmp_path / "retail.duckdb")
    try:
        project = b.create_project("retail", "Europe/London")
        pid = project["id"]
        for chunk in iter_chunks(ImportSpec(path=path, project_id=pid, preset="online_retail")):
            b.import_table(pid, chunk)
        base = {"kind": "ltv", "project": pid, "date_from": "2010-12-01", "date_to": "2011-06-30",
                "interval": "month", "periods": 6, "revenue_event": "purchase", "revenue_property": "revenue"}
        by_purchase = b.query(pid, json.dumps({**base, "cohort_event": "purchase"}).encode())
        by_any = b.query(pid, json.dumps(base).encode())
    finally:
        b.close()
    inv = retail_invoices(path)
    for got, cohort_event in ((by_purchase, "purchase"), (by_any, None)):
        exp = expected(inv, "2010-12-01", "2011-06-30", "month", 6, "purchase", inv["revenue"], cohort_event,
                       tz="Europe/London", person="customer")
        same(got["cohorts"], exp)
    first = by_purchase["cohorts"][0]
    assert first["start"] == "2010-12-01" and first["size"] > 800 and first["repeat_rate"] > 0.5
    assert first["ltv"] == sorted(first["ltv"])  # cumulative
    # the repeat purchase rate over all first-purchase cohorts, straight from the invoices
    buys = inv[inv.event == "purchase"].copy()
    buys["month"] = buys.when.dt.to_period("M")
    first_month = buys.groupby("customer").month.min()
    buys["k"] = [(m - first_month[c]).n for m, c in zip(buys.month, buys.customer, strict=True)]
    cohort_customers = first_month[(first_month >= pd.Period("2010-12")) & (first_month <= pd.Period("2011-06"))].index
    n = buys[buys.customer.isin(cohort_customers) & (buys.k < 6)].groupby("customer").size()
    avg = by_purchase["average"]
    assert (avg["buyers"], avg["repeat_buyers"]) == (len(n), int((n >= 2).sum()))
    assert avg["repeat_rate"] == pytest.approx((n >= 2).mean())
