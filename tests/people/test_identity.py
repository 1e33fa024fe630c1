"""Identity merges and profile operations, through the writer on a real DuckDB file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from userloop.ingest.event import Event, Merge, Payload, ProfileOp, Unbind
from userloop.store.duckdb import Store
from userloop.store.writer import Writer

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Store, Writer, int]]:
    s = Store(tmp_path / "id.duckdb")
    p = s.create_project("p", "UTC")
    with Writer(s) as w:
        yield s, w, p.id
    s.close()


def ev(pid: int, mid: str, did: str) -> Event:
    return Event(project_id=pid, message_id=mid, event="pv", type="track", distinct_id=did, timestamp=NOW, received_at=NOW)


def person_map(s: Store, pid: int) -> dict[str, str]:
    rows = s.query("SELECT distinct_id, person_id FROM identities WHERE project_id = ?", [pid])
    return {r["distinct_id"]: r["person_id"] for r in rows}


def props(s: Store, pid: int, did: str) -> dict:
    rows = s.query(
        "SELECT p.properties FROM identities i JOIN persons p USING (project_id, person_id) "
        "WHERE i.project_id = ? AND i.distinct_id = ?",
        [pid, did],
    )
    return json.loads(rows[0]["properties"])


def test_merge_two_existing_persons_keeps_identified_values(store: tuple[Store, Writer, int]) -> None:
    s, w, pid = store
    w.write(Payload(events=[ev(pid, "1", "anon"), ev(pid, "2", "user")], ops=[
        ProfileOp(project_id=pid, distinct_id="anon", op="set", properties={"city": "Shanghai", "src": "weibo"}),
        ProfileOp(project_id=pid, distinct_id="user", op="set", properties={"city": "Beijing"}),
    ]))
    ids = person_map(s, pid)
    assert ids["anon"] != ids["user"]
    w.write(Payload(ops=[Merge(project_id=pid, distinct_id="user", other_id="anon")]))
    ids2 = person_map(s, pid)
    assert ids2 == {"anon": ids["user"], "user": ids["user"]}
    assert props(s, pid, "anon") == {"city": "Beijing", "src": "weibo"}
    assert s.query("SELECT count(*) AS n FROM persons WHERE project_id = ?", [pid]) == [{"n": 1}]


def test_operations_in_one_batch_apply_in_arrival_order(store: tuple[Store, Writer, int]) -> None:
    """Profile operations and merges are applied in bulk, but a merge never overtakes an earlier
    operation on one of its persons (by its own id or one merged in the same batch)."""
    s, w, pid = store
    w.write(Payload(events=[ev(pid, "0", "user"), ev(pid, "5", "d")],
                    ops=[ProfileOp(project_id=pid, distinct_id="user", op="set", properties={"city": "Beijing"}),
                         ProfileOp(project_id=pid, distinct_id="d", op="set", properties={"tier": "bronze"})]))
    w.write(Payload(events=[ev(pid, "1", "anon"), ev(pid, "2", "b"), ev(pid, "3", "c")], ops=[
        # before the identify: the anonymous person's own value, which the identified one's wins over
        ProfileOp(project_id=pid, distinct_id="anon", op="set", properties={"city": "Hangzhou", "src": "weibo"}),
        Merge(project_id=pid, distinct_id="user", other_id="anon", kind="identify"),
        # after the identify: a set through either id changes the merged person
        ProfileOp(project_id=pid, distinct_id="anon", op="set", properties={"plan": "pro"}),
        # c joins b, then an operation on c, then b joins d: the operation lands before that merge,
        # so d's own value wins the merge
        Merge(project_id=pid, distinct_id="b", other_id="c"),
        ProfileOp(project_id=pid, distinct_id="c", op="set", properties={"tier": "gold"}),
        Merge(project_id=pid, distinct_id="d", other_id="b"),
        ProfileOp(project_id=pid, distinct_id="d", op="set_once", properties={"tier": "silver", "n": 1}),
    ]))
    assert props(s, pid, "anon") == {"city": "Beijing", "src": "weibo", "plan": "pro"}
    assert props(s, pid, "c") == props(s, pid, "d") == {"tier": "bronze", "n": 1}
    ids = person_map(s, pid)
    assert ids["anon"] == ids["user"] and ids["b"] == ids["c"] == ids["d"] != ids["user"]
    # the identify's undo snapshot holds what the anonymous person had at that moment
    log = s.query("SELECT absorbed_properties FROM merge_log WHERE project_id = ? AND kind = 'identify'", [pid])
    assert [json.loads(r["absorbed_properties"]) for r in log] == [{"city": "Hangzhou", "src": "weibo"}]


def test_merge_chain_and_unbind(store: tuple[Store, Writer, int]) -> None:
    s, w, pid = store
    w.write(Payload(ops=[
        Merge(project_id=pid, distinct_id="login", other_id="cookie1"),
        Merge(project_id=pid, distinct_id="login", other_id="cookie2"),
        Merge(project_id=pid, distinct_id="phone", other_id="login"),
    ]))
    ids = person_map(s, pid)
    assert len(set(ids.values())) == 1 and set(ids) == {"login", "cookie1", "cookie2", "phone"}
    w.write(Payload(ops=[Unbind(project_id=pid, distinct_id="cookie2")]))
    ids2 = person_map(s, pid)
    assert ids2["cookie2"] != ids2["login"]
    assert {ids2[k] for k in ("login", "cookie1", "phone")} == {ids["login"]}


def test_profile_operations_in_order(store: tuple[Store, Writer, int]) -> None:
    s, w, pid = store
    op = lambda kind, p: ProfileOp(project_id=pid, distinct_id="u", op=kind, properties=p)  # noqa: E731
    w.write(Payload(ops=[
        op("set", {"name": "Li", "level": 1, "tags": "a"}),
        op("set_once", {"name": "Wang", "first_channel": "douyin"}),
        op("increment", {"level": 2, "spent": 9.5}),
        op("increment", {"spent": 0.5}),
        op("append", {"tags": ["b", "c"], "courses": "c1"}),
        op("unset", {"name": None}),
    ]))
    assert props(s, pid, "u") == {
        "level": 3, "tags": ["a", "b", "c"], "first_channel": "douyin", "spent": 10.0, "courses": ["c1"]
    }
    w.write(Payload(ops=[op("set_once", {"first_channel": "wechat"}), op("set", {"level": 7})]))
    assert props(s, pid, "u")["first_channel"] == "douyin"
    assert props(s, pid, "u")["level"] == 7


def test_profile_delete_with_events(store: tuple[Store, Writer, int]) -> None:
    s, w, pid = store
    w.write(Payload(events=[ev(pid, "a", "d1"), ev(pid, "b", "d2"), ev(pid, "c", "other")],
                    ops=[Merge(project_id=pid, distinct_id="d1", other_id="d2")]))
    w.write(Payload(ops=[ProfileOp(project_id=pid, distinct_id="d2", op="delete", delete_events=True)]))
    assert s.query("SELECT message_id FROM events ORDER BY 1") == [{"message_id": "c"}]
    assert set(person_map(s, pid)) == {"other"}


def test_duplicate_message_ids_in_one_batch_and_across_batches(store: tuple[Store, Writer, int]) -> None:
    s, w, pid = store
    assert w.write(Payload(events=[ev(pid, "x", "u"), ev(pid, "x", "u"), ev(pid, "y", "u")])).stored == 2
    assert w.write(Payload(events=[ev(pid, "x", "u"), ev(pid, "z", "u")])).stored == 1
    assert s.query("SELECT message_id FROM events ORDER BY 1") == [
        {"message_id": "x"}, {"message_id": "y"}, {"message_id": "z"}
    ]


def test_repeated_merge_and_unbind_of_a_lone_id_are_no_ops(store: tuple[Store, Writer, int]) -> None:
    s, w, pid = store
    merge = Merge(project_id=pid, distinct_id="login", other_id="device")
    w.write(Payload(ops=[merge]))
    before = person_map(s, pid)
    w.write(Payload(events=[ev(pid, "e1", "login")], ops=[merge]))
    w.write(Payload(ops=[merge, Unbind(project_id=pid, distinct_id="solo")]))
    w.write(Payload(events=[ev(pid, "e2", "solo")]))
    w.write(Payload(ops=[Unbind(project_id=pid, distinct_id="solo")]))
    after = person_map(s, pid)
    assert {k: after[k] for k in before} == before
    assert s.query("SELECT count(*) AS n FROM events") == [{"n": 2}]


def test_overrides_make_stored_person_ids_current(store: tuple[Store, Writer, int]) -> None:
    """coalesce(person_overrides, events.person_id) equals the identities join for every event."""
    s, w, pid = store
    w.write(Payload(events=[ev(pid, "1", "a"), ev(pid, "2", "b"), ev(pid, "3", "c"), ev(pid, "4", "d")]))
    w.write(Payload(ops=[Merge(project_id=pid, distinct_id="b", other_id="a")]))
    w.write(Payload(events=[ev(pid, "5", "a")], ops=[Merge(project_id=pid, distinct_id="c", other_id="b")]))
    w.write(Payload(ops=[Unbind(project_id=pid, distinct_id="a")]))
    rows = s.query(
        """SELECT e.message_id, coalesce(o.person_id, e.person_id) AS fast, i.person_id AS exact
           FROM events e
           LEFT JOIN person_overrides o USING (project_id, distinct_id)
           JOIN identities i USING (project_id, distinct_id) ORDER BY 1"""
    )
    assert [r["fast"] for r in rows] == [r["exact"] for r in rows]
    by_mid = {r["message_id"]: r["exact"] for r in rows}
    assert by_mid["2"] == by_mid["3"] != by_mid["1"] == by_mid["5"]
    assert by_mid["4"] not in (by_mid["1"], by_mid["2"])
