"""Parse collector bodies in worker processes, so ingestion uses every core.

Python runs one thread at a time per process. The server's process answers HTTP, appends to the
spool and drives DuckDB; decoding and normalising the events of a request (the largest Python
cost per event) runs here, in ``ParsePool`` processes started with ``spawn`` (they never see the
DuckDB connection). A worker returns the events already encoded as spool lines
(``userloop/store/spool.py``), the operations, the distinct ids it saw and the rejected messages; the
server only appends bytes.

Used for requests whose project is known from the request line or headers (Segment's HTTP Basic
write key, Sensors' ``project``/``token`` parameters); bodies that name their key inside (PostHog's
``api_key``) are parsed in the server process as before. Both paths run the same parser functions.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import Any

import msgspec

from userloop.ingest.event import Payload, Rejected
from userloop.ingest.normalize import MessageError

_encode_lines = msgspec.json.Encoder().encode_lines
_decode = msgspec.json.Decoder().decode


class Parsed(msgspec.Struct, gc=False):
    """A parsed request, ready for the spool."""

    events: bytes = b""  # spool lines, one Event each
    n_events: int = 0
    ops: bytes = b""  # spool lines, one operation each
    n_ops: int = 0
    rejected: list[Rejected] = []
    accepted: int = 0
    error: tuple[str, str, int, str | None] | None = None  # whole-body error: code, message, status, field


def encode_payload(payload: Payload) -> Parsed:
    return Parsed(
        events=_encode_lines(payload.events) if payload.events else b"",
        n_events=len(payload.events),
        ops=_encode_lines(payload.ops) if payload.ops else b"",
        n_ops=len(payload.ops),
        rejected=payload.rejected,
        accepted=payload.accepted,
    )


# -- the jobs (run in a worker) ---------------------------------------------------------------------


def segment_job(raw: bytes, project_id: int, received_at: datetime, endpoint_type: str | None,
                max_event_bytes: int) -> Parsed:
    from userloop.ingest import segment

    try:
        if endpoint_type is None and len(raw) <= max_event_bytes:
            fast = segment.decode_batch_fast(raw)
            if fast is not None:
                return encode_payload(segment.parse_fast(fast, project_id=project_id, received_at=received_at))
        body = _decode_body(raw)
        return encode_payload(
            segment.parse(body, project_id=project_id, received_at=received_at, endpoint_type=endpoint_type,
                          check_sizes=len(raw) > max_event_bytes)
        )
    except _BodyError as exc:
        return Parsed(error=exc.args[0])
    except MessageError as exc:
        return Parsed(error=(exc.code, str(exc), 400, None))


def sensors_job(raw: bytes, content_type: str, project_id: int, received_at: datetime, limit: int,
                max_event_bytes: int) -> Parsed:
    from userloop.errors import UserloopError
    from userloop.ingest import sensors

    try:
        messages = sensors.decode_fields(sensors.form_fields(raw, content_type), limit)
        return encode_payload(
            sensors.parse(messages, project_id=project_id, received_at=received_at,
                          check_sizes=len(raw) > max_event_bytes)
        )
    except UserloopError as exc:
        return Parsed(error=(exc.code, exc.message, exc.status, exc.field))
    except MessageError as exc:
        return Parsed(error=(exc.code, str(exc), 400, None))


class _BodyError(Exception):
    pass


def _decode_body(raw: bytes) -> Any:
    if not raw.strip():
        raise _BodyError(("empty_body", "request body is empty", 400, None))
    try:
        return _decode(raw)
    except msgspec.DecodeError as exc:
        raise _BodyError(("malformed_json", f"request body is not valid JSON: {exc}", 400, None)) from exc


def _ready() -> int:
    return os.getpid()


def _worker_init(parent: int) -> None:
    """Die with the server: a worker must not outlive a server killed with SIGKILL."""
    import signal
    import threading
    import time

    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass

    def watch() -> None:  # elsewhere (and in case the parent died before prctl): poll
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# -- the pool (in the server) -----------------------------------------------------------------------


class ParsePool:
    def __init__(self, workers: int):
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init, initargs=(os.getpid(),),
        )

    def warm_up(self) -> None:
        """Start every worker now (spawning takes a moment), not on the first requests."""
        futures = [self._executor.submit(_ready) for _ in range(self.workers * 2)]
        for f in futures:
            f.result(timeout=60)

    async def run(self, fn: Any, *args: Any) -> Parsed:
        return await asyncio.wrap_future(self._executor.submit(fn, *args))  # type: ignore[no-any-return]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
