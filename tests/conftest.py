"""Shared fixtures: a real server on a random local port over a fresh DuckDB file."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from userloop.config import Settings
from userloop.store.duckdb import Project, Store
from userloop.web.app import create_app

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    store: Store
    project: Project
    admin_token: str

    def events(self, **params: Any) -> list[dict[str, Any]]:
        """All events of the project through the read API (follows ``next``)."""
        out: list[dict[str, Any]] = []
        url: str | None = f"{self.url}/api/events"
        params = {"limit": 1000, **params}
        headers = {"Authorization": f"Bearer {self.project.secret_key}"}
        while url:
            resp = httpx.get(url, params=params, headers=headers)
            resp.raise_for_status()
            body = resp.json()
            out.extend(body["results"])
            url, params = body["next"], {}
        return out

    def person(self, distinct_id: str) -> dict[str, Any]:
        resp = httpx.get(
            f"{self.url}/api/persons/{distinct_id}",
            headers={"Authorization": f"Bearer {self.project.secret_key}"},
        )
        resp.raise_for_status()
        return resp.json()  # type: ignore[no-any-return]


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A uvicorn server in a thread, bound to a random port, with one project ("test", UTC)."""
    yield from serve_in_thread(tmp_path / "userloop.duckdb")


def serve_in_thread(db: Path, settings: Settings | None = None) -> Iterator[LiveServer]:
    store = Store(db)
    project = store.create_project("test", "UTC")
    port = free_port()
    token = "test-admin-token"
    app = create_app(store, admin_token=token, settings=settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", store=store, project=project, admin_token=token)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        store.close()


def require_shared(*parts: str) -> Path:
    """A file under ../shared/data, or skip (with the reason) where ../shared is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data set not present: {path} (tests on real data need ../shared)")
    return path
