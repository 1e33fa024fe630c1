"""First run of ``userloop serve``: the admin password is generated and printed once, then works."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

USERLOOP = [sys.executable, "-m", "userloop.cli"]


def serve_until_ready(db: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    port = free_port()
    proc = subprocess.Popen([*USERLOOP, "serve", "--db", str(db), "--port", str(port), "--parse-workers", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/health").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
        time.sleep(0.1)
    lines: list[str] = []  # printed before the server started: either the credentials or one line
    assert proc.stdout is not None
    while not lines or not ("admin password" in lines[-1] or "userloop serving" in lines[-1]):
        lines.append(proc.stdout.readline())
    return proc, url, lines


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def login(url: str, password: str) -> httpx.Response:
    client = httpx.Client(base_url=url)
    form = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    return client.post("/console/login", data={"username": "admin", "password": password,
                                                "csrf_token": token.group(1), "next": "/console/"})  # fmt: skip


def test_first_run_prints_a_generated_password_that_signs_in(tmp_path: Path) -> None:
    db = tmp_path / "first.duckdb"
    proc, url, lines = serve_until_ready(db)
    try:
        text = "".join(lines)
        password = re.search(r"admin password:\s+(\S+)", text)
        assert password is not None and f"console:         {url}/console/" in text
        assert login(url, "admin").status_code == 401  # no default credential
        ok = login(url, password.group(1))
        assert ok.status_code == 303 and ok.headers["location"] == "/console/"
    finally:
        stop(proc)
    proc, url, lines = serve_until_ready(db)  # second run: the account exists, nothing printed
    try:
        assert "admin password" not in "".join(lines) and login(url, password.group(1)).status_code == 303
    finally:
        stop(proc)
