"""Saved alert rules: create, list, get, update, delete, check (deliver and log when fired), log."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import msgspec

from userloop.errors import NotFound, UserloopError
from userloop.people.alerts.deliver import deliver
from userloop.people.alerts.evaluate import check_against_store, evaluate
from userloop.people.alerts.model import Rule, parse_rule
from userloop.people.layers.model import check_name
from userloop.people.layers.service import int_param
from userloop.store.duckdb import Project, Store

MAX_LOG_PAGE = 1000
_check_locks: dict[tuple[int, str], threading.Lock] = {}
_guard = threading.Lock()


def _lock(project_id: int, name: str) -> threading.Lock:
    with _guard:
        return _check_locks.setdefault((project_id, name), threading.Lock())


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


_COLUMNS = (
    "name, description, condition, channels, schedule, cooldown_minutes, enabled, last_checked_at, last_value, "
    "last_fired_at, created_at, updated_at"
)


def _rule_of(row: dict[str, Any]) -> Rule:
    return parse_rule(
        {
            "name": row["name"],
            "description": row["description"],
            "condition": msgspec.json.decode(row["condition"]),
            "channels": msgspec.json.decode(row["channels"]),
            "schedule": row["schedule"],
            "cooldown_minutes": row["cooldown_minutes"],
            "enabled": row["enabled"],
        }
    )


def _row(store: Store, project_id: int, name: Any) -> dict[str, Any]:
    check_name(name)
    rows = store.query(
        f"SELECT {_COLUMNS} FROM alert_rules WHERE project_id = ? AND name = ?", [project_id, name]
    )
    if not rows:
        raise NotFound("alert_rule_not_found", f"no alert rule named {name!r}", "name")
    return rows[0]


def _describe(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **_rule_of(row).to_dict(),
        "last_checked_at": _iso(row["last_checked_at"]),
        "last_value": row["last_value"],
        "last_fired_at": _iso(row["last_fired_at"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def _encode(rule: Rule) -> tuple[str, str]:
    d = rule.to_dict(secrets=True)
    return msgspec.json.encode(d["condition"]).decode(), msgspec.json.encode(d["channels"]).decode()


def _reload_schedule() -> None:
    from userloop.schedule import reload_current

    reload_current()


def create(store: Store, project: Project, raw: Any) -> dict[str, Any]:
    rule = parse_rule(raw)
    check_against_store(store, project, rule)
    condition, channels = _encode(rule)
    now = _now()
    cur = store.new_cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        if cur.execute(
            "SELECT 1 FROM alert_rules WHERE project_id = ? AND name = ?", [project.id, rule.name]
        ).fetchall():
            raise UserloopError(
                "alert_rule_exists", f"an alert rule named {rule.name!r} already exists", "name", 409
            )
        cur.execute(
            "INSERT INTO alert_rules (project_id, name, description, condition, channels, schedule, cooldown_minutes, "
            "enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [project.id, rule.name, rule.description, condition, channels, rule.schedule, rule.cooldown_minutes,
             rule.enabled, now, now],
        )  # fmt: skip
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    finally:
        cur.close()
    _reload_schedule()
    return _describe(_row(store, project.id, rule.name))


def list_rules(store: Store, project: Project) -> dict[str, Any]:
    rows = store.query(f"SELECT {_COLUMNS} FROM alert_rules WHERE project_id = ? ORDER BY name", [project.id])
    return {"results": [_describe(r) for r in rows]}


def get(store: Store, project: Project, name: Any) -> dict[str, Any]:
    return _describe(_row(store, project.id, name))


_UPDATABLE = ("condition", "channels", "schedule", "cooldown_minutes", "enabled", "description")


def update(store: Store, project: Project, raw: Any) -> dict[str, Any]:
    """Replace some of condition, channels (whole: send passwords again), schedule, cooldown,
    enabled, description."""
    if not isinstance(raw, dict):
        raise UserloopError("invalid_body", "an update is a JSON object")
    row = _row(store, project.id, raw.get("name"))
    for key in raw:
        if key not in ("name", *_UPDATABLE):
            raise UserloopError("unknown_field", f"cannot update {key!r}", key)
    merged = _rule_of(row).to_dict(secrets=True)
    merged.update({k: raw[k] for k in _UPDATABLE if k in raw})
    rule = parse_rule(merged)
    check_against_store(store, project, rule)
    condition, channels = _encode(rule)
    store.cursor().execute(
        "UPDATE alert_rules SET description = ?, condition = ?, channels = ?, schedule = ?, cooldown_minutes = ?, "
        "enabled = ?, updated_at = ? WHERE project_id = ? AND name = ?",
        [rule.description, condition, channels, rule.schedule, rule.cooldown_minutes, rule.enabled, _now(),
         project.id, rule.name],
    )  # fmt: skip
    _reload_schedule()
    return _describe(_row(store, project.id, rule.name))


def delete(store: Store, project: Project, name: Any) -> dict[str, Any]:
    """The rule goes; its log stays (it records what was sent)."""
    _row(store, project.id, name)
    store.cursor().execute("DELETE FROM alert_rules WHERE project_id = ? AND name = ?", [project.id, name])
    _reload_schedule()
    return {"deleted": name}


def check(
    store: Store, project: Project, name: Any, *, trigger: str = "manual", dry_run: bool = False
) -> dict[str, Any]:
    """Evaluate now; when it fires (and this is not a dry run), deliver to every channel and log it.

    A scheduled check respects the rule's cooldown (no second delivery within ``cooldown_minutes``
    of the last); a manual check always delivers.
    """
    row = _row(store, project.id, name)
    rule = _rule_of(row)
    with _lock(project.id, rule.name):
        now = _now()
        ev = evaluate(store, project, rule, now)
        out: dict[str, Any] = {
            "rule": rule.name, "checked_at": now.isoformat(), "fired": ev.fired, "value": ev.value,
            "threshold": ev.threshold, "message": ev.message, "details": ev.details, "deliveries": [],
            "log_id": None, "skipped": None,
        }  # fmt: skip
        last = _row(store, project.id, rule.name)["last_fired_at"]
        if dry_run:
            out["skipped"] = "dry_run" if ev.fired else None
            return out
        cooling = last is not None and now - last < timedelta(minutes=rule.cooldown_minutes)
        if ev.fired and trigger == "schedule" and cooling:
            out["skipped"] = "cooldown"
        elif ev.fired:
            log_id = int(store.cursor().execute("SELECT nextval('alert_log_ids')").fetchall()[0][0])
            payload = {
                "rule": rule.name, "project": {"id": project.id, "name": project.name}, "fired_at": now.isoformat(),
                "message": ev.message, "value": ev.value, "threshold": ev.threshold,
                "condition": msgspec.to_builtins(rule.condition), "details": ev.details, "log_id": log_id,
            }  # fmt: skip
            out["deliveries"] = deliver(rule.channels, payload)
            out["log_id"] = log_id
            store.cursor().execute(
                "INSERT INTO alert_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [project.id, log_id, rule.name, now, trigger, ev.value, ev.threshold, ev.message,
                 msgspec.json.encode(ev.details).decode(), msgspec.json.encode(out["deliveries"]).decode()],
            )  # fmt: skip
        store.cursor().execute(
            "UPDATE alert_rules SET last_checked_at = ?, last_value = ?, "
            "last_fired_at = CASE WHEN ? THEN ? ELSE last_fired_at END WHERE project_id = ? AND name = ?",
            [now, ev.value, out["log_id"] is not None, now, project.id, rule.name],
        )
    return out


def log(store: Store, project: Project, params: dict[str, Any]) -> dict[str, Any]:
    """Fired alerts, newest first; ``rule`` filters, ``limit`` (100) and ``offset`` page."""
    args: list[Any] = [project.id]
    where = "project_id = ?"
    if params.get("rule") is not None:
        where += " AND rule = ?"
        args.append(check_name(params["rule"], "rule"))
    limit = int_param(params.get("limit"), "limit", 100, 1, MAX_LOG_PAGE)
    offset = int_param(params.get("offset"), "offset", 0, 0, 10**12)
    total = store.query(f"SELECT count(*) AS n FROM alert_log WHERE {where}", args)[0]["n"]
    rows = store.query(
        f"""SELECT id, rule, fired_at, trigger, value, threshold, message, details, deliveries FROM alert_log
            WHERE {where} ORDER BY id DESC LIMIT {limit} OFFSET {offset}""",
        args,
    )
    for r in rows:
        r["fired_at"] = _iso(r["fired_at"])
        r["details"] = msgspec.json.decode(r["details"])
        r["deliveries"] = msgspec.json.decode(r["deliveries"])
    return {"total": int(total), "limit": limit, "offset": offset, "results": rows}


def scheduled_rules(store: Store) -> list[tuple[int, str, str]]:
    try:
        rows = store.query(
            "SELECT project_id, name, schedule FROM alert_rules WHERE enabled AND schedule IS NOT NULL ORDER BY 1, 2"
        )
    except duckdb.CatalogException:
        return []
    return [(r["project_id"], r["name"], r["schedule"]) for r in rows]
