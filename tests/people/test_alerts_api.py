"""Alert rules over real HTTP (a live server, a loopback webhook receiver) and through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import LiveServer
from tests.people.test_alerts import Receiver, receiver  # noqa: F401  (the receiver fixture)
from tests.people.test_layers_api import api, send
from userloop.cli import app as cli
from userloop.ingest.event import Event, Payload
from userloop.store.duckdb import Store
from userloop.store.writer import Writer


def iso(days_ago: int) -> str:
    day = datetime.now(UTC).date() - timedelta(days=days_ago)
    return f"{day}T12:00:00Z"


def flow_shop(server: LiveServer) -> None:
    """4 buyers 10 days ago, 3 came back 2 days ago: 25% of buying moved to sleeping in a week."""
    events = [(f"b{i}", "purchase", iso(10), {"amount": 5}) for i in range(4)]
    events += [(f"b{i}", "purchase", iso(2), {"amount": 5}) for i in range(1, 4)]
    send(server, events)
    model = {"name": "life", "kind": "lifecycle", "params": {"sleeping_days": 5, "churned_days": 60}}
    assert api(server, "POST", "/api/layers", json=model).status_code == 201
    week_ago = str(datetime.now(UTC).date() - timedelta(days=7))
    assert api(server, "POST", "/api/layers/life/compute", json={"as_of": week_ago}).status_code == 200
    assert api(server, "POST", "/api/layers/life/compute").status_code == 200


def test_alerts_rest(live_server: LiveServer, receiver: Receiver) -> None:  # noqa: F811
    flow_shop(live_server)
    rule = {"name": "flow", "schedule": "cron:0 9 * * *",
            "condition": {"type": "layer_flow", "model": "life", "from": ["buying"], "to": ["sleeping"],
                          "threshold": 0.2},
            "channels": [{"type": "webhook", "url": receiver.url + "/in", "headers": {"Authorization": "Bearer x"}}]}  # fmt: skip
    created = api(live_server, "POST", "/api/alerts", json=rule)
    assert created.status_code == 201, created.text
    assert created.json()["channels"][0]["headers"] == {"Authorization": "***"}
    assert [r["name"] for r in api(live_server, "GET", "/api/alerts").json()["results"]] == ["flow"]

    dry = api(live_server, "POST", "/api/alerts/flow/check", json={"dry_run": True}).json()
    assert dry["fired"] and dry["value"] == 0.25 and receiver.requests == []
    fired = api(live_server, "POST", "/api/alerts/flow/check").json()
    assert fired["fired"] and fired["deliveries"][0] == {"type": "webhook", "target": receiver.url + "/in",
                                                          "ok": True, "status": 200}  # fmt: skip
    (req,) = receiver.requests
    assert req["headers"]["Authorization"] == "Bearer x" and req["json"]["details"]["moved"] == 1
    assert req["json"]["details"]["base"] == 4 and req["json"]["value"] == 0.25

    log = api(live_server, "GET", "/api/alerts/log", params={"rule": "flow"}).json()
    assert log["total"] == 1 and log["results"][0]["id"] == fired["log_id"]
    assert log["results"][0]["message"] == req["json"]["message"]

    patched = api(live_server, "PATCH", "/api/alerts/flow", json={"enabled": False})
    assert patched.json()["enabled"] is False and patched.json()["last_fired_at"]
    in_use = api(live_server, "DELETE", "/api/layers/life")
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "layer_model_in_use"
    assert api(live_server, "DELETE", "/api/alerts/flow").json() == {"deleted": "flow"}
    assert api(live_server, "GET", "/api/alerts/flow").status_code == 404
    assert api(live_server, "GET", "/api/alerts/log").json()["total"] == 1  # the log stays


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (
            {"name": "x", "condition": {"type": "metric", "series": {"event": "nope"}, "threshold": 0.1}},
            400,
            "unknown_event",
            "condition.series.event",
        ),
        (
            {
                "name": "x",
                "condition": {
                    "type": "layer_flow",
                    "model": "life",
                    "from": ["vip"],
                    "to": ["none"],
                    "threshold": 0.1,
                },
            },
            400,
            "unknown_layer",
            "condition.from[0]",
        ),
        (
            {
                "name": "x",
                "condition": {"type": "metric", "series": {"event": "purchase"}, "threshold": 0.1},
                "channels": [{"type": "webhook", "url": "http://x", "retries": 3}],
            },
            400,
            "unknown_field",
            "channels[0].retries",
        ),
    ],
)
def test_alerts_rest_errors(
    live_server: LiveServer, body: dict[str, Any], status: int, code: str, field: str
) -> None:
    flow_shop(live_server)
    resp = api(live_server, "POST", "/api/alerts", json=body)
    assert resp.status_code == status
    err = resp.json()["error"]
    assert (err["code"], err["field"]) == (code, field) and err["message"]
    assert api(live_server, "GET", "/api/alerts").json() == {"results": []}
    assert httpx.get(live_server.url + "/api/alerts/log").status_code == 401
    assert api(live_server, "POST", "/api/alerts/nope/check").status_code == 404


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_alerts_cli_on_the_file(tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    db = tmp_path / "cli.duckdb"
    store = Store(db)
    project = store.create_project("cli", "UTC")
    today = datetime.now(UTC).date()
    with Writer(store) as writer:
        evs = []
        for back in range(1, 15):  # 4 purchases a day last week, 2 a day this week
            for i in range(2 if back <= 7 else 4):
                ts = datetime(today.year, today.month, today.day, 10, i, tzinfo=UTC) - timedelta(days=back)
                evs.append(Event(project_id=project.id, message_id=f"{back}-{i}", event="purchase", type="track",
                                 distinct_id=f"u{i}", timestamp=ts, received_at=ts, properties="{}"))  # fmt: skip
        writer.write(Payload(events=evs, accepted=len(evs)))
    store.close()
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps({
        "name": "orders", "channels": [{"type": "webhook", "url": receiver.url}],
        "condition": {"type": "metric", "series": {"event": "purchase"}, "value": "total", "threshold": 0.5},
    }))  # fmt: skip
    pid, d = str(project.id), str(db)
    assert invoke("alerts", "create", str(rule), "--project", pid, "--db", d)["schedule"] == "interval:3600"
    assert [r["name"] for r in invoke("alerts", "list", "--project", pid, "--db", d)["results"]] == ["orders"]
    dry = invoke("alerts", "check", "orders", "--dry-run", "--project", pid, "--db", d)
    assert (
        dry["fired"] and dry["value"] == -0.5 and dry["details"]["current"] == 14 and receiver.requests == []
    )
    fired = invoke("alerts", "check", "orders", "--project", pid, "--db", d)
    assert fired["log_id"] and receiver.requests[0]["json"]["rule"] == "orders"
    assert invoke("alerts", "log", "--project", pid, "--db", d)["results"][0]["id"] == fired["log_id"]
    assert invoke("alerts", "delete", "orders", "--project", pid, "--db", d) == {"deleted": "orders"}
    result = CliRunner().invoke(cli, ["alerts", "check", "orders", "--project", pid, "--db", d])
    assert result.exit_code == 1 and "alert_rule_not_found" in result.output
