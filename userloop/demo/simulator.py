"""The demo data set: a simulated online-education organisation, as event tables plus operations.

:func:`simulate` plays the whole window (``userloop.demo.sessions``), then sorts the events by time
and cuts them into chunks of :data:`userloop.store.writer.EVENTS_SCHEMA` rows. Each chunk comes with
the operations its events cause (identity merges at sign-up and login, profile updates, the
catalogue as items in the first chunk); send the table first, then its operations.

The window is the ``days`` local days (Asia/Shanghai) before ``end``: from ``end - days`` 00:00 up
to, not including, ``end`` 00:00, so with the default ``end`` (today) nothing lies in the future.
The same ``seed`` and ``end`` give identical tables; message ids are drawn from both.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pyarrow as pa

from userloop.demo.reference import CITIES, LIBS, TIMEZONE
from userloop.demo.sessions import Simulation
from userloop.demo.world import EVENT_NAMES, EVENT_TYPES
from userloop.ingest.event import Op
from userloop.ingest.normalize import channel_for, domain_of
from userloop.store.writer import EVENTS_SCHEMA

CHUNK_EVENTS = 20_000
_TS = pa.timestamp("us", tz="UTC")
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def window(days: int, end: date | None = None) -> tuple[datetime, datetime]:
    """The simulated window as tz-aware datetimes: [start, end) in Asia/Shanghai."""
    tz = ZoneInfo(TIMEZONE)
    end = end or datetime.now(tz).date()
    return datetime.combine(end - timedelta(days=days), time(), tz), datetime.combine(end, time(), tz)


def simulate(
    project_id: int,
    *,
    users: int = 5000,
    days: int = 90,
    seed: int = 0,
    end: date | None = None,
    chunk_size: int = CHUNK_EVENTS,
) -> Iterator[tuple[pa.Table, list[Op]]]:
    """Chunks of demo events (``EVENTS_SCHEMA``) and the operations to apply after each chunk."""
    if users < 0 or days < 1 or chunk_size < 1:
        raise ValueError("users must be >= 0, days and chunk_size >= 1")
    end = end or datetime.now(ZoneInfo(TIMEZONE)).date()
    start, _ = window(days, end)
    sim = Simulation(project_id, users, days, seed, start.timestamp(), start.weekday())
    sim.run()
    yield from _chunks(sim, project_id, seed, end, chunk_size)


def _chunks(
    sim: Simulation, project_id: int, seed: int, end: date, chunk_size: int
) -> Iterator[tuple[pa.Table, list[Op]]]:
    n = len(sim.ev_t)
    t_us = np.rint(np.asarray(sim.ev_t, dtype=np.float64) * 1e6).astype(np.int64)
    keep = (t_us >= round(sim.start * 1e6)) & (t_us < round(sim.end * 1e6))  # a session may run past the end
    order = np.lexsort((np.arange(n), t_us))
    order = order[keep[order]]
    m = len(order)
    pos = np.full(n, -1, dtype=np.int64)
    pos[order] = np.arange(m)
    table = _table(sim, project_id, seed, end, order, t_us[order])
    n_chunks = max(1, math.ceil(m / chunk_size))
    buckets: list[list[tuple[int, int, Op]]] = [[] for _ in range(n_chunks)]
    for i, (s, op) in enumerate(sim.ops):
        p = int(pos[s])
        if p >= 0:  # ops of an event past the window go with it
            buckets[p // chunk_size].append((p, i, op))
    for k in range(n_chunks):
        ops: list[Op] = list(sim.cat.item_ops(project_id)) if k == 0 else []
        ops += [op for _, _, op in sorted(buckets[k], key=lambda x: (x[0], x[1]))]
        yield table.slice(k * chunk_size, chunk_size), ops


def obj(values: list[Any]) -> np.ndarray:
    """An object array of strings and None, to index by event before it becomes an Arrow column."""
    return np.array(values, dtype=object)


def _strings(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string())


def _json(props: list[dict[str, object]], order: np.ndarray) -> pa.Array:
    enc = msgspec.json.Encoder().encode
    parts = [enc(props[i]) for i in order.tolist()]
    offsets = np.zeros(len(parts) + 1, dtype=np.int32)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.string(), len(parts), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(parts))]
    )


def message_ids(seed: int, end: date, n: int) -> pa.Array:
    """``n`` version-4 UUID strings drawn from the seed and the end date."""
    rnd = random.Random(f"userloop-demo:{seed}:{end.isoformat()}:message-ids")
    raw = np.frombuffer(rnd.randbytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    out = np.full((n, 36), ord("-"), dtype=np.uint8)
    for (a, b), o in zip(((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)), (0, 9, 14, 19, 24), strict=True):
        out[:, o : o + b - a] = hexed[:, a:b]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(out.tobytes())])


def _table(
    sim: Simulation, project_id: int, seed: int, end: date, order: np.ndarray, t_us: np.ndarray
) -> pa.Table:
    m = len(order)
    dev = np.asarray(sim.ev_dev, dtype=np.int64)[order]
    src = np.asarray(sim.ev_src, dtype=np.int64)[order]
    user = np.asarray(sim.ev_user, dtype=np.int64)[order]
    code = np.asarray(sim.ev_code, dtype=np.int64)[order]
    rows = sim.source_rows
    source_cols = [obj([r[i] for r in rows]) for i in range(6)]
    domains = obj([domain_of(r[5]) for r in rows])
    channels = obj([channel_for(r[0], r[1], domain_of(r[5])) for r in rows])
    devices = sim.devices
    platform = obj([d.platform for d in devices])[dev]
    lag = np.array([d.lag for d in devices])[dev]
    version = np.full(m, None, dtype=object)
    t_sec = t_us / 1e6
    for key, plats in (("app", ("ios", "android")), ("mini", ("mini",))):
        mask = np.isin(platform, plats)
        rel = sim.releases[key]
        idx = np.searchsorted(np.array([r[1] for r in rel]), t_sec[mask] - lag[mask], side="right") - 1
        version[mask] = obj([r[0] for r in rel])[np.clip(idx, 0, None)]
    city = np.empty(len(sim.visitors), dtype=object)
    region = np.empty(len(sim.visitors), dtype=object)
    for v in sim.visitors:
        city[v.idx], region[v.idx], _ = CITIES[v.city]
    ts = pa.array(t_us, type=_TS)
    names = obj(EVENT_NAMES)
    cols = {
        "project_id": pa.array(np.full(m, project_id, dtype=np.int32)),
        "message_id": message_ids(seed, end, m),
        "event": _strings(names[code]),
        "type": _strings(obj([EVENT_TYPES.get(e, "track") for e in EVENT_NAMES])[code]),
        "distinct_id": _strings(obj(sim.ev_did)[order]),
        "anonymous_id": _strings(obj(sim.ev_anon)[order]),
        "user_id": _strings(obj(sim.ev_uid)[order]),
        "timestamp": ts,
        "original_timestamp": ts,
        "sent_at": ts,
        "received_at": ts,
        "properties": _json(sim.ev_props, order),
        "url": _strings(obj(sim.ev_url)[order]),
        "path": _strings(obj(sim.ev_path)[order]),
        "referrer": _strings(source_cols[5][src]),
        "referring_domain": _strings(domains[src]),
        "utm_source": _strings(source_cols[0][src]),
        "utm_medium": _strings(source_cols[1][src]),
        "utm_campaign": _strings(source_cols[2][src]),
        "utm_content": _strings(source_cols[3][src]),
        "utm_term": _strings(source_cols[4][src]),
        "channel": _strings(channels[src]),
        "os": _strings(obj([d.os for d in devices])[dev]),
        "browser": _strings(obj([d.browser for d in devices])[dev]),
        "device_type": _strings(obj([d.device_type for d in devices])[dev]),
        "app_version": _strings(version),
        "lib": _strings(obj([LIBS[d.platform] for d in devices])[dev]),
        "ip": pa.nulls(m, pa.string()),
        "city": _strings(city[user]),
        "region": _strings(region[user]),
        "country": _strings(np.full(m, "China", dtype=object)),
        "source": _strings(np.full(m, "demo", dtype=object)),
    }
    return pa.Table.from_arrays([cols[f.name] for f in EVENTS_SCHEMA], schema=EVENTS_SCHEMA)


__all__ = ["simulate", "message_ids", "window", "CHUNK_EVENTS"]
