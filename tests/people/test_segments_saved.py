"""Saved segments: dynamic vs static after new events, membership history, references between
segments (inline, snapshot, cycles), atomic saves, the schedule, CSV/Parquet export read back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pandas as pd
import pytest

from tests.people.test_segments import AS_OF, PROFILES, Data, build
from userloop.actions import run_action
from userloop.errors import UserloopError
from userloop.ingest.event import ProfileOp
from userloop.people.segments.model import Preview, decode
from userloop.schedule import Scheduler, set_current

T1 = AS_OF + timedelta(days=1)
T2 = AS_OF + timedelta(days=2)
BJ = {"kind": "person", "property": "city", "operator": "=", "value": "Beijing"}
BOUGHT7 = {"kind": "event", "event": "purchase", "last_days": 7}
BJ_BUYERS = {"and": [BJ, BOUGHT7]}


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Data]:
    yield from build(tmp_path)


def call(d: Data, op: str, **params: Any) -> Any:
    return run_action(f"segments.{op}", d.ctx, params)


def create(d: Data, name: str, rule: dict[str, Any], at: datetime = AS_OF, **more: Any) -> dict[str, Any]:
    return call(d, "create", name=name, rule=rule, as_of=at.isoformat(), **more)  # type: ignore[no-any-return]


def members(d: Data, name: str) -> set[str]:
    rows = d.store.query(
        "SELECT person_id FROM segment_members WHERE project_id = ? AND segment = ?", [d.ctx.project.id, name]
    )
    return {r["person_id"] for r in rows}


def history(d: Data, name: str) -> set[tuple[str, datetime, datetime | None]]:
    rows = call(d, "history", name=name)["history"]
    return {(r["person_id"], r["entered_at"], r["left_at"]) for r in rows}


def same(stored: Any, rule: dict[str, Any]) -> bool:
    """A stored rule (a Struct) is ``rule`` as written (defaults filled in)."""
    return bool(msgspec.to_builtins(stored) == msgspec.to_builtins(decode({"rule": rule}, Preview).rule))


def error(fn: Any, *args: Any, **kwargs: Any) -> UserloopError:
    with pytest.raises(UserloopError) as exc:
        fn(*args, **kwargs)
    return exc.value


def test_dynamic_and_static_after_new_events(data: Data) -> None:
    """At AS_OF the Beijing buyers of the last 7 days are u2, u3, u10. A day later u2's purchase
    (local midnight 7 days back) has left the window and u5 buys: a dynamic segment follows on its
    next compute, a static one keeps its snapshot until refreshed."""
    made = create(data, "bj-buyers", BJ_BUYERS)
    assert (made["type"], made["member_count"], made["entered"], made["left"]) == ("dynamic", 3, 3, 0)
    create(data, "bj-snapshot", BJ_BUYERS, type="static")
    first = data.of("u2", "u3", "u10")
    assert members(data, "bj-buyers") == members(data, "bj-snapshot") == first

    data.world.add(
        [{"distinct_id": "u5", "event": "purchase", "ts": "2024-06-15T06:00", "properties": {"price": 1}}]
    )
    now = data.of("u3", "u5", "u10")

    r = call(data, "compute", name="bj-buyers", as_of=T1.isoformat())
    assert (r["members"], r["entered"], r["left"]) == (3, 1, 1)
    assert members(data, "bj-buyers") == now
    assert members(data, "bj-snapshot") == first  # static: unchanged by new events
    assert call(data, "get", name="bj-snapshot")["member_count"] == 3

    u2, u5 = data.person["u2"], data.person["u5"]
    assert history(data, "bj-buyers") == {
        (u2, AS_OF, T1),
        (u5, T1, None),
        (data.person["u3"], AS_OF, None),
        (data.person["u10"], AS_OF, None),
    }
    r = call(data, "compute", name="bj-snapshot", as_of=T1.isoformat())  # explicit refresh
    assert (r["entered"], r["left"]) == (1, 1) and members(data, "bj-snapshot") == now


def test_history_leave_and_come_back(data: Data) -> None:
    rule = {"kind": "tag", "tag": "level", "operator": "=", "value": "gold"}
    create(data, "gold", rule)
    u4, u7 = data.person["u4"], data.person["u7"]
    cur = data.store.cursor()
    cur.execute("UPDATE tag_values SET value = 'silver' WHERE tag = 'level' AND person_id = ?", [u7])
    cur.execute("UPDATE tag_values SET value = 'gold' WHERE tag = 'level' AND person_id = ?", [u4])
    assert (call(data, "compute", name="gold", as_of=T1.isoformat())["entered"]) == 1
    cur.execute("UPDATE tag_values SET value = 'gold' WHERE tag = 'level' AND person_id = ?", [u7])
    r = call(data, "compute", name="gold", as_of=T2.isoformat())
    assert (r["members"], r["entered"], r["left"]) == (3, 1, 0)
    assert history(data, "gold") == {
        (data.person["u1"], AS_OF, None),
        (u7, AS_OF, T1),
        (u4, T1, None),
        (u7, T2, None),
    }
    assert call(data, "history", name="gold", person_id=u7)["history"] == [
        {"person_id": u7, "entered_at": T2, "left_at": None},
        {"person_id": u7, "entered_at": AS_OF, "left_at": T1},
    ]
    # a compute without changes writes no history
    assert call(data, "compute", name="gold", as_of=(T2 + timedelta(hours=1)).isoformat())["entered"] == 0
    assert len(history(data, "gold")) == 4
    # u7 leaves again: only the open stay is closed
    cur.execute("DELETE FROM tag_values WHERE tag = 'level' AND person_id = ?", [u7])
    t3 = T2 + timedelta(days=1)
    assert call(data, "compute", name="gold", as_of=t3.isoformat())["left"] == 1
    assert {(e, left) for p, e, left in history(data, "gold") if p == u7} == {(AS_OF, T1), (T2, t3)}


def test_in_segment_inlines_dynamic_and_reads_static_members(data: Data) -> None:
    create(data, "bj", BJ)
    create(data, "buyers-then", BOUGHT7, type="static")
    both = {"and": [{"kind": "segment", "segment": "bj"}, {"kind": "segment", "segment": "buyers-then"}]}
    assert data.members(both) == data.of("u2", "u3", "u10")
    # u2 moves to Shanghai: the dynamic segment's rule sees it at once; the static one keeps u9
    data.world.add(
        [],
        ops=[
            ProfileOp(
                project_id=data.ctx.project.id, distinct_id="u2", op="set", properties={"city": "Shanghai"}
            )
        ],
    )
    assert data.members(both) == data.of("u3", "u10")
    assert data.members({"kind": "segment", "segment": "buyers-then"}) == data.of("u2", "u3", "u9", "u10")
    nested = {
        "or": [
            {"kind": "segment", "segment": "bj"},
            {"kind": "person", "property": "city", "value": "Nanjing"},
        ]
    }
    create(data, "bj-or-nanjing", nested)
    inner = {
        "and": [
            {"kind": "segment", "segment": "bj-or-nanjing"},
            {"not": {"kind": "segment", "segment": "bj"}},
        ]
    }
    for strategy in ("columns", "sets"):
        assert data.members(inner, strategy) == data.of("f3")


def test_cycles_are_rejected(data: Data) -> None:
    create(data, "a", BJ)
    create(data, "b", {"and": [{"kind": "segment", "segment": "a"}, BOUGHT7]})
    e = error(call, data, "update", name="a", rule={"or": [BJ, {"kind": "segment", "segment": "b"}]})
    assert (e.code, e.field, e.status) == ("segment_cycle", "rule.or[1].segment", 400)
    assert "a -> b -> a" in e.message
    assert same(call(data, "get", name="a")["rule"], BJ)  # unchanged
    e = error(create, data, "c", {"not": {"kind": "segment", "segment": "c"}})
    assert (e.code, e.field) == ("segment_cycle", "rule.not.segment")
    assert call(data, "list")["segments"][-1]["name"] == "b"


def test_delete_refused_while_used(data: Data) -> None:
    create(data, "a", BJ)
    create(data, "b", {"kind": "segment", "segment": "a"})
    e = error(call, data, "delete", name="a")
    assert (e.code, e.status) == ("segment_in_use", 409) and "b" in e.message
    assert call(data, "delete", name="b") == {"deleted": "b"}
    assert call(data, "delete", name="a") == {"deleted": "a"}
    for table in ("segments", "segment_members", "segment_history"):
        assert data.store.query(f"SELECT count(*) AS n FROM {table}")[0]["n"] == 0
    assert error(call, data, "get", name="a").status == 404


def test_nothing_half_saved(data: Data) -> None:
    """A failure inside the transaction (a history row in the way: the members' insert violates
    the key) leaves neither the definition nor members; invalid input is refused before."""
    pid, u1 = data.ctx.project.id, data.person["u1"]
    cur = data.store.cursor()
    cur.execute("INSERT INTO segment_history VALUES (?, 'broken', ?, ?, NULL)", [pid, u1, AS_OF])
    with pytest.raises(duckdb.ConstraintException):
        create(data, "broken", BJ)
    assert data.store.query("SELECT count(*) AS n FROM segments")[0]["n"] == 0
    assert data.store.query("SELECT count(*) AS n FROM segment_members")[0]["n"] == 0
    cur.execute("DELETE FROM segment_history")
    bad_regex = {"kind": "person", "property": "city", "operator": "regex", "value": "("}
    assert (error(create, data, "broken", bad_regex).field) == "rule.value"
    e = error(create, data, "broken", {"and": [BJ, {"kind": "event", "event": "visit", "times": "x"}]})
    assert (e.code, e.field) == ("invalid_field", "rule.and[1].times")
    e = error(create, data, "Bad Name", BJ)
    assert (e.code, e.field) == ("bad_name", "name")
    for table in ("segments", "segment_members", "segment_history"):
        assert data.store.query(f"SELECT count(*) AS n FROM {table}")[0]["n"] == 0
    create(data, "ok", BJ)
    cur.execute("INSERT INTO segment_history VALUES (?, 'ok', ?, ?, NULL)", [pid, data.person["u4"], T1])
    with pytest.raises(duckdb.ConstraintException):  # u4 would enter at T1
        call(
            data,
            "update",
            name="ok",
            rule={"kind": "person", "property": "age", "operator": ">", "value": 0},
            as_of=T1.isoformat(),
        )
    assert same(call(data, "get", name="ok")["rule"], BJ) and len(members(data, "ok")) == 8
    e = error(create, data, "ok", BJ)
    assert (e.code, e.status) == ("segment_exists", 409)


def test_update(data: Data) -> None:
    create(data, "s", BJ, description="old")
    r = call(data, "update", name="s", description="new", as_of=T1.isoformat())
    assert (r["description"], r["entered"], r["left"], r["computed_at"]) == (
        "new",
        0,
        0,
        AS_OF,
    )  # not recomputed
    r = call(data, "update", name="s", rule=BJ_BUYERS, as_of=T1.isoformat())  # 7 days from 06-10
    assert (r["member_count"], r["entered"], r["left"], r["computed_at"]) == (2, 0, 6, T1)
    assert members(data, "s") == data.of("u3", "u10")
    assert error(call, data, "update", name="s", name2=1).field == "name2"
    assert error(call, data, "update", name="s", type="static", schedule="interval:60").code == "bad_schedule"
    assert error(call, data, "update", name="nope", description="x").status == 404


def test_schedule(data: Data) -> None:
    e = error(create, data, "s", BJ, schedule="every:5")
    assert (e.code, e.field) == ("invalid_schedule", "schedule")
    e = error(create, data, "s", BJ, schedule="interval:60", type="static")
    assert (e.code, e.field) == ("bad_schedule", "schedule")
    sched = Scheduler(data.store, data.writer)
    sched.start()
    set_current(sched)
    try:
        create(data, "every-second", BJ, schedule="interval:1")
        create(data, "manual", BJ)
        pid = data.ctx.project.id
        assert sched.job_ids() == [f"segment:{pid}:every-second"]
        deadline = time.monotonic() + 10
        while call(data, "get", name="every-second")["computed_at"] == AS_OF:  # the job computes "now"
            assert time.monotonic() < deadline, "the scheduled compute did not run"
            time.sleep(0.1)
        assert call(data, "get", name="manual")["computed_at"] == AS_OF
        call(data, "update", name="every-second", schedule=None)
        assert sched.job_ids() == []
    finally:
        set_current(None)
        sched.stop()


def test_members_pages(data: Data) -> None:
    create(data, "bj", BJ)
    everyone = sorted(data.of(*[d for d, p in PROFILES.items() if p.get("city") == "Beijing"]))
    page = call(data, "members", name="bj", limit=3, offset=2)
    assert (page["count"], [m["person_id"] for m in page["members"]]) == (8, everyone[2:5])
    assert {m["entered_at"] for m in page["members"]} == {AS_OF}
    assert error(call, data, "members", name="bj", limit=-1).field == "limit"


def test_export_csv_and_parquet(data: Data, tmp_path: Path) -> None:
    create(data, "bj-buyers", BJ_BUYERS)
    rows = []
    for d in sorted(("u2", "u3", "u10"), key=lambda d: data.person[d]):
        ids = sorted(i for i, p in data.person.items() if p == data.person[d])
        age = PROFILES[d].get("age")
        rows.append(
            (
                data.person[d],
                ",".join(ids),
                PROFILES[d]["city"],
                None if age is None else str(age),
                PROFILES[d].get("gender"),
            )
        )
    assert [r[1] for r in rows].count("a10,u10") == 1
    csv = tmp_path / "m.csv"
    r = call(
        data,
        "export",
        name="bj-buyers",
        path=str(csv),
        format="csv",
        properties="city,age,gender",
        distinct_ids=True,
    )
    assert (r["rows"], r["columns"]) == (3, ["person_id", "distinct_ids", "city", "age", "gender"])
    got = pd.read_csv(csv, dtype=object, keep_default_na=False)
    assert list(got.columns) == r["columns"]
    assert [tuple(x or None for x in row) for row in got.itertuples(index=False, name=None)] == rows
    pq = tmp_path / "m.parquet"
    call(
        data,
        "export",
        name="bj-buyers",
        path=str(pq),
        format="parquet",
        properties=["city", "age"],
        distinct_ids=True,
    )
    back = duckdb.sql(f"SELECT * FROM read_parquet('{pq}')")
    assert back.columns == ["person_id", "distinct_ids", "city", "age"]
    assert back.fetchall() == [(p, ids.split(","), city, age) for p, ids, city, age, _ in rows]
    assert error(call, data, "export", name="bj-buyers", path=str(pq), format="xlsx").code == "bad_format"
    assert (
        error(call, data, "export", name="bj-buyers", path=str(pq), properties="city,city").field
        == "properties"
    )
