"""``persons.list`` (the console's user list) on hand-built persons: search, filters, segment, pages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.ingest.event import Event, Merge, Payload, ProfileOp
from userloop.store.duckdb import Project, Store
from userloop.store.writer import Writer

T0 = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
PROFILES = {
    "user": {"city": "Beijing", "name": "Li Lei"},
    "bob": {"city": "Shanghai", "age": 30},
    "chen": {"city": "Beijing", "age": 41, "note": "VIP customer"},
    "dana": {},
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ActionContext, Store, Project]]:
    store = Store(tmp_path / "list.duckdb")
    project = store.create_project("shop", "UTC")
    other = store.create_project("elsewhere", "UTC")
    with Writer(store) as writer:
        order = ["anon", "user", "bob", "chen", "dana"]
        events = [Event(project_id=project.id, message_id=f"m{i}", event="$pageview", type="page", distinct_id=d,
                        timestamp=T0 + i * H, received_at=T0 + i * H, properties="{}")
                  for i, d in enumerate(order)]  # fmt: skip
        events.append(Event(project_id=other.id, message_id="x", event="$pageview", type="page", distinct_id="eve",
                            timestamp=T0, received_at=T0, properties="{}"))  # fmt: skip
        ops: list[Any] = [ProfileOp(project_id=project.id, distinct_id=d, op="set", properties=p)
                          for d, p in PROFILES.items() if p]  # fmt: skip
        ops.append(ProfileOp(project_id=other.id, distinct_id="eve", op="set", properties={"city": "Beijing"}))
        writer.write(Payload(events=events, ops=ops))
        writer.write(Payload(ops=[Merge(project_id=project.id, distinct_id="user", other_id="anon", kind="identify")]))
        yield ActionContext(store, writer, project), store, project
    store.close()


def call(ctx: ActionContext, **params: Any) -> dict[str, Any]:
    return json.loads(json.dumps(run_action("persons.list", ctx, params)))  # type: ignore[no-any-return]


def person(store: Store, project: Project, did: str) -> str:
    return str(store.query("SELECT person_id FROM identities WHERE project_id = ? AND distinct_id = ?",
                           [project.id, did])[0]["person_id"])  # fmt: skip


def ids(result: dict[str, Any]) -> list[str]:
    return [r["person_id"] for r in result["results"]]


def test_all_persons_newest_first_with_their_ids(world: tuple[ActionContext, Store, Project]) -> None:
    ctx, store, project = world
    rows = pd.DataFrame(store.query("SELECT person_id, created_at FROM persons WHERE project_id = ?", [project.id]))
    expected = rows.sort_values(["created_at", "person_id"], ascending=[False, True])["person_id"].tolist()
    got = call(ctx)
    assert got["total"] == 4 == len(expected)  # anon and user are one person; eve is another project's
    assert ids(got) == expected
    merged = next(r for r in got["results"] if r["person_id"] == person(store, project, "user"))
    assert merged["distinct_ids"] == ["anon", "user"] and merged["properties"]["city"] == "Beijing"


def test_search_filters_segment_and_pages(world: tuple[ActionContext, Store, Project]) -> None:
    ctx, store, project = world
    p = {d: person(store, project, d) for d in ("user", "bob", "chen", "dana")}
    assert ids(call(ctx, search="ANON")) == [p["user"]]  # a distinct id, any case
    assert ids(call(ctx, search=p["bob"])) == [p["bob"]]  # a person id
    assert ids(call(ctx, search="vip")) == [p["chen"]]  # property text
    beijing = call(ctx, filters=[{"property": "city", "operator": "=", "value": "Beijing"}])
    assert sorted(ids(beijing)) == sorted([p["user"], p["chen"]]) and beijing["total"] == 2
    assert ids(call(ctx, filters=[{"property": "age", "operator": ">", "value": 35}])) == [p["chen"]]
    not_beijing = call(ctx, filters=[{"property": "city", "operator": "!=", "value": "Beijing"}])
    assert sorted(ids(not_beijing)) == sorted([p["bob"], p["dana"]])  # no city counts as not Beijing
    both = call(ctx, search="li lei", filters=[{"property": "city", "value": "Beijing"}])
    assert ids(both) == [p["user"]]
    run_action("segments.create", ctx, {"name": "over-35", "type": "static",
                                        "rule": {"kind": "person", "property": "age", "operator": ">", "value": 35}})  # fmt: skip
    assert ids(call(ctx, segment="over-35")) == [p["chen"]]
    everyone = ids(call(ctx))
    second = call(ctx, limit=2, offset=1)
    assert ids(second) == everyone[1:3] and second["total"] == 4
    past = call(ctx, limit=2, offset=10)
    assert (past["total"], past["results"]) == (4, [])


@pytest.mark.parametrize("params, code, field", [
    ({"limit": 0}, "bad_parameter", "limit"),
    ({"offset": -1}, "bad_parameter", "offset"),
    ({"colour": "red"}, "unknown_field", "colour"),
    ({"filters": [{"property": "city", "operator": "in", "value": "Beijing"}]}, "bad_filter", "filters[0].value"),
    ({"segment": "nope"}, "unknown_segment", "segment"),
])  # fmt: skip
def test_bad_requests_name_the_field(world: tuple[ActionContext, Store, Project], params: dict[str, Any],
                                     code: str, field: str) -> None:  # fmt: skip
    ctx, _, _ = world
    with pytest.raises(UserloopError) as exc:
        call(ctx, **params)
    assert (exc.value.code, exc.value.field) == (code, field)
