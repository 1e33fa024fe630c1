"""Settings. Limits live here so the API, the CLI and the tests agree on them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DB = Path("userloop-data/userloop.duckdb")

MAX_EVENT_BYTES = 1_000_000  # one message, serialised
MAX_REQUEST_BYTES = 20_000_000  # one request body, after decompression
FUTURE_TOLERANCE_SECONDS = 23 * 3600  # later than this is clamped to "now"
MAX_EVENTS_PAGE = 1000
TAG_SQL_TIMEOUT_SECONDS = 60.0  # an SQL tag's query is interrupted after this long (``tag_timeout``)


@dataclass(frozen=True)
class Settings:
    db_path: Path = DEFAULT_DB
    writer_max_batch: int = 20_000  # events per DuckDB transaction
    writer_max_wait_ms: float = 5.0  # how long the writer waits to fill a batch
    gil_switch_interval_s: float = 0.0005  # see ``userloop serve``
    gc_thresholds: tuple[int, int, int] = (20_000, 20, 20)  # Python's default is (700, 10, 10)
    spool: bool = True  # acknowledge after the fsynced spool, load into DuckDB in large transactions
    parse_workers: int = 0  # processes that parse collector bodies (``userloop serve``: one per core)
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_event_bytes: int = MAX_EVENT_BYTES

    @classmethod
    def from_env(cls, db_path: str | Path | None = None) -> Settings:
        path = Path(db_path or os.environ.get("USERLOOP_DB") or DEFAULT_DB)
        return cls(db_path=path)
