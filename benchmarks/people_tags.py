"""Tag benchmark: computing typical tags on 10M events / 1M persons (the segment benchmark's data).

    .venv/bin/python benchmarks/people_tags.py                           # 10M events, 1M persons
    .venv/bin/python benchmarks/people_tags.py --events 1000000 --persons 100000 --json
    .venv/bin/python benchmarks/people_tags.py --keep /tmp/seg.duckdb    # reuse people_segments' file

Each tag is created (its first compute writes every value, and history for dynamic tags), then
computed again with nothing changed (the steady state of a schedule: no writes), then one day later
(the window moves: some values change). ``benchmarks/people.py`` can call :func:`bench_tags`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.people_segments import DAYS, FIRST_DAY, generate, load  # noqa: E402
from userloop.actions import ActionContext, run_action  # noqa: E402
from userloop.store.duckdb import Project, Store  # noqa: E402

TAGS: list[dict[str, Any]] = [
    {"name": "purchases_90d", "kind": "dynamic",
     "rule": {"aggregate": "count", "event": "purchase", "window": {"last_days": 90}}},
    {"name": "spend", "kind": "semi_dynamic", "rule": {"aggregate": "sum", "event": "purchase", "property": "price"}},
    {"name": "favourite_brand", "kind": "dynamic",
     "rule": {"aggregate": "most_frequent", "event": "purchase", "property": "brand", "window": {"last_days": 90}}},
    {"name": "last_purchase", "kind": "semi_dynamic",
     "rule": {"aggregate": "max", "event": "purchase", "property": "timestamp"}},
    {"name": "active_level", "kind": "dynamic",
     "rule": {"aggregate": "count", "window": {"last_days": 30}, "fill_zero": True,
              "buckets": [{"name": "inactive", "max": 0}, {"name": "low", "max": 3}, {"name": "mid", "max": 10},
                          {"name": "high"}]}},
    {"name": "visits_sql", "kind": "dynamic",
     "sql": "SELECT person_id, count(*) AS value FROM events WHERE event = 'visit' GROUP BY person_id"},
    {"name": "city", "kind": "static", "property": "city"},
]


def bench_tags(store: Store, project: Project, as_of: datetime) -> dict[str, Any]:
    ctx = ActionContext(store=store, writer=None, project=project)
    out: dict[str, Any] = {}
    for definition in TAGS:
        if store.query("SELECT 1 FROM tags WHERE project_id = ? AND name = ?", [project.id, definition["name"]]):
            run_action("tags.delete", ctx, {"name": definition["name"]})  # a kept file from an earlier run
        t0 = time.perf_counter()
        first = run_action("tags.create", ctx, {**definition, "as_of": as_of.isoformat()})["compute"]
        created = time.perf_counter() - t0
        t0 = time.perf_counter()
        same = run_action("tags.compute", ctx, {"name": definition["name"],
                                                "as_of": (as_of + timedelta(seconds=1)).isoformat()})
        again = time.perf_counter() - t0
        t0 = time.perf_counter()
        later = run_action("tags.compute", ctx, {"name": definition["name"],
                                                 "as_of": (as_of + timedelta(days=1)).isoformat()})
        moved = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_action("tags.coverage", ctx, {"name": definition["name"]})
        coverage = time.perf_counter() - t0
        out[definition["name"]] = {
            "persons": first["persons"], "create_s": round(created, 3), "unchanged_s": round(again, 3),
            "changed": same["changed"] + same["added"] + same["removed"],
            "next_day_s": round(moved, 3), "next_day_changed": later["changed"] + later["added"] + later["removed"],
            "history_rows": first["history_rows"] + later["history_rows"], "coverage_s": round(coverage, 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="DuckDB file to keep; reused when it exists")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = None
    if args.keep is not None:
        path = args.keep
    else:
        tmp = tempfile.mkdtemp(prefix="userloop-tag-bench-")
        path = Path(tmp) / "bench.duckdb"
    t0 = time.perf_counter()
    if path.exists():
        store = Store(path)
        project = store.project(1)
    else:
        store, project = load(path, generate(args.events, args.persons))
    load_s = time.perf_counter() - t0
    n = store.query("SELECT count(*) AS n FROM events")[0]["n"]
    persons = store.query("SELECT count(*) AS n FROM persons")[0]["n"]
    as_of = datetime.combine(FIRST_DAY + timedelta(days=DAYS), datetime.min.time(), tzinfo=UTC)
    result = {"events": n, "persons": persons, "load_s": round(load_s, 1), "cpus": os.cpu_count(),
              "tags": bench_tags(store, project, as_of)}
    store.close()
    if tmp is not None:
        path.unlink(missing_ok=True)
        Path(str(path) + ".wal").unlink(missing_ok=True)
        os.rmdir(tmp)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{n:,} events, {persons:,} persons, loaded in {load_s:.1f} s, {os.cpu_count()} CPUs")
    print(f"{'tag':16} {'persons':>9} {'create':>8} {'again':>8} {'next day':>9} {'changed':>8} {'coverage':>9}")
    for name, r in result["tags"].items():
        print(f"{name:16} {r['persons']:>9,} {r['create_s']:>7.2f}s {r['unchanged_s']:>7.2f}s "
              f"{r['next_day_s']:>8.2f}s {r['next_day_changed']:>8,} {r['coverage_s']:>8.3f}s")


if __name__ == "__main__":
    main()
