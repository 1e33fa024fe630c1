"""Hand-built event sets in a real DuckDB store, and a helper to run queries on them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import pytest

from userloop.ingest.event import Event, Merge, Op, Payload
from userloop.query.runner import run_query
from userloop.store.duckdb import Project, Store
from userloop.store.writer import Writer


@dataclass
class World:
    """A project with events written through the real writer; ``frame()`` gives them to pandas."""

    store: Store
    writer: Writer
    project: Project
    rows: list[dict[str, Any]]

    def add(self, events: list[dict[str, Any]], ops: list[Op] | None = None) -> None:
        """Each dict: distinct_id, event, ts (datetime or ISO; naive = UTC), optional properties and columns."""
        out = []
        base = len(self.rows)  # rows grows inside the loop: ids must not repeat across calls
        for i, e in enumerate(events):
            ts = e["ts"] if isinstance(e["ts"], datetime) else datetime.fromisoformat(e["ts"])
            if ts.tzinfo is None:
                ts = ts.replace(tzinfo=UTC)
            extra = {k: v for k, v in e.items() if k not in ("distinct_id", "event", "ts", "properties", "message_id")}
            mid = e.get("message_id") or f"m{base + i}"
            out.append(
                Event(
                    project_id=self.project.id, message_id=mid, event=e["event"], type="track",
                    distinct_id=e["distinct_id"], timestamp=ts, received_at=ts,
                    properties=msgspec.json.encode(e.get("properties", {})).decode(), **extra,
                )
            )
            self.rows.append({**e, "ts": ts, "message_id": mid})
        self.writer.write(Payload(events=out, ops=ops or [], accepted=len(out)))

    def merge(self, keep: str, other: str) -> None:
        self.writer.write(Payload(ops=[Merge(project_id=self.project.id, distinct_id=keep, other_id=other)], accepted=1))

    def persons(self) -> dict[str, str]:
        rows = self.store.query("SELECT distinct_id, person_id FROM identities WHERE project_id = ?", [self.project.id])
        return {r["distinct_id"]: r["person_id"] for r in rows}

    def frame(self) -> pd.DataFrame:
        """The events with the person each resolves to now, for independent expected values."""
        df = pd.DataFrame(self.rows)
        df["person_id"] = df["distinct_id"].map(self.persons())
        return df

    def query(self, **body: Any) -> dict[str, Any]:
        return run_query(self.store, self.project, {"project": self.project.id, **body})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    store = Store(tmp_path / "a.duckdb")
    project = store.create_project("a", "Asia/Shanghai")
    with Writer(store) as writer:
        yield World(store=store, writer=writer, project=project, rows=[])
    store.close()


@pytest.fixture
def utc_world(tmp_path: Path) -> Iterator[World]:
    store = Store(tmp_path / "u.duckdb")
    project = store.create_project("u", "UTC")
    with Writer(store) as writer:
        yield World(store=store, writer=writer, project=project, rows=[])
    store.close()
