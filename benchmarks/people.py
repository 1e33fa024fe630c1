"""People benchmark: a full RFM + lifecycle recompute and the Beijing seed segment preview.

    .venv/bin/python benchmarks/people.py                          # 10M events, 1M persons
    .venv/bin/python benchmarks/people.py --events 1000000 --persons 100000 --json
    .venv/bin/python benchmarks/people.py --keep /tmp/people.duckdb   # keep (and reuse) the data file
    .venv/bin/python benchmarks/people.py --all-kinds              # stage, quadrants, promotion too

The data is built in DuckDB SQL straight into the ``events`` table of a fresh store (the writer is
the ingest benchmark's business), from integer hashes, so it is the same on every run: ``--events``
events of ``--persons`` persons (every person has at least one; a few heavy persons, many light
ones) over 120 days in Asia/Shanghai: ``visit`` 50%, ``view_item`` 20%, ``cart`` 8%, ``purchase``
10% (``brand``, ``price``, ``amount``, ``coupon_id`` on 30% of them), ``receive_coupon`` 6%,
``follow`` 3%, ``sign_up`` 2%, ``unfollow`` 1%. Persons have ``city`` (Beijing 1 in 10); 5% browse
under an anonymous id first and are merged later (``person_overrides``), as the collector would.

Timed, through the actions the API and CLI call:

1. ``layers.create`` + ``layers.compute`` of an ``rfm`` and a ``lifecycle`` model as of the day
   after the data (the first compute writes every member and one history row per person);
2. the same two computed a day later (every person evaluated again, members replaced, history
   rows only for the persons whose layer changed): the steady state of a daily schedule;
3. the seed segment preview (``bench_segment_preview`` from ``benchmarks/people_segments.py``,
   when that file is present: its best and median of warm runs).

Targets from the issue, on 2 cores: RFM + lifecycle recompute <= 10 s; segment preview <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from userloop.actions import ActionContext, run_action  # noqa: E402
from userloop.store.duckdb import Project, Store  # noqa: E402

TZ = "Asia/Shanghai"
DAYS = 120
FIRST_DAY = date(2026, 1, 1)
RECOMPUTE_TARGET_S = 10.0
PREVIEW_TARGET_S = 1.0
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
BRANDS = ["Shiseido", "Lancome", "Estee", "Clinique", "SK-II", "Loreal", "Nivea", "Olay", "Dior", "Chanel"]
# (event, cumulative share in thousandths)
MIX = [("visit", 500), ("view_item", 700), ("cart", 780), ("purchase", 880), ("receive_coupon", 940),
       ("follow", 970), ("sign_up", 990), ("unfollow", 1000)]  # fmt: skip
MODELS = {
    "bench_rfm": {"kind": "rfm", "params": {"amount_property": "amount"}},
    "bench_lifecycle": {"kind": "lifecycle"},
}
MORE_MODELS = {
    "bench_stage": {"kind": "stage"},
    "bench_vf": {"kind": "value_frequency", "params": {"window_days": 90}},
    "bench_promotion": {"kind": "promotion"},
}


# -- data, in SQL ---------------------------------------------------------------------------------


def _u(i: str, salt: int) -> str:
    """A uniform number in [0, 1) from a hash of ``i`` and ``salt`` (the same on every run)."""
    return f"(hash({i}, {salt}) % 1000000007) / 1000000007.0"


def build(path: Path, n_events: int, n_persons: int) -> tuple[Store, Project]:
    store = Store(path)
    project = store.create_project("bench", TZ)
    cur = store.new_cursor()
    t0 = f"TIMESTAMPTZ '{FIRST_DAY} 00:00:00+08'"
    span_us = DAYS * 86_400 * 1_000_000
    event = "CASE " + " ".join(f"WHEN k < {hi} THEN '{name}'" for name, hi in MIX) + " END"
    brands = "[" + ", ".join(f"'{b}'" for b in BRANDS) + "]"
    cur.execute(
        f"""CREATE TEMP TABLE _g AS
            SELECT i,
                   -- the first n_persons events give every person one; the rest are skewed to a few
                   CASE WHEN i < {n_persons} THEN i
                        ELSE CAST(floor(pow({_u("i", 1)}, 3) * {n_persons}) AS BIGINT) END AS person,
                   {t0} + to_microseconds(CAST(floor({_u("i", 2)} * {span_us}) AS BIGINT)) AS ts,
                   CAST(floor({_u("i", 3)} * 1000) AS INTEGER) AS k
            FROM range({n_events}) t(i)"""
    )
    # 5% of persons browse anonymously until a time of their own, then are merged
    merged = f"({_u('person', 4)} < 0.05 AND ts < {t0} + to_microseconds(CAST(floor({_u('person', 5)} * {span_us}) AS BIGINT)))"
    props = f"""CASE WHEN event = 'purchase' THEN json_object(
                    'brand', {brands}[1 + CAST(floor({_u("i", 6)} * 10) AS INTEGER)],
                    'price', 10 + CAST(floor({_u("i", 7)} * 990) AS INTEGER),
                    'amount', round(10 + {_u("i", 8)} * 990, 2),
                    'coupon_id', CASE WHEN {_u("i", 9)} < 0.3 THEN 'C' || CAST(floor({_u("i", 10)} * 5) AS INTEGER) END)
                 WHEN event = 'receive_coupon' THEN json_object('coupon_id', 'C' || CAST(floor({_u("i", 10)} * 5) AS INTEGER))
                 ELSE '{{}}' END"""
    cur.execute(
        f"""INSERT INTO events (project_id, message_id, event, type, distinct_id, timestamp, received_at, properties,
                                person_id)
            SELECT {project.id}, CAST(i AS VARCHAR), event, 'track', did, ts, ts, {props}, md5('{project.id}:' || did)
            FROM (SELECT *, {event} AS event,
                         CASE WHEN {merged} THEN 'a' ELSE 'u' END || CAST(person AS VARCHAR) AS did FROM _g)
            ORDER BY ts"""
    )
    cur.execute("DROP TABLE _g")
    pid = project.id
    cur.execute(
        f"""CREATE TEMP TABLE _ids AS
            SELECT distinct_id, min(timestamp) AS first_seen, md5('{pid}:u' || substr(distinct_id, 2)) AS person_id,
                   any_value(person_id) AS own
            FROM events WHERE project_id = {pid} GROUP BY distinct_id"""
    )
    cur.execute(
        f"INSERT INTO event_properties SELECT DISTINCT {pid}, event, unnest(json_keys(properties)) FROM events "
        f"WHERE project_id = {pid} AND event IN ('purchase', 'receive_coupon')"
    )
    cur.execute(f"INSERT INTO identities SELECT {pid}, distinct_id, person_id FROM _ids")
    cur.execute(
        f"INSERT INTO person_overrides SELECT {pid}, distinct_id, person_id FROM _ids WHERE person_id <> own"
    )
    cities = "[" + ", ".join(f"'{c}'" for c in CITIES) + "]"
    cur.execute(
        f"""INSERT INTO persons
            SELECT {pid}, person_id, json_object('city', {cities}[1 + CAST(hash(person_id, 11) % 10 AS INTEGER)]),
                   min(first_seen), min(first_seen)
            FROM _ids GROUP BY person_id"""
    )
    cur.execute("DROP TABLE _ids")
    cur.execute("CHECKPOINT")
    cur.close()
    return store, project


# -- timings --------------------------------------------------------------------------------------


def bench_layers(
    store: Store, project: Project, models: dict[str, dict[str, Any]], as_of: date
) -> dict[str, Any]:
    """Create and compute each model as of ``as_of``, then compute it again a day later."""
    ctx = ActionContext(store=store, writer=None, project=project)
    out: dict[str, Any] = {}
    for name, definition in models.items():
        if store.query(
            "SELECT 1 AS x FROM layer_models WHERE project_id = ? AND name = ?", [project.id, name]
        ):
            run_action("layers.delete", ctx, {"name": name})  # a kept file from an earlier run
        run_action("layers.create", ctx, {"name": name, **definition})
        t0 = time.perf_counter()
        first = run_action("layers.compute", ctx, {"name": name, "as_of": str(as_of)})
        t1 = time.perf_counter()
        later = run_action("layers.compute", ctx, {"name": name, "as_of": str(as_of + timedelta(days=1))})
        t2 = time.perf_counter()
        out[name] = {
            "kind": definition["kind"],
            "members": first["members"],
            "first_s": round(t1 - t0, 2),
            "recompute_s": round(t2 - t1, 2),
            "changed_next_day": later["changed"],
            "counts": later["counts"],
        }
    return out


def bench_preview(store: Store, project: Project, repeat: int) -> dict[str, Any] | None:
    try:
        from benchmarks.people_segments import bench_segment_preview
    except ImportError:
        return None
    return bench_segment_preview(store, project, repeat=repeat)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="warm runs of the segment preview")
    ap.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: its default, one per core)")
    ap.add_argument("--keep", type=Path, help="DuckDB file to keep; reused when it exists")
    ap.add_argument("--all-kinds", action="store_true", help="also time stage, value_frequency and promotion")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    tmp = None
    if args.keep is not None:
        path = args.keep
    else:
        tmp = tempfile.mkdtemp(prefix="userloop-people-bench-")
        path = Path(tmp) / "people.duckdb"
    t0 = time.perf_counter()
    if path.exists():
        store = Store(path)
        project = store.project_by_name("bench") or store.project(1)
    else:
        store, project = build(path, args.events, args.persons)
    load_s = time.perf_counter() - t0
    if args.threads:
        store.cursor().execute(f"SET threads = {int(args.threads)}")
    threads = store.query("SELECT current_setting('threads') AS t")[0]["t"]
    n = store.query("SELECT count(*) AS n FROM events WHERE project_id = ?", [project.id])[0]["n"]
    persons = store.query("SELECT count(*) AS n FROM persons WHERE project_id = ?", [project.id])[0]["n"]
    as_of = FIRST_DAY + timedelta(days=DAYS)
    models = {**MODELS, **(MORE_MODELS if args.all_kinds else {})}
    layers = bench_layers(store, project, models, as_of)
    first = sum(layers[m]["first_s"] for m in MODELS)
    recompute = sum(layers[m]["recompute_s"] for m in MODELS)
    preview = bench_preview(store, project, args.repeat)
    store.close()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "events": n, "persons": persons, "load_s": round(load_s, 1), "cpus": os.cpu_count(), "threads": threads,
        "machine": platform.machine(), "as_of": str(as_of), "layers": layers,
        "rfm_lifecycle_first_s": round(first, 2), "rfm_lifecycle_recompute_s": round(recompute, 2),
        "recompute_target_s": RECOMPUTE_TARGET_S, "recompute_met": max(first, recompute) <= RECOMPUTE_TARGET_S,
        "segment_preview": preview,
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, default=str))
        return
    print(
        f"{n:,} events, {persons:,} persons, built in {load_s:.1f} s; {os.cpu_count()} CPUs, DuckDB threads {threads}"
    )
    print(f"{'model':18} {'kind':16} {'members':>10} {'first (s)':>10} {'next day (s)':>13} {'changed':>10}")
    for name, r in layers.items():
        print(f"{name:18} {r['kind']:16} {r['members']:>10,} {r['first_s']:>10.2f} {r['recompute_s']:>13.2f} "
              f"{r['changed_next_day']:>10,}")  # fmt: skip
    status = "met" if result["recompute_met"] else "MISSED"
    print(
        f"RFM + lifecycle: first {first:.2f} s, next day {recompute:.2f} s (target <= {RECOMPUTE_TARGET_S} s: {status})"
    )
    if preview is None:
        print("segment preview: n/a (benchmarks/people_segments.py is not in this checkout)")
    else:
        status = "met" if preview["met"] else "MISSED"
        print(f"seed segment preview: {preview['count']:,} persons, median {preview['preview_s']:.3f} s "
              f"(target <= {PREVIEW_TARGET_S} s: {status})")  # fmt: skip


if __name__ == "__main__":
    main()
