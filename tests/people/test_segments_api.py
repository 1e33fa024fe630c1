"""Segments over real HTTP (a live server on a loopback port) and through the CLI."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pandas as pd
from typer.testing import CliRunner

from tests.conftest import LiveServer
from userloop.backend import LocalBackend, RemoteBackend
from userloop.cli import app
from userloop.ingest.event import Event, Payload, ProfileOp

NOW = datetime.now(UTC).replace(microsecond=0)
SEED = {
    "and": [
        {"kind": "event", "event": "visit", "operator": ">", "times": 3, "last_days": 90},
        {"kind": "event", "event": "purchase", "operator": ">=", "times": 1},
        {"kind": "person", "property": "city", "operator": "=", "value": "Beijing"},
        {
            "not": {
                "kind": "event",
                "event": "purchase",
                "last_days": 7,
                "filters": [{"property": "brand", "operator": "=", "value": "Shiseido"}],
            }
        },
    ]
}


def _shop() -> list[tuple[str, str, datetime, dict[str, Any]]]:
    """(distinct id, event, time, properties): u1 and u2 visit 4 times and buy, u3 visits 5 times
    and buys; u2 bought Shiseido yesterday; u3 lives in Shanghai; u4 visits twice."""
    rows = []
    for d, n in (("u1", 4), ("u2", 4), ("u3", 5), ("u4", 2)):
        rows += [(d, "visit", NOW - timedelta(days=i + 1), {}) for i in range(n)]
    rows += [
        ("u1", "purchase", NOW - timedelta(days=20), {"brand": "Shiseido", "price": 30}),
        ("u2", "purchase", NOW - timedelta(days=1), {"brand": "Shiseido", "price": 40}),
        ("u3", "purchase", NOW - timedelta(days=2), {"brand": "Dior", "price": 50}),
    ]
    return rows


CITIES = {"u1": "Beijing", "u2": "Beijing", "u3": "Shanghai", "u4": "Beijing"}


def send(server: LiveServer) -> None:
    batch: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": d,
            "traits": {"city": c, "gender": "f" if d == "u1" else "m"},
            "timestamp": (NOW - timedelta(days=30)).isoformat(),
        }
        for d, c in CITIES.items()
    ]
    batch += [
        {"type": "track", "userId": d, "event": e, "timestamp": t.isoformat(), "properties": p}
        for d, e, t, p in _shop()
    ]
    resp = httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(server.project.write_key, ""))
    assert resp.status_code == 200 and resp.json()["rejected"] == [], resp.text


def test_rest_round_trip(live_server: LiveServer, tmp_path: Path) -> None:
    send(live_server)
    s = live_server
    api = httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {s.project.secret_key}"})
    assert api.get("/api/segments").json() == {"segments": []}  # an /api/ request: the events are stored
    persons = {
        r["distinct_id"]: r["person_id"]
        for r in s.store.query("SELECT distinct_id, person_id FROM identities")
    }

    r = api.post("/api/segments/preview", json={"rule": SEED, "sample": 5})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "count": 1,
        "sample": [
            {
                "person_id": persons["u1"],
                "distinct_ids": ["u1"],
                "properties": {"city": "Beijing", "gender": "f"},
            }
        ],
    }
    bad = {"rule": {"and": [SEED["and"][0], SEED["and"][1], {**SEED["and"][0], "times": "four"}]}}
    r = api.post("/api/segments/preview", json=bad)
    assert r.status_code == 400 and r.json()["error"]["field"] == "rule.and[2].times"
    assert set(r.json()["error"]) == {"code", "message", "field"}
    assert httpx.post(f"{s.url}/api/segments/preview", json={"rule": SEED}).status_code == 401
    r = httpx.post(f"{s.url}/api/segments/preview", json={"rule": SEED}, auth=(s.project.write_key, ""))
    assert r.status_code == 401
    assert api.post("/api/segments/preview", content=b"{nope").json()["error"]["code"] == "malformed_json"

    r = api.post("/api/segments", json={"name": "seed", "rule": SEED, "description": "the issue's example"})
    assert r.status_code == 201, r.text
    assert (r.json()["member_count"], r.json()["entered"]) == (1, 1)
    assert api.post("/api/segments", json={"name": "seed", "rule": SEED}).status_code == 409
    r = api.post("/api/segments", json={"name": "half", "rule": {"and": [SEED["and"][2], {"kind": "tag"}]}})
    assert (r.status_code, r.json()["error"]["field"]) == (400, "rule.and[1].tag")
    assert [x["name"] for x in api.get("/api/segments").json()["segments"]] == ["seed"]
    got = api.get("/api/segments/seed").json()
    city = {
        "kind": "person",
        "property": "city",
        "value": "Beijing",
    }  # stored without defaults (operator "=")
    assert (got["type"], got["rule"]["and"][2], got["description"]) == (
        "dynamic",
        city,
        "the issue's example",
    )
    assert api.get("/api/segments/nope").status_code == 404

    beijing = {"kind": "person", "property": "city", "value": "Beijing"}
    r = api.patch("/api/segments/seed", json={"rule": beijing})
    assert (r.status_code, r.json()["entered"], r.json()["left"]) == (200, 2, 0)
    assert api.post("/api/segments/seed/compute").json()["members"] == 3
    members = api.get("/api/segments/seed/members", params={"limit": 2}).json()
    assert members["count"] == 3
    assert [m["person_id"] for m in members["members"]] == sorted(persons[d] for d in ("u1", "u2", "u4"))[:2]
    hist = api.get("/api/segments/seed/history", params={"person_id": persons["u2"]}).json()["history"]
    assert [(h["person_id"], h["left_at"]) for h in hist] == [(persons["u2"], None)]
    assert api.get("/api/segments/seed/members", params={"limit": "x"}).status_code == 400

    r = api.get("/api/segments/seed/export", params={"format": "csv", "properties": "city,gender"})
    assert r.status_code == 200 and r.headers["x-userloop-rows"] == "3"
    frame = pd.read_csv(io.StringIO(r.text), dtype=object)
    expected = sorted((persons[d], CITIES[d], "f" if d == "u1" else "m") for d in ("u1", "u2", "u4"))
    assert [tuple(x) for x in frame.itertuples(index=False, name=None)] == expected
    r = api.get(
        "/api/segments/seed/export", params={"format": "parquet", "properties": "city", "distinct_ids": "1"}
    )
    (tmp_path / "m.parquet").write_bytes(r.content)
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path / 'm.parquet'}')").fetchall()
    distinct = {p: d for d, p in persons.items()}  # one distinct id each here
    assert rows == [(p, [distinct[p]], c) for p, c, _ in expected]
    assert api.get("/api/segments/seed/export", params={"format": "xml"}).status_code == 400

    # the CLI's path while a server holds the file: the admin API runs the same action
    remote = RemoteBackend(s.url, s.admin_token)
    out = tmp_path / "remote.csv"
    result = remote.call("segments.export", s.project.id, {"name": "seed", "path": str(out), "format": "csv"})
    assert result["rows"] == 3 and out.read_text().splitlines() == ["person_id", *[e[0] for e in expected]]
    remote.close()

    assert api.delete("/api/segments/seed").json() == {"deleted": "seed"}
    assert api.get("/api/segments").json() == {"segments": []}


runner = CliRunner()


def cli(db: Path, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["segments", *args, "--db", str(db), "--project", "1"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else result.output


def test_cli_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    b = LocalBackend(db)
    try:
        pid = b.create_project("shop", "UTC")["id"]
        events = [
            Event(
                project_id=pid,
                message_id=f"m{i}",
                event=e,
                type="track",
                distinct_id=d,
                timestamp=t,
                received_at=t,
                properties=json.dumps(p),
            )
            for i, (d, e, t, p) in enumerate(_shop())
        ]
        ops = [
            ProfileOp(project_id=pid, distinct_id=d, op="set", properties={"city": c})
            for d, c in CITIES.items()
        ]
        b.writer.write(Payload(events=events, ops=ops, accepted=len(events)))
        persons = {r["distinct_id"]: r["person_id"] for r in b.store.query("SELECT * FROM identities")}
    finally:
        b.close()
    (tmp_path / "seed.json").write_text(json.dumps({"rule": SEED}))
    assert cli(db, "preview", str(tmp_path / "seed.json"))["count"] == 1
    (tmp_path / "rule.json").write_text(json.dumps(SEED))  # a bare rule works too
    assert [s["person_id"] for s in cli(db, "preview", str(tmp_path / "rule.json"))["sample"]] == [
        persons["u1"]
    ]
    (tmp_path / "def.json").write_text(json.dumps({"name": "seed", "rule": SEED, "type": "static"}))
    assert cli(db, "create", str(tmp_path / "def.json"))["member_count"] == 1
    assert "segment_exists" in cli(db, "create", str(tmp_path / "def.json"), code=1)
    assert [s["name"] for s in cli(db, "list")["segments"]] == ["seed"]
    assert cli(db, "get", "seed")["type"] == "static"
    (tmp_path / "patch.json").write_text(
        json.dumps({"rule": {"kind": "event", "event": "visit", "times": 4}})
    )
    assert cli(db, "update", "seed", str(tmp_path / "patch.json"))["member_count"] == 3
    assert cli(db, "compute", "seed")["members"] == 3
    assert [m["person_id"] for m in cli(db, "members", "seed", "--limit", "10")["members"]] == sorted(
        persons[d] for d in ("u1", "u2", "u3")
    )
    assert len(cli(db, "history", "seed")["history"]) == 3
    out = tmp_path / "seed.parquet"
    r = cli(db, "export", "seed", str(out), "--format", "parquet", "--properties", "city")
    assert r["rows"] == 3
    rows = duckdb.sql(f"SELECT person_id, city FROM read_parquet('{out}')").fetchall()
    assert rows == sorted((persons[d], CITIES[d]) for d in ("u1", "u2", "u3"))
    (tmp_path / "bad.json").write_text(
        json.dumps({"rule": {"and": [{"kind": "event", "event": "visit", "times": "x"}]}})
    )
    assert "(at rule.and[0].times)" in cli(db, "preview", str(tmp_path / "bad.json"), code=1)
    assert cli(db, "delete", "seed") == {"deleted": "seed"}
    assert cli(db, "list") == {"segments": []}
