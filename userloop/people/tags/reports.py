"""Read side of tags: coverage and value distribution, a person's history, the catalogue tree."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from userloop.errors import NotFound, UserloopError
from userloop.people.tags.compute import load
from userloop.people.tags.model import DEFAULT_CATEGORIES
from userloop.store.duckdb import Project, Store


def coverage(store: Store, project: Project, name: str, limit: int = 20) -> dict[str, Any]:
    """Share of the project's persons with a value; the ``limit`` most common values (ties by value)
    and what the rest add up to; for numeric values, their spread."""
    tag, _ = load(store, project, name)
    if not 1 <= limit <= 1000:
        raise UserloopError("bad_parameter", "limit must be between 1 and 1000", "limit")
    total = store.query("SELECT count(*) AS n FROM persons WHERE project_id = ?", [project.id])[0]["n"]
    stats = store.query(
        """SELECT count(*) AS n, count(DISTINCT value) AS k, count(num_value) AS numeric, min(num_value) AS min,
                  max(num_value) AS max, avg(num_value) AS avg, sum(num_value) AS sum,
                  quantile_cont(num_value, [0.25, 0.5, 0.75]) AS q
           FROM tag_values WHERE project_id = ? AND tag = ?""",
        [project.id, name],
    )[0]
    top = store.query(
        """SELECT value, n FROM (
               SELECT value, count(*) AS n, row_number() OVER (ORDER BY count(*) DESC, value) AS rank
               FROM tag_values WHERE project_id = ? AND tag = ? GROUP BY value)
           WHERE rank <= ? ORDER BY rank""",
        [project.id, name, limit],
    )
    n = int(stats["n"])
    shown = sum(int(r["n"]) for r in top)
    numeric = None
    if stats["numeric"]:
        q = stats["q"]
        numeric = {"persons": stats["numeric"], "min": stats["min"], "max": stats["max"], "avg": stats["avg"],
                   "sum": stats["sum"], "p25": q[0], "median": q[1], "p75": q[2]}
    return {
        "tag": name,
        "kind": tag.kind,
        "persons": total,
        "with_value": n,
        "coverage": n / total if total else 0.0,
        "distinct_values": stats["k"],
        "distribution": [{"value": r["value"], "persons": r["n"], "share": r["n"] / n} for r in top],
        "other": {"values": int(stats["k"]) - len(top), "persons": n - shown},
        "numeric": numeric,
    }


def resolve_person(store: Store, project: Project, person: str) -> str:
    """A distinct id (through identities) or a person id."""
    rows = store.query(
        """SELECT person_id FROM (
               SELECT 1 AS k, person_id FROM identities WHERE project_id = ? AND distinct_id = ?
               UNION ALL SELECT 2, person_id FROM persons WHERE project_id = ? AND person_id = ?) ORDER BY k""",
        [project.id, person, project.id, person],
    )
    if not rows:
        raise NotFound("person_not_found", f"no person with distinct id or person id {person!r}", "person")
    return str(rows[0]["person_id"])


def history(store: Store, project: Project, name: str, person: str, at: datetime | None = None) -> dict[str, Any]:
    """The periods of a person's values of a dynamic tag (``valid_to`` NULL: current); with ``at``,
    the value at that instant."""
    tag, _ = load(store, project, name)
    if tag.kind != "dynamic":
        raise UserloopError("no_history", f"tag {name!r} is {tag.kind}: only dynamic tags keep a history", "name")
    person_id = resolve_person(store, project, person)
    rows = store.query(
        """SELECT value, num_value, valid_from, valid_to FROM tag_history
           WHERE project_id = ? AND tag = ? AND person_id = ? ORDER BY valid_from""",
        [project.id, name, person_id],
    )
    out: dict[str, Any] = {"tag": name, "person_id": person_id, "history": rows}
    if at is not None:
        found = [r["value"] for r in rows if r["valid_from"] <= at and (r["valid_to"] is None or at < r["valid_to"])]
        out["at"] = at
        out["value_at"] = found[0] if found else None
    return out


def catalogue(store: Store, project: Project) -> dict[str, Any]:
    """The category tree (the default categories always present) with the number of tags under each
    node and, on each tag, the number of persons with a value."""
    tags = store.query(
        """SELECT t.name, t.kind, t.source, t.category, t.description, coalesce(v.n, 0) AS persons
           FROM tags t LEFT JOIN (SELECT tag, count(*) AS n FROM tag_values WHERE project_id = ? GROUP BY tag) v
             ON v.tag = t.name
           WHERE t.project_id = ? ORDER BY t.category, t.name""",
        [project.id, project.id],
    )
    root: dict[str, Any] = {"name": "", "path": "", "count": 0, "tags": [], "children": []}

    def child(node: dict[str, Any], name: str) -> dict[str, Any]:
        for c in node["children"]:
            if c["name"] == name:
                return c  # type: ignore[no-any-return]
        path = f"{node['path']}/{name}" if node["path"] else name
        c = {"name": name, "path": path, "count": 0, "tags": [], "children": []}
        node["children"].append(c)
        return c

    for name in DEFAULT_CATEGORIES:
        child(root, name)
    for t in tags:
        node = root
        node["count"] += 1
        for part in str(t["category"]).split("/"):
            node = child(node, part)
            node["count"] += 1
        node["tags"].append({k: t[k] for k in ("name", "kind", "source", "description", "persons")})
    return root
