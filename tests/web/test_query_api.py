"""POST /api/query over HTTP: auth, project check, error shape; and `userloop query` on a file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import LiveServer


def seed(server: LiveServer) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "pv", "timestamp": "2026-04-01T10:00:00Z", "messageId": "1"},
        {"type": "track", "userId": "u2", "event": "pv", "timestamp": "2026-04-01T11:00:00Z", "messageId": "2"},
        {"type": "track", "userId": "u1", "event": "pv", "timestamp": "2026-04-02T10:00:00Z", "messageId": "3"},
    ]
    assert httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(server.project.write_key, "")).status_code == 200


def test_query_over_http(live_server: LiveServer) -> None:
    seed(live_server)
    body = {"kind": "trends", "project": live_server.project.id, "date_from": "2026-04-01", "date_to": "2026-04-02",
            "series": [{"event": "pv", "math": "uv"}]}
    headers = {"Authorization": f"Bearer {live_server.project.secret_key}"}
    resp = httpx.post(f"{live_server.url}/api/query", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    result = resp.json()["results"][0]
    assert (result["dates"], result["values"], result["total"]) == (["2026-04-01", "2026-04-02"], [2, 1], 2)


def test_query_errors(live_server: LiveServer) -> None:
    seed(live_server)
    other = live_server.store.create_project("other", "UTC")
    body = {"kind": "trends", "project": other.id, "date_from": "2026-04-01", "date_to": "2026-04-02",
            "series": [{"event": "pv"}]}
    secret = {"Authorization": f"Bearer {live_server.project.secret_key}"}
    resp = httpx.post(f"{live_server.url}/api/query", json=body, headers=secret)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "project_forbidden"
    resp = httpx.post(f"{live_server.url}/api/query", json=body,
                      headers={"Authorization": f"Bearer {live_server.project.write_key}"})
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "write_key_cannot_read"
    resp = httpx.post(f"{live_server.url}/api/query", content=b"{nope", headers=secret)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "malformed_json"
    body["project"] = live_server.project.id
    body["series"] = [{"event": "pv", "math": "mode"}]
    resp = httpx.post(f"{live_server.url}/api/query", json=body, headers=secret)
    assert resp.status_code == 400
    assert resp.json()["error"] == {"code": "invalid_field", "message": "Invalid enum value 'mode'", "field": "series[0].math"}


def test_cli_query_on_a_file(tmp_path: Path) -> None:
    db = tmp_path / "q.duckdb"
    run = lambda *a: subprocess.run([sys.executable, "-m", "userloop.cli", *a], capture_output=True, text=True, timeout=120)  # noqa: E731
    project = json.loads(run("project", "create", "q", "--db", str(db), "--json").stdout)
    csv = tmp_path / "e.csv"
    csv.write_text("distinct_id,event,timestamp\na,pv,2026-04-01T01:00:00Z\nb,pv,2026-04-01T02:00:00Z\n")
    assert run("import", "events", str(csv), "--project", str(project["id"]), "--db", str(db)).returncode == 0
    qfile = tmp_path / "q.json"
    qfile.write_text(json.dumps({"kind": "trends", "date_from": "2026-04-01", "date_to": "2026-04-01",
                                 "series": [{"event": "pv", "math": "uv"}]}))
    proc = run("query", str(qfile), "--project", str(project["id"]), "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["kind"] == "trends" and out["results"][0]["values"] == [2]
    qfile.write_text('{"kind": "trends", "date_from": "2026-04-01"')
    bad = run("query", str(qfile), "--project", str(project["id"]), "--db", str(db))
    assert bad.returncode == 1 and "malformed_json" in bad.stderr
