"""Ingest benchmark: events/s through the Segment collector, against a raw DuckDB append.

    .venv/bin/python benchmarks/ingest.py                      # 200k events, 8 clients, 100 per request
    .venv/bin/python benchmarks/ingest.py --events 50000 --json
    .venv/bin/python benchmarks/ingest.py --py-spy /tmp/ingest.txt   # also sample the server with py-spy

What it does, in one run:

1. creates a project with ``userloop project create --json`` on a fresh DuckDB file in a temp dir,
   starts ``userloop serve`` on it as a subprocess on a free port and waits for ``/health``;
2. builds every request body first (Segment ``/v1/batch`` bodies of realistic ``track`` messages,
   unique message ids), then, with the clock running, sends them from ``--clients`` concurrent
   keep-alive connections. The server answers 200 only after the writer committed, so the rate is
   of durable, acknowledged events. Latency is per request, send to full answer;
3. stops the server (SIGINT: a clean shutdown) and opens the file read-only with duckdb to check that
   exactly the sent message ids are stored, once each;
4. the references, on fresh files with the same ``events`` DDL: (a) "raw append": Arrow tables built
   from the same messages before the clock, then ``INSERT INTO events SELECT ...`` in transactions of
   ``--ref-batch`` rows; (b) "decode+append": the same, but the clock also covers JSON-decoding the
   same request bodies and building the Arrow tables. raw/HTTP is the price of HTTP + parsing +
   enrichment + dedupe.

The default client is a minimal HTTP/1.1 client on asyncio streams (pre-built request bytes), so that
on a small machine the load generator takes as little CPU from the server as possible; ``--client
httpx`` uses ``httpx.AsyncClient`` instead. Client and server CPU seconds are printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import msgspec
import pyarrow as pa

import userloop
from userloop.store.duckdb import CHECKPOINT_THRESHOLD
from userloop.store.schema import DDL, EVENT_COLUMN_NAMES

TARGET_EVENTS_PER_S = 50_000
TARGET_MAX_RATIO = 4.0

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode

# -- synthetic but realistic Segment traffic (an online-education site) -----------------------------

_EVENTS: list[tuple[str, str]] = [
    ("Course Viewed", "/courses/{course}"),
    ("Course Viewed", "/courses/{course}"),
    ("Lesson Started", "/courses/{course}/lessons/{lesson}"),
    ("Lesson Completed", "/courses/{course}/lessons/{lesson}"),
    ("Video Played", "/courses/{course}/lessons/{lesson}"),
    ("Search Performed", "/search"),
    ("Product Added", "/courses/{course}"),
    ("Checkout Started", "/checkout"),
    ("Order Completed", "/checkout/done"),
    ("Signed Up", "/signup"),
]
_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
]
_REFERRERS = [None, None, "https://www.google.com/", "https://www.baidu.com/s?wd=python", "https://weibo.com/u/1",
              "https://news.example.org/article/7"]
_CAMPAIGNS = [None, None, None, {"source": "wechat", "medium": "social", "name": "spring_sale"},
              {"source": "google", "medium": "cpc", "name": "brand", "term": "python course"}]
_CITIES = [("Beijing", "Beijing", "CN"), ("Shanghai", "Shanghai", "CN"), ("Berlin", "Berlin", "DE"),
           ("Austin", "Texas", "US"), (None, None, None)]


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def message_id(run: str, i: int, ids: str = "uuid") -> str:
    """Random-looking UUIDs, as SDKs send (``uuid``), or ``<run>-<n>`` in sending order (``sequential``)."""
    if ids == "sequential":
        return f"{run}-{i:08d}"
    return str(uuid.UUID(bytes=hashlib.md5(f"{run}:{i}".encode()).digest(), version=4))


def make_message(
    rng: random.Random, run: str, i: int, base: datetime, users: int, ids: str = "uuid"
) -> dict[str, Any]:
    """One Segment ``track`` message, the way analytics.js would send it."""
    user = rng.randrange(users)
    event, path_tpl = _EVENTS[rng.randrange(len(_EVENTS))]
    course = f"c{rng.randrange(300):03d}"
    path = path_tpl.format(course=course, lesson=rng.randrange(1, 40))
    campaign = _CAMPAIGNS[rng.randrange(len(_CAMPAIGNS))]
    query = f"?utm_source={campaign['source']}&utm_medium={campaign['medium']}" if campaign else ""
    city, region, country = _CITIES[user % len(_CITIES)]
    ts = base + timedelta(milliseconds=i * 7 + rng.randrange(5))
    context: dict[str, Any] = {
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "page": {
            "url": f"https://learn.example.com{path}{query}",
            "path": path,
            "referrer": _REFERRERS[user % len(_REFERRERS)],
            "title": f"{event} - Example Learning",
            "search": query,
        },
        "userAgent": _UAS[user % len(_UAS)],
        "ip": f"203.0.{user % 256}.{(user // 256) % 256}",
        "locale": "zh-CN" if country == "CN" else "en-US",
    }
    if campaign:
        context["campaign"] = campaign
    if city:
        context["location"] = {"city": city, "region": region, "country": country}
    properties: dict[str, Any] = {"course_id": course, "category": ["python", "data", "design", "math"][user % 4]}
    if "Lesson" in event or event == "Video Played":
        properties |= {"lesson": rng.randrange(1, 40), "duration_s": rng.randrange(30, 1800)}
    if event in ("Product Added", "Checkout Started", "Order Completed"):
        properties |= {"price": round(rng.uniform(9, 499), 2), "currency": "CNY", "quantity": 1}
    if event == "Search Performed":
        properties["query"] = rng.choice(["pandas", "sql joins", "ux basics", "calculus"])
    msg: dict[str, Any] = {
        "type": "track",
        "messageId": message_id(run, i, ids),
        "event": event,
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128) if user % 7 == 0 else user + 1)),
        "timestamp": _iso(ts),
        "properties": properties,
        "context": context,
        "integrations": {},
    }
    if user % 3:  # two thirds are logged in
        msg["userId"] = f"user-{user}"
    return msg


def build_bodies(n_events: int, batch: int, run: str, seed: int, ids: str = "uuid") -> list[bytes]:
    """``/v1/batch`` bodies of ``batch`` messages each (the last may be shorter)."""
    rng = random.Random(seed)
    base = datetime.now(UTC) - timedelta(hours=2)
    users = max(1, n_events // 20)
    bodies = []
    for start in range(0, n_events, batch):
        msgs = [make_message(rng, run, i, base, users, ids) for i in range(start, min(start + batch, n_events))]
        bodies.append(_encode({"batch": msgs, "sentAt": _iso(datetime.now(UTC))}))
    return bodies


# -- the server under test ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment for ``python -m userloop.cli``: the same ``userloop`` this script imported."""
    env = dict(os.environ)
    root = str(Path(userloop.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "userloop.cli", *args],
        capture_output=True, text=True, check=True, timeout=120, cwd=cwd, env=child_env(),
    )


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per OS thread name of a process (Linux /proc), summed over threads of one name."""
    out: dict[str, float] = {}
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    return out


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the live child processes of ``pid`` (the parse workers), Linux /proc."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Server:
    def __init__(self, db: Path, port: int, log: Path, extra: list[str] | None = None):
        self.db, self.port, self.log_path = db, port, log
        self.extra = extra or []
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "userloop.cli", "serve", "--db", str(self.db), "--host", "127.0.0.1",
             "--port", str(self.port), *self.extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.db.parent,
            env=child_env(),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become healthy: {self.log_path.read_text()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# -- the load generator ------------------------------------------------------------------------------


def _raw_request(host: str, port: int, auth: str, body: bytes) -> bytes:
    head = (
        f"POST /v1/batch HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nUser-Agent: userloop-bench\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise RuntimeError("chunked responses are not supported by the benchmark client")
    if length is None:
        raise RuntimeError(f"response without content-length: {head!r}")
    return status, await reader.readexactly(length)


def _check_answer(status: int, body: bytes, expected: int) -> None:
    if status != 200:
        raise RuntimeError(f"server answered {status}: {body[:300]!r}")
    answer = _decode(body)
    if answer.get("accepted") != expected or answer.get("rejected"):
        raise RuntimeError(f"expected {expected} accepted, got {answer}")


async def _send_all_raw(
    host: str, port: int, auth: str, bodies: list[bytes], counts: list[int], clients: int
) -> tuple[float, list[float]]:
    work = deque((_raw_request(host, port, auth, b), n) for b, n in zip(bodies, counts, strict=True))
    conns = [await asyncio.open_connection(host, port) for _ in range(clients)]
    latencies: list[float] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while work:
            request, n = work.popleft()
            t0 = time.perf_counter()
            writer.write(request)
            status, body = await _read_response(reader)
            latencies.append(time.perf_counter() - t0)
            _check_answer(status, body, n)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(r, w) for r, w in conns))
    elapsed = time.perf_counter() - t0
    for _, w in conns:
        w.close()
    return elapsed, latencies


async def _send_all_httpx(
    url: str, auth: str, bodies: list[bytes], counts: list[int], clients: int
) -> tuple[float, list[float]]:
    work = deque(zip(bodies, counts, strict=True))
    latencies: list[float] = []
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120, headers=headers) as http:
        await asyncio.gather(*(http.get("/health") for _ in range(clients)))  # open the connections

        async def client() -> None:
            while work:
                body, n = work.popleft()
                t0 = time.perf_counter()
                resp = await http.post("/v1/batch", content=body)
                latencies.append(time.perf_counter() - t0)
                _check_answer(resp.status_code, resp.content, n)

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - t0, latencies


def send_all(kind: str, server: Server, write_key: str, bodies: list[bytes], counts: list[int],
             clients: int) -> tuple[float, list[float]]:
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    if kind == "httpx":
        return asyncio.run(_send_all_httpx(server.url, auth, bodies, counts, clients))
    try:
        import uvloop  # the server uses it too (uvicorn[standard]); the client is cheaper with it

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(_send_all_raw("127.0.0.1", server.port, auth, bodies, counts, clients))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# -- references: the same events straight into DuckDB ------------------------------------------------

_TS = pa.timestamp("us", tz="UTC")
_TS_COLUMNS = {"timestamp", "original_timestamp", "sent_at", "received_at"}
_ARROW_SCHEMA = pa.schema(
    [(c, pa.int32() if c == "project_id" else _TS if c in _TS_COLUMNS else pa.string()) for c in EVENT_COLUMN_NAMES]
)
_COLS = ", ".join(f'"{c}"' for c in EVENT_COLUMN_NAMES)


def _ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def bodies_to_table(bodies: list[bytes], project_id: int, received_at: datetime) -> pa.Table:
    """Decode Segment bodies and map each message onto the ``events`` columns (no enrichment)."""
    cols: dict[str, list[Any]] = {c: [] for c in EVENT_COLUMN_NAMES}
    add = {c: cols[c].append for c in EVENT_COLUMN_NAMES}
    for body in bodies:
        doc = _decode(body)
        sent_at = _ts(doc.get("sentAt"))
        for m in doc["batch"]:
            ctx = m.get("context") or {}
            page = ctx.get("page") or {}
            campaign = ctx.get("campaign") or {}
            loc = ctx.get("location") or {}
            lib = ctx.get("library") or {}
            ts = _ts(m.get("timestamp"))
            user_id, anon = m.get("userId"), m.get("anonymousId")
            add["project_id"](project_id)
            add["message_id"](m["messageId"])
            add["event"](m["event"])
            add["type"](m["type"])
            add["distinct_id"](user_id or anon)
            add["anonymous_id"](anon)
            add["user_id"](user_id)
            add["timestamp"](ts or received_at)
            add["original_timestamp"](ts)
            add["sent_at"](sent_at)
            add["received_at"](received_at)
            add["properties"](_encode(m.get("properties") or {}).decode())
            add["url"](page.get("url"))
            add["path"](page.get("path"))
            add["referrer"](page.get("referrer"))
            add["referring_domain"](None)
            add["utm_source"](campaign.get("source"))
            add["utm_medium"](campaign.get("medium"))
            add["utm_campaign"](campaign.get("name"))
            add["utm_content"](campaign.get("content"))
            add["utm_term"](campaign.get("term"))
            add["channel"](None)
            add["os"](None)
            add["browser"](None)
            add["device_type"](None)
            add["app_version"](None)
            add["lib"](lib.get("name"))
            add["ip"](ctx.get("ip"))
            add["city"](loc.get("city"))
            add["region"](loc.get("region"))
            add["country"](loc.get("country"))
            add["source"]("segment")
            add["person_id"](None)
    return pa.Table.from_arrays(
        [pa.array(cols[f.name], type=f.type) for f in _ARROW_SCHEMA], schema=_ARROW_SCHEMA
    )


def _fresh_events_db(path: Path) -> duckdb.DuckDBPyConnection:
    """The references get the server's DuckDB settings (same DDL, same checkpoint threshold)."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    for stmt in DDL:
        con.execute(stmt)
    return con


def _append(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    con.register("_b", table)
    try:
        con.execute(f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM _b")  # autocommit: one txn
    finally:
        con.unregister("_b")


def _chunks(bodies: list[bytes], per_chunk: int) -> Iterator[list[bytes]]:
    for i in range(0, len(bodies), per_chunk):
        yield bodies[i : i + per_chunk]


def _raw_append(path: Path, bodies: list[bytes], per_chunk: int, received: datetime) -> tuple[int, float]:
    """Arrow tables ready before the clock starts; the clock covers the INSERTs (one txn each)."""
    tables = [bodies_to_table(c, 1, received) for c in _chunks(bodies, per_chunk)]
    con = _fresh_events_db(path)
    t0 = time.perf_counter()
    for t in tables:
        _append(con, t)
    seconds = time.perf_counter() - t0
    rows = con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
    con.close()
    return int(rows), seconds


def reference_runs(
    workdir: Path, bodies: list[bytes], batch: int, ref_batch: int, in_flight: int, expected: int
) -> dict[str, Any]:
    per_chunk = max(1, ref_batch // batch)
    received = datetime.now(UTC)

    # (a) raw append in transactions of ref_batch rows
    raw_rows, raw_s = _raw_append(workdir / "raw.duckdb", bodies, per_chunk, received)
    # (a') the same with transactions no bigger than what the HTTP clients can have in flight
    #      (clients x batch): the server's writer can never commit more per transaction than that
    fl_per_chunk = max(1, in_flight // batch)
    fl_rows, fl_s = _raw_append(workdir / "raw_in_flight.duckdb", bodies, fl_per_chunk, received)

    # (b) decode + append: the clock covers JSON decoding and the Arrow build as well
    con = _fresh_events_db(workdir / "decode.duckdb")
    build_s = 0.0
    t0 = time.perf_counter()
    for c in _chunks(bodies, per_chunk):
        tb = time.perf_counter()
        table = bodies_to_table(c, 1, received)
        build_s += time.perf_counter() - tb
        _append(con, table)
    dec_s = time.perf_counter() - t0
    dec_rows = con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
    con.close()
    if {raw_rows, fl_rows, dec_rows} != {expected}:
        raise RuntimeError(f"reference appends stored {raw_rows}/{fl_rows}/{dec_rows} rows, expected {expected}")
    return {
        "raw_append": {
            "rows": raw_rows, "seconds": raw_s, "rows_per_s": raw_rows / raw_s, "rows_per_txn": per_chunk * batch,
        },
        "raw_append_in_flight_txn": {
            "rows": fl_rows, "seconds": fl_s, "rows_per_s": fl_rows / fl_s, "rows_per_txn": fl_per_chunk * batch,
        },
        "decode_append": {
            "rows": dec_rows,
            "seconds": dec_s,
            "rows_per_s": dec_rows / dec_s,
            "rows_per_txn": per_chunk * batch,
            "decode_and_arrow_seconds": build_s,
            "insert_seconds": dec_s - build_s,
        },
    }


# -- verification -------------------------------------------------------------------------------------


def verify_stored(db: Path, project_id: int, ids: list[str]) -> dict[str, int]:
    """Open the file read-only (the server is stopped) and compare with what was sent."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.register("sent", pa.table({"message_id": pa.array(ids, pa.string())}))
        rows, distinct = con.execute(
            "SELECT count(*), count(DISTINCT message_id) FROM events WHERE project_id = ?", [project_id]
        ).fetchone()  # type: ignore[misc]
        missing = con.execute(
            "SELECT count(*) FROM sent s WHERE NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.project_id = ? AND e.message_id = s.message_id)",
            [project_id],
        ).fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    return {"rows": int(rows), "distinct_message_ids": int(distinct), "missing": int(missing)}


# -- py-spy (optional) --------------------------------------------------------------------------------


def start_py_spy(binary: str, pid: int, out: Path) -> subprocess.Popen[bytes]:
    fmt = "flamegraph" if out.suffix == ".svg" else "speedscope" if out.suffix == ".json" else "raw"
    proc = subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--rate", "200", "--threads", "--nonblocking",
         "--format", fmt, "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # let it attach before the load starts
    if proc.poll() is not None:
        raise RuntimeError(f"py-spy failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return proc


def stop_py_spy(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- main ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="userloop-bench-"))
    db = workdir / "bench.duckdb"
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    try:
        project = json.loads(cli("project", "create", "bench", "--db", str(db), "--json", cwd=workdir).stdout)
        run_id = uuid.uuid4().hex[:10]
        log(f"building {args.events} events in bodies of {args.batch} ...")
        bodies = build_bodies(args.events, args.batch, run_id, args.seed, args.ids)
        counts = [min(args.batch, args.events - i) for i in range(0, args.events, args.batch)]
        warm_n = min(len(bodies) // 10, 2 * args.clients)
        warm_bodies, warm_counts = bodies[:warm_n], counts[:warm_n]
        bodies_timed, counts_timed = bodies[warm_n:], counts[warm_n:]
        body_bytes = sum(len(b) for b in bodies)

        extra = [] if args.parse_workers is None else ["--parse-workers", str(args.parse_workers)]
        server = Server(db, args.port or free_port(), workdir / "server.log", extra)
        server.start()
        spy = None
        try:
            if warm_bodies:
                send_all(args.client, server, project["write_key"], warm_bodies, warm_counts, args.clients)
            if args.py_spy:
                spy = start_py_spy(args.py_spy_bin, server.pid, Path(args.py_spy).resolve())
            log(f"sending {sum(counts_timed)} events ({len(bodies_timed)} requests, "
                f"{args.clients} clients, {args.client} client) to {server.url} ...")
            cpu_server0 = process_cpu_seconds(server.pid)
            threads0 = thread_cpu_seconds(server.pid)
            workers0 = children_cpu_seconds(server.pid)
            cpu_client0 = time.process_time()
            t_send = time.perf_counter()
            elapsed, latencies = send_all(
                args.client, server, project["write_key"], bodies_timed, counts_timed, args.clients
            )
            cpu_client = time.process_time() - cpu_client0
            # every /api/ read first waits for the loader to store what was acknowledged: the time
            # until this answers is when the last acknowledged event became readable
            newest = httpx.get(
                f"{server.url}/api/events", params={"limit": 1},
                headers={"Authorization": f"Bearer {project['secret_key']}"}, timeout=120,
            )
            readable_elapsed = time.perf_counter() - t_send
            if newest.status_code != 200:
                raise RuntimeError(f"/api/events answered {newest.status_code}: {newest.text[:300]}")
            cpu_server1 = process_cpu_seconds(server.pid)
            threads1 = thread_cpu_seconds(server.pid)
            workers_cpu = children_cpu_seconds(server.pid) - workers0
            if spy is not None:
                stop_py_spy(spy)
                spy = None
        finally:
            if spy is not None:
                stop_py_spy(spy)
            rc = server.stop()
        if rc not in (0, -signal.SIGINT):
            raise RuntimeError(f"server exited with {rc}: {(workdir / 'server.log').read_text()}")

        ids = [message_id(run_id, i, args.ids) for i in range(args.events)]
        stored = verify_stored(db, int(project["id"]), ids)
        ok = stored == {"rows": args.events, "distinct_message_ids": args.events, "missing": 0}
        if not ok:
            raise RuntimeError(f"stored rows do not match what was sent ({args.events}): {stored}")

        log("reference appends ...")
        refs = reference_runs(workdir, bodies, args.batch, args.ref_batch, args.clients * args.batch, args.events)

        timed_events = sum(counts_timed)
        http_rate = timed_events / elapsed
        server_cpu = (cpu_server1 - cpu_server0) if cpu_server0 is not None and cpu_server1 is not None else None
        result: dict[str, Any] = {
            "config": {
                "events": args.events,
                "timed_events": timed_events,
                "warmup_events": sum(warm_counts),
                "batch": args.batch,
                "clients": args.clients,
                "client": args.client,
                "message_ids": args.ids,
                "ref_batch": args.ref_batch,
                "avg_body_bytes": round(body_bytes / len(bodies)),
            },
            "http": {
                "events_per_s": http_rate,
                "seconds": elapsed,
                "readable_events_per_s": timed_events / readable_elapsed,
                "readable_seconds": readable_elapsed,
                "requests": len(latencies),
                "p50_ms": percentile(latencies, 50) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
                "max_ms": max(latencies) * 1000,
                "mean_ms": statistics.fmean(latencies) * 1000,
                "server_cpu_s": server_cpu,
                "parse_workers_cpu_s": round(workers_cpu, 2),
                "server_cpu_by_thread_s": {
                    k: round(v - threads0.get(k, 0.0), 2) for k, v in sorted(threads1.items()) if v - threads0.get(k, 0.0) > 0
                },
                "client_cpu_s": cpu_client,
                "events_per_server_cpu_s": timed_events / server_cpu if server_cpu else None,
                "stored": stored,
                "verified": ok,
            },
            **refs,
            "ratio_raw_over_http": refs["raw_append"]["rows_per_s"] / http_rate,
            "ratio_raw_over_readable": refs["raw_append"]["rows_per_s"] * readable_elapsed / timed_events,
            "ratio_raw_in_flight_txn_over_http": refs["raw_append_in_flight_txn"]["rows_per_s"] / http_rate,
            "ratio_decode_append_over_http": refs["decode_append"]["rows_per_s"] / http_rate,
            "targets": {"http_events_per_s": TARGET_EVENTS_PER_S, "max_ratio_raw_over_http": TARGET_MAX_RATIO},
            "machine": {
                "cpus": os.cpu_count(),
                "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                "python": platform.python_version(),
                "duckdb": duckdb.__version__,
                "pyarrow": pa.__version__,
                "platform": platform.platform(),
            },
        }
        # judged on the stricter figure: acknowledged AND stored in DuckDB
        readable_rate = timed_events / readable_elapsed
        result["targets"]["met"] = (
            min(http_rate, readable_rate) >= TARGET_EVENTS_PER_S
            and result["ratio_raw_over_readable"] <= TARGET_MAX_RATIO
        )
        return result
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def print_table(r: dict[str, Any]) -> None:
    c, h, raw, dec = r["config"], r["http"], r["raw_append"], r["decode_append"]
    fl = r["raw_append_in_flight_txn"]
    m = r["machine"]
    cpu = f"{h['server_cpu_s']:.1f}" if h["server_cpu_s"] is not None else "n/a"
    print(
        f"\nuserloop ingest benchmark: {c['events']} events ({c['timed_events']} timed after "
        f"{c['warmup_events']} warm-up), {c['batch']} per request (~{c['avg_body_bytes'] // 1024} KiB), "
        f"{c['clients']} clients ({c['client']}), {c['message_ids']} message ids"
    )
    print(f"machine: {m['cpus']} cpus, python {m['python']}, duckdb {m['duckdb']}, pyarrow {m['pyarrow']}\n")
    rows = [
        ("HTTP /v1/batch (durable 200s)", f"{h['events_per_s']:,.0f}", f"{h['seconds']:.2f}"),
        ("HTTP, until the last event is readable in DuckDB", f"{h['readable_events_per_s']:,.0f}",
         f"{h['readable_seconds']:.2f}"),
        (f"raw append (Arrow -> INSERT, {raw['rows_per_txn']}/txn)", f"{raw['rows_per_s']:,.0f}",
         f"{raw['seconds']:.2f}"),
        (f"raw append, {fl['rows_per_txn']}/txn (= clients x batch)", f"{fl['rows_per_s']:,.0f}",
         f"{fl['seconds']:.2f}"),
        (f"decode+append (JSON -> Arrow -> INSERT, {dec['rows_per_txn']}/txn)", f"{dec['rows_per_s']:,.0f}",
         f"{dec['seconds']:.2f}"),
    ]
    width = max(len(r_[0]) for r_ in rows)
    print(f"{'path':<{width}}  {'events/s':>12}  {'seconds':>8}")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 8}")
    for name, rate, secs in rows:
        print(f"{name:<{width}}  {rate:>12}  {secs:>8}")
    print()
    lines = [
        ("ratio raw / HTTP", f"{r['ratio_raw_over_http']:.2f}x"),
        ("ratio raw / HTTP readable", f"{r['ratio_raw_over_readable']:.2f}x"),
        (f"ratio raw {fl['rows_per_txn']}/txn / HTTP", f"{r['ratio_raw_in_flight_txn_over_http']:.2f}x"),
        ("ratio decode+append / HTTP", f"{r['ratio_decode_append_over_http']:.2f}x"),
        ("request latency", f"p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms, max {h['max_ms']:.1f} ms "
                            f"({h['requests']} requests)"),
        ("CPU during the HTTP run", f"server {cpu} s, client {h['client_cpu_s']:.2f} s (wall {h['seconds']:.1f} s)"),
        ("server CPU by thread", ", ".join(f"{k} {v:.2f} s" for k, v in h["server_cpu_by_thread_s"].items())
         + f"; parse workers {h['parse_workers_cpu_s']:.2f} s"),
    ]
    for label, value in lines:
        print(f"{label + ':':<30} {value}")
    s = h["stored"]
    print(f"stored (read back with duckdb, server stopped): {s['rows']} rows, {s['distinct_message_ids']} distinct "
          f"ids, {s['missing']} missing -> {'OK' if h['verified'] else 'MISMATCH'}")
    t = r["targets"]
    print(f"target >= {t['http_events_per_s']:,} events/s and raw/HTTP <= {t['max_ratio_raw_over_http']:.0f}x "
          "(acknowledged and readable): "
          f"{'MET' if t['met'] else 'NOT MET'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--events", type=int, default=200_000, help="events to send (default 200000)")
    p.add_argument("--clients", type=int, default=8, help="concurrent connections (default 8)")
    p.add_argument("--batch", type=int, default=100, help="events per request (default 100)")
    p.add_argument("--ref-batch", type=int, default=10_000, help="rows per transaction in the references")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator (default raw)")
    p.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parse-workers", type=int, default=None,
                   help="passed to userloop serve (default: its default, one per core; 0: parse in the server)")
    p.add_argument("--ids", choices=("uuid", "sequential"), default="uuid",
                   help="messageId style: random UUIDs as SDKs send them (default), or increasing")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--check", action="store_true", help="exit 1 when the targets are not met")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (databases, server log)")
    p.add_argument("--py-spy", metavar="OUT", help="sample the server with py-spy during the timed run "
                   "(.svg flamegraph, .json speedscope, else collapsed stacks)")
    p.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy", help="py-spy executable")
    args = p.parse_args(argv)
    if args.events < 1 or args.clients < 1 or args.batch < 1 or args.ref_batch < 1:
        p.error("--events, --clients, --batch and --ref-batch must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 1 if args.check and not result["targets"]["met"] else 0


if __name__ == "__main__":
    sys.exit(main())
