"""SQL tags: a valid query against pandas, each forbidden thing rejected with 400 naming ``sql`` and
nothing saved, and no way to see another project's rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.analytics.conftest import World
from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.store.duckdb import Store
from userloop.store.writer import Writer


@dataclass
class Two:
    mine: World
    other: World

    def ctx(self, w: World | None = None) -> ActionContext:
        w = w or self.mine
        return ActionContext(store=w.store, writer=w.writer, project=w.project)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[Two]:
    store = Store(tmp_path / "sql.duckdb")
    p1, p2 = store.create_project("mine", "UTC"), store.create_project("other", "UTC")
    with Writer(store) as writer:
        mine = World(store=store, writer=writer, project=p1, rows=[])
        other = World(store=store, writer=writer, project=p2, rows=[])
        mine.add([
            {"distinct_id": "a", "event": "buy", "ts": "2026-03-01T10:00:00", "properties": {"amount": 10}},
            {"distinct_id": "a", "event": "buy", "ts": "2026-03-02T10:00:00", "properties": {"amount": 2.5}},
            {"distinct_id": "a2", "event": "buy", "ts": "2026-03-03T10:00:00", "properties": {"amount": 1}},
            {"distinct_id": "b", "event": "buy", "ts": "2026-03-03T10:00:00", "properties": {"amount": 0.1}},
            {"distinct_id": "b", "event": "buy", "ts": "2026-03-04T10:00:00", "properties": {"amount": 0.2}},
            {"distinct_id": "c", "event": "pv", "ts": "2026-03-04T10:00:00"},
        ])
        mine.merge("a", "a2")
        # the other project: the same distinct id "a" and many more buys
        other.add([{"distinct_id": d, "event": "buy", "ts": "2026-03-01T10:00:00", "properties": {"amount": 1000},
                    "message_id": f"o{i}"} for i, d in enumerate(["a", "a", "a", "z"])])
        yield Two(mine, other)
    store.close()


def values(w: World, tag: str) -> dict[str, tuple[str, float | None]]:
    rows = w.store.query("SELECT person_id, value, num_value FROM tag_values WHERE project_id = ? AND tag = ?",
                         [w.project.id, tag])
    return {r["person_id"]: (r["value"], r["num_value"]) for r in rows}


def test_sql_tag_matches_pandas_after_a_merge(two: Two) -> None:
    sql = """SELECT person_id, sum(CAST(json_extract_string(properties, '$.amount') AS DOUBLE)) AS value
             FROM events WHERE event = 'buy' GROUP BY person_id"""
    out = run_action("tags.create", two.ctx(), {"name": "spend", "kind": "dynamic", "sql": sql})
    assert out["source"] == "sql" and out["compute"]["persons"] == 2
    df = two.mine.frame()
    df = df[df.event == "buy"]
    exp = df.assign(amount=df.properties.map(lambda p: p["amount"])).groupby("person_id").amount.sum()
    assert values(two.mine, "spend") == {p: (f"{v:.15g}", float(f"{v:.15g}")) for p, v in exp.items()}
    ids = two.mine.persons()
    assert values(two.mine, "spend") == {ids["a"]: ("13.5", 13.5), ids["b"]: ("0.3", 0.3)}  # 0.1 + 0.2, no noise


def test_sql_sees_only_its_project(two: Two) -> None:
    for name, sql in {
        "n_events": "SELECT person_id, count(*) AS value FROM events GROUP BY ALL",
        "n_persons": "SELECT min(person_id) AS person_id, count(*) AS value FROM persons",
        "n_ids": "SELECT min(person_id) AS person_id, count(*) AS value FROM identities",
        "n_projects": "SELECT min(person_id) AS person_id, count(DISTINCT project_id) AS value FROM events",
        # a CTE named like an allowed relation still reads the project's rows
        "shadow": "WITH events AS (SELECT * FROM events) SELECT min(person_id) AS person_id, count(*) AS value FROM events",
        "later": "WITH x AS (SELECT * FROM events), events AS (SELECT 1 AS n) "
                 "SELECT min(person_id) AS person_id, count(*) AS value FROM x",
    }.items():
        run_action("tags.create", two.ctx(), {"name": name, "kind": "semi_dynamic", "sql": sql})
    ids = two.mine.persons()
    first = min(set(ids.values()))
    assert values(two.mine, "n_events") == {ids["a"]: ("3", 3.0), ids["b"]: ("2", 2.0), ids["c"]: ("1", 1.0)}
    assert values(two.mine, "n_persons") == {first: ("3", 3.0)}  # a, b, c (a2 merged into a)
    assert values(two.mine, "n_ids") == {first: ("4", 4.0)}
    assert values(two.mine, "n_projects") == {first: ("1", 1.0)}
    assert values(two.mine, "shadow") == values(two.mine, "later") == {first: ("6", 6.0)}
    # tag_values of the other project are invisible too
    run_action("tags.create", two.ctx(two.other), {"name": "n_events", "kind": "semi_dynamic",
                                                   "sql": "SELECT person_id, count(*) AS value FROM events GROUP BY 1"})
    run_action("tags.create", two.ctx(), {"name": "tv", "kind": "semi_dynamic",
                                          "sql": "SELECT min(person_id) AS person_id, count(*) AS value FROM tag_values "
                                                 "WHERE tag = 'n_events'"})
    assert values(two.mine, "tv") == {first: ("3", 3.0)}
    # person ids returned from nowhere (or another project) get no value
    run_action("tags.create", two.ctx(), {"name": "foreign", "kind": "semi_dynamic",
                                          "sql": "SELECT 'no-such-person' AS person_id, 1 AS value "
                                                 f"UNION ALL SELECT '{two.other.persons()['z']}', 2"})
    assert values(two.mine, "foreign") == {}


FORBIDDEN = [
    ("DROP TABLE events", "single SELECT"),
    ("DELETE FROM events", "single SELECT"),
    ("UPDATE persons SET properties = '{}'", "single SELECT"),
    ("INSERT INTO tag_values VALUES (1, 'x', 'p', 'v', NULL, now())", "single SELECT"),
    ("ATTACH '/tmp/other.duckdb' AS o", "single SELECT"),
    ("COPY events TO '/tmp/leak.csv'", "single SELECT"),
    ("INSTALL httpfs", "single SELECT"),
    ("LOAD httpfs", "single SELECT"),
    ("PRAGMA database_list", "single SELECT"),
    ("SET threads = 1", "single SELECT"),
    ("CALL pragma_version()", "single SELECT"),
    ("SELECT person_id, 1 AS value FROM persons; DROP TABLE events", "single SELECT"),
    ("SELECT person_id, 1 AS value FROM persons; SELECT 2", "single SELECT"),
    ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ("SELECT * FROM read_parquet('/tmp/x.parquet')", "read_parquet"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM '/etc/hosts.csv'", "/etc/hosts.csv"),
    ("SELECT * FROM query('SELECT * FROM projects')", "query"),
    ("SELECT * FROM duckdb_tables()", "duckdb_tables"),
    ("SELECT * FROM duckdb_settings", "duckdb_settings"),
    ("SELECT person_id, 1 AS value FROM main.events", "main.events"),
    ("SELECT person_id, 1 AS value FROM memory.main.events", "memory.main.events"),
    ("SELECT secret_key AS person_id, 1 AS value FROM projects", "projects"),
    ("SELECT person_id, 1 AS value FROM person_overrides", "person_overrides"),
    ("SELECT person_id, 1 AS value FROM information_schema.tables", "information_schema"),
    ("SELECT person_id, 1 AS value FROM events WHERE person_id IN (SELECT secret_key FROM projects)", "projects"),
    ("WITH x AS (SELECT * FROM projects), projects AS (SELECT 1) SELECT 'p' AS person_id, 1 AS value FROM x", "projects"),
    ('WITH x AS (SELECT * FROM "/etc/passwd"), "/etc/passwd" AS (SELECT 1) SELECT 1 AS person_id, 1 AS value',
     "plain identifier"),
    ("SELECT person_id, getenv('HOME') AS value FROM persons", "getenv"),
    ("SELECT person_id, current_setting('threads') AS value FROM persons", "current_setting"),
    ("SELECT person_id, nextval('project_ids') AS value FROM persons", "nextval"),
    ("SELECT person_id, main.lower('x') AS value FROM persons", "qualified function"),
    ("SELECT person_id, $1 AS value FROM persons", "parameters"),
    ("SELECT person_id, ? AS value FROM persons", "parameters"),
    ("SHOW TABLES", "show, describe"),
    ("DESCRIBE events", "show, describe"),
    ("SUMMARIZE events", "summarize"),
    ("SELECT person_id, 1 AS value FROM events AT (VERSION => 1)", "time travel"),
    ("SELECT person_id FROM persons", "value is missing"),
    ("SELECT person_id, nope AS value FROM persons", "does not run"),
    ("SELEC person_id", "not a valid query"),
    ("", "must not be empty"),
]


def test_forbidden_sql_is_rejected_and_nothing_saved(two: Two) -> None:
    for sql, why in FORBIDDEN:
        with pytest.raises(UserloopError) as exc:
            run_action("tags.create", two.ctx(), {"name": "bad", "kind": "dynamic", "sql": sql})
        assert (exc.value.code, exc.value.field, exc.value.status) == ("invalid_sql", "sql", 400), sql
        assert why.lower() in exc.value.message.lower(), (sql, exc.value.message)
    assert two.mine.store.query("SELECT count(*) AS n FROM tags") == [{"n": 0}]
    assert two.mine.store.query("SELECT count(*) AS n FROM tag_values") == [{"n": 0}]
    assert two.mine.store.query("SELECT count(*) AS n FROM events") == [{"n": 10}]
    assert not Path("/tmp/leak.csv").exists()


def test_runtime_failures_are_400_and_leave_the_old_values(two: Two) -> None:
    c = two.ctx()
    run_action("tags.create", c, {"name": "n", "kind": "dynamic",
                                  "sql": "SELECT person_id, count(*) AS value FROM events GROUP BY 1"})
    before = values(two.mine, "n")
    for sql, code in [
        ("SELECT person_id, 1 AS value FROM events", "compute_failed"),  # several rows per person
        ("SELECT person_id, CAST('x' || person_id AS INTEGER) AS value FROM persons", "compute_failed"),
    ]:
        with pytest.raises(UserloopError) as exc:
            run_action("tags.update", c, {"name": "n", "sql": sql})
        assert (exc.value.code, exc.value.field) == (code, "sql")
    assert values(two.mine, "n") == before
    assert run_action("tags.get", c, {"name": "n"})["sql"].startswith("SELECT person_id, count(*)")
    # the projects table was never touched by any of it
    assert [p["name"] for p in two.mine.store.query("SELECT name FROM projects ORDER BY id")] == ["mine", "other"]


def test_values_of_every_type_become_text(two: Two) -> None:
    ids = two.mine.persons()
    a = ids["a"]
    cases = {
        "SELECT '{a}' AS person_id, 42 AS value": ("42", 42.0),
        "SELECT '{a}' AS person_id, 1.0/3 AS value": ("0.333333333333333", 0.333333333333333),
        "SELECT '{a}' AS person_id, CAST(2.50 AS DECIMAL(10, 2)) AS value": ("2.5", 2.5),
        "SELECT '{a}' AS person_id, true AS value": ("true", None),
        "SELECT '{a}' AS person_id, TIMESTAMPTZ '2026-03-01 10:00:00+00' AS value": ("2026-03-01T10:00:00Z", None),
        "SELECT '{a}' AS person_id, DATE '2026-03-01' AS value": ("2026-03-01", None),
        "SELECT '{a}' AS person_id, '007' AS value": ("007", 7.0),
        "SELECT '{a}' AS person_id, 'nan' AS value": ("nan", None),
    }
    for i, (sql, exp) in enumerate(cases.items()):
        run_action("tags.create", two.ctx(), {"name": f"v{i}", "kind": "semi_dynamic", "sql": sql.format(a=a)})
        assert values(two.mine, f"v{i}") == {a: exp}, sql
    # NULL and empty values mean "no value"
    run_action("tags.create", two.ctx(), {"name": "empty", "kind": "semi_dynamic",
                                          "sql": f"SELECT '{a}' AS person_id, '' AS value UNION ALL "
                                                 f"SELECT '{ids['b']}', NULL"})
    assert values(two.mine, "empty") == {}


# A query that is quick while the project has no "heavy" event and then counts a 10^10-row cross join
HEAVY = """WITH k AS (SELECT count(*) FILTER (WHERE event = 'heavy') * 100000 AS n FROM events),
                pad AS (SELECT unnest(range(n)) AS i FROM k)
           SELECT person_id, count(*) AS value FROM events
           WHERE event = 'buy' OR (SELECT count(*) FROM pad x, pad y) < 0 GROUP BY person_id"""
SLOW = "SELECT p.person_id, count(*) AS value FROM persons p, range(100000) a, range(100000) b GROUP BY 1"


def test_slow_sql_is_stopped_at_the_cap_and_nothing_is_written(two: Two, monkeypatch: pytest.MonkeyPatch) -> None:
    from userloop import config

    assert config.TAG_SQL_TIMEOUT_SECONDS == 60.0
    monkeypatch.setattr(config, "TAG_SQL_TIMEOUT_SECONDS", 0.3)
    c, ids = two.ctx(), two.mine.persons()
    buys = {ids["a"]: ("3", 3.0), ids["b"]: ("2", 2.0)}  # a: 2 buys + a2's 1 (merged), b: 2
    run_action("tags.create", c, {"name": "heavy", "kind": "dynamic", "sql": HEAVY})
    assert values(two.mine, "heavy") == buys

    def stopped(op: str, params: dict[str, object]) -> None:
        started = time.perf_counter()
        with pytest.raises(UserloopError) as exc:
            run_action(op, c, params)
        elapsed = time.perf_counter() - started
        assert (exc.value.code, exc.value.field, exc.value.status) == ("tag_timeout", "sql", 400), op
        assert exc.value.message == "the tag's SQL ran longer than 0.3 s and was stopped"
        assert 0.3 <= elapsed < 3, (op, elapsed)

    # create: no definition, no values, no history
    stopped("tags.create", {"name": "slow", "kind": "dynamic", "sql": SLOW})
    assert two.mine.store.query("SELECT count(*) AS n FROM tags WHERE name = 'slow'") == [{"n": 0}]
    for table in ("tag_values", "tag_history"):
        assert two.mine.store.query(f"SELECT count(*) AS n FROM {table} WHERE tag = 'slow'") == [{"n": 0}]
    # update: the old definition and values stay
    stopped("tags.update", {"name": "heavy", "sql": SLOW})
    assert run_action("tags.get", c, {"name": "heavy"})["sql"] == HEAVY
    assert values(two.mine, "heavy") == buys
    # compute (the path scheduled recomputes take) of a query that became slow with the data: the
    # earlier values and history stay, the error is recorded on the tag
    history = two.mine.store.query("SELECT person_id, value, valid_from, valid_to FROM tag_history "
                                   "WHERE tag = 'heavy' ORDER BY person_id")
    two.mine.add([{"distinct_id": "b", "event": "heavy", "ts": "2026-03-05T10:00:00"}])
    stopped("tags.compute", {"name": "heavy"})
    assert values(two.mine, "heavy") == buys
    assert two.mine.store.query("SELECT person_id, value, valid_from, valid_to FROM tag_history "
                                "WHERE tag = 'heavy' ORDER BY person_id") == history
    assert run_action("tags.get", c, {"name": "heavy"})["last_error"] == (
        "the tag's SQL ran longer than 0.3 s and was stopped")
    # the store is usable at once: a quick SQL tag computes exactly, on this thread and cursor pool
    run_action("tags.create", c, {"name": "events_n", "kind": "semi_dynamic",
                                  "sql": "SELECT person_id, count(*) AS value FROM events GROUP BY 1"})
    assert values(two.mine, "events_n") == {ids["a"]: ("3", 3.0), ids["b"]: ("3", 3.0), ids["c"]: ("1", 1.0)}
