"""Portraits on hand-built data: every section exact, through the action, HTTP and the CLI.

The other capabilities' tables (tags, segments, layers) are filled by their contract columns only
(``docs/people/portraits.md``); columns their owners add are given neutral values.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn
from typer.testing import CliRunner

from tests.conftest import free_port
from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.ingest.event import Event, Merge, Payload, ProfileOp
from userloop.store.duckdb import Project, Store
from userloop.store.writer import Writer
from userloop.web.app import create_app

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)

# (message id, distinct id, event, time, properties, columns) -- "anon" and "user" become one person
ROWS: list[tuple[str, str, str, datetime, dict[str, Any], dict[str, Any]]] = [
    ("m00", "anon", "receive_coupon", T0 - 60 * M, {"coupon_id": "C1"}, {}),  # server-side: no channel
    ("m01", "anon", "$pageview", T0, {}, {"channel": "email", "utm_source": "newsletter", "utm_medium": "email",
                                           "utm_campaign": "spring", "referrer": "https://mail.example.com/"}),
    ("m02", "anon", "view_product", T0 + 10 * M, {"item_id": "p1"}, {"channel": "direct"}),
    ("m03", "anon", "add_to_cart", T0 + 39 * M, {}, {"channel": "direct"}),  # 29 min gap: same visit
    ("m04", "user", "$pageview", T0 + 69 * M, {}, {"channel": "direct"}),  # exactly 30 min: a new visit
    ("m05", "user", "purchase", T0 + 70 * M, {"revenue": 99.5, "amount": 120}, {"channel": "direct"}),
    ("m06", "user", "use_coupon", T0 + 71 * M, {"coupon_id": "C1"}, {"channel": "direct"}),
    ("m07", "user", "purchase", T0 + 300 * M, {"revenue": "12.5", "amount": 12.5}, {"channel": "direct"}),
    ("m08", "user", "purchase", T0 + 301 * M, {}, {"channel": "direct"}),  # no amount: counted, adds nothing
    ("m09", "user", "use_coupon", T0 + 302 * M, {}, {"channel": "direct"}),
    ("m10", "user", "submit_order", T0 + 1440 * M, {"amount": 50}, {"channel": "direct"}),
    ("m11", "user", "$pageview", T0 + 1440 * M, {}, {"channel": "direct"}),  # same time: id breaks the tie
    ("x01", "other", "purchase", T0 + 2 * M, {"revenue": 1000, "amount": 1000}, {"channel": "wechat"}),
    ("x02", "other", "use_coupon", T0 + 3 * M, {}, {"channel": "wechat"}),
]
MINE = [r for r in ROWS if r[1] != "other"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Store, Writer, Project]]:
    store = Store(tmp_path / "portrait.duckdb")
    project = store.create_project("portrait", "UTC")
    pid = project.id
    with Writer(store) as writer:
        events = [
            Event(project_id=pid, message_id=mid, event=name, type="track", distinct_id=did, timestamp=ts,
                  received_at=ts, properties=json.dumps(props), **cols)
            for mid, did, name, ts, props, cols in ROWS
        ]
        writer.write(Payload(events=events, ops=[
            ProfileOp(project_id=pid, distinct_id="anon", op="set", properties={"first_channel": "email"}),
            ProfileOp(project_id=pid, distinct_id="user", op="set", properties={"city": "Beijing"}),
        ]))
        writer.write(Payload(ops=[Merge(project_id=pid, distinct_id="user", other_id="anon", kind="identify")]))
        yield store, writer, project
    store.close()


def get(store: Store, writer: Writer, project: Project, **params: Any) -> dict[str, Any]:
    return run_action("persons.get", ActionContext(store, writer, project), params)  # type: ignore[no-any-return]


def person_of(store: Store, project: Project, did: str) -> str:
    return str(store.query("SELECT person_id FROM identities WHERE project_id = ? AND distinct_id = ?",
                           [project.id, did])[0]["person_id"])


# -- the other capabilities' tables, by contract ---------------------------------------------------
CONTRACT_DDL = {
    "tag_values": "project_id INTEGER, tag VARCHAR, person_id VARCHAR, value VARCHAR, num_value DOUBLE, "
                  "updated_at TIMESTAMPTZ, PRIMARY KEY (project_id, tag, person_id)",
    "segment_members": "project_id INTEGER, segment VARCHAR, person_id VARCHAR, "
                       "PRIMARY KEY (project_id, segment, person_id)",
    "layer_models": "project_id INTEGER, name VARCHAR, kind VARCHAR",
    "layer_members": "project_id INTEGER, model VARCHAR, person_id VARCHAR, layer VARCHAR, scores JSON, "
                     "computed_at TIMESTAMPTZ, PRIMARY KEY (project_id, model, person_id)",
}
_NEUTRAL = {"VARCHAR": "", "JSON": "{}", "TIMESTAMP WITH TIME ZONE": T0, "DOUBLE": 0.0, "BIGINT": 0,
            "INTEGER": 0, "BOOLEAN": False, "VARCHAR[]": []}


def insert(store: Store, table: str, row: dict[str, Any]) -> None:
    """A row by the contract columns; other required columns (the owner's extras) get neutral values."""
    store.query(f"CREATE TABLE IF NOT EXISTS {table} ({CONTRACT_DDL[table]})")
    cols = store.query(
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ?", [table])
    values = dict(row)
    for c in cols:
        if c["column_name"] not in values and c["is_nullable"] == "NO" and c["column_default"] is None:
            values[c["column_name"]] = _NEUTRAL[c["data_type"]]
    names = list(values)
    store.query(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                [values[n] for n in names])


def fill_people_tables(store: Store, project: Project, person: str, other: str) -> None:
    pid = project.id
    at = T0 + 2000 * M
    insert(store, "tag_values", {"project_id": pid, "tag": "purchases_90d", "person_id": person, "value": "3",
                                 "num_value": 3.0, "updated_at": at})
    insert(store, "tag_values", {"project_id": pid, "tag": "city", "person_id": person, "value": "Beijing",
                                 "num_value": None, "updated_at": at})
    insert(store, "tag_values", {"project_id": pid, "tag": "city", "person_id": other, "value": "Shanghai",
                                 "num_value": None, "updated_at": at})
    for seg, who in (("beijing_buyers", person), ("all_buyers", person), ("all_buyers", other)):
        insert(store, "segment_members", {"project_id": pid, "segment": seg, "person_id": who})
    insert(store, "layer_models", {"project_id": pid, "name": "value", "kind": "rfm"})
    insert(store, "layer_models", {"project_id": pid, "name": "lifecycle", "kind": "lifecycle"})
    rfm = {"r": 5, "f": 3, "m": 4, "recency_days": 1, "frequency": 3, "monetary": 112.0}
    insert(store, "layer_members", {"project_id": pid, "model": "value", "person_id": person, "layer": "champions",
                                    "scores": json.dumps(rfm), "computed_at": at})
    insert(store, "layer_members", {"project_id": pid, "model": "lifecycle", "person_id": person,
                                    "layer": "buying", "scores": None, "computed_at": at})
    insert(store, "layer_members", {"project_id": pid, "model": "value", "person_id": other, "layer": "at_risk",
                                    "scores": json.dumps({"r": 1, "f": 1, "m": 5}), "computed_at": at})


# -- independent expectations ------------------------------------------------------------------------
def expected_totals(purchase: set[str], revenue: str, coupon: set[str], gap_minutes: float = 30) -> dict[str, Any]:
    """pandas over ROWS: visits split at gaps >= the timeout, purchases, revenue, coupons."""
    df = pd.DataFrame(MINE, columns=["mid", "did", "event", "ts", "props", "cols"]).sort_values(["ts", "mid"])
    new_visit = df["ts"].diff().isna() | (df["ts"].diff() >= pd.Timedelta(minutes=gap_minutes))
    amounts = pd.to_numeric(df["props"].map(lambda p: p.get(revenue)), errors="coerce")
    bought = df["event"].isin(purchase)
    return {
        "visits": int(new_visit.sum()),
        "purchases": int(bought.sum()),
        "revenue": float(amounts[bought].sum()),
        "coupons_used": int(df["event"].isin(coupon).sum()),
    }


def test_portrait_sections_exact(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    person, other = person_of(store, project, "user"), person_of(store, project, "other")
    fill_people_tables(store, project, person, other)
    got = get(store, writer, project, id="anon")
    assert got["person_id"] == person
    assert got["distinct_ids"] == ["anon", "user"]
    assert got["properties"] == {"first_channel": "email", "city": "Beijing"}
    assert (got["event_count"], got["first_seen"], got["last_seen"]) == (
        12, (T0 - 60 * M).isoformat(), (T0 + 1440 * M).isoformat())
    # first touch: the first event that has a channel or utm (the server-side coupon has neither)
    assert got["source"] == {
        "channel": "email", "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring",
        "utm_content": None, "utm_term": None, "referring_domain": None, "referrer": "https://mail.example.com/",
        "event": "$pageview", "timestamp": T0.isoformat(),
    }
    # by hand: visits start at m00, m01 (60 min gap), m04 (exactly 30), m07, m10 -> 5; purchases m05,
    # m07, m08; amount 120 + 12.5 (m08 has none); coupons m06, m09
    assert got["totals"] == {"visits": 5, "purchases": 3, "revenue": 132.5, "coupons_used": 2}
    assert got["totals"] == expected_totals({"purchase"}, "amount", {"use_coupon"})
    assert [(t["tag"], t["value"], t["num_value"]) for t in got["tags"]] == [
        ("city", "Beijing", None), ("purchases_90d", "3", 3.0)]
    assert got["tags"][0]["updated_at"] == (T0 + 2000 * M).isoformat()
    assert got["segments"] == ["all_buyers", "beijing_buyers"]
    assert [(x["model"], x["kind"], x["layer"], x["scores"]) for x in got["layers"]] == [
        ("lifecycle", "lifecycle", "buying", None),
        ("value", "rfm", "champions", {"r": 5, "f": 3, "m": 4, "recency_days": 1, "frequency": 3, "monetary": 112.0}),
    ]
    assert got["rfm"] == {"model": "value", "layer": "champions", "r": 5, "f": 3, "m": 4, "recency_days": 1,
                          "frequency": 3, "monetary": 112.0}
    assert [e["message_id"] for e in got["timeline"]] == [f"m{i:02d}" for i in range(11, -1, -1)]
    assert got["timeline"][2] == {
        "message_id": "m09", "event": "use_coupon", "timestamp": (T0 + 302 * M).isoformat(), "distinct_id": "user",
        "properties": {}, "url": None, "path": None, "channel": "direct",
    }
    assert got["merge_count"] == 1
    # by person id, and a shorter timeline
    short = get(store, writer, project, id=person, timeline=3)
    assert [e["message_id"] for e in short["timeline"]] == ["m11", "m10", "m09"]
    assert {k: v for k, v in short.items() if k != "timeline"} == {k: v for k, v in got.items() if k != "timeline"}
    assert get(store, writer, project, id="user", timeline=0)["timeline"] == []
    # the other person sees only their own
    theirs = get(store, writer, project, id="other")
    assert theirs["totals"] == {"visits": 1, "purchases": 1, "revenue": 1000.0, "coupons_used": 1}
    assert (theirs["segments"], theirs["rfm"]["layer"], theirs["merge_count"]) == (["all_buyers"], "at_risk", 0)
    assert [t["value"] for t in theirs["tags"]] == ["Shanghai"]


def test_settings_change_what_counts(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    ctx = ActionContext(store, writer, project)
    assert run_action("persons.settings", ctx, {}) == {
        "purchase_events": ["purchase"], "revenue_property": "amount", "coupon_events": ["use_coupon"],
        "visit_gap_minutes": 30.0}
    run_action("persons.settings", ctx, {"purchase_events": ["submit_order", "purchase"], "revenue_property": "revenue",
                                         "coupon_events": ["use_coupon", "receive_coupon"]})
    totals = get(store, writer, project, id="user")["totals"]
    # m05 99.5 + m07 "12.5" (text) over four orders (m08, m10 have no revenue); coupons m00, m06, m09
    assert totals == {"visits": 5, "purchases": 4, "revenue": 112.0, "coupons_used": 3}
    assert totals == expected_totals({"submit_order", "purchase"}, "revenue", {"use_coupon", "receive_coupon"})
    run_action("persons.settings", ctx, {"visit_gap_minutes": 29})  # the 29-minute gap now splits too
    assert get(store, writer, project, id="user")["totals"]["visits"] == 6 == expected_totals(
        set(), "amount", set(), 29)["visits"]
    # invalid settings: 400 naming the field, nothing saved
    for bad, field in (({"purchase_events": []}, "purchase_events"), ({"coupon_events": [""]}, "coupon_events[0]"),
                       ({"visit_gap_minutes": 0}, "visit_gap_minutes"), ({"revenue_property": 5}, "revenue_property"),
                       ({"colour": "red"}, "colour")):
        with pytest.raises(UserloopError) as exc:
            run_action("persons.settings", ctx, bad)
        assert exc.value.field == field and exc.value.status == 400
    assert run_action("persons.settings", ctx, {})["visit_gap_minutes"] == 29.0


def test_portrait_without_the_other_tables(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    for table in ("tag_values", "segment_members", "layer_members", "layer_models", "tags"):
        store.query(f"DROP TABLE IF EXISTS {table}")
    got = get(store, writer, project, id="user")
    assert (got["tags"], got["segments"], got["layers"], got["rfm"]) == ([], [], [], None)
    assert got["totals"]["purchases"] == 3


def test_portrait_follows_an_unmerge(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    ctx = ActionContext(store, writer, project)
    run_action("persons.unmerge", ctx, {"id": "user", "merge": 1})
    anon, user = get(store, writer, project, id="anon"), get(store, writer, project, id="user")
    assert (anon["distinct_ids"], anon["event_count"], anon["properties"]) == (["anon"], 4, {"first_channel": "email"})
    assert (user["distinct_ids"], user["event_count"], user["properties"]) == (["user"], 8, {"city": "Beijing"})
    assert anon["source"]["channel"] == "email" and user["source"]["channel"] == "direct"
    # visits: anon m00 | m01 m02 m03; user m04 m05 m06 | m07 m08 m09 | m10 m11
    assert (anon["totals"]["visits"], user["totals"]["visits"]) == (2, 3)
    assert anon["merge_count"] == user["merge_count"] == 2


def serve(store: Store, writer: Writer) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store, writer=writer), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_http_and_cli(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    expected = get(store, writer, project, id="anon", timeline=2)
    auth = {"Authorization": f"Bearer {project.secret_key}"}
    for url in serve(store, writer):
        resp = httpx.get(f"{url}/api/persons/anon", params={"timeline": 2}, headers=auth)
        assert resp.status_code == 200 and resp.json() == expected
        assert httpx.get(f"{url}/api/persons/{expected['person_id']}?timeline=2", headers=auth).json() == expected
        for query, code in (("timeline=-1", "bad_parameter"), ("timeline=1001", "bad_parameter")):
            bad = httpx.get(f"{url}/api/persons/anon?{query}", headers=auth)
            assert bad.status_code == 400 and bad.json()["error"] == {
                "code": code, "message": "timeline must be an integer between 0 and 1000", "field": "timeline"}
        missing = httpx.get(f"{url}/api/persons/nobody", headers=auth)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "person_not_found"
        settings = httpx.put(f"{url}/api/settings/portraits", json={"revenue_property": "revenue"}, headers=auth)
        assert settings.status_code == 200 and settings.json()["revenue_property"] == "revenue"
        assert httpx.get(f"{url}/api/settings/portraits", headers=auth).json()["revenue_property"] == "revenue"
        assert httpx.get(f"{url}/api/persons/user", headers=auth).json()["totals"]["revenue"] == 112.0
    writer.stop()
    store.close()
    from userloop.cli import app

    res = CliRunner().invoke(app, ["persons", "get", "anon", "--project", str(project.id), "--db", str(store.path),
                                   "--timeline", "2"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["timeline"] == expected["timeline"] and out["totals"] == {
        "visits": 5, "purchases": 3, "revenue": 112.0, "coupons_used": 2}
