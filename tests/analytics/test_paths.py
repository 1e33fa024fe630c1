"""Paths against hand-counted sequences and an independent reference (plain Python per person).

Hand-built events live in an Asia/Shanghai project; the range 2026-03-02 (local) is
[2026-03-01T16:00Z, 2026-03-02T16:00Z). The reference orders each person's events by
(timestamp, message id), reads them backwards for ``end_event``, splits visits at gaps of 30
minutes or more (or takes ``window_seconds`` from the anchor) and builds each sequence step by step.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import datetime, timedelta

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.errors import UserloopError

DAY = {"date_from": "2026-03-02", "date_to": "2026-03-02"}
RANGE = (pd.Timestamp("2026-03-01T16:00Z"), pd.Timestamp("2026-03-02T16:00Z"))
T0 = datetime.fromisoformat("2026-03-02T02:00:00+00:00")
_ids = itertools.count()


def ev(did: str, minutes: float, event: str, path: str | None = None, mid: str | None = None, at: datetime = T0) -> dict:
    return {"distinct_id": did, "event": event, "ts": at + timedelta(minutes=minutes), "path": path,
            "message_id": mid or f"m{next(_ids):04d}"}  # fmt: skip


def reference(
    df: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    anchor: str | None = None,
    before: bool = False,
    steps: int = 5,
    timeout_minutes: float = 30,
    window_seconds: int | None = None,
    collapse: bool = True,
    node: str | None = None,
    events: list[str] | None = None,
    persons: set[str] | None = None,
) -> Counter[tuple[str, ...]]:
    """Sequences in reading order (anchor first; for ``before`` the reverse of time order); the
    persons with a path go into ``persons``."""
    persons = set() if persons is None else persons
    df = df.copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    if events is not None:
        df = df[df["event"].isin([*events, *([anchor] if anchor else [])])]
    df["node"] = df["event"] if node is None else df[node].where(df[node].notna(), df["event"])
    out: Counter[tuple[str, ...]] = Counter()
    df["us"] = (df["ts"] - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(microseconds=1)
    lo, hi = (t.value // 1000 for t in (start, end))
    gap = round(timeout_minutes * 60e6)
    window = None if window_seconds is None else window_seconds * 1_000_000
    df = df.sort_values(["person_id", "us", "message_id"], ascending=[True, not before, not before])
    for pid, g in df.groupby("person_id", sort=False):
        rows = list(zip(g["us"].tolist(), g["event"].tolist(), g["node"].tolist(), strict=True))
        if window is None:
            visits: list[list[tuple]] = []
            for i, row in enumerate(rows):
                if i == 0 or abs(row[0] - rows[i - 1][0]) >= gap:
                    visits.append([])
                visits[-1].append(row)
            for v in visits:
                heads = [i for i, r in enumerate(v) if anchor is None or r[1] == anchor]
                if heads and lo <= v[heads[0]][0] < hi:
                    out[_sequence([r[2] for r in v[heads[0]:]], steps, collapse)] += 1
                    persons.add(pid)
        else:
            heads = [i for i, r in enumerate(rows) if (anchor is None or r[1] == anchor) and lo <= r[0] < hi]
            if heads:
                t = rows[heads[0]][0]
                seq = [r[2] for r in rows[heads[0]:] if abs(r[0] - t) <= window]
                out[_sequence(seq, steps, collapse)] += 1
                persons.add(pid)
    return out


def _sequence(nodes: list[str], steps: int, collapse: bool) -> tuple[str, ...]:
    seq: list[str] = []
    for n in nodes:
        if not (collapse and seq and seq[-1] == n):
            seq.append(n)
    return tuple(seq[:steps])


def check(result: dict, expect: Counter[tuple[str, ...]], *, steps: int = 5, links_per_step: int = 10,
          paths_limit: int = 10, before: bool = False) -> None:  # fmt: skip
    """Every part of the response against the reference sequences."""
    sign = -1 if before else 1
    assert result["total_paths"] == sum(expect.values())
    top = sorted(expect.items(), key=lambda kv: (-kv[1], kv[0]))[:paths_limit]
    assert [(tuple(p["path"][::sign]), p["count"]) for p in result["top_paths"]] == top
    nodes: Counter[tuple[int, str]] = Counter()
    ends: Counter[tuple[int, str]] = Counter()
    links: Counter[tuple[int, str, str]] = Counter()
    for seq, c in expect.items():
        for i, n in enumerate(seq):
            nodes[(i, n)] += c
            if i + 1 < len(seq):
                links[(i, n, seq[i + 1])] += c
            elif i < steps - 1:
                ends[(i, n)] += c
    got_nodes = {n["id"]: n for n in result["nodes"]}
    for n in result["nodes"]:
        i = n["step"] * sign
        assert n["count"] == nodes[(i, n["name"])], n
        assert n["dropped"] == (None if i == steps - 1 else ends[(i, n["name"])]), n
    want_links = []
    for i in range(steps - 1):
        mine = sorted(((k, v) for k, v in links.items() if k[0] == i), key=lambda kv: (-kv[1], kv[0][1], kv[0][2]))
        want_links += [(i, a, b, v) for (_, a, b), v in mine[:links_per_step]]
    got_links = []
    for link in result["links"]:
        s, t = got_nodes[link["source"]], got_nodes[link["target"]]
        assert t["step"] * sign == s["step"] * sign + 1
        got_links.append((s["step"] * sign, s["name"], t["name"], link["value"]))
    assert got_links == want_links
    for i in range(steps):  # the top nodes of every step are shown
        mine = sorted(((k, v) for k, v in nodes.items() if k[0] == i), key=lambda kv: (-kv[1], kv[0][1]))
        shown = {(n["step"] * sign, n["name"]) for n in result["nodes"]}
        assert {k for k, _ in mine[:links_per_step]} <= shown
    reach = [sum(c for seq, c in expect.items() if len(seq) > i) for i in range(steps)]
    drops = [sum(c for seq, c in expect.items() if len(seq) == i + 1) for i in range(steps)]
    want = [{"step": sign * i, "paths": reach[i], "dropped": None if i == steps - 1 else drops[i]}
            for i in range(steps) if reach[i]]  # fmt: skip
    assert [{k: d[k] for k in ("step", "paths", "dropped")} for d in result["drop_off"]] == want


@pytest.fixture
def shop(world: World) -> World:
    world.add([
        ev("A", 0, "view"), ev("A", 1, "search"), ev("A", 2, "search"), ev("A", 5, "item"), ev("A", 12, "cart"),
        ev("A", 13, "buy"),
        # C: a second visit (40 minutes later) without a view; its cart comes exactly 10 minutes in
        ev("C", 0, "view"), ev("C", 10, "cart"), ev("C", 50, "item"), ev("C", 52, "buy"),
        # D: anonymous d1 logs in as d2 in the middle of the visit
        ev("d1", 0, "view"), ev("d1", 2, "item"), ev("d2", 4, "cart"), ev("d2", 6, "buy"),
        ev("E", 0, "item"), ev("E", 1, "item"), ev("E", 2, "item"),
        # F: a visit under way at the start of the range (23:50 local the day before)
        ev("F", -610, "view"), ev("F", -595, "item"), ev("F", -590, "view"), ev("F", -585, "cart"),
        # G: equal timestamps, ordered by message id
        ev("G", 0, "cart", mid="g-b"), ev("G", 0, "view", mid="g-a"),
    ])  # fmt: skip
    # B arrives later and out of order
    world.add([ev("B", 31, "cart"), ev("B", 3, "item"), ev("B", 20, "item"), ev("B", 0, "view"), ev("B", 4, "cart")])
    world.merge("d2", "d1")
    return world


def test_after_event_hand_counted(shop: World) -> None:
    r = shop.query(kind="paths", **DAY, start_event="view", steps=4)
    assert (r["direction"], r["anchor"], r["unit"], r["total_paths"], r["persons"]) == ("after", "view", "visit", 5, 5)
    assert r["top_paths"] == [
        {"path": ["view", "cart"], "count": 2},  # C, G
        {"path": ["view", "item", "cart", "buy"], "count": 1},  # D after the merge
        {"path": ["view", "item", "cart", "item"], "count": 1},  # B
        {"path": ["view", "search", "item", "cart"], "count": 1},  # A: search twice, collapsed
    ]
    nodes = {(n["step"], n["name"]): (n["count"], n["dropped"]) for n in r["nodes"]}
    assert nodes == {
        (0, "view"): (5, 0),
        (1, "item"): (2, 0), (1, "cart"): (2, 2), (1, "search"): (1, 0),
        (2, "cart"): (2, 0), (2, "item"): (1, 0),
        (3, "buy"): (1, None), (3, "item"): (1, None), (3, "cart"): (1, None),
    }  # fmt: skip
    assert r["drop_off"] == [
        {"step": 0, "paths": 5, "dropped": 0, "drop_rate": 0.0},
        {"step": 1, "paths": 5, "dropped": 2, "drop_rate": 0.4},
        {"step": 2, "paths": 3, "dropped": 0, "drop_rate": 0.0},
        {"step": 3, "paths": 3, "dropped": None, "drop_rate": None},
    ]
    ids = {n["id"]: (n["step"], n["name"]) for n in r["nodes"]}
    links = [(ids[x["source"]], ids[x["target"]], x["value"]) for x in r["links"]]
    assert links[:3] == [((0, "view"), (1, "cart"), 2), ((0, "view"), (1, "item"), 2), ((0, "view"), (1, "search"), 1)]
    assert len(links) == 8
    check(r, reference(shop.frame(), *RANGE, anchor="view", steps=4), steps=4)


def test_repeats_kept_and_limits(shop: World) -> None:
    r = shop.query(kind="paths", **DAY, start_event="view", steps=4, collapse_repeats=False, links_per_step=1,
                   paths_limit=2)  # fmt: skip
    expect = reference(shop.frame(), *RANGE, anchor="view", steps=4, collapse=False)
    assert expect[("view", "search", "search", "item")] == 1
    check(r, expect, steps=4, links_per_step=1, paths_limit=2)
    assert len(r["links"]) == 3 and len(r["top_paths"]) == 2


def test_before_event_hand_counted(shop: World) -> None:
    r = shop.query(kind="paths", **DAY, end_event="cart", steps=3)
    assert (r["direction"], r["total_paths"]) == ("before", 6)
    assert sorted((tuple(p["path"]), p["count"]) for p in r["top_paths"]) == [
        (("cart", "item", "cart"), 1),  # B: its last cart
        (("item", "view", "cart"), 1),  # F: the visit began before the range, its last cart is inside
        (("search", "item", "cart"), 1),  # A
        (("view", "cart"), 2),  # C, G
        (("view", "item", "cart"), 1),  # D
    ]
    assert {n["step"] for n in r["nodes"]} == {0, -1, -2}
    assert [d["step"] for d in r["drop_off"]] == [0, -1, -2]
    check(r, reference(shop.frame(), *RANGE, anchor="cart", before=True, steps=3), steps=3, before=True)


def test_window_mode_per_person(shop: World) -> None:
    r = shop.query(kind="paths", **DAY, start_event="view", steps=4, window_seconds=600)
    assert (r["unit"], r["total_paths"], r["persons"]) == ("person", 6, 6)
    got = {tuple(p["path"]): p["count"] for p in r["top_paths"]}
    # C's cart exactly 600 s after the view is inside; F's first view inside the range is at 00:10
    assert got == {("view", "cart"): 3, ("view", "search", "item"): 1, ("view", "item", "cart"): 1,
                   ("view", "item", "cart", "buy"): 1}  # fmt: skip
    check(r, reference(shop.frame(), *RANGE, anchor="view", steps=4, window_seconds=600), steps=4)
    r = shop.query(kind="paths", **DAY, end_event="buy", steps=3, window_seconds=300)
    check(r, reference(shop.frame(), *RANGE, anchor="buy", before=True, steps=3, window_seconds=300), steps=3,
          before=True)  # fmt: skip


def test_no_anchor_starts_at_visit_start(shop: World) -> None:
    r = shop.query(kind="paths", **DAY, steps=3)
    check(r, reference(shop.frame(), *RANGE, steps=3), steps=3)
    assert r["anchor"] is None and r["total_paths"] == 7  # A B C(x2) D E G; F's visit started before


def test_page_flow_with_path_property(world: World) -> None:
    world.add([
        ev("p", 0, "$pageview", "/"), ev("p", 1, "$pageview", "/list"), ev("p", 2, "click"),
        ev("p", 3, "$pageview", "/list"), ev("p", 4, "$pageview", "/item"), ev("p", 5, "$pageview", "/item"),
        ev("q", 0, "$pageview", "/"), ev("q", 1, "$pageview", "/item"),
    ])  # fmt: skip
    r = world.query(kind="paths", **DAY, start_event="$pageview", path_property="path")
    assert r["top_paths"] == [{"path": ["/", "/item"], "count": 1},
                              {"path": ["/", "/list", "click", "/list", "/item"], "count": 1}]  # fmt: skip
    r = world.query(kind="paths", **DAY, start_event="$pageview", path_property="path", events=["$pageview"])
    assert [p["path"] for p in r["top_paths"]] == [["/", "/item"], ["/", "/list", "/item"]]
    check(r, reference(world.frame(), *RANGE, anchor="$pageview", node="path", events=["$pageview"]))
    r = world.query(kind="paths", **DAY, end_event="click", path_property=["url", "path"])
    assert r["top_paths"] == [{"path": ["/", "/list", "click"], "count": 1}]


def test_filters_apply_to_the_events(shop: World) -> None:
    r = shop.query(kind="paths", **DAY, start_event="view", steps=4,
                   filters=[{"property": "event", "operator": "!=", "value": "search"}])  # fmt: skip
    df = shop.frame()
    check(r, reference(df[df["event"] != "search"], *RANGE, anchor="view", steps=4), steps=4)
    assert {"path": ["view", "item", "cart", "buy"], "count": 2} in r["top_paths"]  # A without its searches, D


@pytest.mark.parametrize(("extra", "code", "field"), [
    ({"start_event": "view", "end_event": "cart"}, "bad_anchor", "end_event"),
    ({"start_event": "nope"}, "unknown_event", "start_event"),
    ({"end_event": "nope"}, "unknown_event", "end_event"),
    ({"start_event": "view", "events": ["item", "nope"]}, "unknown_event", "events[1]"),
    ({"steps": 1}, "bad_steps", "steps"),
    ({"steps": 21}, "bad_steps", "steps"),
    ({"window_seconds": 0}, "bad_window", "window_seconds"),
    ({"events": []}, "bad_events", "events"),
    ({"links_per_step": 0}, "bad_limit", "links_per_step"),
    ({"path_property": ""}, "bad_path_property", "path_property"),
    ({"steps": "five"}, "invalid_field", "steps"),
    ({"path_property": "nope"}, "unknown_property", "path_property"),
    ({"path_property": ["path", "nope"]}, "unknown_property", "path_property[1]"),
    ({"filters": [{"property": "nope", "value": 1}]}, "unknown_property", "filters[0].property"),
])  # fmt: skip
def test_bad_queries_name_the_field(shop: World, extra: dict, code: str, field: str) -> None:
    with pytest.raises(UserloopError) as exc:
        shop.query(kind="paths", **DAY, **extra)
    assert (exc.value.code, exc.value.field) == (code, field)


def test_taobao_paths_after_cart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import require_shared
    from userloop.backend import LocalBackend
    from userloop.ingest.files import ImportSpec, iter_chunks

    path = require_shared("taobao_userbehavior", "userbehavior_head_sample.csv")
    b = LocalBackend(tmp_path / "tb.duckdb")
    try:
        project = b.create_project("tb", "Asia/Shanghai")
        for chunk in iter_chunks(ImportSpec(path=path, project_id=project["id"], preset="taobao")):
            b.import_table(project["id"], chunk)
        body = {"kind": "paths", "project": project["id"], "date_from": "2017-11-25", "date_to": "2017-12-03",
                "start_event": "cart", "steps": 5, "paths_limit": 20}  # fmt: skip
        r = b.query(project["id"], json.dumps(body).encode())
        body.update(end_event="buy", start_event=None, collapse_repeats=False)
        r_before = b.query(project["id"], json.dumps(body).encode())
        # the stored rows (message ids break ties between equal timestamps), checked against the file
        stored = pd.DataFrame(b.store.query("SELECT distinct_id, event, timestamp AS ts, message_id FROM events"))
    finally:
        b.close()
    raw = pd.read_csv(path, header=None, names=["user", "item", "cat", "event", "ts"])
    assert sorted(zip(raw["user"].astype(str), raw["event"], raw["ts"], strict=True)) == sorted(
        zip(stored["distinct_id"], stored["event"], stored["ts"].map(lambda t: int(t.timestamp())), strict=True)
    )
    stored["person_id"] = stored["distinct_id"]
    start = pd.Timestamp("2017-11-24T16:00Z")
    persons: set[str] = set()
    expect = reference(stored, start, start + pd.Timedelta(days=9), anchor="cart", steps=5, persons=persons)
    assert sum(expect.values()) > 2000
    check(r, expect, steps=5, paths_limit=20)
    assert r["persons"] == len(persons)
    expect = reference(stored, start, start + pd.Timedelta(days=9), anchor="buy", before=True, steps=5, collapse=False)
    check(r_before, expect, steps=5, paths_limit=20, before=True)
