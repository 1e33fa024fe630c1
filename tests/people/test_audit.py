"""The identity audit: merges logged from every SDK path, and undoing merges (live server and writer)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import LiveServer
from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.ingest.event import Event, Merge, Payload, ProfileOp
from userloop.query.sql import Ctx, events_sql
from userloop.store.duckdb import Project, Store
from userloop.store.writer import Writer

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


def md5_person(project_id: int, distinct_id: str) -> str:
    """A new distinct id's person, as ``identity.PERSON_ID_SQL`` defines it."""
    return hashlib.md5(f"{project_id}:{distinct_id}".encode()).hexdigest()


def auth(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.project.secret_key}"}


def segment(server: LiveServer, batch: list[dict[str, Any]]) -> None:
    resp = httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(server.project.write_key, ""))
    assert resp.status_code == 200 and resp.json()["rejected"] == [], resp.text


def posthog(server: LiveServer, batch: list[dict[str, Any]]) -> None:
    resp = httpx.post(f"{server.url}/batch/", json={"api_key": server.project.write_key, "batch": batch})
    assert resp.status_code == 200, resp.text


def sensors(server: LiveServer, messages: list[dict[str, Any]]) -> None:
    data = base64.b64encode(gzip.compress(json.dumps(messages).encode())).decode()
    resp = httpx.post(f"{server.url}/sa", params={"project": server.project.write_key},
                      data={"data_list": data, "gzip": "1"})
    assert resp.status_code == 200, resp.text


def history(server: LiveServer, ident: str) -> list[dict[str, Any]]:
    resp = httpx.get(f"{server.url}/api/persons/{ident}/merges", headers=auth(server))
    assert resp.status_code == 200, resp.text
    return resp.json()["merges"]  # type: ignore[no-any-return]


def unmerge(server: LiveServer, ident: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/api/persons/{ident}/unmerge", json=body, headers=auth(server))


def message_of(server: LiveServer, event: str, distinct_id: str) -> str:
    """The stored message id of the one event of that name and distinct id."""
    rows = [e for e in server.events(event=event) if e["distinct_id"] == distinct_id]
    assert len(rows) == 1
    return rows[0]["message_id"]  # type: ignore[no-any-return]


def summary(entry: dict[str, Any]) -> tuple[Any, ...]:
    return (entry["action"], entry["kind"], entry["distinct_id"], entry["other_id"],
            entry["surviving_person_id"], entry["absorbed_person_id"], entry["moved_distinct_ids"])


# -- merges logged from each SDK path ------------------------------------------------------------
def test_segment_identify_and_alias_are_logged_with_their_message(live_server: LiveServer) -> None:
    pid = live_server.project.id
    segment(live_server, [
        {"type": "track", "anonymousId": "anon-1", "event": "pv", "messageId": "s1", "timestamp": T0.isoformat()},
        {"type": "identify", "anonymousId": "anon-1", "traits": {"city": "Hangzhou"}, "messageId": "s2",
         "timestamp": T0.isoformat()},
        {"type": "track", "userId": "user-1", "event": "pv", "messageId": "s3", "timestamp": T0.isoformat()},
    ])
    segment(live_server, [{"type": "identify", "userId": "user-1", "anonymousId": "anon-1", "messageId": "s4",
                           "timestamp": (T0 + timedelta(minutes=1)).isoformat()}])
    segment(live_server, [{"type": "alias", "userId": "user-1", "previousId": "old-1", "messageId": "s5",
                           "timestamp": (T0 + timedelta(minutes=2)).isoformat()}])
    entries = history(live_server, "anon-1")
    user, anon, old = (md5_person(pid, d) for d in ("user-1", "anon-1", "old-1"))
    assert [summary(e) for e in entries] == [
        ("merge", "identify", "user-1", "anon-1", user, anon, ["anon-1"]),
        ("merge", "alias", "user-1", "old-1", user, old, ["old-1"]),
    ]
    assert [e["merge_id"] for e in entries] == [1, 2]
    assert entries[0]["message_id"] == message_of(live_server, "$identify", "user-1")
    assert entries[1]["message_id"] == message_of(live_server, "$create_alias", "user-1")
    assert entries[0]["absorbed_properties"] == {"city": "Hangzhou"}
    assert entries[0]["surviving_properties"] == {}
    assert entries[0]["absorbed_created_at"] == T0.isoformat()
    assert all(e["active"] and e["undone_by"] is None for e in entries)
    # the same history whichever id or the person id names the person
    assert history(live_server, "user-1") == entries == history(live_server, user)


def test_posthog_identify_and_create_alias_are_logged(live_server: LiveServer) -> None:
    pid = live_server.project.id
    posthog(live_server, [
        {"event": "pv", "distinct_id": "ph-anon", "uuid": "0190a000-0000-7000-8000-000000000001",
         "timestamp": T0.isoformat(), "properties": {"$set": {"plan": "free"}}},
        {"event": "pv", "distinct_id": "ph-user", "uuid": "0190a000-0000-7000-8000-000000000002",
         "timestamp": T0.isoformat()},
    ])
    posthog(live_server, [{"event": "$identify", "distinct_id": "ph-user", "uuid": "0190a000-0000-7000-8000-000000000003",
                           "timestamp": T0.isoformat(), "properties": {"$anon_distinct_id": "ph-anon"}}])
    posthog(live_server, [{"event": "$create_alias", "distinct_id": "ph-user",
                           "uuid": "0190a000-0000-7000-8000-000000000004", "timestamp": T0.isoformat(),
                           "properties": {"alias": "ph-alias"}}])
    entries = history(live_server, "ph-user")
    user = md5_person(pid, "ph-user")
    assert [summary(e) for e in entries] == [
        ("merge", "$identify", "ph-user", "ph-anon", user, md5_person(pid, "ph-anon"), ["ph-anon"]),
        ("merge", "$create_alias", "ph-user", "ph-alias", user, md5_person(pid, "ph-alias"), ["ph-alias"]),
    ]
    assert entries[0]["message_id"] == message_of(live_server, "$identify", "ph-user")
    assert entries[1]["message_id"] == message_of(live_server, "$create_alias", "ph-user")
    assert entries[0]["absorbed_properties"] == {"plan": "free"}


def test_sensors_signup_bind_and_unbind_are_logged(live_server: LiveServer) -> None:
    pid = live_server.project.id
    ms = int(T0.timestamp() * 1000)
    sensors(live_server, [
        {"type": "track", "event": "view", "distinct_id": "sa-anon", "time": ms, "_track_id": 1, "properties": {}},
        {"type": "track_signup", "event": "$SignUp", "distinct_id": "sa-user", "original_id": "sa-anon",
         "time": ms + 1000, "_track_id": 2, "properties": {}},
    ])
    sensors(live_server, [
        {"type": "track_id_bind", "event": "$BindID", "distinct_id": "sa-user", "time": ms + 2000, "_track_id": 3,
         "identities": {"$identity_login_id": "sa-user", "$identity_mobile": "13800000000"}, "properties": {}},
    ])
    sensors(live_server, [
        {"type": "track_id_unbind", "event": "$UnbindID", "distinct_id": "sa-user", "time": ms + 3000,
         "_track_id": 4, "identities": {"$identity_mobile": "13800000000"}, "properties": {}},
    ])
    mobile = "$identity_mobile+13800000000"
    user = md5_person(pid, "sa-user")
    entries = history(live_server, "sa-user")
    assert [summary(e)[:5] for e in entries] == [
        ("merge", "track_signup", "sa-user", "sa-anon", user),
        ("merge", "bind", "sa-user", mobile, user),
        ("unbind", "unbind", mobile, None, user),
    ]
    assert entries[0]["absorbed_person_id"] == md5_person(pid, "sa-anon")
    assert entries[1]["absorbed_person_id"] == md5_person(pid, mobile)
    assert entries[0]["message_id"] == message_of(live_server, "$SignUp", "sa-user")
    assert entries[1]["message_id"] == message_of(live_server, "$BindID", "sa-user")
    # the unbound id has a new person of its own, named in the log
    assert live_server.person(mobile)["person_id"] == entries[2]["absorbed_person_id"] != user
    assert entries[2]["moved_distinct_ids"] == [mobile]
    assert live_server.person("sa-user")["distinct_ids"] == ["sa-anon", "sa-user"]


# -- undo through the API, checked by analyses -------------------------------------------------------
def uv(server: LiveServer) -> int:
    body = {"kind": "trends", "project": server.project.id, "date_from": "2026-04-01", "date_to": "2026-04-01",
            "series": [{"event": "pv", "math": "uv"}]}
    resp = httpx.post(f"{server.url}/api/query", json=body, headers=auth(server))
    assert resp.status_code == 200, resp.text
    return resp.json()["results"][0]["total"]  # type: ignore[no-any-return]


def events_of(server: LiveServer, person_id: str) -> list[str]:
    return sorted(e["message_id"] for e in server.events(person_id=person_id))


def test_unmerge_reattributes_events_for_every_analysis(live_server: LiveServer) -> None:
    pid = live_server.project.id
    at = [(T0 + timedelta(minutes=i)).isoformat() for i in range(6)]
    segment(live_server, [
        {"type": "track", "anonymousId": "a", "event": "pv", "messageId": f"a{i}", "timestamp": at[i]}
        for i in range(3)
    ] + [
        {"type": "identify", "anonymousId": "a", "traits": {"device": "phone"}, "messageId": "a-traits",
         "timestamp": at[0]},
        {"type": "track", "userId": "u", "event": "pv", "messageId": "u0", "timestamp": at[3]},
        {"type": "track", "userId": "u", "event": "pv", "messageId": "u1", "timestamp": at[4]},
        {"type": "identify", "userId": "u", "traits": {"name": "Wang"}, "messageId": "u-traits", "timestamp": at[3]},
    ])
    assert uv(live_server) == 2
    segment(live_server, [{"type": "identify", "userId": "u", "anonymousId": "a", "messageId": "link",
                           "timestamp": at[5]}])
    person = live_server.person("a")
    user, anon = md5_person(pid, "u"), md5_person(pid, "a")
    assert person["person_id"] == user and person["properties"] == {"device": "phone", "name": "Wang"}
    ids = {e["message_id"]: e for e in live_server.events()}
    assert uv(live_server) == 1
    assert len(events_of(live_server, user)) == 8  # 5 pv + 3 identify events

    (merge,) = history(live_server, "a")
    resp = unmerge(live_server, "a", merge=merge["merge_id"])
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["person"] == {"person_id": user, "distinct_ids": ["u"]}
    assert out["split_off"] == {"person_id": anon, "distinct_ids": ["a"]}
    assert (out["unmerge"]["action"], out["unmerge"]["undoes"], out["unmerge"]["kind"]) == ("unmerge", 1, "operator")

    # every analysis sees the split at once: trends (person_overrides), the events API (identities)
    assert uv(live_server) == 2
    a_events = sorted(m for m, e in ids.items() if e["distinct_id"] == "a")
    u_events = sorted(m for m, e in ids.items() if e["distinct_id"] == "u")
    assert len(a_events) == 4 and len(u_events) == 4
    assert events_of(live_server, anon) == a_events
    assert events_of(live_server, user) == u_events
    # both persons are back with their own properties
    a_person, u_person = live_server.person("a"), live_server.person("u")
    assert (a_person["person_id"], a_person["distinct_ids"], a_person["properties"], a_person["event_count"]) == (
        anon, ["a"], {"device": "phone"}, 4)
    assert (u_person["person_id"], u_person["distinct_ids"], u_person["properties"], u_person["event_count"]) == (
        user, ["u"], {"name": "Wang"}, 4)
    # the undo is logged, and marks the merge
    log = history(live_server, "u")
    assert [(e["merge_id"], e["action"], e["active"], e["undone_by"], e["undoes"]) for e in log] == [
        (1, "merge", False, 2, None), (2, "unmerge", False, None, 1)]
    assert history(live_server, "a") == log
    # undoing it again is refused
    again = unmerge(live_server, "u", merge=1)
    assert again.status_code == 409 and again.json()["error"]["code"] == "merge_already_undone"
    # a new identify merges them again, as a new log entry
    segment(live_server, [{"type": "identify", "userId": "u", "anonymousId": "a", "messageId": "relink",
                           "timestamp": at[5]}])
    assert uv(live_server) == 1
    assert [e["merge_id"] for e in history(live_server, "a")] == [1, 2, 3]


def test_unmerge_requests_are_checked(live_server: LiveServer) -> None:
    segment(live_server, [
        {"type": "identify", "userId": "u", "anonymousId": "a1", "messageId": "i1", "timestamp": T0.isoformat()},
        {"type": "identify", "userId": "u", "anonymousId": "a2", "messageId": "i2", "timestamp": T0.isoformat()},
        {"type": "track", "userId": "other", "event": "pv", "messageId": "o1", "timestamp": T0.isoformat()},
    ])

    def error(resp: httpx.Response) -> tuple[int, str, str | None]:
        body = resp.json()["error"]
        return resp.status_code, body["code"], body.get("field")

    assert error(unmerge(live_server, "u")) == (400, "bad_unmerge", "merge")
    assert error(unmerge(live_server, "u", merge=1, distinct_ids=["a1"])) == (400, "bad_unmerge", "merge")
    assert error(unmerge(live_server, "u", merge="one")) == (400, "invalid_field", "merge")
    assert error(unmerge(live_server, "u", merge=1, force=True)) == (400, "unknown_field", "force")
    assert error(unmerge(live_server, "u", merge=99)) == (404, "merge_not_found", "merge")
    assert error(unmerge(live_server, "nobody", merge=1)) == (404, "person_not_found", "id")
    assert error(unmerge(live_server, "other", merge=1)) == (409, "merge_not_in_person", "merge")
    assert error(unmerge(live_server, "u", distinct_ids=["a1", "x"])) == (400, "distinct_id_not_in_person",
                                                                       "distinct_ids[1]")
    assert error(unmerge(live_server, "u", distinct_ids=["a1", "a2", "u"])) == (400, "nothing_to_split",
                                                                             "distinct_ids")
    bad = httpx.post(f"{live_server.url}/api/persons/u/unmerge", content=b"[1]", headers=auth(live_server))
    assert error(bad) == (400, "invalid_body", None)
    assert len(history(live_server, "u")) == 2  # nothing was logged by refused requests

    # split by ids: a2 leaves; the merge that linked it is undone, the other stays
    resp = unmerge(live_server, "u", distinct_ids=["a2"])
    assert resp.status_code == 200, resp.text
    pid = live_server.project.id
    assert resp.json()["split_off"] == {"person_id": md5_person(pid, "a2"), "distinct_ids": ["a2"]}
    assert [(e["merge_id"], e["undone_by"], e["undoes"]) for e in history(live_server, "u")] == [
        (1, None, None), (2, 3, None), (3, None, 2)]
    # an unbind or unmerge entry is not a merge
    assert error(unmerge(live_server, "u", merge=3)) == (400, "not_a_merge", "merge")


# -- undo semantics after later merges (writer on a file) ---------------------------------------------
@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Store, Writer, Project]]:
    store = Store(tmp_path / "audit.duckdb")
    project = store.create_project("audit", "UTC")
    with Writer(store) as writer:
        yield store, writer, project
    store.close()


PROPS = {"a": {"pa": 1, "shared": "a"}, "b": {"pb": 1, "shared": "b"}, "c": {"pc": 1}, "x": {"px": 1},
         "y": {"py": 1}}


def chain(store: Store, writer: Writer, project: Project) -> None:
    """a, b, c, x, y with one event each; then b absorbs a, c absorbs b, a absorbs x, c absorbs y."""
    pid = project.id
    events = [Event(project_id=pid, message_id=f"e-{d}", event="pv", type="track", distinct_id=d,
                    timestamp=T0 + timedelta(minutes=i), received_at=T0) for i, d in enumerate("abcxy")]
    ops = [ProfileOp(project_id=pid, distinct_id=d, op="set", properties=p) for d, p in PROPS.items()]
    writer.write(Payload(events=events, ops=ops))
    for keep, other in (("b", "a"), ("c", "b"), ("a", "x"), ("c", "y")):
        writer.write(Payload(ops=[Merge(project_id=pid, distinct_id=keep, other_id=other)]))


def state(store: Store, project: Project) -> dict[str, tuple[str, dict[str, Any]]]:
    """distinct id -> (person id, person properties)."""
    rows = store.query(
        "SELECT i.distinct_id, i.person_id, p.properties FROM identities i JOIN persons p USING (project_id, person_id) "
        "WHERE i.project_id = ?", [project.id])
    return {r["distinct_id"]: (r["person_id"], json.loads(r["properties"])) for r in rows}


def resolved(store: Store, project: Project) -> dict[str, str]:
    """message id -> person, as every analysis resolves it (``events_sql``)."""
    ctx = Ctx(store, project)
    rows = ctx.fetch(f"SELECT message_id, person_id FROM ({events_sql(ctx, T0, T0 + timedelta(days=1))})")
    return {r["message_id"]: r["person_id"] for r in rows}


def act(store: Store, writer: Writer, project: Project, name: str, **params: Any) -> Any:
    return run_action(name, ActionContext(store, writer, project), params)


def test_chain_built_as_logged(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    chain(store, writer, project)
    pid = project.id
    p = {d: md5_person(pid, d) for d in "abcxy"}
    log = act(store, writer, project, "persons.merges", id="x")["merges"]
    assert [summary(e)[2:] for e in log] == [
        ("b", "a", p["b"], p["a"], ["a"]),
        ("c", "b", p["c"], p["b"], ["a", "b"]),
        ("a", "x", p["c"], p["x"], ["x"]),
        ("c", "y", p["c"], p["y"], ["y"]),
    ]
    assert log[1]["absorbed_properties"] == {"pb": 1, "shared": "b", "pa": 1}
    assert log[2]["surviving_properties"] == {"pc": 1, "pb": 1, "shared": "b", "pa": 1}
    assert set(resolved(store, project).values()) == {p["c"]}


# the state both orders of undoing end in: a and x (linked through a) back on a's person with the
# properties a had plus x's; b alone with its own; c keeps y and only what c and y brought
FINAL = {
    "a": ("a", {"pa": 1, "shared": "a", "px": 1}),
    "x": ("a", {"pa": 1, "shared": "a", "px": 1}),
    "b": ("b", {"pb": 1, "shared": "b"}),
    "c": ("c", {"pc": 1, "py": 1}),
    "y": ("c", {"pc": 1, "py": 1}),
}


def test_undo_first_merge_of_a_chain_then_the_second(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    chain(store, writer, project)
    p = {d: md5_person(project.id, d) for d in "abcxy"}
    out = act(store, writer, project, "persons.unmerge", id="c", merge=1)  # b absorbed a
    # x was linked through a: it leaves with a; b stays linked to c by merge 2
    assert out["split_off"] == {"person_id": p["a"], "distinct_ids": ["a", "x"]}
    assert out["person"] == {"person_id": p["c"], "distinct_ids": ["b", "c", "y"]}
    s = state(store, project)
    assert s["a"] == s["x"] == (p["a"], {"pa": 1, "shared": "a", "px": 1})
    assert s["b"] == s["c"] == s["y"] == (p["c"], {"pc": 1, "pb": 1, "shared": "b", "py": 1})
    assert resolved(store, project) == {"e-a": p["a"], "e-x": p["a"], "e-b": p["c"], "e-c": p["c"], "e-y": p["c"]}

    out = act(store, writer, project, "persons.unmerge", id="c", merge=2)  # c absorbed b (and a, gone now)
    assert out["split_off"] == {"person_id": p["b"], "distinct_ids": ["b"]}
    s = state(store, project)
    assert s == {d: (p[owner], props) for d, (owner, props) in FINAL.items()}
    assert resolved(store, project) == {"e-a": p["a"], "e-x": p["a"], "e-b": p["b"], "e-c": p["c"], "e-y": p["c"]}
    log = act(store, writer, project, "persons.merges", id="b")["merges"]
    assert [(e["merge_id"], e["action"], e["undone_by"], e["undoes"]) for e in log] == [
        (1, "merge", 5, None), (2, "merge", 6, None), (5, "unmerge", None, 1), (6, "unmerge", None, 2)]


def test_undo_second_merge_of_a_chain_then_the_first(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    chain(store, writer, project)
    p = {d: md5_person(project.id, d) for d in "abcxy"}
    out = act(store, writer, project, "persons.unmerge", id="a", merge=2)  # c absorbed b, which held a
    assert out["split_off"] == {"person_id": p["b"], "distinct_ids": ["a", "b", "x"]}
    assert out["person"] == {"person_id": p["c"], "distinct_ids": ["c", "y"]}
    s = state(store, project)
    assert s["a"] == s["b"] == s["x"] == (p["b"], {"pb": 1, "shared": "b", "pa": 1, "px": 1})
    assert s["c"] == s["y"] == (p["c"], {"pc": 1, "py": 1})
    out = act(store, writer, project, "persons.unmerge", id="b", merge=1)
    assert out["split_off"] == {"person_id": p["a"], "distinct_ids": ["a", "x"]}
    assert state(store, project) == {d: (p[owner], props) for d, (owner, props) in FINAL.items()}
    assert resolved(store, project) == {"e-a": p["a"], "e-x": p["a"], "e-b": p["b"], "e-c": p["c"], "e-y": p["c"]}


def test_merges_in_one_batch_are_logged_in_order(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    pid = project.id
    p = {d: md5_person(pid, d) for d in ("u", "a1", "a2", "phone")}
    writer.write(Payload(ops=[
        Merge(project_id=pid, distinct_id="u", other_id="a1", kind="identify", message_id="m1"),
        Merge(project_id=pid, distinct_id="u", other_id="a2", kind="identify", message_id="m2"),
        Merge(project_id=pid, distinct_id="u", other_id="a1", kind="identify", message_id="m3"),  # already one
        Merge(project_id=pid, distinct_id="phone", other_id="u", kind="bind", message_id="m4"),
    ]))
    log = act(store, writer, project, "persons.merges", id="phone")["merges"]
    assert [(e["merge_id"], e["message_id"], *summary(e)[1:]) for e in log] == [
        (1, "m1", "identify", "u", "a1", p["u"], p["a1"], ["a1"]),
        (2, "m2", "identify", "u", "a2", p["u"], p["a2"], ["a2"]),
        (3, "m4", "bind", "phone", "u", p["phone"], p["u"], ["a1", "a2", "u"]),
    ]
    # the cli: history, then undo of the bind, on the file (no server)
    writer.stop()
    store.close()
    from userloop.cli import app

    db = str(Path(store.path))
    runner = CliRunner()
    res = runner.invoke(app, ["persons", "merges", "u", "--project", str(pid), "--db", db])
    assert res.exit_code == 0, res.output
    assert [e["merge_id"] for e in json.loads(res.stdout)["merges"]] == [1, 2, 3]
    res = runner.invoke(app, ["persons", "unmerge", "u", "--project", str(pid), "--db", db, "--merge", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["split_off"] == {"person_id": p["u"], "distinct_ids": ["a1", "a2", "u"]}
    assert out["person"] == {"person_id": p["phone"], "distinct_ids": ["phone"]}
    res = runner.invoke(app, ["persons", "unmerge", "u", "--project", str(pid), "--db", db, "--merge", "3"])
    assert res.exit_code == 1 and "merge_not_found" not in res.output and "merge_already_undone" in res.output


def test_unmerge_needs_a_writer(world: tuple[Store, Writer, Project]) -> None:
    store, writer, project = world
    writer.write(Payload(ops=[Merge(project_id=project.id, distinct_id="u", other_id="a")]))
    with pytest.raises(UserloopError) as exc:
        run_action("persons.unmerge", ActionContext(store, None, project), {"id": "u", "merge": 1})
    assert exc.value.code == "no_writer"
    assert len(act(store, writer, project, "persons.merges", id="u")["merges"]) == 1


def test_split_off_the_surviving_side(world: tuple[Store, Writer, Project]) -> None:
    """Splitting off the id that survived a merge: it gets a new person with its own snapshot; the id
    that stays keeps the person, and the values the leaving id had won go back to the stayer's."""
    store, writer, project = world
    pid = project.id
    writer.write(Payload(ops=[
        ProfileOp(project_id=pid, distinct_id="k", op="set", properties={"pk": 1, "s": "k"}),
        ProfileOp(project_id=pid, distinct_id="g", op="set", properties={"pg": 1, "s": "g"}),
    ]))
    writer.write(Payload(ops=[Merge(project_id=pid, distinct_id="k", other_id="g")]))
    writer.write(Payload(ops=[ProfileOp(project_id=pid, distinct_id="g", op="set", properties={"later": True})]))
    k = md5_person(pid, "k")
    assert state(store, project)["g"] == (k, {"pg": 1, "s": "k", "pk": 1, "later": True})
    out = act(store, writer, project, "persons.unmerge", id="g", distinct_ids=["k"])
    new = out["split_off"]["person_id"]
    assert len(new) == 32 and new not in (k, md5_person(pid, "g"))  # no merge absorbed k: a new person
    assert out["split_off"]["distinct_ids"] == ["k"] and out["person"] == {"person_id": k, "distinct_ids": ["g"]}
    s = state(store, project)
    assert s["k"] == (new, {"pk": 1, "s": "k"})
    assert s["g"] == (k, {"pg": 1, "s": "g", "later": True})  # set after the merge: kept by the person
    log = act(store, writer, project, "persons.merges", id="g")["merges"]
    assert [(e["action"], e["undone_by"], e["undoes"]) for e in log] == [("merge", 2, None), ("unmerge", None, 1)]
