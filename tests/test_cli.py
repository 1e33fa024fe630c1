"""The CLI contract, run as real processes; import/export/project create also while a server runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.conftest import free_port

USERLOOP = [sys.executable, "-m", "userloop.cli"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*USERLOOP, *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"userloop {' '.join(args)} failed: {proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, str, subprocess.Popen[str]]]:
    db = tmp_path / "cli.duckdb"
    port = free_port()
    proc = subprocess.Popen(
        [*USERLOOP, "serve", "--db", str(db), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"server did not start: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.1)
    try:
        yield db, url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_project_create_on_a_file_without_server(tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    out = json.loads(run("project", "create", "school", "--db", str(db), "--timezone", "Asia/Shanghai", "--json").stdout)
    assert set(out) == {"id", "name", "write_key", "secret_key", "timezone"}
    assert (out["id"], out["name"], out["timezone"]) == (1, "school", "Asia/Shanghai")
    assert out["write_key"] != out["secret_key"]
    again = run("project", "create", "school", "--db", str(db), "--json", check=False)
    assert again.returncode == 1
    assert "project_exists" in again.stderr
    bad = run("project", "create", "x", "--db", str(db), "--timezone", "Nowhere/City", "--json", check=False)
    assert bad.returncode == 1 and "bad_timezone" in bad.stderr


def test_import_and_export_while_the_server_runs(server: tuple[Path, str, subprocess.Popen[str]], tmp_path: Path) -> None:
    db, url, _ = server
    project = json.loads(run("project", "create", "shop", "--db", str(db), "--json").stdout)
    assert not (tmp_path / "cli.duckdb.server.json").stat().st_mode & 0o077  # token file private
    csv = tmp_path / "orders.csv"
    csv.write_text(
        "who,what,when,amount\n"
        "u1,buy,2026-01-01T10:00:00Z,9.5\n"
        "u2,view,2026-01-01T11:00:00+08:00,\n"
        "u1,buy,1767268800000,20\n"
    )
    args = ["import", "events", str(csv), "--project", str(project["id"]), "--db", str(db),
            "--map", "who=distinct_id", "--map", "what=event", "--map", "when=timestamp"]
    first = json.loads(run(*args).stdout.strip().splitlines()[-1])
    assert (first["rows"], first["stored"]) == (3, 3)
    second = json.loads(run(*args).stdout.strip().splitlines()[-1])
    assert (second["rows"], second["stored"], second["duplicates"]) == (3, 0, 3)

    headers = {"Authorization": f"Bearer {project['secret_key']}"}
    got = httpx.get(url + "/api/events", headers=headers).json()["results"]
    assert sorted((e["distinct_id"], e["event"], e["timestamp"]) for e in got) == [
        ("u1", "buy", "2026-01-01T10:00:00+00:00"),
        ("u1", "buy", "2026-01-01T12:00:00+00:00"),
        ("u2", "view", "2026-01-01T03:00:00+00:00"),
    ]

    out = tmp_path / "export.parquet"
    res = json.loads(run("export", "events", "--project", str(project["id"]), "--db", str(db),
                         "--format", "parquet", str(out)).stdout)
    assert res["rows"] == 3
    df = pd.read_parquet(out)
    assert len(df) == 3
    assert sorted(df["distinct_id"]) == ["u1", "u1", "u2"]
    assert set(df["project_id"]) == {project["id"]}


def test_second_server_on_the_same_file_fails_clearly(server: tuple[Path, str, subprocess.Popen[str]]) -> None:
    db, _, _ = server
    proc = run("serve", "--db", str(db), "--port", str(free_port()), check=False)
    assert proc.returncode == 1
    assert "in use by another process" in proc.stderr


def test_export_without_server_and_bad_format(tmp_path: Path) -> None:
    db = tmp_path / "e.duckdb"
    project = json.loads(run("project", "create", "p", "--db", str(db), "--json").stdout)
    out = tmp_path / "empty.parquet"
    res = json.loads(run("export", "events", "--project", str(project["id"]), "--db", str(db), str(out)).stdout)
    assert res["rows"] == 0 and pd.read_parquet(out).empty
    bad = run("export", "events", "--project", str(project["id"]), "--db", str(db), "--format", "csv", str(out), check=False)
    assert bad.returncode == 1 and "bad_format" in bad.stderr
    missing = run("export", "events", "--project", "99", "--db", str(db), str(out), check=False)
    assert missing.returncode == 1 and "project_not_found" in missing.stderr


@pytest.mark.skipif(os.environ.get("USERLOOP_SKIP_DEMO") == "1", reason="demo disabled")
def test_demo_then_read_back(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    run("demo", "--db", str(db), "--users", "200", "--days", "14", "--seed", "3")
    again = run("demo", "--db", str(db), "--users", "200", "--days", "14", "--seed", "3")
    assert "already exists" in again.stdout
    port = free_port()
    proc = subprocess.Popen([*USERLOOP, "serve", "--db", str(db), "--port", str(port), "--show-credentials"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any("secret key" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}" in text
        assert "admin password:" in text
        secret = next(line.split(":", 1)[1].strip() for line in lines if "secret key" in line)
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = httpx.get(url + "/api/events?limit=50", headers={"Authorization": f"Bearer {secret}"}).json()
        assert len(body["results"]) == 50
        assert body["next"] is not None
        assert {e["source"] for e in body["results"]} == {"demo"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
