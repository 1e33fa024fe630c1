"""The one writer: a thread that drains a queue into DuckDB in batches.

Requests hand a :class:`Payload` (or an Arrow table of events from an import) to :meth:`Writer.submit`
and get a future. The writer takes everything queued (up to ``max_batch`` events, waiting at most
``max_wait_ms`` for more), stores it in one transaction and resolves the futures after COMMIT.
DuckDB syncs its WAL on commit, so an answered request is durable. Retried message ids are stored
once (``ON CONFLICT DO NOTHING`` on ``(project_id, message_id)``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

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
from userloop.people.audit import apply_unmerge
from userloop.people.identity import apply_merges, apply_unbind, ensure_identities
from userloop.people.profiles import apply_profile_ops
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


def events_to_arrow(events: Sequence[Event]) -> pa.Table:
    rows = [msgspec.structs.astuple(e) for e in events]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in EVENT_FIELDS]
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
    future: Future[WriteResult] = field(default_factory=Future)

    @property
    def size(self) -> int:
        n = len(self.payload.events) + len(self.payload.ops) if self.payload else 0
        return n + (self.table.num_rows if self.table is not None else 0)


_STOP = object()


class Writer:
    def __init__(self, store: Store, *, max_batch: int = 20_000, max_wait_ms: float = 5.0):
        self.store = store
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.healthy = True
        self.last_error: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Writer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="userloop-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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
        """Events already in :data:`EVENTS_SCHEMA` form (file imports)."""
        job = _Job(payload=Payload(ops=ops or []), table=table.cast(EVENTS_SCHEMA))
        self._queue.put(job)
        return job.future

    def write(self, payload: Payload) -> WriteResult:
        return self.submit(payload).result()

    # -- the loop -------------------------------------------------------------------------------
    def _run(self) -> None:
        cur = self.store.new_cursor()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            jobs: list[_Job] = [first]  # type: ignore[list-item]
            size = jobs[0].size
            deadline = time.monotonic() + self.max_wait
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
            self._store_jobs(cur, jobs)
        cur.close()

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
                    row = cur.execute(
                        f"""INSERT INTO events
                            SELECT {_COLS}, i.person_id
                            FROM (SELECT * FROM _batch
                                  QUALIFY row_number() OVER (PARTITION BY project_id, message_id) = 1) b
                            LEFT JOIN identities i ON i.project_id = b.project_id AND i.distinct_id = b.distinct_id
                            ON CONFLICT DO NOTHING"""
                    ).fetchall()
                    inserted = int(row[0][0]) if row else 0
                    cur.execute(
                        """INSERT INTO event_properties
                           SELECT DISTINCT project_id, event, unnest(coalesce(json_keys(properties), []))
                           FROM _batch ON CONFLICT DO NOTHING"""
                    )
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
    profile_ops: list[ProfileOp] = []
    merges: list[Merge] = []
    for op in ops:
        if isinstance(op, Merge):
            merges.append(op)  # consecutive merges go in one bulk step
            continue
        if isinstance(op, Unbind):
            apply_merges(cur, merges)
            merges = []
            apply_unbind(cur, op)
        elif isinstance(op, Unmerge):  # on the person as everything before it left it
            apply_merges(cur, merges)
            apply_profile_ops(cur, profile_ops)
            merges, profile_ops = [], []
            apply_unmerge(cur, op)
        elif isinstance(op, ProfileOp):
            profile_ops.append(op)
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
