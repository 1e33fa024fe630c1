"""Durability of acknowledged events, against a real ``userloop serve`` process.

A 200 from the collector means "durable": after ``kill -9`` every acknowledged message id must be
in the DuckDB file, once, as soon as userloop opens it again (the fsynced spool is replayed on open); the server must start again on that file; retries must not duplicate; and
``userloop project create --json`` must work while a server holds the file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

import userloop
from tests.conftest import free_port
from userloop.store.duckdb import Store

KEYS = {"id", "name", "write_key", "secret_key", "timezone"}


def _env() -> dict[str, str]:
    """Child processes import the same ``userloop`` as the tests."""
    env = dict(os.environ)
    root = str(Path(userloop.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "userloop.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd, env=_env(),
    )


def create_project(db: Path, name: str, *extra: str) -> dict[str, Any]:
    done = cli("project", "create", name, "--db", str(db), "--json", *extra, cwd=db.parent)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, f"--json must print exactly one line, got {done.stdout!r}"
    project = json.loads(lines[0])
    assert set(project) == KEYS, project
    return project  # type: ignore[no-any-return]


class Served:
    """``userloop serve`` on a DuckDB file, as a subprocess on a free port."""

    def __init__(self, db: Path, *extra: str):
        self.db = db
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = db.with_name(f"server-{time.monotonic_ns()}.log")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "userloop.cli", "serve", "--db", str(db), "--host", "127.0.0.1",
                 "--port", self.url.rsplit(":", 1)[1], *extra],
                stdout=out, stderr=subprocess.STDOUT, cwd=db.parent, env=_env(),
            )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"server did not answer /health: {self.log.read_text()}"
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean shutdown (what Ctrl-C does)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"server did not stop on SIGINT: {self.log.read_text()}")
        assert self.proc.returncode == 0, self.log.read_text()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "userloop.duckdb"


@pytest.fixture
def servers() -> Iterator[list[Served]]:
    """Every server a test starts is gone when it ends, whatever happened."""
    started: list[Served] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def body(ids: list[str], user: str = "u-1") -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "batch": [
            {
                "type": "track",
                "messageId": mid,
                "event": "Lesson Completed",
                "userId": user,
                "anonymousId": f"anon-{user}",
                "timestamp": now,
                "properties": {"lesson": i, "course_id": "c42"},
                "context": {"page": {"url": "https://learn.example.com/courses/c42?utm_source=weibo"}},
            }
            for i, mid in enumerate(ids)
        ],
        "sentAt": now,
    }


def post(client: httpx.Client, url: str, write_key: str, payload: dict[str, Any]) -> httpx.Response:
    return client.post(f"{url}/v1/batch", json=payload, auth=(write_key, ""))


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(proc.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def stored_counts(db: Path, project_id: int) -> dict[str, int]:
    """message_id -> rows, read from the file (no server may hold it) after userloop opened it.

    A 200 means durable in DuckDB or in the fsynced spool next to it (``<db>.spool/``), which any
    process that opens the file for writing loads first; opening a ``Store`` does exactly that.
    """
    Store(db).close()
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT message_id, count(*) FROM events WHERE project_id = ? GROUP BY message_id", [project_id]
        ).fetchall()
    finally:
        con.close()
    return {mid: int(n) for mid, n in rows}


def test_kill_9_keeps_every_acknowledged_event(db: Path, servers: list[Served]) -> None:
    project = create_project(db, "durable")
    server = Served(db, "--parse-workers", "2")
    servers.append(server)

    lock = threading.Lock()
    acked: set[str] = set()
    acked_batches: list[list[str]] = []
    ended_by_error: list[bool] = []
    stop_at = time.monotonic() + 20  # safety net; the kill comes long before

    def sender(n: int) -> None:
        seq = 0
        died = False
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < stop_at:
                ids = [f"k{n}-{seq}-{j}" for j in range(50)]
                seq += 1
                try:
                    resp = post(client, server.url, project["write_key"], body(ids, user=f"u-{n}-{seq % 7}"))
                except httpx.TransportError:
                    died = True  # the server is gone: this request was in flight or refused
                    break
                if resp.status_code == 200:
                    assert resp.json() == {"accepted": 50, "rejected": []}
                    with lock:
                        acked.update(ids)
                        acked_batches.append(ids)
        with lock:
            ended_by_error.append(died)

    threads = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 15
    while len(acked) < 3000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(acked) >= 3000, "the server acknowledged too little to make the test meaningful"
    workers = _children(server.proc.pid)
    assert workers, "the server was started with --parse-workers 2"
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    deadline = time.monotonic() + 10  # the parse workers die with the server
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "parse workers outlived the server"
    for t in threads:
        t.join(15)
    assert ended_by_error == [True] * 4, "every sender must have been streaming when the server died"

    with lock:
        acknowledged = set(acked)
        resend = acked_batches[:10]
    counts = stored_counts(db, project["id"])
    missing = acknowledged - counts.keys()
    assert not missing, f"{len(missing)} acknowledged events lost after kill -9, e.g. {sorted(missing)[:5]}"
    assert all(n == 1 for n in counts.values()), "a message id is stored twice"
    total = len(counts)

    # the stale <db>.server.json of the dead server must not stop the CLI from using the file
    assert create_project(db, "after-crash")["name"] == "after-crash"

    # the server starts again on the same file, and re-sent acknowledged batches add nothing
    again = Served(db)
    servers.append(again)
    assert httpx.get(f"{again.url}/health").status_code == 200
    with httpx.Client(timeout=10) as client:
        for ids in resend:
            resp = post(client, again.url, project["write_key"], body(ids))
            assert resp.status_code == 200 and resp.json()["accepted"] == len(ids)
    again.stop()
    counts = stored_counts(db, project["id"])
    assert len(counts) == total
    assert all(n == 1 for n in counts.values()), "a re-sent acknowledged id was stored twice"


def test_retried_batch_is_stored_once(db: Path, servers: list[Served]) -> None:
    project = create_project(db, "retries")
    server = Served(db)
    servers.append(server)
    ids = [f"r-{i}" for i in range(20)]
    with httpx.Client(timeout=10) as client:
        for _ in range(2):  # an SDK that did not see the first answer sends the same batch again
            resp = post(client, server.url, project["write_key"], body(ids))
            assert resp.status_code == 200, resp.text
            assert resp.json() == {"accepted": 20, "rejected": []}
        # overlap with stored ids, and one id twice inside one batch
        resp = post(client, server.url, project["write_key"], body(["r-0", "r-20", "r-20", "r-19"]))
        assert resp.status_code == 200, resp.text
        # two retries of the same batch racing each other
        race = [f"x-{i}" for i in range(50)]
        results: list[int] = []

        def send() -> None:
            with httpx.Client(timeout=10) as c:
                results.append(post(c, server.url, project["write_key"], body(race)).status_code)

        racers = [threading.Thread(target=send) for _ in range(4)]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        assert results == [200] * 4
    server.stop()
    counts = stored_counts(db, project["id"])
    assert counts == {mid: 1 for mid in [*ids, "r-20", *race]}


def test_project_create_while_serving_and_key_works_at_once(db: Path, servers: list[Served]) -> None:
    first = create_project(db, "first")
    server = Served(db)
    servers.append(server)

    second = create_project(db, "second", "--timezone", "Asia/Shanghai")  # through the running server
    assert second["name"] == "second" and second["timezone"] == "Asia/Shanghai"
    assert isinstance(second["id"], int) and second["id"] != first["id"]
    assert len({second["write_key"], second["secret_key"], first["write_key"], first["secret_key"]}) == 4
    assert json.loads(json.dumps(second)) == second

    with httpx.Client(timeout=10) as client:
        resp = post(client, server.url, second["write_key"], body(["s-1", "s-2"], user="new-user"))
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"accepted": 2, "rejected": []}
        read = client.get(f"{server.url}/api/events", headers={"Authorization": f"Bearer {second['secret_key']}"})
        assert read.status_code == 200, read.text
        assert sorted(e["message_id"] for e in read.json()["results"]) == ["s-1", "s-2"]
        # the old project's key still works and sees nothing of the new one
        read = client.get(f"{server.url}/api/events", headers={"Authorization": f"Bearer {first['secret_key']}"})
        assert read.status_code == 200 and read.json()["results"] == []

    dup = cli("project", "create", "second", "--db", str(db), "--json", cwd=db.parent)
    assert dup.returncode != 0  # names are unique, also through the server

    server.stop()
    assert stored_counts(db, second["id"]) == {"s-1": 1, "s-2": 1}
    assert not db.with_name(db.name + ".server.json").exists()
