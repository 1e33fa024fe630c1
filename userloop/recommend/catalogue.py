"""The item catalogue: set, read, delete, import from CSV, and the interest tags people pick.

Items live in the base ``items`` table (``project_id, item_type, item_id, properties JSON, deleted``)
that the Sensors ``item_set``/``item_delete`` route also fills. The catalogue fields are properties
with fixed names: ``title``, ``tags`` (a list), ``category``, ``price``, ``author``, ``created_at``,
``active``; anything else is kept as given. Setting merges into what is there (JSON merge patch),
like the Sensors route; API writes go through the writer so they stay in order with ingestion.

CSV import: a header naming ``type`` (or ``item_type``) and ``id`` (or ``item_id``), optionally the
catalogue fields (``tags`` separated by ``|``) and any other columns (kept as text properties).
Rows are checked in SQL; bad rows are reported by line and skipped; the good ones are upserted in
one statement (a later row for the same item wins).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.csv as pacsv

from userloop.errors import NotFound, UserloopError
from userloop.ingest.event import ItemOp, Payload
from userloop.recommend.interactions import CATALOGUE_SQL
from userloop.store.duckdb import Project, Store

MAX_ITEMS_PER_CALL = 1000
MAX_REPORTED = 100
FIELDS = ("title", "tags", "category", "price", "author", "created_at", "active")


class ItemIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: str
    id: str
    title: str | None = None
    tags: list[str] | None = None
    category: str | None = None
    price: float | None = None
    author: str | None = None
    created_at: datetime | None = None
    active: bool | None = None
    properties: dict[str, Any] = {}

    def props(self) -> dict[str, Any]:
        out = dict(self.properties)
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, datetime):
                    value = (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
                out[name] = value
        return out


def decode_items(raw: Any) -> list[ItemIn]:
    if not isinstance(raw, list) or not raw:
        raise UserloopError("invalid_field", "items must be a non-empty list", "items")
    if len(raw) > MAX_ITEMS_PER_CALL:
        raise UserloopError("too_many_items", f"at most {MAX_ITEMS_PER_CALL} items per call (use the CSV import)", "items")
    out = []
    for i, entry in enumerate(raw):
        try:
            item = msgspec.convert(entry, ItemIn)
        except msgspec.ValidationError as exc:
            msg = str(exc)
            code = "unknown_field" if msg.startswith("Object contains unknown field") else "invalid_field"
            sub = msg.split("`$.", 1)[1].split("`", 1)[0] if "`$." in msg else None
            raise UserloopError(code, msg, f"items[{i}]" + (f".{sub}" if sub else "")) from exc
        for name in ("type", "id"):
            if not getattr(item, name).strip() or (name == "type" and ":" in item.type):
                raise UserloopError("invalid_field", f"{name} must be non-empty text (type without ':')",
                                    f"items[{i}].{name}")
        out.append(item)
    return out


def _apply(store: Store, writer: Any, ops: list[ItemOp]) -> None:
    if writer is not None:
        writer.write(Payload(ops=list(ops), accepted=len(ops)))
        return
    cur = store.cursor()
    for op in ops:  # no writer (a read-only tool): the writer's own statements
        if op.op == "set":
            cur.execute(
                """INSERT INTO items VALUES (?, ?, ?, ?, false, now()) ON CONFLICT DO UPDATE SET
                   properties = json_merge_patch(items.properties, excluded.properties), deleted = false,
                   updated_at = excluded.updated_at""",
                [op.project_id, op.item_type, op.item_id, msgspec.json.encode(op.properties).decode()],
            )
        else:
            cur.execute("UPDATE items SET deleted = true, updated_at = now() WHERE project_id = ? AND item_type = ? "
                        "AND item_id = ?", [op.project_id, op.item_type, op.item_id])


def set_items(store: Store, writer: Any, project: Project, raw: Any) -> dict[str, Any]:
    items = decode_items(raw)
    _apply(store, writer, [ItemOp(project_id=project.id, item_type=i.type, item_id=i.id, op="set", properties=i.props())
                           for i in items])
    return {"set": len(items)}


def delete_item(store: Store, writer: Any, project: Project, item_type: str, item_id: str) -> dict[str, Any]:
    get_item(store, project, item_type, item_id)
    _apply(store, writer, [ItemOp(project_id=project.id, item_type=item_type, item_id=item_id, op="delete")])
    return {"deleted": True, "item_type": item_type, "item_id": item_id}


_COLUMNS = "item_type, item_id, title, tags, category, price, author, created_at, active, deleted, properties, updated_at"


def _row(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    r["properties"] = msgspec.json.decode(r["properties"]) if r.get("properties") else {}
    return r


def get_item(store: Store, project: Project, item_type: str, item_id: str) -> dict[str, Any]:
    rows = store.query(f"SELECT {_COLUMNS} FROM ({CATALOGUE_SQL}) WHERE item_type = ? AND item_id = ?",
                       [project.id, item_type, item_id])
    if not rows:
        raise NotFound("item_not_found", f"no item {item_type}:{item_id}", "item")
    return _row(rows[0])


def list_items(store: Store, project: Project, params: dict[str, Any]) -> dict[str, Any]:
    where: list[str] = ["TRUE"]
    args: list[Any] = [project.id]
    if params.get("type"):
        where.append("item_type = ?")
        args.append(str(params["type"]))
    if params.get("tag"):
        where.append("list_contains(tags, ?)")
        args.append(str(params["tag"]))
    if params.get("category"):
        where.append("category = ?")
        args.append(str(params["category"]))
    if params.get("q"):
        where.append("contains(lower(coalesce(title, '')), lower(?))")
        args.append(str(params["q"]))
    if str(params.get("include_deleted", "")).lower() not in ("1", "true"):
        where.append("NOT deleted")
    try:
        limit = int(params.get("limit", 100))
        offset = int(params.get("offset", 0))
    except (TypeError, ValueError) as exc:
        raise UserloopError("invalid_field", "limit and offset are integers", "limit") from exc
    if not 1 <= limit <= 1000 or offset < 0:
        raise UserloopError("invalid_field", "limit is 1..1000 and offset >= 0", "limit")
    cond = " AND ".join(where)
    rows = store.query(
        f"""SELECT {_COLUMNS}, count(*) OVER () AS total FROM ({CATALOGUE_SQL}) WHERE {cond}
            ORDER BY item_type, item_id LIMIT {limit} OFFSET {offset}""",
        args,
    )
    total = rows[0]["total"] if rows else 0
    return {"items": [_row({k: v for k, v in r.items() if k != "total"}) for r in rows], "total": total}


def catalogue_tags(store: Store, project: Project) -> dict[str, Any]:
    """The tags of active items with how many items carry each (what a cold-start picker shows)."""
    rows = store.query(
        f"""SELECT t.tag, count(*) AS items, list(DISTINCT c.item_type ORDER BY c.item_type) AS types
            FROM ({CATALOGUE_SQL}) c, unnest(c.tags) AS t(tag) WHERE c.active GROUP BY t.tag
            ORDER BY items DESC, t.tag""",
        [project.id],
    )
    return {"tags": rows}


# -- CSV import -----------------------------------------------------------------------------------
_ALIASES = {"item_type": "type", "item_id": "id"}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def import_csv(store: Store, project: Project, text: str) -> dict[str, Any]:
    text = text.removeprefix("\ufeff")
    try:
        header = next(csv.reader(io.StringIO(text)))
    except StopIteration:
        raise UserloopError("invalid_csv", "the CSV file is empty", "file") from None
    except csv.Error as exc:
        raise UserloopError("invalid_csv", f"cannot read the CSV header: {exc}", "file") from exc
    names = [_ALIASES.get(h.strip().lower(), h.strip().lower() if h.strip().lower() in FIELDS else h.strip())
             for h in header]
    if "type" not in names or "id" not in names or len(set(names)) != len(names) or "" in names:
        raise UserloopError("invalid_csv", "the header must name type (or item_type) and id (or item_id), each column "
                            f"once (got {', '.join(header)})", "file")
    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode()),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=True, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UserloopError("invalid_csv", f"cannot read the CSV: {exc}", "file") from exc
    extra = [n for n in names if n not in ("type", "id", *FIELDS)]
    col = {n: f"src.{_ident(n)}" for n in names}

    def text_of(name: str) -> str:
        return f"nullif(trim({col[name]}), '')" if name in col else "NULL::VARCHAR"

    price, created, active = text_of("price"), text_of("created_at"), text_of("active")
    tags = (f"list_filter(list_transform(string_split({text_of('tags')}, '|'), lambda x: trim(x)), lambda x: x <> '')"
            if "tags" in col else "NULL")
    params: dict[str, Any] = {}  # the extra columns' names, as JSON keys
    pieces = []
    for name in ("title", "category", "author"):
        pieces.append(f"CASE WHEN {text_of(name)} IS NOT NULL THEN '\"{name}\":' || to_json({text_of(name)}) END")
    pieces.append(f"CASE WHEN {tags} IS NOT NULL AND {text_of('tags')} IS NOT NULL THEN '\"tags\":' || to_json({tags}) END")
    pieces.append(f"CASE WHEN {price} IS NOT NULL THEN '\"price\":' || to_json(TRY_CAST({price} AS DOUBLE)) END")
    pieces.append(f"CASE WHEN {created} IS NOT NULL THEN '\"created_at\":' || "
                  f"to_json(strftime(TRY_CAST({created} AS TIMESTAMPTZ) AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ')) END")
    pieces.append(f"CASE WHEN {active} IS NOT NULL THEN '\"active\":' || to_json(TRY_CAST({active} AS BOOLEAN)) END")
    for i, name in enumerate(extra):
        params[f"k{i}"] = name
        pieces.append(f"CASE WHEN {text_of(name)} IS NOT NULL THEN to_json($k{i}) || ':' || to_json({text_of(name)}) END")
    doc = f"'{{' || array_to_string(list_filter([{', '.join(pieces)}], lambda x: x IS NOT NULL), ',') || '}}'"
    error = f"""CASE WHEN {text_of('type')} IS NULL THEN 'type is empty'
                     WHEN contains({text_of('type')}, ':') THEN 'type must not contain :'
                     WHEN {text_of('id')} IS NULL THEN 'id is empty'
                     WHEN {price} IS NOT NULL AND TRY_CAST({price} AS DOUBLE) IS NULL THEN 'price is not a number'
                     WHEN {created} IS NOT NULL AND TRY_CAST({created} AS TIMESTAMPTZ) IS NULL
                       THEN 'created_at is not an ISO 8601 time'
                     WHEN {active} IS NOT NULL AND TRY_CAST({active} AS BOOLEAN) IS NULL THEN 'active is not true/false'
                END"""
    cur = store.new_cursor()
    try:
        cur.execute("SET python_enable_replacements = false")
        cur.register("_items_csv", table)
        cur.execute("BEGIN TRANSACTION")
        try:
            cur.execute(
                f"""CREATE OR REPLACE TEMP TABLE _items_in AS
                    SELECT row_number() OVER () + 1 AS line, {text_of('type')} AS item_type, {text_of('id')} AS item_id,
                           {error} AS error, {doc} AS properties
                    FROM _items_csv src""",
                params,
            )
            bad = cur.execute(f"SELECT line, error FROM _items_in WHERE error IS NOT NULL ORDER BY line LIMIT {MAX_REPORTED}").fetchall()
            counts = cur.execute("SELECT count(*), count(*) FILTER (WHERE error IS NOT NULL) FROM _items_in").fetchall()[0]
            stored = cur.execute(
                """INSERT INTO items
                   SELECT $pid, item_type, item_id, properties::JSON, false, now() FROM _items_in
                   WHERE error IS NULL
                   QUALIFY row_number() OVER (PARTITION BY item_type, item_id ORDER BY line DESC) = 1
                   ON CONFLICT DO UPDATE SET properties = json_merge_patch(items.properties, excluded.properties),
                     deleted = false, updated_at = excluded.updated_at""",
                {"pid": project.id},
            ).fetchall()
            cur.execute("DROP TABLE _items_in")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.unregister("_items_csv")
    finally:
        cur.close()
    return {"rows": int(counts[0]), "stored": int(stored[0][0]) if stored else 0, "skipped": int(counts[1]),
            "errors": [{"line": int(line), "error": err} for line, err in bad]}


# -- interest tags (cold start) -------------------------------------------------------------------
def set_interests(store: Store, project: Project, distinct_id: Any, tags: Any) -> dict[str, Any]:
    if not isinstance(distinct_id, str) or not distinct_id:
        raise UserloopError("missing_field", "distinct_id is required", "distinct_id")
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise UserloopError("invalid_field", "tags must be a list of tag names", "tags")
    known = {r["tag"] for r in catalogue_tags(store, project)["tags"]}
    for i, t in enumerate(tags):
        if t not in known:
            raise UserloopError("unknown_tag", f"no active item has the tag {t!r}", f"tags[{i}]")
    clean = list(dict.fromkeys(tags))
    store.cursor().execute(
        """INSERT INTO recommend_interests VALUES (?, ?, ?, ?)
           ON CONFLICT (project_id, distinct_id) DO UPDATE SET tags = excluded.tags, set_at = excluded.set_at""",
        [project.id, distinct_id, clean, datetime.now(UTC)],
    )
    from userloop.recommend import serve

    serve.interests_changed(store, project.id, distinct_id, clean)
    return {"distinct_id": distinct_id, "tags": clean}


def get_interests(store: Store, project: Project, distinct_id: str) -> dict[str, Any]:
    rows = store.query("SELECT tags, set_at FROM recommend_interests WHERE project_id = ? AND distinct_id = ?",
                       [project.id, distinct_id])
    return {"distinct_id": distinct_id, "tags": rows[0]["tags"] if rows else [], "set_at": rows[0]["set_at"] if rows else None}
