"""Segment rules against an independent reference (pandas / plain Python over the same rows).

Hand-built data in Asia/Shanghai: identity merges after the events (the merged visits count for the
person, a merged id's purchase excludes them), events on both sides of local-midnight window
edges, events outside the windows, a non-numeric property value, persons without events. Every
condition kind alone, then random AND/OR/NOT trees, both SQL strategies (``columns`` and ``sets``).
"""

from __future__ import annotations

import json
import operator
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.ingest.event import ProfileOp
from userloop.store.duckdb import Store
from userloop.store.writer import Writer

TZ = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2024, 6, 15, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai: "today" is 2024-06-15
STRATEGIES = ["columns", "sets"]

# distinct id -> person properties
PROFILES: dict[str, dict[str, Any]] = {
    "u1": {"city": "Beijing", "age": 30, "gender": "f"},
    "u2": {"city": "Beijing", "age": 25},
    "u3": {"city": "Beijing", "age": 41, "vip": True},
    "u4": {"city": "Shanghai", "age": 35, "gender": "m"},
    "u5": {"city": "Beijing"},
    "u6": {"city": "Beijing", "age": "unknown"},
    "u7": {"city": "Beijing", "age": 52, "gender": "f"},
    "u8": {"city": "Beijing"},
    "u10": {"city": "Beijing", "age": 19},
    "f3": {"city": "Nanjing"},
}


def _events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(did: str, event: str, ts: str, **props: Any) -> None:
        out.append({"distinct_id": did, "event": event, "ts": ts, "properties": props})

    for d in ("2024-06-01T02:00", "2024-06-02T02:00"):
        add("u1", "visit", d)
    for d in ("2024-05-20T02:00", "2024-05-21T02:00"):
        add("a1", "visit", d)  # anonymous, merged into u1 afterwards
    add("u1", "purchase", "2024-05-01T02:00", brand="Lancome", price=100)
    for i in range(1, 6):
        add("u2", "visit", f"2024-05-0{i}T02:00")
        add("u3", "visit", f"2024-05-0{i}T02:00")
    add(
        "u2", "purchase", "2024-06-08T16:00:00", brand="Shiseido", price=300
    )  # local 06-09 00:00: inside 7 days
    add(
        "u3", "purchase", "2024-06-08T15:59:59", brand="Shiseido", price="abc"
    )  # local 06-08 23:59:59: outside
    add("u3", "purchase", "2024-06-10T02:00", brand="Dior", price=50)
    for i in range(1, 7):
        add("u4", "visit", f"2024-05-0{i}T02:00")
    add("u4", "purchase", "2024-06-01T02:00", brand="Dior", price=20)
    for i in range(1, 4):
        add("u5", "visit", f"2024-05-0{i}T02:00")
    add("u5", "visit", "2024-03-01T00:00")
    add("u5", "visit", "2024-03-02T00:00")  # outside the last 90 days
    add("u5", "purchase", "2024-06-01T02:00", price=10)
    for i in range(1, 5):
        add("u6", "visit", f"2024-05-0{i}T02:00")
    add("u7", "visit", "2024-03-17T16:00:00")  # local 03-18 00:00, the first day of the last 90
    add("u7", "visit", "2024-03-17T15:59:59")  # local 03-17 23:59:59: outside
    for i in range(1, 4):
        add("u7", "visit", f"2024-05-0{i}T02:00")
    add("u7", "purchase", "2023-12-01T02:00", brand="Shiseido", price=200)
    add("u8", "signup", "2023-12-01T02:00")
    add("u9", "visit", "2024-06-14T02:00")
    add("u9", "purchase", "2024-06-14T03:00", brand="Lancome", price=500)
    for i in range(1, 5):
        add("u10", "visit", f"2024-05-0{i}T02:00")
    add("u10", "purchase", "2024-05-01T03:00", brand="Dior", price=80)
    add("a10", "purchase", "2024-06-12T02:00", brand="Shiseido", price=90)  # merged into u10 afterwards
    # funnel view_item -> cart -> purchase (1 day): f1 stops at cart, f2 at view, f3 completes,
    # f4's cart is two days late (stops at view)
    add("f1", "view_item", "2024-06-01T01:00")
    add("f1", "cart", "2024-06-01T02:00")
    add("f2", "view_item", "2024-06-01T01:00")
    add("f3", "view_item", "2024-06-01T01:00")
    add("f3", "cart", "2024-06-01T01:10")
    add("f3", "purchase", "2024-06-01T01:20", brand="Dior", price=5)
    add("f4", "view_item", "2024-06-01T01:00")
    add("f4", "cart", "2024-06-03T01:00")
    return out


TAGS = {  # tag -> distinct id -> value
    "balance": {"u1": "100", "u2": "50.5", "u3": "n/a", "u4": "7"},
    "level": {"u1": "gold", "u4": "silver", "u7": "gold"},
}
LAYERS = {"rfm": {"u1": "champions", "u2": "at_risk", "u3": "champions"}, "life": {"u1": "buying"}}


@dataclass
class Data:
    store: Store
    writer: Writer
    world: World
    ctx: ActionContext
    person: dict[str, str]  # distinct id -> person
    universe: set[str]
    frame: pd.DataFrame
    props: dict[str, dict[str, Any]]  # person -> properties
    tags: dict[str, dict[str, str]]  # tag -> person -> value
    layers: dict[str, dict[str, str]]  # model -> person -> layer

    def preview(self, rule: dict[str, Any], strategy: str = "columns", **more: Any) -> dict[str, Any]:
        body = {"rule": rule, "as_of": AS_OF.isoformat(), "strategy": strategy, **more}
        return run_action("segments.preview", self.ctx, body)  # type: ignore[no-any-return]

    def members(self, rule: dict[str, Any], strategy: str = "columns") -> set[str]:
        body = {"rule": rule, "as_of": AS_OF.isoformat(), "strategy": strategy, "sample": 100}
        result = run_action("segments.preview", self.ctx, body)
        ids = {s["person_id"] for s in result["sample"]}
        assert result["count"] == len(ids)
        return ids

    def of(self, *distinct_ids: str) -> set[str]:
        return {self.person[d] for d in distinct_ids}


def build(tmp_path: Path) -> Iterator[Data]:
    store = Store(tmp_path / "seg.duckdb")
    project = store.create_project("seg", "Asia/Shanghai")
    with Writer(store) as writer:
        world = World(store=store, writer=writer, project=project, rows=[])
        ops = [
            ProfileOp(project_id=project.id, distinct_id=d, op="set", properties=p)
            for d, p in PROFILES.items()
        ]
        world.add(_events(), ops=ops)
        world.merge("u1", "a1")
        world.merge("u10", "a10")
        person = world.persons()
        now = datetime(2024, 6, 15, tzinfo=UTC)
        cur = store.cursor()
        for tag, values in TAGS.items():
            for did, value in values.items():
                num = float(value) if value.replace(".", "").isdigit() else None
                cur.execute(
                    "INSERT INTO tag_values (project_id, tag, person_id, value, num_value, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [project.id, tag, person[did], value, num, now],
                )
        for model, layers in LAYERS.items():
            for did, layer in layers.items():
                cur.execute(
                    "INSERT INTO layer_members (project_id, model, person_id, layer, scores, computed_at) "
                    "VALUES (?, ?, ?, ?, NULL, ?)",
                    [project.id, model, person[did], layer, now],
                )
        rows = store.query("SELECT person_id, properties FROM persons WHERE project_id = ?", [project.id])
        props = {r["person_id"]: json.loads(r["properties"]) for r in rows}
        frame = world.frame()
        frame["local_day"] = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert(TZ).dt.date
        yield Data(
            store=store,
            writer=writer,
            world=world,
            ctx=ActionContext(store, writer, project),
            person=person,
            universe=set(props),
            frame=frame,
            props=props,
            tags={t: {person[d]: v for d, v in vals.items()} for t, vals in TAGS.items()},
            layers={m: {person[d]: v for d, v in vals.items()} for m, vals in LAYERS.items()},
        )
    store.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Data]:
    yield from build(tmp_path_factory.mktemp("segments"))


# -- the reference ------------------------------------------------------------------------------------

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _text(x: Any) -> str | None:
    if x is None:
        return None
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def match(value: Any, op: str, target: Any) -> bool:
    """A stored value (None: missing) against a filter, as documented for property filters."""
    if op == "is_set":
        return value is not None
    if op == "is_not_set":
        return value is None
    if op in ("!=", "not_in", "not_contains"):
        positive = {"!=": "=", "not_in": "in", "not_contains": "contains"}[op]
        return not match(value, positive, target)
    if value is None:
        return False
    if op == "in":
        return _text(value) in [_text(t) for t in target]
    if op == "contains":
        return str(target).lower() in str(_text(value)).lower()
    if isinstance(target, int | float) and not isinstance(target, bool):
        n = _number(value)
        return n is not None and OPS[op](n, float(target))
    return OPS[op](_text(value), _text(target))


def window_days(cond: dict[str, Any]) -> tuple[date, date] | None:
    today = AS_OF.astimezone(TZ).date()
    if "last_days" in cond:
        return today - timedelta(days=cond["last_days"] - 1), today
    if "date_from" in cond:
        return date.fromisoformat(cond["date_from"]), date.fromisoformat(cond["date_to"])
    return None


def matching_events(d: Data, cond: dict[str, Any]) -> pd.DataFrame:
    f = d.frame[d.frame["event"] == cond["event"]]
    days = window_days(cond)
    if days is not None:
        f = f[(f["local_day"] >= days[0]) & (f["local_day"] <= days[1])]
    for flt in cond.get("filters", []):
        keep = f["properties"].map(
            lambda p, flt=flt: match(p.get(flt["property"]), flt.get("operator", "="), flt.get("value"))
        )
        f = f[keep.astype(bool)]
    return f


def reference(d: Data, rule: dict[str, Any]) -> set[str]:
    if "and" in rule:
        out = set(d.universe)
        for c in rule["and"]:
            out &= reference(d, c)
        return out
    if "or" in rule:
        return set().union(*(reference(d, c) for c in rule["or"]))
    if "not" in rule:
        return d.universe - reference(d, rule["not"])
    kind = rule["kind"]
    if kind == "person":
        return {
            p
            for p in d.universe
            if match(d.props[p].get(rule["property"]), rule.get("operator", "="), rule.get("value"))
        }
    if kind == "tag":
        values = d.tags.get(rule["tag"], {})
        return {p for p in d.universe if match(values.get(p), rule.get("operator", "="), rule.get("value"))}
    if kind == "layer":
        return {p for p, layer in d.layers.get(rule["model"], {}).items() if layer == rule["layer"]}
    events = matching_events(d, rule)
    if kind in ("event", "no_event"):
        counts = events.groupby("person_id").size()
        if kind == "no_event":
            return {p for p in d.universe if counts.get(p, 0) == 0}
        return {
            p for p in d.universe if OPS[rule.get("operator", ">=")](counts.get(p, 0), rule.get("times", 1))
        }
    if kind == "aggregate":
        events = events.assign(v=events["properties"].map(lambda x: _number(x.get(rule["property"]))))
        values = events.dropna(subset=["v"]).groupby("person_id")["v"]
        fn = {"sum": values.sum, "avg": values.mean, "min": values.min, "max": values.max}[rule["function"]]()
        out = set()
        for p in d.universe:
            v = fn.get(p, 0.0 if rule["function"] == "sum" else None)
            if v is not None and OPS[rule["operator"]](v, rule["value"]):
                out.add(p)
        return out
    raise AssertionError(kind)


# -- the seed example ------------------------------------------------------------------------------------

SEED = {
    "and": [
        {"kind": "event", "event": "visit", "operator": ">", "times": 3, "last_days": 90},
        {"kind": "event", "event": "purchase", "operator": ">=", "times": 1},
        {"kind": "person", "property": "city", "operator": "=", "value": "Beijing"},
        {
            "not": {
                "kind": "event",
                "event": "purchase",
                "last_days": 7,
                "filters": [{"property": "brand", "operator": "=", "value": "Shiseido"}],
            }
        },
    ]
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_seed_example(data: Data, strategy: str) -> None:
    """u1 (2 visits of their own + 2 merged), u3 (Shiseido one second before the 7 days), u7 (a
    visit at local midnight of the 90th day); not u2 (Shiseido at the first second of the 7 days),
    u10 (a merged id bought Shiseido), u5 (3 visits in 90 days), u6 (no purchase), u4 (Shanghai)."""
    got = data.preview(SEED, strategy, sample=10)
    expected = data.of("u1", "u3", "u7")
    assert got["count"] == 3
    assert [s["person_id"] for s in got["sample"]] == sorted(expected)
    assert reference(data, SEED) == expected
    u1 = next(s for s in got["sample"] if s["person_id"] == data.person["u1"])
    assert u1 == {"person_id": data.person["u1"], "distinct_ids": ["a1", "u1"], "properties": PROFILES["u1"]}


def test_preview_sample_size_and_count(data: Data) -> None:
    rule = {"kind": "event", "event": "visit"}
    expected = reference(data, rule)
    got = data.preview(rule, sample=2)
    assert got["count"] == len(expected) == 9
    assert [s["person_id"] for s in got["sample"]] == sorted(expected)[:2]
    assert data.preview(rule, sample=0) == {"count": 9, "sample": []}


# -- each condition kind ---------------------------------------------------------------------------------

PERSON = [
    {"property": "city", "operator": "=", "value": "Beijing"},
    {"property": "city", "operator": "!=", "value": "Beijing"},
    {"property": "age", "operator": ">", "value": 30},
    {"property": "age", "operator": "<=", "value": 30},
    {"property": "age", "operator": ">=", "value": "4"},  # text comparison
    {"property": "city", "operator": "in", "value": ["Shanghai", "Nanjing"]},
    {"property": "city", "operator": "not_in", "value": ["Shanghai", "Nanjing"]},
    {"property": "city", "operator": "contains", "value": "jing"},
    {"property": "gender", "operator": "is_set"},
    {"property": "gender", "operator": "is_not_set"},
    {"property": "vip", "operator": "=", "value": True},
]


@pytest.mark.parametrize("cond", PERSON, ids=lambda c: f"{c['property']} {c['operator']} {c.get('value')}")
def test_person_property(data: Data, cond: dict[str, Any]) -> None:
    rule = {"kind": "person", **cond}
    expected = reference(data, rule)
    for strategy in STRATEGIES:
        assert data.members(rule, strategy) == expected
    assert 0 < len(expected) < len(data.universe)


EVENTS = [
    {"event": "visit", "operator": ">", "times": 3, "last_days": 90},
    {"event": "visit", "operator": ">=", "times": 4, "last_days": 90},
    {"event": "visit", "operator": "<=", "times": 3, "last_days": 90},  # includes persons without visits
    {"event": "visit", "operator": "=", "times": 0, "last_days": 90},
    {"event": "visit", "operator": "<", "times": 4},
    {"event": "visit", "operator": "!=", "times": 5},
    {"event": "visit", "operator": "=", "times": 5, "date_from": "2024-05-01", "date_to": "2024-05-05"},
    {"event": "visit", "operator": ">=", "times": 1, "date_from": "2024-03-18", "date_to": "2024-03-18"},
    {"event": "purchase", "operator": ">=", "times": 1, "last_days": 7},
    {"event": "purchase", "operator": ">=", "times": 1, "last_days": 2},
    {"event": "purchase", "filters": [{"property": "brand", "operator": "=", "value": "Shiseido"}]},
    {
        "event": "purchase",
        "filters": [
            {"property": "brand", "operator": "in", "value": ["Dior", "Lancome"]},
            {"property": "price", "operator": ">=", "value": 50},
        ],
    },
    {
        "event": "purchase",
        "filters": [{"property": "brand", "operator": "!=", "value": "Shiseido"}],
        "last_days": 30,
    },
]


@pytest.mark.parametrize("cond", EVENTS, ids=str)
def test_did_event(data: Data, cond: dict[str, Any]) -> None:
    rule = {"kind": "event", **cond}
    expected = reference(data, rule)
    for strategy in STRATEGIES:
        assert data.members(rule, strategy) == expected, strategy
    assert expected and expected != data.universe


def test_did_event_exact_values(data: Data) -> None:
    """Independent of the reference: by hand."""
    assert data.members(
        {"kind": "event", "event": "visit", "operator": ">", "times": 3, "last_days": 90}
    ) == data.of("u1", "u2", "u3", "u4", "u6", "u7", "u10")
    assert data.members({"kind": "event", "event": "purchase", "last_days": 7}) == data.of(
        "u2", "u3", "u9", "u10"
    )
    march18 = {"kind": "event", "event": "visit", "date_from": "2024-03-18", "date_to": "2024-03-18"}
    assert data.members(march18) == data.of("u7")


@pytest.mark.parametrize(
    "cond",
    [
        {"event": "purchase", "last_days": 7},
        {"event": "visit"},
        {"event": "purchase", "filters": [{"property": "brand", "value": "Shiseido"}], "last_days": 7},
    ],
    ids=str,
)
def test_no_event(data: Data, cond: dict[str, Any]) -> None:
    rule = {"kind": "no_event", **cond}
    expected = reference(data, rule)
    for strategy in STRATEGIES:
        assert data.members(rule, strategy) == expected
    assert expected == reference(data, {"not": {"kind": "event", **cond}})


AGGREGATES = [
    {"function": "sum", "operator": ">=", "value": 100},
    {"function": "sum", "operator": "<", "value": 50},  # includes persons without purchases (sum 0)
    {"function": "avg", "operator": ">", "value": 60},
    {"function": "min", "operator": "<=", "value": 20},
    {"function": "max", "operator": "=", "value": 300},
    {"function": "max", "operator": "!=", "value": 300},  # no purchases: no max, not a member
    {"function": "sum", "operator": ">", "value": 0, "last_days": 7},
]


@pytest.mark.parametrize("cond", AGGREGATES, ids=str)
def test_aggregate(data: Data, cond: dict[str, Any]) -> None:
    rule = {"kind": "aggregate", "event": "purchase", "property": "price", **cond}
    expected = reference(data, rule)
    for strategy in STRATEGIES:
        assert data.members(rule, strategy) == expected
    assert expected


def test_aggregate_by_hand(data: Data) -> None:
    """u3's "abc" price is skipped: their avg is 50 (one numeric purchase), sum 50."""
    avg50 = {
        "kind": "aggregate",
        "event": "purchase",
        "property": "price",
        "function": "avg",
        "operator": "=",
        "value": 50,
    }
    assert data.members(avg50) == data.of("u3")
    big = {
        "kind": "aggregate",
        "event": "purchase",
        "property": "price",
        "function": "sum",
        "operator": ">",
        "value": 150,
    }
    assert data.members(big) == data.of("u2", "u7", "u9", "u10")  # u10: 80 + 90 (the merged id's)
    assert data.members({**big, "value": 175}) == data.of("u2", "u7", "u9")


TAG_CONDITIONS = [
    {"tag": "balance", "operator": ">", "value": 10},
    {"tag": "balance", "operator": "<=", "value": 50.5},
    {"tag": "balance", "operator": "=", "value": 100},
    {"tag": "balance", "operator": "=", "value": "n/a"},
    {"tag": "balance", "operator": "is_set"},
    {"tag": "balance", "operator": "is_not_set"},
    {"tag": "level", "operator": "=", "value": "gold"},
    {"tag": "level", "operator": "!=", "value": "gold"},
    {"tag": "level", "operator": "in", "value": ["silver", "bronze"]},
    {"tag": "level", "operator": "contains", "value": "OL"},
]


@pytest.mark.parametrize("cond", TAG_CONDITIONS, ids=str)
def test_tag_value(data: Data, cond: dict[str, Any]) -> None:
    rule = {"kind": "tag", **cond}
    expected = reference(data, rule)
    for strategy in STRATEGIES:
        assert data.members(rule, strategy) == expected
    assert expected


def test_tag_by_hand(data: Data) -> None:
    assert data.members({"kind": "tag", "tag": "balance", "operator": ">", "value": 10}) == data.of(
        "u1", "u2"
    )
    not_gold = data.members({"kind": "tag", "tag": "level", "operator": "!=", "value": "gold"})
    assert not_gold == data.universe - data.of("u1", "u7")  # persons without the tag too


def test_layer(data: Data) -> None:
    for strategy in STRATEGIES:
        assert data.members({"kind": "layer", "model": "rfm", "layer": "champions"}, strategy) == data.of(
            "u1", "u3"
        )
        assert data.members({"not": {"kind": "layer", "model": "rfm", "layer": "champions"}}, strategy) == (
            data.universe - data.of("u1", "u3")
        )


FUNNEL = [{"event": "view_item"}, {"event": "cart"}, {"event": "purchase"}]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_funnel_drop(data: Data, strategy: str) -> None:
    """f1 reached cart but did not buy; f2 only viewed; f4's cart came after the 1-day window."""
    base = {"kind": "funnel", "steps": FUNNEL, "window_seconds": 86_400, "last_days": 30}
    assert data.members({**base, "dropped_after_step": 2}, strategy) == data.of("f1")
    assert data.members({**base, "dropped_after_step": 1}, strategy) == data.of("f2", "f4")
    dates = {**base, "dropped_after_step": 1, "date_from": "2024-06-02", "date_to": "2024-06-03"}
    del dates["last_days"]
    assert data.members(dates, strategy) == set()  # no funnel starts in those days
    both = {
        "and": [
            {**base, "dropped_after_step": 1},
            {"kind": "person", "property": "city", "operator": "is_not_set"},
        ]
    }
    assert data.members(both, strategy) == data.of("f2", "f4")


# -- combinations ---------------------------------------------------------------------------------------

LEAVES: list[dict[str, Any]] = (
    [{"kind": "person", **c} for c in PERSON[:6]]
    + [{"kind": "event", **c} for c in EVENTS[:6] + EVENTS[8:11]]
    + [{"kind": "no_event", "event": "purchase", "last_days": 7}]
    + [{"kind": "aggregate", "event": "purchase", "property": "price", **c} for c in AGGREGATES[:3]]
    + [{"kind": "tag", **c} for c in TAG_CONDITIONS[:2] + TAG_CONDITIONS[6:8]]
    + [{"kind": "layer", "model": "rfm", "layer": "champions"}]
)


def random_rule(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    r = rng.random()
    if depth >= 3 or r < 0.35:
        return rng.choice(LEAVES)
    if r < 0.5:
        return {"not": random_rule(rng, depth + 1)}
    key = "and" if r < 0.78 else "or"
    return {key: [random_rule(rng, depth + 1) for _ in range(rng.randint(2, 4))]}


@pytest.mark.parametrize("seed", range(30))
def test_random_trees(data: Data, seed: int) -> None:
    rule = random_rule(random.Random(seed))
    expected = reference(data, rule)
    for strategy in STRATEGIES:
        assert data.members(rule, strategy) == expected, (strategy, rule)


def test_explicit_combinations(data: Data) -> None:
    bought7 = {"kind": "event", "event": "purchase", "last_days": 7}
    beijing = {"kind": "person", "property": "city", "value": "Beijing"}
    rich = {"kind": "tag", "tag": "balance", "operator": ">", "value": 10}
    assert data.members({"or": [bought7, rich]}) == data.of("u1", "u2", "u3", "u9", "u10")
    assert data.members({"and": [beijing, {"not": bought7}, {"not": rich}]}) == data.of(
        "u5", "u6", "u7", "u8"
    )
    assert data.members({"not": {"or": [beijing, bought7]}}) == data.of("u4", "f1", "f2", "f3", "f4")
    assert data.members({"kind": "and", "and": [beijing]}) == reference(data, beijing)


# -- validation -------------------------------------------------------------------------------------------


def error(data: Data, body: dict[str, Any]) -> UserloopError:
    with pytest.raises(UserloopError) as exc:
        run_action("segments.preview", data.ctx, body)
    return exc.value


@pytest.mark.parametrize(
    ("rule", "code", "field"),
    [
        (
            {
                "and": [
                    {"kind": "person", "property": "city", "value": "x"},
                    {"kind": "event", "event": "visit"},
                    {"kind": "event", "event": "visit", "times": "many"},
                ]
            },
            "invalid_field",
            "rule.and[2].times",
        ),
        ({"and": [{"kind": "event", "event": "visit", "times": -1}]}, "bad_condition", "rule.and[0].times"),
        ({"or": [{"kind": "visits"}]}, "unknown_kind", "rule.or[0].kind"),
        ({"or": [{"event": "visit"}]}, "missing_field", "rule.or[0].kind"),
        ({"not": {"kind": "event", "event": "visit", "color": 1}}, "unknown_field", "rule.not.color"),
        ({"and": []}, "empty_group", "rule.and"),
        ({"kind": "event", "event": "nope"}, "unknown_event", "rule.event"),
        (
            {
                "and": [
                    {
                        "not": {
                            "kind": "event",
                            "event": "visit",
                            "filters": [{"property": "nope", "value": 1}],
                        }
                    }
                ]
            },
            "unknown_property",
            "rule.and[0].not.filters[0].property",
        ),
        ({"kind": "person", "property": "zodiac", "value": "x"}, "unknown_property", "rule.property"),
        ({"kind": "event", "event": "visit", "last_days": 0}, "bad_window", "rule.last_days"),
        ({"kind": "event", "event": "visit", "date_from": "2024-05-02"}, "bad_window", "rule.date_to"),
        (
            {"kind": "event", "event": "visit", "date_from": "2024-05-02", "date_to": "2024-05-01"},
            "bad_window",
            "rule.date_to",
        ),
        (
            {"kind": "event", "event": "visit", "date_from": "2024-02-30", "date_to": "2024-03-01"},
            "invalid_field",
            "rule.date_from",
        ),
        ({"kind": "event", "event": "visit", "operator": "about"}, "invalid_field", "rule.operator"),
        (
            {"kind": "person", "property": "city", "operator": "in", "value": "Beijing"},
            "bad_filter",
            "rule.value",
        ),
        ({"kind": "tag", "tag": "nope", "value": 1}, "unknown_tag", "rule.tag"),
        ({"kind": "layer", "model": "nope", "layer": "x"}, "unknown_layer_model", "rule.model"),
        ({"kind": "segment", "segment": "nope"}, "unknown_segment", "rule.segment"),
        (
            {"kind": "funnel", "steps": FUNNEL, "dropped_after_step": 3, "last_days": 7},
            "bad_funnel",
            "rule.dropped_after_step",
        ),
        ({"kind": "funnel", "steps": FUNNEL, "dropped_after_step": 1}, "bad_window", "rule.last_days"),
        (
            {
                "kind": "aggregate",
                "event": "purchase",
                "property": "price",
                "function": "median",
                "operator": ">",
                "value": 1,
            },
            "invalid_field",
            "rule.function",
        ),
        (
            {
                "kind": "event",
                "event": "visit",
                "filters": [{"property": "city", "type": "person", "value": "x"}],
            },
            "bad_filter",
            "rule.filters[0].type",
        ),
    ],
)
def test_invalid_rules_name_the_field(data: Data, rule: dict[str, Any], code: str, field: str) -> None:
    e = error(data, {"rule": rule})
    assert (e.code, e.field, e.status) == (code, field, 400)


def test_invalid_preview_bodies(data: Data) -> None:
    assert error(data, {}).field == "rule"
    assert error(data, {"rule": {"kind": "event", "event": "visit"}, "sample": 101}).code == "bad_sample"
    assert error(data, {"rule": {"kind": "event", "event": "visit"}, "extra": 1}).field == "extra"
    assert error(data, {"rule": {"kind": "event", "event": "visit"}, "as_of": "yesterday"}).field == "as_of"


def test_values_never_reach_the_sql(data: Data) -> None:
    """Event names, property names and values are bound parameters."""
    from userloop.people.segments.model import Preview, decode
    from userloop.people.segments.saved import compiled

    evil = "x'); DROP TABLE events; --"
    rule = {
        "and": [
            {"kind": "event", "event": evil, "filters": [{"property": evil, "value": evil}]},
            {"kind": "person", "property": evil, "value": evil},
            {"kind": "tag", "tag": evil, "value": evil},
            {"kind": "layer", "model": evil, "layer": evil},
            {
                "kind": "aggregate",
                "event": evil,
                "property": evil,
                "function": "sum",
                "operator": ">",
                "value": 1,
            },
        ]
    }
    for strategy in STRATEGIES:
        c = compiled(data.store, data.ctx.project, decode({"rule": rule}, Preview).rule, AS_OF, strategy)  # type: ignore[arg-type]
        assert "DROP" not in c.sql and evil in c.params.values()
