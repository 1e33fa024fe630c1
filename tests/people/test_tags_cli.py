"""`userloop tags ...` round trip on a DuckDB file (the CLI's own process owns it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from userloop.backend import LocalBackend
from userloop.cli import app
from userloop.ingest.event import Event, Payload

runner = CliRunner()


def cli(db: Path, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["tags", *args, "--db", str(db), "--project", "1"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else result.output


def test_cli_round_trip(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    db = tmp_path / "cli.duckdb"
    b = LocalBackend(db)
    try:
        pid = b.create_project("shop", "UTC")["id"]
        t = datetime(2026, 3, 1, tzinfo=UTC)
        b.writer.write(Payload(events=[
            Event(project_id=pid, message_id=f"m{i}", event="buy", type="track", distinct_id=d, timestamp=t,
                  received_at=t, properties=json.dumps({"amount": a}))
            for i, (d, a) in enumerate([("u1", 3), ("u1", 4), ("u2", 5)])
        ], accepted=3))
    finally:
        b.close()
    (tmp_path / "spend.json").write_text(json.dumps({
        "name": "spend", "kind": "dynamic", "category": "consumption",
        "rule": {"aggregate": "sum", "event": "buy", "property": "amount"}}))
    made = cli(db, "create", str(tmp_path / "spend.json"))
    assert (made["name"], made["persons"], made["compute"]["added"]) == ("spend", 2, 2)
    assert [t["name"] for t in cli(db, "list")["tags"]] == ["spend"]
    assert cli(db, "get", "spend")["rule"]["property"] == "amount"
    (tmp_path / "patch.json").write_text(json.dumps({"rule": {"aggregate": "max", "event": "buy", "property": "amount"}}))
    assert cli(db, "update", "spend", str(tmp_path / "patch.json"))["compute"]["changed"] == 1  # u1: 7 -> 4
    assert cli(db, "compute", "spend")["changed"] == 0
    cov = cli(db, "coverage", "spend")
    assert (cov["with_value"], [d["value"] for d in cov["distribution"]]) == (2, ["4", "5"])
    hist = cli(db, "history", "spend", "--person", "u1")
    assert [h["value"] for h in hist["history"]] == ["7", "4"]
    cli(db, "create", "-", code=1)  # stdin empty: not JSON
    (tmp_path / "gender.json").write_text(json.dumps({"name": "gender", "kind": "static"}))
    cli(db, "create", str(tmp_path / "gender.json"))
    (tmp_path / "g.csv").write_text("distinct_id,value\nu1,female\nu9,male\n")
    report = cli(db, "import", "gender", str(tmp_path / "g.csv"))
    assert (report["stored"], report["unknown"]) == (1, {"count": 1, "sample": ["u9"]})
    tree = cli(db, "catalogue")
    assert {c["name"]: c["count"] for c in tree["children"]}["consumption"] == 1
    out = cli(db, "import", "spend", str(tmp_path / "g.csv"), code=1)
    assert "tag_not_settable" in out
    assert "tag_not_found" in cli(db, "get", "nope", code=1)
    assert cli(db, "delete", "spend")["deleted"] == "spend"
    assert [t["name"] for t in cli(db, "list")["tags"]] == ["gender"]
