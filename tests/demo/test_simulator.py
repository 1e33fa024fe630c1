"""The demo data set: deterministic, well-formed, plausible, and loaded into a real store."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from userloop.backend import LocalBackend
from userloop.demo import load_demo, simulate, window
from userloop.ingest.event import ItemOp, Merge, Op, ProfileOp
from userloop.store.writer import EVENTS_SCHEMA

USERS, DAYS, SEED, END = 300, 30, 7, date(2026, 3, 15)
CHANNELS = {"wechat", "wechat_miniprogram", "weibo", "douyin", "bilibili", "search", "paid_search", "direct"}
LIBS = {"js", "iOS", "Android", "MiniProgram"}


def generate(**kw: Any) -> tuple[list[pa.Table], list[Op]]:
    args = {"users": USERS, "days": DAYS, "seed": SEED, "end": END, **kw}
    chunks = list(simulate(1, **args))
    return [t for t, _ in chunks], [op for _, ops in chunks for op in ops]


@pytest.fixture(scope="module")
def generated() -> tuple[pa.Table, list[Op]]:
    tables, ops = generate()
    return pa.concat_tables(tables), ops


@pytest.fixture(scope="module")
def frame(generated: tuple[pa.Table, list[Op]]) -> pd.DataFrame:
    """Events with a ``person`` column: anonymous ids resolved to the user id seen with them."""
    df = generated[0].to_pandas()
    link = df.dropna(subset=["user_id"]).groupby("anonymous_id")["user_id"].first()
    anonymous = df.user_id.isna() & df.anonymous_id.notna()
    df["person"] = df.distinct_id
    df.loc[anonymous, "person"] = (
        df.loc[anonymous, "anonymous_id"].map(link).fillna(df.loc[anonymous, "distinct_id"])
    )
    return df


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same data set loaded in small chunks (so merges cross chunk boundaries)."""
    path = tmp_path_factory.mktemp("demo") / "x.duckdb"
    backend = LocalBackend(path)
    seen: list[int] = []
    result = load_demo(
        backend, users=USERS, days=DAYS, seed=SEED, end=END, progress=seen.append, chunk_size=2000
    )
    yield backend, result, seen
    backend.close()


def test_deterministic() -> None:
    tables_a, ops_a = generate()
    tables_b, ops_b = generate()
    assert len(tables_a) == len(tables_b)
    assert all(a.equals(b) for a, b in zip(tables_a, tables_b, strict=True))
    assert ops_a == ops_b
    other, _ = generate(seed=SEED + 1)
    assert not pa.concat_tables(other).equals(pa.concat_tables(tables_a))


def test_chunking_does_not_change_the_data(generated: tuple[pa.Table, list[Op]]) -> None:
    tables, ops = generate(chunk_size=1000)
    assert len(tables) > 1 and all(t.num_rows == 1000 for t in tables[:-1])
    assert pa.concat_tables(tables).equals(generated[0])
    assert ops == generated[1]


def test_schema_and_columns(generated: tuple[pa.Table, list[Op]], frame: pd.DataFrame) -> None:
    table, _ = generated
    assert table.schema.equals(EVENTS_SCHEMA)
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.column("message_id").null_count == 0 and frame.message_id.is_unique
    assert frame.message_id.str.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    ).all()
    assert (frame.source == "demo").all() and (frame.project_id == 1).all()
    assert set(frame.type) == {"track", "page", "screen", "identify"}
    assert (frame.received_at == frame.timestamp).all()
    assert frame.timestamp.is_monotonic_increasing
    for props in frame.properties:
        assert isinstance(json.loads(props), dict)
    pages = frame[frame.event == "$pageview"]
    assert pages.path.notna().all() and pages[pages.lib == "js"].url.str.startswith("https://").all()
    assert (frame[frame.event == "$screen"].lib.isin(["iOS", "Android"])).all()
    assert frame[frame.lib.isin(["iOS", "Android", "MiniProgram"])].app_version.notna().all()
    assert frame.city.notna().all() and frame.country.eq("China").all()
    # distinct id = user id once identified, else the anonymous id
    identified = frame.user_id.notna()
    assert (frame.distinct_id[identified] == frame.user_id[identified]).all()
    anonymous = ~identified & frame.anonymous_id.notna()
    assert (frame.distinct_id[anonymous] == frame.anonymous_id[anonymous]).all()


def test_timestamps_within_window(frame: pd.DataFrame) -> None:
    start, end = window(DAYS, END)
    assert str(start.tzinfo) == "Asia/Shanghai" and (end - start).days == DAYS
    assert frame.timestamp.min() >= pd.Timestamp(start) and frame.timestamp.max() < pd.Timestamp(end)
    local = frame.timestamp.dt.tz_convert("Asia/Shanghai")
    assert local.dt.date.nunique() == DAYS  # activity on every day
    night = local.dt.hour.between(2, 5).mean()
    evening = local.dt.hour.between(19, 22).mean()
    assert night < 0.05 < 0.2 < evening  # a daily rhythm in the organisation's time zone


def test_default_end_is_today_and_nothing_is_in_the_future() -> None:
    tables, _ = generate(users=20, days=3, end=None)
    ts = pa.concat_tables(tables).column("timestamp").to_pandas()
    assert len(ts) > 0 and ts.max() < pd.Timestamp(datetime.now(UTC))


def test_ops(generated: tuple[pa.Table, list[Op]], frame: pd.DataFrame) -> None:
    _, ops = generated
    items = [op for op in ops if isinstance(op, ItemOp)]
    assert {op.item_type for op in items} == {"article", "course", "product", "coupon"}
    assert ops[: len(items)] == items  # the catalogue comes first
    merges = [op for op in ops if isinstance(op, Merge)]
    assert len(merges) >= (frame.event == "sign_up").sum()
    profile = [op for op in ops if isinstance(op, ProfileOp)]
    keys = {k for op in profile for k in op.properties}
    assert {"city", "gender", "age_group", "interests", "member_level", "first_channel", "registered_at",
            "total_spent"} <= keys  # fmt: skip
    assert {op.op for op in profile} >= {"set", "set_once", "increment"}


def test_plausible_rates(frame: pd.DataFrame) -> None:
    persons = frame.person.nunique()
    assert 0.9 * USERS <= persons <= 1.05 * USERS
    signed_up = frame[frame.event == "sign_up"].person.nunique() / persons
    members = frame[frame.user_id.notna()].person.nunique() / persons
    buyers = frame[frame.event == "purchase"].person.nunique() / persons
    assert 0.10 <= signed_up <= 0.35, signed_up  # most visitors never register
    assert 0.15 <= members <= 0.45, members  # sign-ups plus members from before the window
    assert 0.03 <= buyers <= 0.12, buyers
    funnel = [frame[frame.event.isin(e)].person.nunique() for e in (["$pageview", "$screen"], ["view_course"],
              ["start_lesson"], ["purchase"])]  # fmt: skip
    assert funnel == sorted(funnel, reverse=True) and funnel[0] > 2 * funnel[-1]
    assert CHANNELS <= set(frame.channel)
    assert LIBS <= set(frame.lib)
    per_person = frame.groupby("person").size()
    assert 10 <= len(frame) / persons <= 80 and per_person.max() > 50
    revenue = frame[frame.event == "purchase"].properties.map(lambda p: json.loads(p)["revenue"])
    assert (revenue > 0).all()


def test_sessions_have_depth(frame: pd.DataFrame) -> None:
    events = frame.sort_values(["person", "timestamp"])
    gap = events.groupby("person").timestamp.diff().dt.total_seconds()
    session = (gap.isna() | (gap > 1800)).cumsum()
    per_session = events.groupby(session).agg(
        n=("event", "size"), span=("timestamp", lambda t: (t.max() - t.min()).total_seconds())
    )
    assert 3 <= per_session.n.mean() <= 20
    assert 60 <= per_session.span.median() <= 1800


def test_load_stores_every_event(
    loaded: Any, generated: tuple[pa.Table, list[Op]], frame: pd.DataFrame
) -> None:
    backend, result, seen = loaded
    rows = generated[0].num_rows
    assert result["created"] and result["events"] == rows and result["stored"] == rows
    assert result["project"]["timezone"] == "Asia/Shanghai"
    assert seen == sorted(seen) and seen[-1] == rows and len(seen) > 1
    pid = result["project"]["id"]
    count = backend.store.query("SELECT count(*) AS n FROM events WHERE project_id = ?", [pid])[0]["n"]
    assert count == rows
    items = backend.store.query("SELECT count(*) AS n FROM items WHERE project_id = ?", [pid])[0]["n"]
    assert items == sum(isinstance(op, ItemOp) for op in generated[1])


def test_identities_are_merged(loaded: Any, frame: pd.DataFrame) -> None:
    backend, result, _ = loaded
    pid = result["project"]["id"]
    # every user's events, anonymous (before sign-up/login, other devices) or identified: one person
    rows = backend.store.query(
        """WITH owner AS (SELECT DISTINCT anonymous_id, user_id FROM events
                          WHERE project_id = ? AND user_id IS NOT NULL AND anonymous_id IS NOT NULL)
           SELECT o.user_id, count(DISTINCT i.person_id) AS persons, count(*) AS events,
                  count(*) FILTER (WHERE e.user_id IS NULL) AS anonymous
           FROM events e
           JOIN owner o ON e.anonymous_id = o.anonymous_id OR e.distinct_id = o.user_id
           JOIN identities i ON i.project_id = e.project_id AND i.distinct_id = e.distinct_id
           WHERE e.project_id = ? GROUP BY o.user_id""",
        [pid, pid],
    )
    assert len(rows) >= frame[frame.event == "sign_up"].person.nunique()
    assert all(r["persons"] == 1 for r in rows)
    assert sum(r["anonymous"] for r in rows) > 0
    signed_up = frame[frame.event == "sign_up"].distinct_id.iloc[0]
    person = backend.store.query(
        """SELECT p.properties FROM identities i JOIN persons p USING (project_id, person_id)
           WHERE i.project_id = ? AND i.distinct_id = ?""",
        [pid, signed_up],
    )[0]
    props = json.loads(person["properties"])
    assert {
        "city",
        "first_channel",
        "registered_at",
        "gender",
        "age_group",
        "interests",
        "member_level",
    } <= set(props)
    n_persons = backend.store.query("SELECT count(*) AS n FROM persons WHERE project_id = ?", [pid])[0]["n"]
    assert n_persons == frame.person.nunique()


def test_load_twice_does_not_duplicate(loaded: Any) -> None:
    backend, result, _ = loaded
    again = load_demo(backend, users=USERS, days=DAYS, seed=SEED, end=END)
    assert again["created"] is False and again["events"] == 0
    assert again["project"]["id"] == result["project"]["id"]
    n = backend.store.query("SELECT count(*) AS n FROM events")[0]["n"]
    assert n == result["events"]


def test_reimport_is_idempotent(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "x.duckdb")
    try:
        pid = backend.create_project("again", "Asia/Shanghai")["id"]
        stored = []
        for _ in range(2):
            for table, ops in simulate(pid, users=40, days=7, seed=1, end=END):
                stored.append(backend.import_table(pid, table))
                backend.write_ops(pid, ops)
        assert stored[0] > 0 and stored[-1] == 0
    finally:
        backend.close()
