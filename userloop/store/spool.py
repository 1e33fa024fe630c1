"""The spool: an fsynced log of acknowledged writes, loaded into DuckDB in large transactions.

A collector request is acknowledged once its events and operations are appended to the current
*segment* and ``fdatasync``-ed (a fraction of a millisecond), not after a DuckDB commit. A loader
thread (``userloop/store/writer.py``) then closes the segment and stores it in one transaction, so
DuckDB sees tens of thousands of events per commit instead of the few hundred that clients can have
in flight. Acknowledged means durable either way: a segment is deleted only after its transaction
committed, and the number of the last loaded segment is committed in the same transaction
(``meta.spool_loaded``), so a crash between the commit and the delete never applies a segment twice.

Layout, next to the database file (``<db>.spool/``)::

    00000042.events.ndjson   one Event per line (msgspec JSON, the ``events`` columns)
    00000042.ops.ndjson      one operation per line (tagged: merge, unbind, profile, group, item)

:func:`replay` loads what a crashed process left behind; ``Store`` calls it when it opens a file
for writing, so every process that opens the file sees every acknowledged event.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from userloop.ingest.event import EVENT_FIELDS, Op

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("userloop.spool")

_SEGMENT = re.compile(r"^(\d{8})\.(events|ops)\.ndjson$")
_decode_op = msgspec.json.Decoder(Op).decode
_TIMESTAMPS = {"timestamp", "original_timestamp", "sent_at", "received_at"}
# the column types read_ndjson must use (JSON has no timestamps; names keep their case)
_COLUMN_TYPES = ", ".join(
    f"'{name}': '{'INTEGER' if name == 'project_id' else 'TIMESTAMPTZ' if name in _TIMESTAMPS else 'VARCHAR'}'"
    for name in EVENT_FIELDS
)


def spool_dir_for(db_path: str | Path) -> Path | None:
    """``<db>.spool`` next to a database file; None for an in-memory database."""
    text = str(db_path)
    if text in ("", ":memory:") or text.startswith(":memory:"):
        return None
    p = Path(text)
    return p.with_name(p.name + ".spool")


@dataclass
class Segment:
    number: int
    events_path: Path
    ops_path: Path
    events: int = 0  # lines (events) appended
    ops: int = 0
    seq: int = 0  # the writer's acknowledgement sequence number when the segment was closed
    opened_at: float = field(default_factory=time.monotonic)


class Spool:
    """Appends to the open segment; :meth:`rotate` closes it for loading. Not thread-safe: the
    writer serialises calls with its own lock."""

    def __init__(self, directory: Path, first_number: int):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._next = first_number
        self._cur: Segment | None = None
        self._fds: tuple[int, int] | None = None
        self._dirty = [False, False]  # appended to since the last sync: events, ops

    @property
    def current(self) -> Segment | None:
        return self._cur

    def _open(self) -> Segment:
        n = self._next
        self._next += 1
        seg = Segment(n, self.dir / f"{n:08d}.events.ndjson", self.dir / f"{n:08d}.ops.ndjson")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._fds = (os.open(seg.events_path, flags, 0o600), os.open(seg.ops_path, flags, 0o600))
        _fsync_dir(self.dir)  # the new names themselves survive a crash
        self._cur = seg
        return seg

    def append(self, events: bytes, n_events: int, ops: bytes, n_ops: int) -> Segment:
        seg = self._cur or self._open()
        assert self._fds is not None
        if events:
            _write_all(self._fds[0], events)
            seg.events += n_events
            self._dirty[0] = True
        if ops:
            _write_all(self._fds[1], ops)
            seg.ops += n_ops
            self._dirty[1] = True
        return seg

    def sync(self) -> None:
        """``fdatasync`` what was appended since the last sync (most groups hold no operations)."""
        if self._fds is not None:
            for i in (0, 1):
                if self._dirty[i]:
                    os.fdatasync(self._fds[i])
                    self._dirty[i] = False

    def rotate(self, seq: int) -> Segment | None:
        """Close the open segment (if it holds anything) and return it; the next append opens a new one."""
        seg = self._cur
        if seg is None or (seg.events == 0 and seg.ops == 0):
            return None
        self.close()
        seg.seq = seq
        return seg

    def close(self) -> None:
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
        self._fds = None
        self._dirty = [False, False]
        self._cur = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def existing_segments(directory: Path) -> list[Segment]:
    """Segments left in the directory, oldest first (a torn last line is cut off)."""
    if not directory.is_dir():
        return []
    numbers = sorted({int(m.group(1)) for name in os.listdir(directory) if (m := _SEGMENT.match(name))})
    out = []
    for n in numbers:
        seg = Segment(n, directory / f"{n:08d}.events.ndjson", directory / f"{n:08d}.ops.ndjson")
        for path in (seg.events_path, seg.ops_path):
            _cut_torn_tail(path)
        seg.events = _count_lines(seg.events_path)
        seg.ops = _count_lines(seg.ops_path)
        out.append(seg)
    return out


def _cut_torn_tail(path: Path) -> None:
    """A write interrupted by a crash was never acknowledged: drop a last line without its newline."""
    if not path.exists():
        path.touch()
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def remove_segment(seg: Segment) -> None:
    for path in (seg.events_path, seg.ops_path):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def read_ops(seg: Segment) -> list[Op]:
    if seg.ops == 0:
        return []
    with open(seg.ops_path, "rb") as fh:
        return [_decode_op(line) for line in fh if line.strip()]


def events_relation(path: Path) -> str:
    """SQL reading a segment's events file with the ``events`` column types."""
    quoted = str(path).replace("'", "''")
    return (
        f"read_ndjson('{quoted}', columns = {{{_COLUMN_TYPES}}}, format = 'newline_delimited', "
        f"maximum_object_size = 67108864)"
    )


def loaded_watermark(cur: duckdb.DuckDBPyConnection) -> int:
    rows = cur.execute("SELECT value FROM meta WHERE key = 'spool_loaded'").fetchall()
    return int(rows[0][0]) if rows else 0


def set_watermark_sql() -> str:
    return (
        "INSERT INTO meta VALUES ('spool_loaded', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )


_replay_lock = threading.Lock()


def replay(store: object, directory: Path) -> int:
    """Load every segment a previous process acknowledged but did not load; returns events read."""
    from userloop.store.writer import load_segment  # the writer owns the load transaction

    with _replay_lock:
        segments = existing_segments(directory)
        if not segments:
            return 0
        cur = store.new_cursor()  # type: ignore[attr-defined]
        try:
            done = loaded_watermark(cur)
            total = 0
            for seg in segments:
                if seg.number > done and (seg.events or seg.ops):
                    load_segment(cur, seg)
                    total += seg.events
                remove_segment(seg)
            log.info("replayed %d spooled events from %s", total, directory)
            return total
        finally:
            cur.close()


def next_segment_number(cur: duckdb.DuckDBPyConnection, directory: Path) -> int:
    names = os.listdir(directory) if directory.is_dir() else []
    on_disk = [int(m.group(1)) for name in names if (m := _SEGMENT.match(name))]
    return max([loaded_watermark(cur), *on_disk]) + 1
