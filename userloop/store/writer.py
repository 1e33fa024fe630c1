"""The one writer: requests hand it what to store and get a future that resolves once it is durable.

Requests hand a :class:`Payload` (or an Arrow table of events from an import) to :meth:`Writer.submit`.
The writer thread takes everything queued (up to ``max_batch`` events, waiting at most
``max_wait_ms`` for more) and makes it durable in one step. Two modes:

* **spool** (the server; ``spool_dir`` set): the batch is appended to the spool
  (``userloop/store/spool.py``) and ``fdatasync``-ed, then the futures resolve. A second thread, the
  loader, closes the spool segment and stores it in DuckDB in one large transaction, then the next
  one. Reads call :meth:`Writer.sync` first (the web app does it for every ``/api/`` request), which
  waits until everything acknowledged before the call is in DuckDB, so a client reads its own writes.
* **direct** (the CLI on a file, tests): the batch is stored in one DuckDB transaction and the
  futures resolve after COMMIT (DuckDB syncs its WAL on commit).

Either way retried message ids are stored once (``ON CONFLICT DO NOTHING`` on
``(project_id, message_id)``, after an in-batch ``QUALIFY`` dedup), and a batch is one transaction:
identities first, then operations in arrival order, then events with the person resolved.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa

from userloop.ingest.event import (
    EVENT_FIELDS,
    Event,
    GroupOp,
    ItemOp,
    Merge,
    Op,
    Payload,
    ProfileOp,
    Unbind,
    Unmerge,
)
from userloop.ingest.workers import Parsed
from userloop.people.audit import apply_unmerge
from userloop.people.identity import apply_merges, apply_unbind, ensure_identities, ensure_identities_from
from userloop.people.profiles import apply_profile_ops
from userloop.store import spool as spool_mod
from userloop.store.duckdb import Store
from userloop.store.schema import EVENT_COLUMN_NAMES

log = logging.getLogger("userloop.writer")

_TS = pa.timestamp("us", tz="UTC")
_TYPES = {
    "project_id": pa.int32(),
    "timestamp": _TS,
    "original_timestamp": _TS,
    "sent_at": _TS,
    "received_at": _TS,
}
EVENTS_SCHEMA = pa.schema([(name, _TYPES.get(name, pa.string())) for name in EVENT_FIELDS])
assert list(EVENT_FIELDS) + ["person_id"] == EVENT_COLUMN_NAMES, "Event fields must match the events table"

_COLS = ", ".join(f'b."{c}"' for c in EVENT_FIELDS)


_PROPERTIES = EVENT_FIELDS.index("properties")


def events_to_arrow(events: Sequence[Event]) -> pa.Table:
    rows = [msgspec.structs.astuple(e) for e in events]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in EVENT_FIELDS]
    if rows:
        columns[_PROPERTIES] = tuple(p if type(p) is str else bytes(p).decode() for p in columns[_PROPERTIES])
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, EVENTS_SCHEMA, strict=True)],
        schema=EVENTS_SCHEMA,
    )


@dataclass
class WriteResult:
    stored: int  # new rows (duplicates of stored message ids excluded)
    received: int


@dataclass
class _Job:
    payload: Payload | None = None
    table: pa.Table | None = None
    parsed: Parsed | None = None  # already encoded by a parse worker (spool mode only)
    future: Future[WriteResult] = field(default_factory=Future)

    @property
    def size(self) -> int:
        n = len(self.payload.events) + len(self.payload.ops) if self.payload else 0
        if self.parsed is not None:
            n += self.parsed.n_events + self.parsed.n_ops
        return n + (self.table.num_rows if self.table is not None else 0)


_STOP = object()

_INSERT_EVENTS = f"""INSERT INTO events
    SELECT {_COLS}, i.person_id
    FROM (SELECT * FROM {{rel}} QUALIFY row_number() OVER (PARTITION BY project_id, message_id) = 1) b
    LEFT JOIN identities i ON i.project_id = b.project_id AND i.distinct_id = b.distinct_id
    ON CONFLICT DO NOTHING"""
_INSERT_PROPERTIES = """INSERT INTO event_properties
    SELECT DISTINCT project_id, event, unnest(coalesce(json_keys(properties), []))
    FROM {rel} ON CONFLICT DO NOTHING"""


def _store_events(cur, rel: str) -> int:  # type: ignore[no-untyped-def]
    row = cur.execute(_INSERT_EVENTS.format(rel=rel)).fetchall()
    cur.execute(_INSERT_PROPERTIES.format(rel=rel))
    return int(row[0][0]) if row else 0


def load_segment(cur, seg: spool_mod.Segment) -> int:  # type: ignore[no-untyped-def]
    """Store one spool segment in one transaction (identities, operations, events, watermark).

    Most segments hold no message id seen before, so the first attempt inserts without the
    duplicate checks (no in-batch dedup, no ``ON CONFLICT``: about a third cheaper); a primary-key
    violation rolls it back and the segment is stored again with them.
    """
    try:
        return _load_segment(cur, seg, checked=False)
    except duckdb.ConstraintException:
        return _load_segment(cur, seg, checked=True)


def _load_segment(cur, seg: spool_mod.Segment, *, checked: bool) -> int:  # type: ignore[no-untyped-def]
    ops = spool_mod.read_ops(seg)
    cur.execute("BEGIN TRANSACTION")
    try:
        inserted = 0
        parts: list[str] = []
        if seg.events:
            # parse the JSON lines once: the distinct ids, the events and their property keys are all
            # read from this in-memory table, which is not logged
            cur.execute(f"CREATE OR REPLACE TEMP TABLE _seg AS SELECT * FROM {spool_mod.events_relation(seg.events_path)}")
            parts.append("SELECT project_id, distinct_id, timestamp AS ts FROM _seg")
        extra = _identity_keys(None, ops)
        if extra is not None:
            cur.register("_op_ids", extra)
            parts.append("SELECT project_id, distinct_id, ts FROM _op_ids")
        if parts:
            ensure_identities_from(cur, "(" + " UNION ALL ".join(parts) + ")")
        if extra is not None:
            cur.unregister("_op_ids")
        _apply_ops(cur, ops)
        if seg.events:
            if checked:
                inserted = _store_events(cur, "_seg")
            else:
                row = cur.execute(
                    f"""INSERT INTO events SELECT {_COLS}, i.person_id FROM _seg b
                        LEFT JOIN identities i ON i.project_id = b.project_id AND i.distinct_id = b.distinct_id"""
                ).fetchall()
                inserted = int(row[0][0]) if row else 0
                cur.execute(_INSERT_PROPERTIES.format(rel="_seg"))
            cur.execute("DROP TABLE _seg")
        cur.execute(spool_mod.set_watermark_sql(), [str(seg.number)])
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return inserted


class Writer:
    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 20_000,
        max_wait_ms: float = 5.0,
        spool_dir: Path | None = None,
        load_delay_ms: float = 250.0,
        load_min_events: int = 50_000,
        max_backlog: int = 100_000,
    ):
        self.store = store
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.healthy = True
        self.last_error: str | None = None
        # spool mode
        self.spool_dir = spool_dir
        self.load_delay = load_delay_ms / 1000
        self.load_min_events = load_min_events
        self.max_backlog = max_backlog
        self._spool: spool_mod.Spool | None = None
        self._loader: threading.Thread | None = None
        self._cv = threading.Condition()  # guards everything below
        self._acked_seq = 0  # appended-and-synced batches
        self._loaded_seq = 0  # batches stored in DuckDB
        self._backlog = 0  # events acknowledged but not yet stored
        self._tables: list[tuple[int, _Job]] = []  # imports waiting for the loader (with the seq before them)
        self._waiters = 0
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Writer:
        if self._thread is None:
            if self.spool_dir is not None:
                spool_mod.replay(self.store, self.spool_dir)  # what a crashed process acknowledged
                cur = self.store.new_cursor()
                try:
                    first = spool_mod.next_segment_number(cur, self.spool_dir)
                finally:
                    cur.close()
                self._spool = spool_mod.Spool(self.spool_dir, first)
                self._stopping = False
                self._loader = threading.Thread(target=self._load_loop, name="userloop-loader", daemon=True)
                self._loader.start()
            self._thread = threading.Thread(target=self._run, name="userloop-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._loader is not None:
            with self._cv:
                self._stopping = True
                self._cv.notify_all()
            self._loader.join()
            self._loader = None
            if self._spool is not None:
                self._spool.close()
                self._spool = None

    def is_alive(self) -> bool:
        alive = self._thread is not None and self._thread.is_alive()
        return alive and (self._loader is None or self._loader.is_alive())

    def __enter__(self) -> Writer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- submitting -----------------------------------------------------------------------------
    def submit(self, payload: Payload) -> Future[WriteResult]:
        job = _Job(payload=payload)
        self._queue.put(job)
        return job.future

    def submit_table(self, table: pa.Table, ops: list[Op] | None = None) -> Future[WriteResult]:
        """Events already in :data:`EVENTS_SCHEMA` form (file imports); resolves after COMMIT."""
        job = _Job(payload=Payload(ops=ops or []), table=table.cast(EVENTS_SCHEMA))
        self._queue.put(job)
        return job.future

    def submit_parsed(self, parsed: Parsed) -> Future[WriteResult]:
        """A request a parse worker already encoded as spool lines (``userloop/ingest/workers.py``)."""
        if self.spool_dir is None:
            raise RuntimeError("encoded payloads need the spool (spool_dir)")
        job = _Job(parsed=parsed)
        self._queue.put(job)
        return job.future

    @property
    def spooled(self) -> bool:
        return self.spool_dir is not None

    def write(self, payload: Payload) -> WriteResult:
        return self.submit(payload).result()

    def pending(self) -> bool:
        """True while something acknowledged is not yet in DuckDB (spool mode)."""
        return self._loaded_seq < self._acked_seq or bool(self._tables)

    def sync(self, timeout: float | None = 30.0) -> bool:
        """Wait until everything acknowledged before this call is stored in DuckDB (spool mode)."""
        if self._spool is None:
            return True
        with self._cv:
            target = self._acked_seq
            if self._loaded_seq >= target:
                return True
            self._waiters += 1
            self._cv.notify_all()
            try:
                return self._cv.wait_for(lambda: self._loaded_seq >= target or self._stopping, timeout)
            finally:
                self._waiters -= 1

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        _name_os_thread("ul-writer")
        cur = self.store.new_cursor()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            jobs: list[_Job] = [first]  # type: ignore[list-item]
            size = jobs[0].size
            # direct mode waits a little to fill a DuckDB transaction; the spool appends what is
            # queued at once (an fdatasync is cheap, and waiting would only add latency)
            deadline = time.monotonic() + (self.max_wait if self._spool is None else 0.0)
            while size < self.max_batch:
                timeout = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                jobs.append(nxt)  # type: ignore[arg-type]
                size += nxt.size  # type: ignore[attr-defined]
            if self._spool is None:
                self._store_jobs(cur, jobs)
            else:
                self._spool_jobs(jobs)
        cur.close()

    # spool mode: append + fdatasync, acknowledge; imports go to the loader in order
    def _spool_jobs(self, jobs: list[_Job]) -> None:
        run: list[_Job] = []
        for job in jobs:
            if job.table is not None:
                self._spool_run(run)
                run = []
                with self._cv:
                    self._tables.append((self._acked_seq, job))
                    self._cv.notify_all()
            else:
                run.append(job)
        self._spool_run(run)

    def _spool_run(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        assert self._spool is not None
        events = [e for j in jobs if j.payload is not None for e in j.payload.events]
        ops = [op for j in jobs if j.payload is not None for op in j.payload.ops]
        parsed = [j.parsed for j in jobs if j.parsed is not None]
        try:
            with self._cv:  # back-pressure: the loader must keep up (reads stay fresh)
                self._cv.wait_for(lambda: self._backlog < self.max_backlog or self._stopping)
            events_bytes = b"".join([_encode_lines(events) if events else b"", *(p.events for p in parsed)])
            ops_bytes = b"".join([_encode_lines(ops) if ops else b"", *(p.ops for p in parsed)])
            n_events = len(events) + sum(p.n_events for p in parsed)
            n_ops = len(ops) + sum(p.n_ops for p in parsed)
            with self._cv:
                self._spool.append(events_bytes, n_events, ops_bytes, n_ops)
                self._spool.sync()
                self._acked_seq += 1
                self._backlog += n_events
                self._cv.notify_all()
        except Exception as exc:  # the disk refused: nothing was acknowledged
            log.exception("spool append failed")
            self.healthy = False
            self.last_error = repr(exc)
            for job in jobs:
                job.future.set_exception(exc)
            return
        for job in jobs:
            job.future.set_result(WriteResult(stored=job.size, received=job.size))

    def _load_loop(self) -> None:
        _name_os_thread("ul-loader")
        cur = self.store.new_cursor()
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._stopping or self._tables or self._has_spooled())
                    cur_seg = self._spool.current if self._spool is not None else None
                    if not self._waiters and not self._tables and not self._stopping and cur_seg is not None:
                        # let the segment grow (up to load_delay after it opened, or load_min_events):
                        # DuckDB stores a large transaction for less per event; a reader does not wait
                        self._cv.wait_for(
                            lambda s=cur_seg: self._waiters > 0 or self._stopping or self._tables
                            or s.events >= self.load_min_events,
                            cur_seg.opened_at + self.load_delay - time.monotonic(),
                        )
                    tables, self._tables = self._tables, []
                    seq = self._acked_seq
                    seg = self._spool.rotate(seq) if self._spool is not None else None
                    if seg is None and not tables and self._stopping:
                        return
                if seg is not None:
                    self._load_with_retry(cur, seg)
                for _, job in tables:
                    self._store_jobs(cur, [job])
                with self._cv:
                    self._loaded_seq = max(self._loaded_seq, seq)
                    if seg is not None:
                        self._backlog -= seg.events
                    self._cv.notify_all()
        finally:
            cur.close()

    def _has_spooled(self) -> bool:
        seg = self._spool.current if self._spool is not None else None
        return seg is not None and (seg.events > 0 or seg.ops > 0)

    def _load_with_retry(self, cur, seg: spool_mod.Segment) -> None:  # type: ignore[no-untyped-def]
        delay = 0.05
        while True:
            try:
                load_segment(cur, seg)
                spool_mod.remove_segment(seg)
                self.healthy = True
                return
            except Exception as exc:  # the segment stays on disk: it is replayed on the next start
                log.exception("loading spool segment %d failed; retrying", seg.number)
                self.healthy = False
                self.last_error = repr(exc)
                if self._stopping:
                    return
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    # direct mode (and imports in spool mode): one DuckDB transaction per batch
    def _store_jobs(self, cur: object, jobs: list[_Job]) -> None:
        try:
            stored = self._apply(cur, jobs)
        except Exception as exc:  # one bad job must not fail the others: retry one by one
            log.warning("batch of %d jobs failed (%s); retrying one by one", len(jobs), exc)
            if len(jobs) == 1:
                self.last_error = repr(exc)
                jobs[0].future.set_exception(exc)
                return
            for job in jobs:
                self._store_jobs(cur, [job])
            return
        for job, n in zip(jobs, stored, strict=True):
            job.future.set_result(WriteResult(stored=n, received=job.size))

    def _apply(self, cur, jobs: list[_Job]) -> list[int]:  # type: ignore[no-untyped-def]
        tables = []
        for job in jobs:
            if job.payload is not None and job.payload.events:
                tables.append(events_to_arrow(job.payload.events))
            if job.table is not None and job.table.num_rows:
                tables.append(job.table)
        ops = [op for job in jobs if job.payload is not None for op in job.payload.ops]
        batch = pa.concat_tables(tables) if tables else None
        cur.execute("BEGIN TRANSACTION")
        try:
            ids = _identity_keys(batch, ops)
            if ids is not None:
                ensure_identities(cur, ids)
            _apply_ops(cur, ops)
            inserted = 0
            if batch is not None:
                cur.register("_batch", batch)
                try:
                    inserted = _store_events(cur, "_batch")
                finally:
                    cur.unregister("_batch")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self.healthy = True
        # Per-job counts of new rows are not separable inside one INSERT; report the total on
        # the single-job path and the submitted sizes otherwise.
        if len(jobs) == 1:
            return [inserted]
        return [j.size for j in jobs]


_encode_lines = msgspec.json.Encoder().encode_lines


def _name_os_thread(name: str) -> None:
    """Name the OS thread (``top -H``, ``/proc/<pid>/task/*/comm``), Linux only, best effort."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _identity_keys(batch: pa.Table | None, ops: list[Op]) -> pa.Table | None:
    pids: list[int] = []
    dids: list[str] = []
    for op in ops:
        if isinstance(op, Merge):
            pids += [op.project_id, op.project_id]
            dids += [op.distinct_id, op.other_id]
        elif isinstance(op, ProfileOp) and op.op != "delete":
            pids.append(op.project_id)
            dids.append(op.distinct_id)
    extra = None
    if pids:
        now = pa.scalar(time.time_ns() // 1000, type=pa.int64()).cast(_TS)
        extra = pa.table(
            {
                "project_id": pa.array(pids, pa.int32()),
                "distinct_id": pa.array(dids, pa.string()),
                "ts": pa.array([now.value] * len(pids), pa.int64()).cast(_TS),
            }
        )
    if batch is None:
        return extra
    base = pa.table(
        {
            "project_id": batch.column("project_id"),
            "distinct_id": batch.column("distinct_id"),
            "ts": batch.column("timestamp"),
        }
    )
    return pa.concat_tables([base, extra]) if extra is not None else base


def _apply_ops(cur, ops: list[Op]) -> None:  # type: ignore[no-untyped-def]
    """Apply operations in arrival order, in bulk where that gives the same result.

    Consecutive merges go in one bulk step, and so do profile operations; a merge that joins the
    person of a profile operation still queued applies that operation first, so it lands on the
    person as it was when it arrived (an ``$set`` before an identify stays the anonymous person's
    value, and is in that merge's undo snapshot).
    """
    profile_ops: list[ProfileOp] = []
    merges: list[Merge] = []
    order = _MergeOrder(cur, ops) if _needs_order(ops) else None
    for op in ops:
        if isinstance(op, Merge):
            if profile_ops and order is not None and order.joins_pending(op):
                apply_merges(cur, merges)
                apply_profile_ops(cur, profile_ops)
                merges, profile_ops = [], []
                order.pending.clear()
            merges.append(op)  # consecutive merges go in one bulk step
            if order is not None:
                order.merge(op)
            continue
        if isinstance(op, Unbind | Unmerge):  # on the person as everything before it left it
            apply_merges(cur, merges)
            apply_profile_ops(cur, profile_ops)
            merges, profile_ops = [], []
            if isinstance(op, Unbind):
                apply_unbind(cur, op)
            else:
                apply_unmerge(cur, op)
            if order is not None:  # identities changed in a way the union-find does not follow
                order = _MergeOrder(cur, ops)
        elif isinstance(op, ProfileOp):
            profile_ops.append(op)
            if order is not None:
                order.pend(op)
        elif isinstance(op, GroupOp):
            cur.execute(
                """INSERT INTO groups VALUES (?, ?, ?, ?, now())
                   ON CONFLICT DO UPDATE SET
                     properties = json_merge_patch(groups.properties, excluded.properties),
                     updated_at = excluded.updated_at""",
                [op.project_id, op.group_type, op.group_key, msgspec.json.encode(op.properties).decode()],
            )
        elif isinstance(op, ItemOp):
            if op.op == "set":
                cur.execute(
                    """INSERT INTO items VALUES (?, ?, ?, ?, false, now())
                       ON CONFLICT DO UPDATE SET
                         properties = json_merge_patch(items.properties, excluded.properties),
                         deleted = false, updated_at = excluded.updated_at""",
                    [op.project_id, op.item_type, op.item_id, msgspec.json.encode(op.properties).decode()],
                )
            else:
                cur.execute(
                    "UPDATE items SET deleted = true, updated_at = now() "
                    "WHERE project_id = ? AND item_type = ? AND item_id = ?",
                    [op.project_id, op.item_type, op.item_id],
                )
    apply_merges(cur, merges)
    apply_profile_ops(cur, profile_ops)


def _needs_order(ops: list[Op]) -> bool:
    kinds = {type(op) for op in ops}
    return Merge in kinds and ProfileOp in kinds


class _MergeOrder:
    """Which persons the queued profile operations act on, with the segment's merges followed
    through a union-find over persons (one read of ``identities`` for all ids involved)."""

    def __init__(self, cur, ops: list[Op]):  # type: ignore[no-untyped-def]
        keys = {(op.project_id, op.distinct_id) for op in ops if isinstance(op, ProfileOp | Merge)}
        keys |= {(op.project_id, op.other_id) for op in ops if isinstance(op, Merge)}
        table = pa.table({"project_id": pa.array([k[0] for k in keys], pa.int32()),
                          "distinct_id": pa.array([k[1] for k in keys], pa.string())})
        cur.register("_order_ids", table)
        try:
            rows = cur.execute(
                "SELECT k.project_id, k.distinct_id, i.person_id FROM _order_ids k "
                "JOIN identities i USING (project_id, distinct_id)"
            ).fetchall()
        finally:
            cur.unregister("_order_ids")
        self.person = {(r[0], r[1]): (r[0], r[2]) for r in rows}
        self.parent: dict[tuple[int, str], tuple[int, str]] = {}
        self.pending: set[tuple[int, str]] = set()  # roots of persons with queued profile operations

    def _root(self, project_id: int, distinct_id: str) -> tuple[int, str]:
        x = self.person.get((project_id, distinct_id), (project_id, "\0" + distinct_id))
        while x in self.parent:
            x = self.parent[x]
        return x

    def joins_pending(self, m: Merge) -> bool:
        return bool({self._root(m.project_id, m.distinct_id), self._root(m.project_id, m.other_id)} & self.pending)

    def merge(self, m: Merge) -> None:
        keep, gone = self._root(m.project_id, m.distinct_id), self._root(m.project_id, m.other_id)
        if keep != gone:
            self.parent[gone] = keep

    def pend(self, op: ProfileOp) -> None:
        self.pending.add(self._root(op.project_id, op.distinct_id))
