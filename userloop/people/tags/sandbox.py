"""SQL tags for power users: one SELECT, parsed by DuckDB and checked before it runs.

The query returns ``(person_id, value)``. It may read only ``events``, ``persons``, ``identities`` and
``tag_values`` (and its own CTEs); at run time those names are CTEs holding the project's rows only
(``events.person_id`` is the person after identity merges). Checked on DuckDB's parse tree
(``json_serialize_sql``): exactly one SELECT statement; no schema- or catalog-qualified names; no
table functions but ``unnest``/``range``/``generate_series``; no ``SHOW``/``DESCRIBE``/``SUMMARIZE``;
no time travel; no parameters; no functions that read settings, the environment or sequences. The
checked tree is printed back to SQL (``json_deserialize_sql``), so what runs is what was checked.

CTE names must be plain identifiers that are not the name of any table or view in the database: a
CTE referenced where it is not in scope would otherwise fall through to a real table (DuckDB binds
``WITH a AS (SELECT * FROM t), t AS (...)`` to the table ``t``).

Running it is capped in time (:func:`time_cap`, ``config.TAG_SQL_TIMEOUT_SECONDS``): past the cap the
statement is interrupted and the caller's transaction, aborted by it, rolls back.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb

from userloop.errors import UserloopError

ALLOWED_RELATIONS = frozenset({"events", "persons", "identities", "tag_values"})
ALLOWED_TABLE_FUNCTIONS = frozenset({"unnest", "range", "generate_series"})
TABLE_REF_TYPES = frozenset({"BASE_TABLE", "SUBQUERY", "JOIN", "EXPRESSION_LIST", "EMPTY", "TABLE_FUNCTION"})
# scalar functions that reach outside the query's rows: settings, environment, sequences, files
DENIED_FUNCTIONS = frozenset({
    "getenv", "current_setting", "getvariable", "nextval", "currval", "setseed", "json_execute_serialized_sql",
    "query", "query_table", "sql_auto_complete", "glob", "which_secret", "current_query",
})
DENIED_PREFIXES = ("read_", "pragma_", "duckdb_", "parquet_", "sqlite_", "postgres_", "mysql_", "iceberg_",
                   "delta_", "icu_", "json_execute", "enable_", "disable_", "http", "load", "install")
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCHEMA = "person_id, value"


@dataclass
class Checked:
    sql: str  # the query printed back from the checked parse tree


def _fail(message: str) -> UserloopError:
    return UserloopError("invalid_sql", message, "sql")


def check(cur: duckdb.DuckDBPyConnection, text: str) -> Checked:
    """Parse and check ``text``; 400 ``invalid_sql`` (field ``sql``) naming the first problem."""
    row = cur.execute("SELECT json_serialize_sql(?)", [text]).fetchall()
    tree = json.loads(row[0][0])
    if tree.get("error"):
        message = str(tree.get("error_message", "cannot parse"))
        if "Only SELECT" in message:
            message = "only a single SELECT statement is allowed"
        raise _fail(f"not a valid query: {message}")
    statements = tree.get("statements") or []
    if len(statements) != 1:
        raise _fail(f"only a single SELECT statement is allowed, found {len(statements)}")
    ctes = _cte_names(statements[0])
    catalog = {r[0] for r in cur.execute(
        "SELECT lower(table_name) FROM duckdb_tables() UNION SELECT lower(view_name) FROM duckdb_views()"
    ).fetchall()}
    for name in ctes:
        if not IDENT.match(name):
            raise _fail(f"CTE name {name!r} must be a plain identifier")
        if name.lower() in catalog and name.lower() not in ALLOWED_RELATIONS:
            raise _fail(f"CTE name {name!r} is the name of a table; choose another")
    _walk(statements[0], {n.lower() for n in ctes})
    printed = cur.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchall()[0][0]
    return Checked(sql=str(printed))


def _cte_names(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            found.update(str(item.get("key")) for item in cte_map.get("map", []))
        for value in node.values():
            found |= _cte_names(value)
    elif isinstance(node, list):
        for value in node:
            found |= _cte_names(value)
    return found


def _walk(node: Any, ctes: set[str]) -> None:
    if isinstance(node, list):
        for value in node:
            _walk(value, ctes)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if "sample" in node and "query_location" in node and isinstance(kind, str):  # a table reference
        if kind == "SHOW_REF":
            raise _fail("SHOW, DESCRIBE and SUMMARIZE are not allowed")
        if kind not in TABLE_REF_TYPES:
            raise _fail(f"{kind.replace('_', ' ').lower()} is not allowed")
        if kind == "BASE_TABLE":
            _check_table(node, ctes)
        elif kind == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            name = str(fn.get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS or fn.get("schema") or fn.get("catalog"):
                raise _fail(f"table function {name}() is not allowed")
    if kind == "VALUE_PARAMETER":
        raise _fail("parameters ($1, ?) are not allowed")
    if node.get("class") == "FUNCTION":
        name = str(node.get("function_name", "")).lower()
        if node.get("schema") or node.get("catalog"):
            raise _fail(f"qualified function names ({node.get('schema')}.{name}) are not allowed")
        if name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES):
            raise _fail(f"function {name}() is not allowed")
    for value in node.values():
        _walk(value, ctes)


def _check_table(node: dict[str, Any], ctes: set[str]) -> None:
    name = str(node.get("table_name", ""))
    if node.get("schema_name") or node.get("catalog_name"):
        qualified = ".".join(x for x in (node.get("catalog_name"), node.get("schema_name"), name) if x)
        raise _fail(f"qualified name {qualified} is not allowed; use {', '.join(sorted(ALLOWED_RELATIONS))}")
    if node.get("at_clause"):
        raise _fail("time travel (AT ...) is not allowed")
    if name.lower() not in ALLOWED_RELATIONS and name.lower() not in ctes:
        raise _fail(f"relation {name!r} is not allowed; use {', '.join(sorted(ALLOWED_RELATIONS))}")


def shadows(pid: str) -> str:
    """``WITH`` clauses that give the allowed names the project's rows only (``pid``: a placeholder)."""
    return (
        "WITH events AS NOT MATERIALIZED ("
        "SELECT ev.* EXCLUDE (person_id), coalesce(o.person_id, ev.person_id) AS person_id FROM main.events ev "
        "LEFT JOIN main.person_overrides o ON o.project_id = ev.project_id AND o.distinct_id = ev.distinct_id "
        f"WHERE ev.project_id = {pid}), "
        f"persons AS NOT MATERIALIZED (SELECT * FROM main.persons WHERE project_id = {pid}), "
        f"identities AS NOT MATERIALIZED (SELECT * FROM main.identities WHERE project_id = {pid}), "
        f"tag_values AS NOT MATERIALIZED (SELECT * FROM main.tag_values WHERE project_id = {pid}) "
    )


def columns(cur: duckdb.DuckDBPyConnection, checked: Checked, pid: str, params: dict[str, Any]) -> dict[str, str]:
    """The result columns and their types (binds the query without running it); 400 if it cannot."""
    try:
        rows = cur.execute(f"DESCRIBE {shadows(pid)} SELECT * FROM (\n{checked.sql}\n) q", params).fetchall()
    except duckdb.Error as exc:
        raise _fail(f"the query does not run: {str(exc).splitlines()[0]}") from exc
    cols = {str(r[0]): str(r[1]) for r in rows}
    for needed in ("person_id", "value"):
        if needed not in cols:
            raise _fail(f"the query must return columns {SCHEMA}; {needed} is missing (got {', '.join(cols)})")
    return cols


@contextmanager
def time_cap(cur: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupt the statement running on ``cur`` once ``seconds`` have passed: 400 ``tag_timeout``
    (field ``sql``). DuckDB aborts the open transaction; the caller must roll it back. An interrupt
    that lands just after the statement finished is harmless: the next statement clears it."""
    lock = threading.Lock()
    state = {"running": True, "fired": False}

    def stop() -> None:
        with lock:
            if state["running"]:
                state["fired"] = True
                cur.interrupt()

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    except duckdb.InterruptException as exc:
        if not state["fired"]:
            raise  # interrupted by something else (Ctrl-C in the CLI)
        raise UserloopError("tag_timeout", f"the tag's SQL ran longer than {seconds:g} s and was stopped",
                            "sql") from exc
    finally:
        with lock:
            state["running"] = False
        timer.cancel()
