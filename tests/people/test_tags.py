"""Rule tags against pandas on hand-built events: every aggregate, windows (edges, events after the
compute time), filters, an identity merge, buckets, fill_zero; history rows only on change."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.store.duckdb import Store
from userloop.store.writer import Writer

AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
START = AS_OF - timedelta(days=30)  # a UTC project: 30 days of 24 hours


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[World]:
    store = Store(tmp_path / "tags.duckdb")
    project = store.create_project("shop", "UTC")
    with Writer(store) as writer:
        w = World(store=store, writer=writer, project=project, rows=[])
        w.add([
            {"distinct_id": "a", "event": "buy", "ts": "2026-02-20T10:00:00", "properties": {"amount": 100, "cat": "books"}},
            {"distinct_id": "a", "event": "buy", "ts": "2026-03-02T10:00:00", "properties": {"amount": 10, "cat": "toys"}},
            {"distinct_id": "a", "event": "buy", "ts": "2026-03-05T10:00:00", "properties": {"amount": "5.5", "cat": "books"}},
            {"distinct_id": "a", "event": "buy", "ts": "2026-03-10T10:00:00",
             "properties": {"amount": 20, "cat": "toys", "coupon": "C1"}},
            {"distinct_id": "a", "event": "pv", "ts": "2026-03-10T11:00:00", "properties": {"cat": "garden"}},
            # a's anonymous id: merged below, so its buy counts for a (books 2 : toys 2, the tie -> "books")
            {"distinct_id": "a-anon", "event": "buy", "ts": "2026-03-15T10:00:00", "properties": {"amount": 7, "cat": "books"}},
            {"distinct_id": "b", "event": "buy", "ts": "2026-03-01T11:59:59", "properties": {"amount": 50, "cat": "food"}},
            {"distinct_id": "b", "event": "buy", "ts": "2026-03-01T12:00:00", "properties": {"amount": 1, "cat": "food"}},
            {"distinct_id": "b", "event": "buy", "ts": "2026-03-20T09:00:00", "properties": {"amount": "n/a", "cat": "toys"}},
            # same instant twice: first/last break the tie by message id (as text "x10" < "x9")
            {"distinct_id": "b", "event": "buy", "ts": "2026-03-22T09:00:00", "properties": {"cat": "zoo"}, "message_id": "x9"},
            {"distinct_id": "b", "event": "buy", "ts": "2026-03-22T09:00:00", "properties": {"cat": "art"}, "message_id": "x10"},
            {"distinct_id": "c", "event": "pv", "ts": "2026-03-20T09:00:00"},
            {"distinct_id": "d", "event": "buy", "ts": "2026-03-31T12:00:00", "properties": {"amount": 9}},  # at as_of: out
            {"distinct_id": "d", "event": "buy", "ts": "2026-04-02T12:00:00", "properties": {"amount": 9}},  # after: out
            {"distinct_id": "e", "event": "buy", "ts": "2026-03-25T08:00:00", "properties": {"amount": 3, "cat": "toys"}},
            {"distinct_id": "e", "event": "buy", "ts": "2026-03-26T08:00:00", "properties": {"amount": 4}},
        ])
        w.merge("a", "a-anon")
        yield w
    store.close()


def ctx(w: World) -> ActionContext:
    return ActionContext(store=w.store, writer=w.writer, project=w.project)


def create(w: World, **definition: Any) -> dict[str, Any]:
    return run_action("tags.create", ctx(w), {**definition, "as_of": AS_OF.isoformat()})  # type: ignore[no-any-return]


def values(w: World, tag: str) -> dict[str, tuple[str, float | None]]:
    rows = w.store.query("SELECT person_id, value, num_value FROM tag_values WHERE project_id = ? AND tag = ?",
                         [w.project.id, tag])
    return {r["person_id"]: (r["value"], r["num_value"]) for r in rows}


def events(w: World, event: str = "buy", start: datetime = START, end: datetime = AS_OF) -> pd.DataFrame:
    df = w.frame()
    df = df[(df.event == event) & (df.ts >= start) & (df.ts < end)].copy()
    df["cat"] = df.properties.map(lambda p: p.get("cat") if isinstance(p, dict) else None)
    df["amount"] = pd.to_numeric(df.properties.map(lambda p: p.get("amount") if isinstance(p, dict) else None),
                                 errors="coerce")
    return df


def num(x: float) -> str:
    return f"{x:.15g}"


def as_values(s: pd.Series, text=num) -> dict[str, tuple[str, float | None]]:  # type: ignore[no-untyped-def]
    return {p: (text(v), float(v)) for p, v in s.dropna().items()}


def test_the_merge_moved_a_anon_to_a(shop: World) -> None:
    ids = shop.persons()
    assert ids["a-anon"] == ids["a"]
    assert len(set(ids.values())) == 5  # a, b, c, d, e


def test_numeric_aggregates_match_pandas(shop: World) -> None:
    window = {"last_days": 30}
    df = events(shop)
    by = df.groupby("person_id")
    for agg in ("count", "sum", "avg", "min", "max", "distinct"):
        rule: dict[str, Any] = {"aggregate": agg, "event": "buy", "window": window}
        if agg != "count":
            rule["property"] = "cat" if agg == "distinct" else "amount"
        create(shop, name=f"t_{agg}", kind="semi_dynamic", rule=rule)
        if agg == "count":
            exp = as_values(by.size(), str)
        elif agg == "distinct":
            exp = as_values(by.cat.nunique(), str)
        else:
            exp = as_values(getattr(by.amount, {"avg": "mean"}.get(agg, agg))())
            if agg == "sum":  # pandas sums an all-NaN group to 0; SQL gives NULL (no value)
                has = by.amount.count()
                exp = {p: v for p, v in exp.items() if has[p] > 0}
        assert values(shop, f"t_{agg}") == exp, agg
    ids = shop.persons()
    # by hand: a's window holds 10, 5.5, 20 and a-anon's 7; b's 50 is one second too early, "n/a" is no number
    assert values(shop, "t_sum")[ids["a"]] == ("42.5", 42.5)
    assert values(shop, "t_count")[ids["b"]] == ("4", 4.0)
    assert values(shop, "t_avg")[ids["b"]] == ("1", 1.0)
    assert ids["d"] not in values(shop, "t_count") and ids["c"] not in values(shop, "t_count")


def test_text_aggregates_match_pandas(shop: World) -> None:
    df = events(shop).sort_values(["ts", "message_id"])
    known = df[df.cat.notna()]
    for agg in ("first", "last", "most_frequent"):
        create(shop, name=f"t_{agg}", kind="dynamic",
               rule={"aggregate": agg, "event": "buy", "property": "cat", "window": {"last_days": 30}})
    first = known.groupby("person_id").cat.first()
    last = known.groupby("person_id").cat.last()
    counts = known.groupby(["person_id", "cat"]).size().reset_index(name="n")
    mode = counts.sort_values(["person_id", "n", "cat"], ascending=[True, False, True]).groupby("person_id").cat.first()
    for agg, exp in (("first", first), ("last", last), ("most_frequent", mode)):
        assert values(shop, f"t_{agg}") == {p: (v, None) for p, v in exp.items()}, agg
    ids = shop.persons()
    assert values(shop, "t_most_frequent")[ids["a"]] == ("books", None)  # 2:2 with toys, the smaller wins
    assert values(shop, "t_last")[ids["b"]] == ("zoo", None)  # same instant: message id x9 > x10
    assert values(shop, "t_first")[ids["b"]] == ("food", None)


def test_last_purchase_time_all_time_and_date_window(shop: World) -> None:
    create(shop, name="last_buy", kind="semi_dynamic", rule={"aggregate": "max", "event": "buy", "property": "timestamp"})
    df = events(shop, start=datetime(2000, 1, 1, tzinfo=UTC))
    exp = df.groupby("person_id").ts.max().map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert values(shop, "last_buy") == {p: (v, None) for p, v in exp.items()}
    # inclusive local dates: March 1 to 5 (b's 11:59:59 buy counts here)
    create(shop, name="early_march", kind="semi_dynamic",
           rule={"aggregate": "sum", "event": "buy", "property": "amount",
                 "window": {"date_from": "2026-03-01", "date_to": "2026-03-05"}})
    ids = shop.persons()
    assert values(shop, "early_march") == {ids["a"]: ("15.5", 15.5), ids["b"]: ("51", 51.0)}


def test_filters_and_any_event(shop: World) -> None:
    create(shop, name="toys", kind="semi_dynamic",
           rule={"aggregate": "count", "event": "buy", "window": {"last_days": 30},
                 "filters": [{"property": "cat", "operator": "=", "value": "toys"},
                             {"property": "amount", "operator": ">", "value": 6}]})
    df = events(shop)
    exp = df[(df.cat == "toys") & (df.amount > 6)].groupby("person_id").size()
    assert values(shop, "toys") == as_values(exp, str)
    assert list(values(shop, "toys").values()) == [("2", 2.0)]  # a: 10 and 20 ("n/a" and 3 are out)
    create(shop, name="active", kind="dynamic", rule={"aggregate": "count", "window": {"last_days": 30}})
    all_events = shop.frame()
    all_events = all_events[(all_events.ts >= START) & (all_events.ts < AS_OF)]
    assert values(shop, "active") == as_values(all_events.groupby("person_id").size(), str)


def test_buckets_and_fill_zero(shop: World) -> None:
    buckets = [{"name": "none", "max": 0}, {"name": "low", "max": 1}, {"name": "mid", "max": 3}, {"name": "high"}]
    create(shop, name="level", kind="dynamic",
           rule={"aggregate": "count", "event": "buy", "window": {"last_days": 30}, "buckets": buckets,
                 "fill_zero": True})
    n = events(shop).groupby("person_id").size().reindex(sorted(set(shop.persons().values())), fill_value=0)
    exp = pd.cut(n, [-1, 0, 1, 3, float("inf")], labels=["none", "low", "mid", "high"])
    assert values(shop, "level") == {p: (str(v), None) for p, v in exp.items()}
    ids = shop.persons()
    assert values(shop, "level")[ids["a"]] == ("high", None)  # 4 buys
    assert values(shop, "level")[ids["c"]] == ("none", None)  # no buy: 0 with fill_zero
    # without a catch-all bucket, values above the last max get no value
    create(shop, name="small", kind="semi_dynamic",
           rule={"aggregate": "sum", "event": "buy", "property": "amount", "window": {"last_days": 30},
                 "buckets": [{"name": "tiny", "max": 2}, {"name": "small", "max": 10}]})
    assert values(shop, "small") == {ids["b"]: ("tiny", None), ids["e"]: ("small", None)}


def history(w: World, tag: str) -> list[tuple[str, str, datetime, datetime | None]]:
    rows = w.store.query("SELECT person_id, value, valid_from, valid_to FROM tag_history WHERE tag = ? "
                         "ORDER BY person_id, valid_from", [tag])
    return [(r["person_id"], r["value"], r["valid_from"], r["valid_to"]) for r in rows]


def counts_at(w: World, as_of: datetime) -> dict[str, tuple[str, float]]:
    df = events(w, start=as_of - timedelta(days=30), end=as_of)
    return as_values(df.groupby("person_id").size(), str)


def test_history_rows_only_on_change(shop: World) -> None:
    c = ctx(shop)
    ids = shop.persons()
    t1, t2 = AS_OF, AS_OF + timedelta(days=1)
    made = create(shop, name="buys", kind="dynamic",
                  rule={"aggregate": "count", "event": "buy", "window": {"last_days": 30}})
    r1 = made["compute"]
    assert made["computed_at"] == t1 and made["created_at"] > t1  # saved now, computed as of t1
    assert values(shop, "buys") == counts_at(shop, t1)
    assert (r1["persons"], r1["added"], r1["history_rows"]) == (3, 3, 3)  # a 4, b 4, e 2
    # t2: the window moves a day (a's March 2 10:00 and b's March 1 12:00 buys leave, d's March 31 12:00
    # enters) and e buys again
    shop.add([{"distinct_id": "e", "event": "buy", "ts": "2026-03-31T20:00:00", "properties": {"amount": 1}}])
    r2 = run_action("tags.compute", c, {"name": "buys", "as_of": t2.isoformat()})
    assert values(shop, "buys") == counts_at(shop, t2)
    assert (r2["added"], r2["changed"], r2["removed"], r2["history_rows"]) == (1, 3, 0, 4)
    # an hour later nothing changed: no history rows
    r3 = run_action("tags.compute", c, {"name": "buys", "as_of": (t2 + timedelta(hours=1)).isoformat()})
    assert (r3["added"], r3["changed"], r3["removed"], r3["history_rows"]) == (0, 0, 0, 0)
    assert history(shop, "buys") == sorted([
        (ids["a"], "4", t1, t2), (ids["a"], "3", t2, None),
        (ids["b"], "4", t1, t2), (ids["b"], "3", t2, None),
        (ids["d"], "1", t2, None),
        (ids["e"], "2", t1, t2), (ids["e"], "3", t2, None),
    ], key=lambda h: (h[0], h[2]))
    # the value at a time, by distinct id (a-anon is a now) or person id
    h = run_action("tags.history", c, {"name": "buys", "person": "a-anon", "at": (t2 - timedelta(seconds=1)).isoformat()})
    assert (h["person_id"], h["value_at"], len(h["history"])) == (ids["a"], "4", 2)
    h = run_action("tags.history", c, {"name": "buys", "person": ids["a"], "at": t2.isoformat()})
    assert h["value_at"] == "3"
    h = run_action("tags.history", c, {"name": "buys", "person": "d", "at": t1.isoformat()})
    assert h["value_at"] is None
    # a month later only d's April 2 buy is in the window: a, b, e lose their value, their rows close
    t4 = AS_OF + timedelta(days=31)
    r4 = run_action("tags.compute", c, {"name": "buys", "as_of": t4.isoformat()})
    assert (r4["persons"], r4["removed"], r4["changed"], r4["history_rows"]) == (1, 3, 0, 0)
    assert values(shop, "buys") == counts_at(shop, t4) == {ids["d"]: ("1", 1.0)}
    assert [(v, vt) for p, v, _, vt in history(shop, "buys") if p == ids["b"]] == [("4", t2), ("3", t4)]
    with pytest.raises(UserloopError) as exc:  # history is written in time order
        run_action("tags.compute", c, {"name": "buys", "as_of": t1.isoformat()})
    assert (exc.value.code, exc.value.field) == ("invalid_as_of", "as_of")
    with pytest.raises(UserloopError) as exc:
        run_action("tags.history", c, {"name": "buys", "person": "nobody"})
    assert (exc.value.code, exc.value.status) == ("person_not_found", 404)


def test_merge_after_compute_moves_the_value(shop: World) -> None:
    c = ctx(shop)
    shop.add([{"distinct_id": "f", "event": "buy", "ts": "2026-03-30T10:00:00", "properties": {"amount": 1}}])
    assert shop.store.query("SELECT count(*) AS n FROM events") == [{"n": len(shop.rows)}]
    create(shop, name="buys", kind="dynamic",
           rule={"aggregate": "count", "event": "buy", "window": {"last_days": 30}})
    before = shop.persons()
    assert values(shop, "buys")[before["f"]] == ("1", 1.0)
    shop.merge("e", "f")  # f's buy now belongs to e
    r = run_action("tags.compute", c, {"name": "buys", "as_of": (AS_OF + timedelta(hours=1)).isoformat()})
    after = values(shop, "buys")
    assert before["f"] not in after and after[before["e"]] == ("3", 3.0)
    assert values(shop, "buys") == counts_at(shop, AS_OF + timedelta(hours=1))
    # f merged away; e 2 -> 3, and b: its March 1 12:00 buy left the window; d's March 31 12:00 buy entered
    assert (r["removed"], r["changed"], r["added"]) == (1, 2, 1)
    closed = [h for h in history(shop, "buys") if h[0] == before["f"]]
    assert [(v, vt) for _, v, _, vt in closed] == [("1", AS_OF + timedelta(hours=1))]


def test_property_tag_follows_profiles(shop: World) -> None:
    from userloop.ingest.event import Payload, ProfileOp

    pid = shop.project.id
    shop.writer.write(Payload(ops=[
        ProfileOp(project_id=pid, distinct_id="a", op="set", properties={"city": "Beijing", "age": 30}),
        ProfileOp(project_id=pid, distinct_id="b", op="set", properties={"city": "Shanghai"}),
    ], accepted=2))
    out = run_action("tags.create", ctx(shop), {"name": "city", "kind": "static", "property": "city"})
    assert out["schedule"] == "interval:300" and out["source"] == "property"
    ids = shop.persons()
    assert values(shop, "city") == {ids["a"]: ("Beijing", None), ids["b"]: ("Shanghai", None)}
    shop.writer.write(Payload(ops=[ProfileOp(project_id=pid, distinct_id="b", op="unset", properties={"city": None}),
                                   ProfileOp(project_id=pid, distinct_id="c", op="set", properties={"city": "Xi'an"})],
                              accepted=2))
    run_action("tags.compute", ctx(shop), {"name": "city"})
    assert values(shop, "city") == {ids["a"]: ("Beijing", None), ids["c"]: ("Xi'an", None)}
    run_action("tags.create", ctx(shop), {"name": "age", "kind": "static", "property": "age"})
    assert values(shop, "age") == {ids["a"]: ("30", 30.0)}


def test_invalid_rules_name_the_field_and_save_nothing(shop: World) -> None:
    c = ctx(shop)
    base = {"name": "x", "kind": "dynamic"}
    cases = [
        ({"rule": {"aggregate": "median", "event": "buy"}}, "invalid_field", "rule.aggregate"),
        ({"rule": {"aggregate": "count", "event": "buy", "windw": {}}}, "unknown_field", "rule.windw"),
        ({"rule": {"aggregate": "sum", "event": "buy"}}, "property_required", "rule.property"),
        ({"rule": {"aggregate": "count", "event": "nope"}}, "unknown_event", "rule.event"),
        ({"rule": {"aggregate": "sum", "event": "buy", "property": "price"}}, "unknown_property", "rule.property"),
        ({"rule": {"aggregate": "count", "event": "buy", "filters": [{"property": "cat", "operator": "in", "value": []}]}},
         "bad_filter", "rule.filters[0].value"),
        ({"rule": {"aggregate": "count", "event": "buy", "filters": [{"property": "cat", "operator": "~"}]}},
         "invalid_field", "rule.filters[0].operator"),
        ({"rule": {"aggregate": "count", "window": {"last_days": 0}}}, "invalid_window", "rule.window.last_days"),
        ({"rule": {"aggregate": "count", "window": {"date_from": "2026-03-02"}}}, "invalid_window", "rule.window.date_to"),
        ({"rule": {"aggregate": "count", "window": {"date_from": "2026-03-02", "date_to": "2026-03-01"}}},
         "invalid_window", "rule.window.date_to"),
        ({"rule": {"aggregate": "count", "window": {"date_from": "March"}}}, "invalid_field", "rule.window.date_from"),
        ({"rule": {"aggregate": "count", "buckets": [{"name": "a", "max": 5}, {"name": "b", "max": 5}]}},
         "invalid_buckets", "rule.buckets[1].max"),
        ({"rule": {"aggregate": "count", "buckets": [{"name": "a"}, {"name": "b", "max": 5}]}},
         "invalid_buckets", "rule.buckets[0].max"),
        ({"rule": {"aggregate": "count", "buckets": [{"name": "a", "max": 1}, {"name": "a"}]}},
         "invalid_buckets", "rule.buckets[1].name"),
        ({"rule": {"aggregate": "last", "property": "cat", "buckets": [{"name": "a"}]}}, "invalid_buckets", "rule.buckets"),
        ({"rule": {"aggregate": "avg", "property": "amount", "fill_zero": True}}, "invalid_field", "rule.fill_zero"),
        ({"rule": {"aggregate": "first", "property": "timestamp"}}, "invalid_field", "rule.property"),
        ({"rule": {"aggregate": "count"}, "schedule": "every hour"}, "invalid_schedule", "schedule"),
        ({"rule": {"aggregate": "count"}, "schedule": "cron:61 * * * *"}, "invalid_schedule", "schedule"),
        ({"rule": {"aggregate": "count"}, "sql": "SELECT 1"}, "conflicting_source", "sql"),
        ({}, "dynamic_tag_needs_rule", "rule"),
        ({"kind": "static", "rule": {"aggregate": "count"}}, "static_tag_computed", "rule"),
        ({"kind": "semi_dynamic", "property": "city"}, "property_tag_not_static", "property"),
        ({"kind": "permanent"}, "invalid_field", "kind"),
        ({"name": "Bad Name", "rule": {"aggregate": "count"}}, "invalid_name", "name"),
        ({"rule": {"aggregate": "count"}, "category": "a//b"}, "invalid_category", "category"),
        ({"rule": {"aggregate": "count"}, "colour": "red"}, "unknown_field", "colour"),
    ]
    for extra, code, field in cases:
        with pytest.raises(UserloopError) as exc:
            run_action("tags.create", c, {**base, **extra})
        assert (exc.value.code, exc.value.field, exc.value.status) == (code, field, 400), extra
    with pytest.raises(UserloopError) as exc:
        run_action("tags.create", c, {"kind": "static"})
    assert (exc.value.code, exc.value.field) == ("missing_field", "name")
    assert shop.store.query("SELECT count(*) AS n FROM tags") == [{"n": 0}]
    # a failed update leaves the definition and the values as they were
    create(shop, name="buys", kind="dynamic", rule={"aggregate": "count", "event": "buy"})
    before = values(shop, "buys")
    for bad in ({"rule": {"aggregate": "count", "event": "nope"}}, {"sql": "SELECT 1 AS person_id"}):
        with pytest.raises(UserloopError):
            run_action("tags.update", c, {"name": "buys", "rule": None, **bad})
    assert run_action("tags.get", c, {"name": "buys"})["rule"] == {"aggregate": "count", "event": "buy"}
    assert values(shop, "buys") == before
    with pytest.raises(UserloopError) as exc:
        run_action("tags.create", c, {"name": "buys", "kind": "static"})
    assert (exc.value.code, exc.value.status) == ("tag_exists", 409)
