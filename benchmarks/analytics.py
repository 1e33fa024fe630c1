"""Analytics benchmark: trends, a 4-step funnel, 8-week retention and paths, DuckDB vs chDB.

    .venv/bin/python benchmarks/analytics.py                    # 10M events, ~1M users, 90 days
    .venv/bin/python benchmarks/analytics.py --events 2000000 --json
    .venv/bin/python benchmarks/analytics.py --keep /tmp/bench  # keep the data files for another run

What it does, in one run:

1. generates ``--events`` synthetic shop events with numpy (about one user per 10 events, 90 days,
   Asia/Shanghai): sessions of page views that advance, with drop-off, through
   ``pv -> view_item -> cart -> checkout -> buy``, plus ``search``/``login`` noise, a ``channel``
   per user, a ``price`` property on carts and purchases. 5% of the users browse anonymously
   first and are merged into their known id later (``person_overrides``), as the collector would;
2. loads them into a fresh userloop DuckDB file. Loading bypasses the writer (the writer's
   dedupe and identity upserts are the ingest benchmark's business): one ``INSERT INTO events
   SELECT ... FROM <arrow table> ORDER BY timestamp`` into the table made by the real DDL (primary
   key included), and ``persons``/``identities``/``person_overrides`` rows written the same way;
3. exports the events with the merged person resolved to Parquet and loads that into a chDB
   ``MergeTree`` table ``ORDER BY (person, timestamp)`` (chDB gets persons already resolved: it
   does no identity work at query time, DuckDB does);
4. times each query ``--repeat`` times (best and median of warm runs are kept) through
   :func:`userloop.query.runner.run_query` for DuckDB, and the equivalent ClickHouse SQL
   (``uniqExact``, ``windowFunnel``, ``retention``) for chDB, and checks that both give the same
   answer. Kinds not registered in this checkout print ``n/a``. The DuckDB and chDB runs are
   interleaved, so that both see the same machine load.

The questions: PV and UV per day over the 90 days (and UV over the range); the funnel ``pv ->
view_item -> cart -> buy`` with a one-day window (chDB: ``windowFunnel`` on microseconds, the first
condition limited to the range); weekly retention ``pv`` -> ``buy`` over 8 weeks (chDB:
``retention`` with each person's first-week cohort); the top 10 five-step paths after ``cart``
within visits of 30 minutes, repeats collapsed (chDB: ``groupArray`` per person, ``arraySplit``
into visits, first ``cart`` of each visit).

chDB is the pip package ``chdb`` (``.venv/bin/pip install chdb``; not a project dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from userloop.query.runner import kinds, run_query  # noqa: E402
from userloop.store.duckdb import Store  # noqa: E402

TZ = "Asia/Shanghai"
DAYS = 90
FIRST_DAY = date(2026, 1, 5)  # a Monday, so that 8-week cohorts are whole weeks
STAGES = ["pv", "view_item", "cart", "checkout", "buy"]
NOISE = ["search", "login", "share"]
CHANNELS = ["organic", "wechat", "weibo", "douyin", "baidu", "email"]
FUNNEL_WINDOW = 86_400
TARGET_S = 1.0
TARGET_RATIO = 1.5


# -- data ------------------------------------------------------------------------------------------


def generate(n_events: int, seed: int = 7) -> pa.Table:
    """``n_events`` events as an Arrow table with the events table's columns (person_id excluded)."""
    rng = np.random.default_rng(seed)
    n_users = max(n_events // 10, 1)
    n_sessions = max(n_events // 5, 1)
    t0 = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    t0_us = int(t0.timestamp()) * 1_000_000
    span_us = DAYS * 86_400 * 1_000_000

    # sessions: a user (a few heavy users, many light ones) and a start time
    session_user = (rng.pareto(1.5, n_sessions) * n_users / 8).astype(np.int64) % n_users
    session_user[:n_users] = rng.permutation(n_users)[: min(n_users, n_sessions)]  # every user appears
    session_start = rng.integers(0, span_us, n_sessions)
    # events -> sessions (sorted, so a session's events are contiguous)
    ev_session = np.sort(rng.integers(0, n_sessions, n_events))
    first = np.r_[0, np.flatnonzero(np.diff(ev_session)) + 1]
    sizes = np.diff(np.r_[first, n_events])
    seg_start = np.repeat(first, sizes)
    # gaps within a session: about a minute, microsecond resolution
    gaps = rng.exponential(60e6, n_events).astype(np.int64)
    csum = np.cumsum(gaps)
    offset = csum - csum[seg_start]  # the first event of a session is at its start
    ts = t0_us + session_start[ev_session] + offset
    # stage: each event advances the funnel with probability 0.35; after buy, back to browsing
    adv = (rng.random(n_events) < 0.35).astype(np.int64)
    cadv = np.cumsum(adv)
    stage = cadv - cadv[seg_start]  # 0 at a session's first event
    stage = np.where(stage > 4, 0, stage)
    code = stage.copy()
    noise = rng.random(n_events) < 0.12
    code[noise] = 5 + rng.integers(0, len(NOISE), int(noise.sum()))
    user = session_user[ev_session]

    # 5% of users browse anonymously until a merge time, then log in
    merged_user = rng.random(n_users) < 0.05
    merge_at = t0_us + rng.integers(0, span_us, n_users)
    anon = merged_user[user] & (ts < merge_at[user])

    order = np.argsort(ts, kind="stable")  # arrival order ~ time order
    ts, code, user, anon, stage = ts[order], code[order], user[order], anon[order], stage[order]
    users = pa.array(user).cast(pa.string())
    distinct_id = pc.if_else(
        pa.array(anon), pc.binary_join_element_wise("a", users, ""), pc.binary_join_element_wise("u", users, "")
    )
    price = rng.integers(5, 500, n_events)
    priced = (code == 2) | (code == 4)
    props = pc.if_else(
        pa.array(priced),
        pc.binary_join_element_wise('{"price": ', pa.array(price).cast(pa.string()), "}", ""),
        pa.scalar("{}"),
    )
    ev_names = _decode(code, STAGES + NOISE)
    paths = pc.binary_join_element_wise("/", ev_names, "")
    tstamp = pa.array(ts, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    channel = _decode(user % len(CHANNELS), CHANNELS)
    return pa.table(
        {
            "project_id": pa.array(np.ones(n_events, dtype=np.int32)),
            "message_id": pa.array(np.arange(n_events)).cast(pa.string()),
            "event": ev_names,
            "type": _decode(np.zeros(n_events, dtype=np.int64), ["track"]),
            "distinct_id": distinct_id,
            "timestamp": tstamp,
            "received_at": tstamp,
            "properties": props,
            "path": paths,
            "channel": channel,
            "merged": pa.array(anon),
        }
    )


def _decode(codes: np.ndarray, values: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values)).dictionary_decode()


def load_duckdb(path: Path, table: pa.Table) -> tuple[Store, Any]:
    """A fresh userloop store holding ``table``; bypasses the writer (see the module doc)."""
    store = Store(path)
    project = store.create_project("bench", TZ)
    assert project.id == 1
    cur = store.new_cursor()
    cols = [c for c in table.column_names if c != "merged"]
    person = "md5('1:' || distinct_id)"
    cur.register("_gen", table)
    cur.execute(
        f"INSERT INTO events ({', '.join(cols)}, person_id) "
        f"SELECT {', '.join(cols)}, {person} FROM _gen ORDER BY timestamp"
    )
    # identities: every distinct id; anonymous ids "a<n>" now belong to the person of "u<n>"
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
    cur.execute("INSERT INTO person_overrides SELECT 1, distinct_id, person_id FROM _ids WHERE person_id <> own")
    cur.execute(
        """INSERT INTO persons
           SELECT 1, person_id, json_object('plan', CASE WHEN hash(person_id) % 5 = 0 THEN 'pro' ELSE 'free' END),
                  min(first_seen), min(first_seen)
           FROM _ids GROUP BY person_id"""
    )
    cur.execute("DROP TABLE _ids")
    cur.execute("CHECKPOINT")
    cur.close()
    return store, project


def export_parquet(store: Store, out: Path) -> None:
    """The events with the merged person resolved, for chDB (as the funnel's events_sql does)."""
    quoted = str(out).replace("'", "''")
    store.cursor().execute(
        f"""COPY (SELECT coalesce(o.person_id, ev.person_id) AS person, ev.timestamp, ev.event, ev.channel,
                         ev.message_id
                  FROM events ev LEFT JOIN person_overrides o
                    ON o.project_id = ev.project_id AND o.distinct_id = ev.distinct_id
                  WHERE ev.project_id = 1)
            TO '{quoted}' (FORMAT parquet, COMPRESSION zstd)"""
    )


def load_chdb(path: Path, parquet: Path) -> Any:
    import chdb.session

    session = chdb.session.Session(str(path))
    session.query("CREATE DATABASE IF NOT EXISTS b")
    session.query(
        "CREATE TABLE b.events (person String, timestamp DateTime64(6, 'UTC'), event LowCardinality(String), "
        "channel LowCardinality(String), message_id String) ENGINE = MergeTree ORDER BY (person, timestamp)"
    )
    session.query(f"INSERT INTO b.events SELECT * FROM file('{parquet}', Parquet)")
    session.query("OPTIMIZE TABLE b.events FINAL")
    return session


# -- the questions, both ways ----------------------------------------------------------------------


def _range() -> tuple[str, str, datetime, datetime]:
    date_from, date_to = FIRST_DAY, FIRST_DAY + timedelta(days=DAYS - 1)
    tz = ZoneInfo(TZ)
    lo = datetime.combine(date_from, datetime.min.time(), tzinfo=tz).astimezone(UTC)
    hi = datetime.combine(date_to + timedelta(days=1), datetime.min.time(), tzinfo=tz).astimezone(UTC)
    return date_from.isoformat(), date_to.isoformat(), lo, hi


def _ch_ts(t: datetime) -> str:
    return f"toDateTime64('{t.strftime('%Y-%m-%d %H:%M:%S')}', 6, 'UTC')"


def _ch_rows(session: Any, sql: str) -> list[list[Any]]:
    return json.loads(session.query(sql, "JSONCompact").bytes())["data"]  # type: ignore[no-any-return]


def questions(store: Store, session: Any) -> list[tuple[str, dict[str, Any] | None, Callable[[], Any], Callable[[Any], Any]]]:
    """(name, DuckDB request, chDB runner, DuckDB result -> the value compared with chDB's)."""
    date_from, date_to, lo, hi = _range()
    lo_s, hi_s = _ch_ts(lo), _ch_ts(hi)
    funnel_until = _ch_ts(hi + timedelta(seconds=FUNNEL_WINDOW))
    steps = ["pv", "view_item", "cart", "buy"]
    out: list[tuple[str, dict[str, Any] | None, Callable[[], Any], Callable[[Any], Any]]] = []

    trends = {"kind": "trends", "date_from": date_from, "date_to": date_to, "interval": "day",
              "series": [{"event": "pv"}, {"event": "pv", "math": "uv"}]}

    def ch_trends() -> Any:
        res = json.loads(session.query(
            f"SELECT toDate(timestamp, '{TZ}') AS d, count() AS pv, uniqExact(person) AS uv FROM b.events "
            f"WHERE event = 'pv' AND timestamp >= {lo_s} AND timestamp < {hi_s} GROUP BY d WITH TOTALS ORDER BY d",
            "JSONCompact").bytes())
        return ([int(r[1]) for r in res["data"]], [int(r[2]) for r in res["data"]], int(res["totals"][2]))

    out.append(("trends: PV/UV per day", trends, ch_trends,
                lambda r: (r["results"][0]["values"], r["results"][1]["values"], r["results"][1]["total"])))

    funnel = {"kind": "funnel", "date_from": date_from, "date_to": date_to, "window_seconds": FUNNEL_WINDOW,
              "steps": [{"event": e} for e in steps]}

    def ch_funnel() -> Any:
        conds = ", ".join([f"event = 'pv' AND timestamp < {hi_s}"] + [f"event = '{e}'" for e in steps[1:]])
        rows = _ch_rows(session, f"""
            SELECT level, count() FROM (
              SELECT person, windowFunnel({FUNNEL_WINDOW * 1_000_000})(
                       toUInt64(toUnixTimestamp64Micro(timestamp)), {conds}) AS level
              FROM b.events
              WHERE timestamp >= {lo_s} AND timestamp < {funnel_until} AND event IN ('pv', 'view_item', 'cart', 'buy')
              GROUP BY person)
            WHERE level > 0 GROUP BY level""")
        hist = {int(r[0]): int(r[1]) for r in rows}
        return [sum(v for lvl, v in hist.items() if lvl >= k) for k in range(1, len(steps) + 1)]

    out.append(("funnel: 4 steps, 1-day window", funnel, ch_funnel, lambda r: [s["count"] for s in r["steps"]]))

    weeks = 8
    retention = {"kind": "retention", "date_from": date_from, "date_to": date_to, "start_event": "pv",
                 "return_event": "buy", "interval": "week", "periods": weeks}
    conds = ", ".join(
        [f"e.event = 'pv' AND toMonday(e.timestamp, '{TZ}') = f.c"]
        + [f"e.event = 'buy' AND toMonday(e.timestamp, '{TZ}') = addDays(f.c, {7 * k})" for k in range(1, weeks)]
    )

    def ch_retention() -> Any:
        rows = _ch_rows(session, f"""
            WITH f AS (SELECT person, toMonday(min(timestamp), '{TZ}') AS c FROM b.events
                       WHERE event = 'pv' AND timestamp >= {lo_s} AND timestamp < {hi_s} GROUP BY person)
            SELECT toString(c), count(), sumForEach(r) FROM (
              SELECT e.person, f.c AS c, retention({conds}) AS r
              FROM b.events e INNER JOIN f ON e.person = f.person
              WHERE e.event IN ('pv', 'buy') AND e.timestamp >= {lo_s}
              GROUP BY e.person, f.c)
            GROUP BY c ORDER BY c""")
        return [(r[0], int(r[1]), [int(x) for x in r[2]]) for r in rows]

    out.append(("retention: 8 weeks", retention, ch_retention,
                lambda r: [(c["start"], c["size"], c["retained"]) for c in r["cohorts"] if c["size"]]))

    paths = {"kind": "paths", "date_from": date_from, "date_to": date_to, "start_event": "cart", "steps": 5}
    gap = 30 * 60 * 1_000_000
    follow = timedelta(hours=24)

    def ch_paths() -> Any:
        rows = _ch_rows(session, f"""
            SELECT p, count() AS c FROM (
              SELECT arrayJoin(arrayMap(v -> arraySlice(v, 1, 5), arrayFilter(v -> length(v) > 0, arrayMap(s ->
                       arrayFilter((x, i) -> i = 1 OR x != s[i - 1], s, arrayEnumerate(s)),
                       arrayMap(s -> if(arrayFirstIndex(x -> x.2 = 'cart', s) = 0
                                        OR s[arrayFirstIndex(x -> x.2 = 'cart', s)].1 < {lo.timestamp() * 1e6:.0f}
                                        OR s[arrayFirstIndex(x -> x.2 = 'cart', s)].1 >= {hi.timestamp() * 1e6:.0f},
                                        [], arrayMap(x -> x.2, arraySlice(s, arrayFirstIndex(x -> x.2 = 'cart', s)))),
                                visits))))) AS p
              FROM (
                SELECT arraySplit((x, n) -> n, evs, arrayMap((x, i) -> i = 1 OR x.1 - evs[i - 1].1 >= {gap},
                                                             evs, arrayEnumerate(evs))) AS visits
                FROM (SELECT person, arraySort(x -> (x.1, x.3), groupArray((toUnixTimestamp64Micro(timestamp), event,
                                                                             message_id))) AS evs
                      FROM b.events
                      WHERE timestamp >= {_ch_ts(lo - follow)} AND timestamp < {_ch_ts(hi + follow)}
                      GROUP BY person)))
            GROUP BY p ORDER BY c DESC, p LIMIT 10""")
        return [(list(r[0]), int(r[1])) for r in rows]

    out.append(("paths: 5 steps after cart", paths, ch_paths,
                lambda r: [(p["path"], p["count"]) for p in r["top_paths"]]))
    return out


def _time(f: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    r = f()
    return time.perf_counter() - t, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per query and engine (after one warm-up)")
    ap.add_argument("--keep", type=Path, help="a folder for the data files, reused when it holds them")
    ap.add_argument("--no-chdb", action="store_true", help="time DuckDB only")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="userloop-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    db, pq, chdir = work / f"events-{args.events}.duckdb", work / f"events-{args.events}.parquet", work / f"ch-{args.events}"
    info: dict[str, Any] = {
        "events": args.events, "days": DAYS, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "duckdb": duckdb.__version__, "numpy": np.__version__,
    }
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        if db.exists() and args.keep:
            store = Store(db)
            info["load_s"] = None
        else:
            t, table = _time(lambda: generate(args.events))
            info["generate_s"] = round(t, 2)
            log(f"generated {args.events:,} events in {t:.1f} s")
            t, (store, _) = _time(lambda: load_duckdb(db, table))
            info["duckdb_load_s"] = round(t, 2)
            log(f"DuckDB: loaded in {t:.1f} s ({db.stat().st_size / 1e6:.0f} MB)")
            del table
        project = store.project(1)
        row = store.query("SELECT count(*) AS n, count(DISTINCT person_id) AS p FROM events")[0]
        info["persons_at_ingest"] = int(row["p"])
        session = None
        try:
            import chdb
        except ImportError:
            log("chDB is not installed (.venv/bin/pip install chdb): DuckDB only")
            args.no_chdb = True
        if not args.no_chdb:
            info["chdb"] = chdb.__version__
            if not (args.keep and chdir.exists()):
                t, _ = _time(lambda: export_parquet(store, pq))
                info["parquet_export_s"] = round(t, 2)
                shutil.rmtree(chdir, ignore_errors=True)
                t, session = _time(lambda: load_chdb(chdir, pq))
                info["chdb_load_s"] = round(t, 2)
                log(f"chDB: exported and loaded in {info['parquet_export_s'] + t:.1f} s")
            else:
                import chdb.session

                session = chdb.session.Session(str(chdir))
        registered = set(kinds())
        rows = []
        for name, body, ch, pick in questions(store, session):
            kind = body["kind"] if body else None
            if body is None or kind not in registered:
                rows.append({"query": name, "duckdb_s": None, "chdb_s": None, "ratio": None, "same": None,
                             "note": f"kind {kind!r} not registered"})
                continue
            request = {"project": project.id, **body}
            duck = lambda request=request: run_query(store, project, request)  # noqa: E731
            times_d: list[float] = []
            times_c: list[float] = []
            rd = duck()  # warm-up (and the answer)
            rc = ch() if session is not None else None
            for _ in range(args.repeat):  # interleaved, so both see the same machine load
                times_d.append(_time(duck)[0])
                if session is not None:
                    times_c.append(_time(ch)[0])
            best_d = min(times_d)
            best_c = min(times_c) if times_c else None
            same = None if rc is None else pick(rd) == rc
            rows.append({
                "query": name, "duckdb_s": round(best_d, 3), "duckdb_median_s": round(statistics.median(times_d), 3),
                "chdb_s": None if best_c is None else round(best_c, 3),
                "chdb_median_s": None if not times_c else round(statistics.median(times_c), 3),
                "ratio": None if not best_c else round(best_d / best_c, 2), "same": same,
            })
            if same is False:
                rows[-1]["duckdb_answer"], rows[-1]["chdb_answer"] = str(pick(rd))[:300], str(rc)[:300]
            log(f"{name}: DuckDB {best_d:.3f} s" + (f", chDB {best_c:.3f} s" if best_c else ""))
        store.close()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({**info, "results": rows}, indent=2))
        return
    print(f"\n{args.events:,} events, {DAYS} days, {info['machine']}; DuckDB {info['duckdb']}"
          + (f", chDB {info.get('chdb')}" if "chdb" in info else "") + f"; best of {args.repeat} warm runs")
    for k in ("generate_s", "duckdb_load_s", "parquet_export_s", "chdb_load_s"):
        if info.get(k) is not None:
            print(f"  {k}: {info[k]}")
    print(f"\n{'query':32s} {'DuckDB s':>9s} {'chDB s':>8s} {'ratio':>6s} {'(medians)':>18s}  same answer")
    for r in rows:
        def f(x: Any, w: int) -> str:
            return f"{x:>{w}}" if x is not None else f"{'n/a':>{w}}"
        med = f"{r.get('duckdb_median_s') or 'n/a'} / {r.get('chdb_median_s') or 'n/a'}"
        print(f"{r['query']:32s} {f(r['duckdb_s'], 9)} {f(r['chdb_s'], 8)} {f(r['ratio'], 6)} {med:>18s}  "
              f"{'n/a' if r['same'] is None else 'yes' if r['same'] else 'NO'}{'  ' + r['note'] if r.get('note') else ''}")
    print(f"\ntargets: DuckDB <= {TARGET_S} s and <= {TARGET_RATIO}x chDB for trends, funnel, retention")


if __name__ == "__main__":
    main()
