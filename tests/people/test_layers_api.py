"""Layer models over real HTTP (a live server) and through the CLI (on the file, and via the server)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from tests.conftest import LiveServer
from userloop.backend import server_file
from userloop.cli import app as cli
from userloop.ingest.event import Event, Payload
from userloop.store.duckdb import Store
from userloop.store.writer import Writer

EVENTS = [
    ("a", "purchase", "2024-05-01T10:00:00Z", {"amount": 30}),
    ("a", "purchase", "2024-05-20T10:00:00Z", {"amount": 20}),
    ("b", "purchase", "2024-03-15T10:00:00Z", {"amount": 5}),
    ("c", "sign_up", "2024-05-25T10:00:00Z", {}),
    ("d", "follow", "2024-05-25T10:00:00Z", {}),
]


def send(server: LiveServer, events: list[tuple[str, str, str, dict[str, Any]]]) -> None:
    batch = [{"type": "track", "userId": u, "event": e, "timestamp": t, "properties": p, "messageId": f"{u}-{t}-{e}"}
             for u, e, t, p in events]  # fmt: skip
    resp = httpx.post(server.url + "/v1/batch", json={"batch": batch}, auth=(server.project.write_key, ""))
    assert resp.status_code == 200, resp.text


def api(server: LiveServer, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.project.secret_key}"}
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **kw)


def test_layers_rest_crud_compute_members_migration(live_server: LiveServer) -> None:
    send(live_server, EVENTS)
    resp = api(live_server, "POST", "/api/layers", json={"name": "life", "kind": "lifecycle"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["layers"] == ["potential", "follower", "registered", "buying", "sleeping", "churned"]
    assert [m["name"] for m in api(live_server, "GET", "/api/layers").json()["results"]] == ["life"]

    got = api(live_server, "POST", "/api/layers/life/compute", json={"as_of": "2024-05-10"}).json()
    assert got["counts"] == {
        "potential": 0,
        "follower": 0,
        "registered": 0,
        "buying": 1,
        "sleeping": 1,
        "churned": 0,
    }
    got = api(live_server, "POST", "/api/layers/life/compute", json={"as_of": "2024-06-01"}).json()
    assert got["counts"] == {
        "potential": 0,
        "follower": 1,
        "registered": 1,
        "buying": 1,
        "sleeping": 1,
        "churned": 0,
    }

    members = api(live_server, "GET", "/api/layers/life/members", params={"layer": "buying"}).json()
    assert members["total"] == 1 and members["results"][0]["scores"]["purchases"] == 2
    on = api(live_server, "GET", "/api/layers/life/members", params={"on": "2024-05-10", "limit": 1}).json()
    assert on["total"] == 2 and len(on["results"]) == 1

    mig = api(
        live_server, "GET", "/api/layers/life/migration", params={"from": "2024-05-10", "to": "2024-06-01"}
    )
    assert mig.status_code == 200
    cells = {(c["from"], c["to"]): c["count"] for c in mig.json()["matrix"]}
    assert cells == {("buying", "buying"): 1, ("sleeping", "sleeping"): 1, ("none", "follower"): 1,
                     ("none", "registered"): 1}  # fmt: skip

    detail = api(live_server, "GET", "/api/layers/life").json()
    assert detail["counts"]["follower"] == 1 and len(detail["snapshots"]) == 2
    patched = api(live_server, "PATCH", "/api/layers/life", json={"description": "funnel of the shop"})
    assert patched.json()["description"] == "funnel of the shop" and patched.json()["member_count"] == 4
    assert api(live_server, "DELETE", "/api/layers/life").json() == {"deleted": "life"}
    assert api(live_server, "GET", "/api/layers/life").status_code == 404


def test_layers_rest_errors_have_one_shape(live_server: LiveServer) -> None:
    send(live_server, EVENTS)
    assert httpx.get(live_server.url + "/api/layers").status_code == 401
    bad = api(
        live_server, "POST", "/api/layers", json={"name": "x", "kind": "rfm", "params": {"window_days": 0}}
    )
    assert bad.status_code == 400
    err = bad.json()["error"]
    assert (err["code"], err["field"]) == ("invalid_field", "params.window_days") and err["message"]
    bad = api(live_server, "POST", "/api/layers", content=b"[1]")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_body"
    assert api(live_server, "GET", "/api/layers").json() == {"results": []}  # nothing half-saved
    api(live_server, "POST", "/api/layers", json={"name": "r", "kind": "rfm"})
    dup = api(live_server, "POST", "/api/layers", json={"name": "r", "kind": "lifecycle"})
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "layer_model_exists"
    mig = api(
        live_server, "GET", "/api/layers/r/migration", params={"from": "2024-13-01", "to": "2024-06-01"}
    )
    assert mig.status_code == 400 and mig.json()["error"]["field"] == "from"
    rename = api(live_server, "PUT", "/api/layers/r", json={"name": "other"})
    assert rename.status_code == 400 and rename.json()["error"]["field"] == "name"
    missing = api(live_server, "POST", "/api/layers/nope/compute")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "layer_model_not_found"


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cli_on_the_file(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    store = Store(db)
    project = store.create_project("cli", "UTC")
    with Writer(store) as writer:
        evs = []
        for i, (u, e, t, p) in enumerate(EVENTS):
            ts = datetime.fromisoformat(t.replace("Z", "+00:00"))
            evs.append(Event(project_id=project.id, message_id=f"m{i}", event=e, type="track", distinct_id=u,
                             timestamp=ts, received_at=ts, properties=json.dumps(p)))  # fmt: skip
        writer.write(Payload(events=evs, accepted=len(evs)))
    store.close()
    definition = tmp_path / "rfm.json"
    definition.write_text(json.dumps({"name": "rfm", "kind": "rfm", "params": {"group_by": "f"}}))
    pid, d = str(project.id), str(db)
    assert (
        invoke("layers", "create", str(definition), "--project", pid, "--db", d)["params"]["group_by"] == "f"
    )
    assert [m["name"] for m in invoke("layers", "list", "--project", pid, "--db", d)["results"]] == ["rfm"]
    invoke("layers", "compute", "rfm", "--as-of", "2024-05-10", "--project", pid, "--db", d)
    got = invoke("layers", "compute", "rfm", "--as-of", "2024-06-01", "--project", pid, "--db", d)
    assert got["members"] == 2
    members = invoke("layers", "members", "rfm", "--project", pid, "--db", d)["results"]
    # a (recent, 2 purchases, 50) scores 2,2,2 -> R 2, F 2: hibernating; b 1,1,1: lost
    assert sorted(r["layer"] for r in members) == ["hibernating", "lost"]
    mig = invoke(
        "layers",
        "migration",
        "rfm",
        "--from",
        "2024-05-10",
        "--to",
        "2024-06-01",
        "--project",
        pid,
        "--db",
        d,
    )
    # on 05-10 a and b had one purchase each (F by person id); on 06-01 a is hibernating, b lost
    assert mig["persons"] == 2 and mig["to_totals"]["hibernating"] == mig["to_totals"]["lost"] == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "b", "kind": "stage", "params": {"new_days": "soon"}}))
    result = CliRunner().invoke(cli, ["layers", "create", str(bad), "--project", pid, "--db", d])
    assert result.exit_code == 1 and "invalid_field" in result.output
    assert invoke("layers", "delete", "rfm", "--project", pid, "--db", d) == {"deleted": "rfm"}


def run_cli(*args: str) -> Any:
    """The CLI as its own process: the server's process holds the file, so it goes through the server."""
    proc = subprocess.run(
        [sys.executable, "-m", "userloop.cli", *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_through_the_running_server(live_server: LiveServer, tmp_path: Path) -> None:
    """While a server holds the file, the CLI calls the same actions over its admin API."""
    send(live_server, EVENTS)
    db = live_server.store.path
    server_file(db).write_text(
        json.dumps({"url": live_server.url, "token": live_server.admin_token, "pid": 0})
    )
    definition = tmp_path / "vf.json"
    definition.write_text(
        json.dumps({"name": "vf", "kind": "value_frequency", "params": {"value_threshold": 40}})
    )
    pid = str(live_server.project.id)
    try:
        run_cli("layers", "create", str(definition), "--project", pid, "--db", str(db))
        run_cli("layers", "compute", "vf", "--project", pid, "--db", str(db))
        layers = {
            r["layer"]
            for r in run_cli("layers", "members", "vf", "--project", pid, "--db", str(db))["results"]
        }
    finally:
        server_file(db).unlink()
    assert layers == {"high_frequency_high_value", "low_frequency_low_value"}  # medians: frequency 1.5
    assert api(live_server, "GET", "/api/layers/vf").json()["member_count"] == 2
