"""Saved layer models: create, list, get, update, delete, compute (now or as of a past date),
members (now or on a past date) and the migration matrix between two dates.

Each change is one DuckDB transaction on its own cursor, so a failed compute or an invalid update
leaves nothing behind. Computes of one model are serialised in this process.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import msgspec

from userloop.errors import NotFound, UserloopError
from userloop.people.layers.compute import Ref, layer_sql
from userloop.people.layers.history import apply_snapshot, migration_sql, state_sql
from userloop.people.layers.model import NONE, LayerModel, check_name, layer_names, parse_definition
from userloop.query.sql import Ctx, check_properties
from userloop.store.duckdb import Project, Store

MAX_PAGE = 10_000
_PLACEHOLDER = re.compile(r"\$(p\d+)\b")
_locks: dict[tuple[int, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(project_id: int, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((project_id, name), threading.Lock())


def _now() -> datetime:
    return datetime.now(UTC)


def _bound(ctx: Ctx, sql: str) -> dict[str, Any]:
    """The values ``sql`` binds (and a fresh context for the next statement)."""
    used = set(_PLACEHOLDER.findall(sql))
    params = {k: v for k, v in ctx.params.items() if k in used}
    ctx.params = {}
    return params


class _Tx:
    """One transaction on a cursor of its own; rolled back on any error."""

    def __init__(self, store: Store):
        self.cur = store.new_cursor()

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.cur.execute("BEGIN TRANSACTION")
        return self.cur

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            self.cur.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.cur.close()


# -- definitions ----------------------------------------------------------------------------------


def _row_to_model(row: dict[str, Any]) -> LayerModel:
    return parse_definition(
        {
            "name": row["name"],
            "kind": row["kind"],
            "params": msgspec.json.decode(row["params"]),
            "schedule": row["schedule"],
            "description": row["description"],
        }  # fmt: skip
    )


def _rows(store: Store, project_id: int, name: str | None = None) -> list[dict[str, Any]]:
    where = "project_id = ?"
    args: list[Any] = [project_id]
    if name is not None:
        where, args = where + " AND name = ?", [*args, name]
    return store.query(
        f"""SELECT name, kind, params, schedule, description, member_count, computed_at, as_of, created_at,
                   updated_at FROM layer_models WHERE {where} ORDER BY name""",
        args,
    )


def _row(store: Store, project_id: int, name: Any) -> dict[str, Any]:
    check_name(name)
    rows = _rows(store, project_id, name)
    if not rows:
        raise NotFound("layer_model_not_found", f"no layer model named {name!r}", "name")
    return rows[0]


def load(store: Store, project_id: int, name: Any) -> LayerModel:
    return _row_to_model(_row(store, project_id, name))


def _describe(row: dict[str, Any]) -> dict[str, Any]:
    m = _row_to_model(row)
    return {
        **m.to_dict(),
        "member_count": row["member_count"],
        "computed_at": _iso(row["computed_at"]),
        "as_of": _iso(row["as_of"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime | date) else v


def _check_against_store(ctx: Ctx, m: LayerModel) -> None:
    """Events and properties the caller named (not the defaults) must exist in the project."""

    def given(field: str) -> bool:
        return field.split("[")[0] in m.given

    for field, event in m.params.events():
        if given(field) and not ctx.store.query(
            "SELECT 1 AS x FROM events WHERE project_id = ? AND event = ? LIMIT 1", [ctx.project.id, event]
        ):
            raise UserloopError(
                "unknown_event", f"no event named {event!r} in this project", f"params.{field}"
            )
    check_properties(ctx, [(prop, "event", f"params.{f}") for f, prop in m.params.properties() if given(f)])


def create(store: Store, project: Project, raw: Any) -> dict[str, Any]:
    m = parse_definition(raw)
    _check_against_store(Ctx(store, project), m)
    now = _now()
    with _Tx(store) as cur:
        if cur.execute(
            "SELECT 1 FROM layer_models WHERE project_id = ? AND name = ?", [project.id, m.name]
        ).fetchall():
            raise UserloopError(
                "layer_model_exists", f"a layer model named {m.name!r} already exists", "name", 409
            )
        cur.execute(
            "INSERT INTO layer_models (project_id, name, kind, params, schedule, description, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                project.id,
                m.name,
                m.kind,
                msgspec.json.encode(m.params).decode(),
                m.schedule,
                m.description,
                now,
                now,
            ],
        )
    _reload_schedule()
    return _describe(_row(store, project.id, m.name))


def list_models(store: Store, project: Project) -> dict[str, Any]:
    return {"results": [_describe(r) for r in _rows(store, project.id)]}


def get(store: Store, project: Project, name: Any) -> dict[str, Any]:
    row = _row(store, project.id, name)
    out = _describe(row)
    counts = dict.fromkeys(out["layers"], 0)
    for r in store.query(
        "SELECT layer, count(*) AS n FROM layer_members WHERE project_id = ? AND model = ? GROUP BY layer",
        [project.id, name],
    ):
        counts[r["layer"]] = int(r["n"])
    out["counts"] = counts
    out["snapshots"] = [
        {
            "as_of": _iso(r["as_of"]),
            "computed_at": _iso(r["computed_at"]),
            "members": r["member_count"],
            "changed": r["changed"],
        }  # fmt: skip
        for r in store.query(
            "SELECT as_of, computed_at, member_count, changed FROM layer_snapshots WHERE project_id = ? AND model = ? "
            "ORDER BY as_of",
            [project.id, name],
        )
    ]
    return out


_UPDATABLE = ("kind", "params", "schedule", "description")


def update(store: Store, project: Project, raw: Any) -> dict[str, Any]:
    """Change some of kind, params (replaced whole), schedule, description. A new kind or new
    parameters start a new history: members, history and snapshots are removed."""
    if not isinstance(raw, dict):
        raise UserloopError("invalid_body", "an update is a JSON object")
    row = _row(store, project.id, raw.get("name"))
    for key in raw:
        if key not in ("name", *_UPDATABLE):
            raise UserloopError("unknown_field", f"cannot update {key!r}", key)
    current = _row_to_model(row)
    merged = {"name": current.name, "kind": current.kind, "params": msgspec.to_builtins(current.params),
              "schedule": current.schedule, "description": current.description}  # fmt: skip
    merged.update({k: raw[k] for k in _UPDATABLE if k in raw})
    if "kind" in raw and "params" not in raw and raw["kind"] != current.kind:
        merged["params"] = {}
    m = parse_definition(merged)
    if "params" in raw:
        _check_against_store(Ctx(store, project), m)
    reset = m.kind != current.kind or m.params != current.params
    with _Tx(store) as cur:
        cur.execute(
            "UPDATE layer_models SET kind = ?, params = ?, schedule = ?, description = ?, updated_at = ? "
            "WHERE project_id = ? AND name = ?",
            [
                m.kind,
                msgspec.json.encode(m.params).decode(),
                m.schedule,
                m.description,
                _now(),
                project.id,
                m.name,
            ],
        )
        if reset:
            _delete_data(cur, project.id, m.name)
            cur.execute(
                "UPDATE layer_models SET member_count = NULL, computed_at = NULL, as_of = NULL "
                "WHERE project_id = ? AND name = ?",
                [project.id, m.name],
            )
    _reload_schedule()
    return _describe(_row(store, project.id, m.name))


def _delete_data(cur: duckdb.DuckDBPyConnection, project_id: int, name: str) -> None:
    for table in ("layer_members", "layer_history", "layer_snapshots"):
        cur.execute(f"DELETE FROM {table} WHERE project_id = ? AND model = ?", [project_id, name])


def delete(store: Store, project: Project, name: Any) -> dict[str, Any]:
    _row(store, project.id, name)
    users = _alert_rules_using(store, project.id, name)
    if users:
        raise UserloopError(
            "layer_model_in_use",
            f"alert rules use this model: {', '.join(users)}; delete them first",
            "name",
            409,
        )
    with _Tx(store) as cur:
        cur.execute("DELETE FROM layer_models WHERE project_id = ? AND name = ?", [project.id, name])
        _delete_data(cur, project.id, name)
    _reload_schedule()
    return {"deleted": name}


def _alert_rules_using(store: Store, project_id: int, name: str) -> list[str]:
    try:
        rows = store.query(
            "SELECT name FROM alert_rules WHERE project_id = ? AND json_extract_string(condition, '$.model') = ? "
            "ORDER BY name",
            [project_id, name],
        )
    except duckdb.CatalogException:
        return []
    return [r["name"] for r in rows]


def _reload_schedule() -> None:
    from userloop.schedule import reload_current

    reload_current()


# -- compute --------------------------------------------------------------------------------------


def parse_when(ctx: Ctx, value: Any, field: str) -> Ref:
    """``YYYY-MM-DD`` (local midnight starting that day: events before the day) or an ISO date-time
    (naive: the project's local time)."""
    if not isinstance(value, str):
        raise UserloopError(
            "invalid_field", f"{field} must be a date (YYYY-MM-DD) or an ISO date-time", field
        )
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return Ref(at=ctx.instant(day), day=day)
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UserloopError("invalid_field", f"{field}: {exc}", field) from exc
    dt = dt.replace(tzinfo=ctx.tz) if dt.tzinfo is None else dt
    return Ref(at=dt.astimezone(UTC), day=dt.astimezone(ctx.tz).date())


def compute(store: Store, project: Project, name: Any, as_of: Any = None) -> dict[str, Any]:
    """Compute the model as of now, or as of ``as_of`` (events before it only), into history; the
    members are replaced when this is the model's latest reference time."""
    m = load(store, project.id, name)
    ctx = Ctx(store, project)
    now = _now()
    ref = Ref(at=now, day=now.astimezone(ctx.tz).date()) if as_of is None else parse_when(ctx, as_of, "as_of")
    if ref.at > now:
        raise UserloopError("invalid_field", "as_of is in the future", "as_of")
    sql = f"CREATE TEMP TABLE _ln AS {layer_sql(ctx, m.params, ref)}"
    params = _bound(ctx, sql)
    started = time.perf_counter()
    with _lock(project.id, m.name), _Tx(store) as cur:
        cur.execute("DROP TABLE IF EXISTS _ln")
        cur.execute(sql, params)
        changed, latest = apply_snapshot(cur, project.id, m.name, ref.at)
        counts = dict(cur.execute("SELECT layer, count(*) FROM _ln GROUP BY layer").fetchall())
        total = sum(counts.values())
        if latest:
            _replace_members(cur, project.id, m.name, now)
            cur.execute(
                "UPDATE layer_models SET member_count = ?, computed_at = ?, as_of = ? WHERE project_id = ? AND name = ?",
                [total, now, ref.at, project.id, m.name],
            )
        cur.execute(
            "INSERT OR REPLACE INTO layer_snapshots VALUES (?, ?, ?, ?, ?, ?)",
            [project.id, m.name, ref.at, now, total, changed],
        )
        cur.execute("DROP TABLE _ln")
    return {
        "model": m.name,
        "kind": m.kind,
        "as_of": ref.at.isoformat(),
        "computed_at": now.isoformat(),
        "latest": latest,
        "members": total,
        "changed": changed,
        "counts": {k: int(counts.get(k, 0)) for k in layer_names(m.kind, m.params)},
        "seconds": round(time.perf_counter() - started, 3),
    }


def _replace_members(cur: duckdb.DuckDBPyConnection, project_id: int, model: str, now: datetime) -> None:
    """``layer_members`` of the model := ``_ln`` (the table has no index: see schema_layers.py)."""
    cur.execute("DELETE FROM layer_members WHERE project_id = ? AND model = ?", [project_id, model])
    cur.execute(
        "INSERT INTO layer_members SELECT ?, ?, person_id, layer, scores, ? FROM _ln",
        [project_id, model, now],
    )


# -- reads ----------------------------------------------------------------------------------------


def end_of_day(ctx: Ctx, day: date) -> datetime:
    """The last instant of the local day: "the layer on date D" is the last state of that day."""
    return ctx.instant(day + timedelta(days=1)) - timedelta(microseconds=1)


def _day(value: Any, field: str) -> date:
    if not isinstance(value, str):
        raise UserloopError("invalid_field", f"{field} must be a date (YYYY-MM-DD)", field)
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise UserloopError("invalid_field", f"{field} must be a date (YYYY-MM-DD): {exc}", field) from exc


def int_param(value: Any, field: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise UserloopError("invalid_field", f"{field} must be an integer", field) from exc
    if not lo <= n <= hi:
        raise UserloopError("invalid_field", f"{field} must be between {lo} and {hi}", field)
    return n


def members(store: Store, project: Project, params: dict[str, Any]) -> dict[str, Any]:
    """Members now (with scores), or on a past date from history (``on``); optionally one ``layer``
    or one ``person``; paged by ``limit``/``offset`` in person id order."""
    m = load(store, project.id, params.get("name"))
    limit = int_param(params.get("limit"), "limit", 100, 1, MAX_PAGE)
    offset = int_param(params.get("offset"), "offset", 0, 0, 10**12)
    layer, person, on = params.get("layer"), params.get("person"), params.get("on")
    if layer is not None and layer not in layer_names(m.kind, m.params):
        raise UserloopError("unknown_layer", f"model {m.name!r} has no layer {layer!r}", "layer")
    ctx = Ctx(store, project)
    args: dict[str, Any] = {"pid": project.id, "model": m.name}
    if on is None:
        source = "SELECT person_id, layer, scores, computed_at FROM layer_members WHERE project_id = $pid AND model = $model"
    else:
        args["at"] = end_of_day(ctx, _day(on, "on"))
        source = state_sql()
    where = []
    if layer is not None:
        where.append("layer = $layer")
        args["layer"] = layer
    if person is not None:
        where.append("person_id = $person")
        args["person"] = str(person)
    cond = " AND ".join(where) or "TRUE"
    cur = store.cursor()
    total = cur.execute(f"SELECT count(*) FROM ({source}) s WHERE {cond}", args).fetchall()[0][0]
    rows = cur.execute(
        f"SELECT * FROM ({source}) s WHERE {cond} ORDER BY person_id LIMIT {limit} OFFSET {offset}", args
    ).fetchall()
    cols = ["person_id", "layer", "scores", "computed_at"] if on is None else ["person_id", "layer"]
    results = []
    for r in rows:
        item = dict(zip(cols, r, strict=True))
        if "scores" in item:
            item["scores"] = msgspec.json.decode(item["scores"]) if item["scores"] else None
            item["computed_at"] = _iso(item["computed_at"])
        results.append(item)
    return {
        "model": m.name,
        "on": on,
        "total": int(total),
        "limit": limit,
        "offset": offset,
        "results": results,
    }


def migration(store: Store, project: Project, params: dict[str, Any]) -> dict[str, Any]:
    """How many persons moved from each layer on ``from`` to each layer on ``to`` ("none": not in
    the model on that date), from history."""
    m = load(store, project.id, params.get("name"))
    ctx = Ctx(store, project)
    d0, d1 = _day(params.get("from"), "from"), _day(params.get("to"), "to")
    if d1 < d0:
        raise UserloopError("bad_date_range", "to is before from", "to")
    return migration_between(store, project, m, end_of_day(ctx, d0), end_of_day(ctx, d1)) | {
        "from": d0.isoformat(),
        "to": d1.isoformat(),
    }


def migration_between(
    store: Store, project: Project, m: LayerModel, t0: datetime, t1: datetime
) -> dict[str, Any]:
    rows = store.query(migration_sql(), {"pid": project.id, "model": m.name, "t0": t0, "t1": t1})
    layers = [*layer_names(m.kind, m.params), NONE]
    order = {name: i for i, name in enumerate(layers)}
    from_totals = dict.fromkeys(layers, 0)
    to_totals = dict.fromkeys(layers, 0)
    cells = []
    for r in rows:
        a, b, n = r["from_layer"] or NONE, r["to_layer"] or NONE, int(r["n"])
        for name in (a, b):  # a layer of an older definition still in history
            if name not in order:
                order[name] = len(order)
                layers.append(name)
                from_totals.setdefault(name, 0)
                to_totals.setdefault(name, 0)
        from_totals[a] += n
        to_totals[b] += n
        cells.append((a, b, n))
    cells.sort(key=lambda c: (order[c[0]], order[c[1]]))
    return {
        "model": m.name,
        "kind": m.kind,
        "layers": layers,
        "matrix": [{"from": a, "to": b, "count": n, "share": n / from_totals[a]} for a, b, n in cells],
        "from_totals": from_totals,
        "to_totals": to_totals,
        "persons": sum(n for *_, n in cells),
        "moved": sum(n for a, b, n in cells if a != b),
    }
