"""Loading the demo data set into a store through a :class:`userloop.backend.Backend`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from userloop.backend import Backend
from userloop.demo.reference import TIMEZONE
from userloop.demo.simulator import CHUNK_EVENTS, simulate


def load_demo(
    backend: Backend,
    *,
    users: int = 5000,
    days: int = 90,
    seed: int = 0,
    end: date | None = None,
    name: str = "demo",
    progress: Callable[[int], None] | None = None,
    chunk_size: int = CHUNK_EVENTS,
) -> dict[str, Any]:
    """Create project ``name`` (Asia/Shanghai) and load the simulated data set into it.

    If a project of that name exists, nothing is loaded (``created`` is false). Each chunk's table
    is imported before its operations, so the distinct ids a merge links exist. Both steps are
    idempotent (message ids; merges and item sets), so a re-run after a failure stores no doubles.
    ``progress`` is called with the number of events written so far after each chunk.
    """
    found = backend.find_project(name)
    if found is not None:
        return {"project": found, "created": False, "events": 0, "stored": 0, "ops": 0}
    end = end or datetime.now(ZoneInfo(TIMEZONE)).date()
    project = backend.create_project(name, TIMEZONE)
    project_id = int(project["id"])
    events = stored = n_ops = 0
    for table, ops in simulate(project_id, users=users, days=days, seed=seed, end=end, chunk_size=chunk_size):
        stored += backend.import_table(project_id, table)
        if ops:
            backend.write_ops(project_id, ops)
        events += table.num_rows
        n_ops += len(ops)
        if progress is not None:
            progress(events)
    return {
        "project": project,
        "created": True,
        "events": events,
        "stored": stored,
        "ops": n_ops,
        "users": users,
        "days": days,
        "seed": seed,
        "end": end.isoformat(),
    }
