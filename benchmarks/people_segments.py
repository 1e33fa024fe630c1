"""Segment benchmark: the seed example's preview (``POST /api/segments/preview``'s function).

    .venv/bin/python benchmarks/people_segments.py                          # 10M events, 1M persons
    .venv/bin/python benchmarks/people_segments.py --events 1000000 --persons 100000 --json
    .venv/bin/python benchmarks/people_segments.py --keep /tmp/seg.duckdb   # keep (and reuse) the file

The seed example: visited more than 3 times in the last 90 days, made at least one purchase (ever),
registered city Beijing, and did not buy brand Shiseido in the last 7 days.

``benchmarks/people.py`` (the people benchmark) calls :func:`bench_segment_preview` on its own data;
this file's ``main`` generates data of its own: ``--events`` events of ``--persons`` persons over 120
days in Asia/Shanghai (``visit`` 55%, ``view_item`` 25%, ``purchase`` 12% with ``brand`` and
``price``, ``cart`` 8%; a few heavy persons, many light ones), persons with ``city`` (Beijing 1 in
10) and ``gender``, 5% of persons browsing anonymously first and merged later (``person_overrides``).
Loading bypasses the writer, like ``benchmarks/analytics.py``.

Both ways of combining conditions (``columns``: one aggregate pass and a boolean expression;
``sets``: INTERSECT/UNION/EXCEPT) are timed and must give the same count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from userloop.actions import ActionContext, run_action  # noqa: E402
from userloop.store.duckdb import Project, Store  # noqa: E402

TZ = "Asia/Shanghai"
DAYS = 120
FIRST_DAY = date(2026, 1, 1)
TARGET_S = 1.0
BRANDS = ["Shiseido", "Lancome", "Estee", "Clinique", "SK-II", "Loreal", "Nivea", "Olay", "Dior", "Chanel"]
CITIES = [
    "Beijing",
    "Shanghai",
    "Guangzhou",
    "Shenzhen",
    "Hangzhou",
    "Chengdu",
    "Wuhan",
    "Xian",
    "Nanjing",
    "Tianjin",
]


def seed_rule(
    visit: str = "visit", purchase: str = "purchase", brand: str = "brand", city: str = "city"
) -> dict[str, Any]:
    """The issue's example, in the rule language (see docs/people/segments.md)."""
    return {
        "and": [
            {"kind": "event", "event": visit, "operator": ">", "times": 3, "last_days": 90},
            {"kind": "event", "event": purchase, "operator": ">=", "times": 1},
            {"kind": "person", "property": city, "operator": "=", "value": "Beijing"},
            {
                "not": {
                    "kind": "event",
                    "event": purchase,
                    "filters": [{"property": brand, "operator": "=", "value": "Shiseido"}],
                    "last_days": 7,
                }
            },
        ]
    }


def bench_segment_preview(
    store: Store,
    project: Project,
    *,
    repeat: int = 5,
    as_of: datetime | None = None,
    rule: dict[str, Any] | None = None,
    strategies: tuple[str, ...] = ("columns", "sets"),
) -> dict[str, Any]:
    """Time the seed example's preview through the ``segments.preview`` action (what the endpoint
    runs, validation and the sample of 10 included): best and median of ``repeat`` warm runs, per
    strategy. ``as_of`` defaults to the project's last event (so the windows hold data); ``rule``
    defaults to :func:`seed_rule` (events ``visit``/``purchase`` with ``brand``, person ``city``)."""
    if as_of is None:
        rows = store.query("SELECT max(timestamp) AS t FROM events WHERE project_id = ?", [project.id])
        as_of = rows[0]["t"] or datetime.now(UTC)
    ctx = ActionContext(store=store, writer=None, project=project)
    body = {"rule": rule or seed_rule(), "sample": 10, "as_of": as_of.isoformat()}
    out: dict[str, Any] = {"as_of": as_of.isoformat(), "target_s": TARGET_S}
    counts = set()
    for strategy in strategies:
        times = []
        result: dict[str, Any] = {}
        for i in range(repeat + 1):  # the first run warms the caches and is not counted
            t0 = time.perf_counter()
            result = run_action("segments.preview", ctx, {**body, "strategy": strategy})
            if i:
                times.append(time.perf_counter() - t0)
        counts.add(result["count"])
        out[strategy] = {
            "best_s": round(min(times), 3),
            "median_s": round(statistics.median(times), 3),
            "count": result["count"],
        }
    if len(counts) != 1:
        raise AssertionError(f"strategies disagree: {out}")
    out["count"] = counts.pop()
    out["preview_s"] = out[strategies[0]]["median_s"]
    out["met"] = out["preview_s"] <= TARGET_S
    return out


def bench_segment_compute(store: Store, project: Project, *, as_of: datetime | None = None) -> dict[str, Any]:
    """Save and compute two dynamic segments (the seed example, and "visited in the last 30
    days": most persons), then recompute each a day later (the membership diff and its history
    rows), and delete them. Seconds per step and member counts."""
    if as_of is None:
        rows = store.query("SELECT max(timestamp) AS t FROM events WHERE project_id = ?", [project.id])
        as_of = rows[0]["t"] or datetime.now(UTC)
    ctx = ActionContext(store=store, writer=None, project=project)
    rules = {
        "bench-seed": seed_rule(),
        "bench-visitors": {"kind": "event", "event": "visit", "last_days": 30},
    }
    out: dict[str, Any] = {}
    for name, rule in rules.items():
        t0 = time.perf_counter()
        made = run_action("segments.create", ctx, {"name": name, "rule": rule, "as_of": as_of.isoformat()})
        t1 = time.perf_counter()
        later = (as_of + timedelta(days=1)).isoformat()
        again = run_action("segments.compute", ctx, {"name": name, "as_of": later})
        t2 = time.perf_counter()
        run_action("segments.delete", ctx, {"name": name})
        out[name] = {
            "members": made["member_count"],
            "create_s": round(t1 - t0, 3),
            "recompute_s": round(t2 - t1, 3),
            "entered": again["entered"],
            "left": again["left"],
        }
    return out


# -- data ------------------------------------------------------------------------------------------


def _decode(codes: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32)), pa.array(values)
    ).dictionary_decode()


def generate(n_events: int, n_persons: int, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    t0 = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    t0_us = int(t0.timestamp()) * 1_000_000
    span_us = DAYS * 86_400 * 1_000_000
    user = (rng.pareto(1.2, n_events) * n_persons / 10).astype(np.int64) % n_persons
    user[:n_persons] = rng.permutation(n_persons)[: min(n_persons, n_events)]  # every person appears
    ts = t0_us + rng.integers(0, span_us, n_events)
    code = np.searchsorted(np.cumsum([0.55, 0.25, 0.12, 0.08]), rng.random(n_events))
    code = np.minimum(code, 3)
    merged = rng.random(n_persons) < 0.05
    merge_at = t0_us + rng.integers(0, span_us, n_persons)
    anon = merged[user] & (ts < merge_at[user])
    order = np.argsort(ts, kind="stable")
    ts, code, user, anon = ts[order], code[order], user[order], anon[order]
    users = pa.array(user).cast(pa.string())
    distinct_id = pc.if_else(
        pa.array(anon),
        pc.binary_join_element_wise("a", users, ""),
        pc.binary_join_element_wise("u", users, ""),
    )
    brand = _decode(rng.integers(0, len(BRANDS), n_events), BRANDS)
    price = pa.array(rng.integers(10, 2000, n_events)).cast(pa.string())
    bought = pc.binary_join_element_wise('{"brand": "', brand, '", "price": ', price, "}", "")
    props = pc.if_else(pa.array(code == 2), bought, pa.scalar("{}"))
    tstamp = pa.array(ts, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "project_id": pa.array(np.ones(n_events, dtype=np.int32)),
            "message_id": pa.array(np.arange(n_events)).cast(pa.string()),
            "event": _decode(code, ["visit", "view_item", "purchase", "cart"]),
            "type": _decode(np.zeros(n_events, dtype=np.int64), ["track"]),
            "distinct_id": distinct_id,
            "timestamp": tstamp,
            "received_at": tstamp,
            "properties": props,
        }
    )


def load(path: Path, table: pa.Table) -> tuple[Store, Project]:
    store = Store(path)
    project = store.create_project("bench", TZ)
    assert project.id == 1
    cur = store.new_cursor()
    person = "md5('1:' || distinct_id)"
    cols = table.column_names
    cur.register("_gen", table)
    cur.execute(
        f"INSERT INTO events ({', '.join(cols)}, person_id) SELECT {', '.join(cols)}, {person} FROM _gen "
        "ORDER BY timestamp"
    )
    cur.execute(
        f"""CREATE TEMP TABLE _ids AS
            SELECT distinct_id, min(timestamp) AS first_seen,
                   md5('1:u' || substr(distinct_id, 2)) AS person_id, {person} AS own
            FROM _gen GROUP BY distinct_id"""
    )
    cur.execute(
        "INSERT INTO event_properties SELECT DISTINCT 1, event, unnest(json_keys(properties)) FROM _gen "
        "WHERE properties <> '{}'"
    )
    cur.unregister("_gen")
    cur.execute("INSERT INTO identities SELECT 1, distinct_id, person_id FROM _ids")
    cur.execute(
        "INSERT INTO person_overrides SELECT 1, distinct_id, person_id FROM _ids WHERE person_id <> own"
    )
    cities = ", ".join(f"'{c}'" for c in CITIES)
    cur.execute(
        f"""INSERT INTO persons
            SELECT 1, person_id,
                   json_object('city', [{cities}][CAST(1 + hash(person_id || 'c') % {len(CITIES)} AS BIGINT)],
                               'gender', CASE WHEN hash(person_id || 'g') % 2 = 0 THEN 'f' ELSE 'm' END),
                   min(first_seen), min(first_seen)
            FROM _ids GROUP BY person_id"""
    )
    cur.execute("DROP TABLE _ids")
    cur.execute("CHECKPOINT")
    cur.close()
    return store, project


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: its default)")
    ap.add_argument("--keep", type=Path, help="DuckDB file to keep; reused when it exists")
    ap.add_argument("--compute", action="store_true", help="also time saving and recomputing segments")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = None
    if args.keep is not None:
        path = args.keep
    else:
        tmp = tempfile.mkdtemp(prefix="userloop-seg-bench-")
        path = Path(tmp) / "bench.duckdb"
    t0 = time.perf_counter()
    if path.exists():
        store = Store(path)
        project = store.project(1)
    else:
        store, project = load(path, generate(args.events, args.persons))
    load_s = time.perf_counter() - t0
    if args.threads:
        store.cursor().execute(f"SET threads = {int(args.threads)}")
    n = store.query("SELECT count(*) AS n FROM events")[0]["n"]
    persons = store.query("SELECT count(*) AS n FROM persons")[0]["n"]
    result = bench_segment_preview(store, project, repeat=args.repeat)
    result.update(events=n, persons=persons, load_s=round(load_s, 1), cpus=os.cpu_count())
    if args.compute:
        result["compute"] = bench_segment_compute(store, project)
    store.close()
    if tmp is not None:
        path.unlink(missing_ok=True)
        Path(str(path) + ".wal").unlink(missing_ok=True)
        os.rmdir(tmp)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{n:,} events, {persons:,} persons, loaded in {load_s:.1f} s; seed segment: {result['count']:,} persons"
    )
    for s in ("columns", "sets"):
        r = result[s]
        print(f"  {s:8} best {r['best_s']:.3f} s  median {r['median_s']:.3f} s")
    print(f"target <= {TARGET_S} s: {'met' if result['met'] else 'MISSED'}")
    for name, r in result.get("compute", {}).items():
        print(
            f"  {name}: {r['members']:,} members, create {r['create_s']:.2f} s, recompute a day later "
            f"{r['recompute_s']:.2f} s (+{r['entered']:,} -{r['left']:,})"
        )


if __name__ == "__main__":
    main()
