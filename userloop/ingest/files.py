"""Import events from a file (CSV, Parquet, JSON lines), done in DuckDB SQL.

A private in-memory DuckDB connection reads the file (``.gz`` directly), copies it into a
temporary table (its ``rowid`` is the row's 0-based position in the file) and turns it into rows of
the ``events`` table with one SQL query, streamed out as Arrow tables in :data:`EVENTS_SCHEMA`
form for :meth:`Writer.submit_table` / ``Backend.import_table``. No Python code runs per row.

Column mapping (``--map COLUMN=FIELD``, :func:`parse_mapping`):

* fields: :data:`MAPPABLE_FIELDS` (``event``, ``distinct_id``, ``timestamp``, ``message_id``,
  ``user_id``, ``anonymous_id``, the context columns ``url`` ... ``country``), ``properties`` (a
  JSON object column, merged under the other properties), ``properties.<name>``, or ``-`` (drop
  the column).
* A column named like a field maps to it unless mapped otherwise: first exact names, then names
  compared without case and punctuation (``userId``, ``User ID`` -> ``user_id``); a column named
  ``properties.x`` becomes property ``x``. Every other column becomes a property under its own
  name (NULLs left out). A file with every ``events`` column (a userloop export) re-imports as it
  was: its system columns (``type``, ``received_at``, ``channel``, ...) are ignored.
* ``event``, ``timestamp`` and ``distinct_id`` are required; ``distinct_id`` falls back to
  ``user_id`` then ``anonymous_id``. ``timestamp`` takes ISO-8601 text (naive = UTC), epoch seconds
  or milliseconds (numbers or digit strings, ms from 1e10 up), dates and timestamp columns.
* Rows with an empty event or distinct id, an event name over 200 characters, a message id over 200
  characters, or a missing/unreadable timestamp (or one outside the years 1970-9000), and JSON lines
  that do not parse, are skipped and counted by reason.
* ``message_id``, when absent, is ``imp-`` + md5(preset, mapping, row number, the row's values):
  importing the same file again stores nothing new.
* ``type`` = "track", ``source`` = "import", ``original_timestamp`` = ``timestamp``, ``path`` and
  ``utm_*`` fall back to the ``url`` (as the HTTP ingest does), ``referring_domain`` comes from the
  ``referrer`` and ``channel`` is :func:`userloop.ingest.normalize.channel_for`, in SQL, when the file
  has a utm, referrer or url column (else NULL).

Values: a generic CSV must have a header row; it is read as text (ids keep leading zeros and read
"17850.0" as written), property values get the type DuckDB detects for their column (a value that
does not fit stays text). JSON lines keep their JSON values; numeric ids become integer strings
when integral. Parquet keeps its types.

:func:`iter_chunks` returns an :class:`ImportChunks` iterator: besides the tables it has ``total``
(event rows it yields, known before the first chunk), ``skipped`` and ``skipped_by_reason``
(source rows left out, also known up front) and ``rows`` (rows yielded so far). Presets: see
:mod:`userloop.ingest.presets`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from userloop.errors import UserloopError
from userloop.ingest.event import EVENT_FIELDS
from userloop.ingest.normalize import CHANNEL_HOSTS, SEARCH_HOSTS, SOURCE_ALIASES
from userloop.ingest.presets import (
    PRESETS,
    TAOBAO_COLUMNS,
    TAOBAO_MAPPING,
    event_columns_sql,
    online_retail_sql,
)
from userloop.store.writer import EVENTS_SCHEMA

FORMATS = ("csv", "parquet", "jsonl")
_FORMAT_ALIASES = {"csv": "csv", "tsv": "csv", "parquet": "parquet", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl"}  # fmt: skip
_SUFFIXES = {"." + name: fmt for name, fmt in _FORMAT_ALIASES.items()}
_COMPRESSED = (".gz", ".zst")

_TEXT_FIELDS = (
    "event", "distinct_id", "message_id", "user_id", "anonymous_id", "url", "path", "referrer",
    "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term",
    "os", "browser", "device_type", "app_version", "lib", "ip", "city", "region", "country",
)  # fmt: skip
_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
MAPPABLE_FIELDS: tuple[str, ...] = (*_TEXT_FIELDS[:3], "timestamp", *_TEXT_FIELDS[3:], "properties")
_SYSTEM_COLUMNS = ("project_id", "type", "sent_at", "received_at", "original_timestamp", "channel",
                   "referring_domain", "source", "person_id")  # fmt: skip
_INTS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}  # fmt: skip
_CASTABLE = _INTS | {"FLOAT", "DOUBLE", "BOOLEAN"}


@dataclass(frozen=True)
class ImportSpec:
    path: Path
    project_id: int
    format: str | None = None  # "csv" | "parquet" | "jsonl"; None = from the suffix
    preset: str | None = None  # None | "taobao" | "online_retail"
    mapping: dict[str, str] = field(default_factory=dict)  # source column -> field


# -- mappings ----------------------------------------------------------------------------------------


def _check_field(target: str, item: str) -> None:
    if target == "-" or target in MAPPABLE_FIELDS:
        return
    if target.startswith("properties.") and target[len("properties.") :]:
        return
    raise UserloopError(
        "bad_mapping",
        f"unknown field {target!r} in {item!r}; map to one of {', '.join(MAPPABLE_FIELDS)}, "
        "properties.<name> or - (drop the column)",
        "mapping",
    )


def _check_mapping(mapping: dict[str, str]) -> None:
    seen: dict[str, str] = {}
    for col, target in mapping.items():
        if not col:
            raise UserloopError("bad_mapping", "empty column name in mapping", "mapping")
        _check_field(target, f"{col}={target}")
        if target != "-" and target in seen:
            raise UserloopError(
                "duplicate_mapping", f"columns {seen[target]!r} and {col!r} both map to {target}", "mapping"
            )
        seen[target] = col


def parse_mapping(items: list[str]) -> dict[str, str]:
    """``["col=field", ...]`` (from ``--map``) -> ``{col: field}``; UserloopError on a bad item."""
    out: dict[str, str] = {}
    for item in items:
        col, eq, target = item.rpartition("=")
        col, target = col.strip(), target.strip()
        if not eq or not col or not target:
            raise UserloopError("bad_mapping", f"mapping {item!r} is not COLUMN=FIELD", "mapping")
        _check_field(target, item)
        if col in out:
            raise UserloopError("duplicate_mapping", f"column {col!r} is mapped twice", "mapping")
        out[col] = target
    _check_mapping(out)
    return out


# -- SQL expressions over one source column ------------------------------------------------------------


@dataclass(frozen=True)
class _Col:
    name: str  # as in the file
    sql: str  # its column in the temp table
    type: str  # its DuckDB type there
    value_type: str  # the type property values are cast to (CSV: DuckDB's guess)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_float(t: str) -> bool:
    return t in ("FLOAT", "DOUBLE") or t.startswith("DECIMAL")


def _is_nested(t: str) -> bool:
    return t.endswith("]") or t.startswith(("STRUCT", "MAP", "UNION"))


def _num_text(x: str) -> str:  # 17850.0 -> '17850'
    return f"CASE WHEN {x} = trunc({x}) AND abs({x}) < 1e15 THEN CAST(CAST({x} AS BIGINT) AS VARCHAR) ELSE CAST({x} AS VARCHAR) END"


def _text(c: _Col) -> str:
    x, t = c.sql, c.type
    if t == "VARCHAR":
        e = x
    elif t == "JSON":
        e = (f"CASE json_type({x}) WHEN 'VARCHAR' THEN json_extract_string({x}, '$') "
             f"WHEN 'DOUBLE' THEN {_num_text(f'CAST({x} AS DOUBLE)')} ELSE CAST({x} AS VARCHAR) END")  # fmt: skip
    elif _is_float(t):
        e = _num_text(x)
    elif _is_nested(t):
        e = f"CAST(to_json({x}) AS VARCHAR)"
    else:
        e = f"CAST({x} AS VARCHAR)"
    return f"nullif({e}, '')"


def _epoch(value: str) -> str:  # seconds, or milliseconds from 1e10 up; exact decimal arithmetic
    x = f"TRY_CAST({value} AS DECIMAL(38, 6))"
    return f"TRY(timezone('UTC', make_timestamp(CAST(round({x} * CASE WHEN abs({x}) >= 1e10 THEN 1000 ELSE 1000000 END) AS BIGINT))))"


def _time_text(x: str) -> str:
    t = f"trim({x})"
    return f"CASE WHEN regexp_full_match({t}, '[+-]?[0-9]+(\\.[0-9]+)?') THEN {_epoch(t)} ELSE TRY_CAST({t} AS TIMESTAMPTZ) END"


def _time(c: _Col) -> str:
    x, t = c.sql, c.type
    if t == "VARCHAR":
        return _time_text(x)
    if t == "JSON":
        num, text = _epoch(f"CAST({x} AS VARCHAR)"), _time_text(f"json_extract_string({x}, '$')")
        return (
            f"CASE WHEN json_type({x}) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN {num} "
            f"WHEN json_type({x}) = 'VARCHAR' THEN {text} END"
        )
    if t in _INTS or _is_float(t):
        return _epoch(x)
    if t == "TIMESTAMP WITH TIME ZONE":
        return x
    if t.startswith(("TIMESTAMP", "DATE")):
        return f"timezone('UTC', CAST({x} AS TIMESTAMP))"
    raise UserloopError("bad_mapping", f"column {c.name!r} ({t}) cannot be read as a timestamp", "timestamp")


def _value(c: _Col) -> str:
    x = c.sql
    if c.type == "VARCHAR" and c.value_type in _CASTABLE:
        return f"coalesce(to_json(TRY_CAST({x} AS {c.value_type})), to_json({x}))"
    if c.type == "BLOB":
        return f"CAST({x} AS VARCHAR)"
    return x


def _object(c: _Col) -> str:
    x, t = c.sql, c.type
    if t == "VARCHAR":
        return f"CASE WHEN json_type(TRY_CAST({x} AS JSON)) = 'OBJECT' THEN TRY_CAST({x} AS JSON) END"
    if t == "JSON":
        return f"CASE WHEN json_type({x}) = 'OBJECT' THEN {x} END"
    if t.startswith(("STRUCT", "MAP")):
        return f"to_json({x})"
    raise UserloopError("bad_mapping", f"column {c.name!r} ({t}) is not a JSON object column", "properties")


def _host(x: str) -> str:
    return f"lower(nullif(regexp_extract({x}, '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^@/?#]*@)?([^:/?#]*)', 1), ''))"


def _channel(utm_source: str, utm_medium: str, host: str) -> str:
    """``channel_for`` in SQL (``host``: the referring domain without ``www.``)."""
    aliases = " ".join(f"WHEN {_lit(k)} THEN {_lit(v)}" for k, v in SOURCE_ALIASES.items())
    hosts = " ".join(
        f"WHEN {host} = {_lit(s)} OR ends_with({host}, {_lit('.' + s)}) THEN {_lit(ch)}"
        for s, ch in CHANNEL_HOSTS.items()
    )
    search = " OR ".join(f"contains({host}, {_lit(s)})" for s in SEARCH_HOSTS)
    return f"""CASE WHEN lower({utm_medium}) IN ('cpc', 'ppc', 'paid', 'paidsearch', 'sem') THEN 'paid_search'
        WHEN lower({utm_medium}) = 'email' THEN 'email'
        WHEN {utm_source} IS NOT NULL THEN CASE lower({utm_source}) {aliases} ELSE 'campaign' END
        WHEN {host} IS NOT NULL THEN CASE {hosts} WHEN {search} THEN 'search' ELSE 'referral' END
        ELSE 'direct' END"""


# -- reading the file ----------------------------------------------------------------------------------


def _format_of(spec: ImportSpec, path: Path) -> str:
    if spec.format is not None:
        fmt = _FORMAT_ALIASES.get(spec.format.lower())
        if fmt is None:
            raise UserloopError(
                "unknown_format", f"unknown format {spec.format!r}; use one of {', '.join(FORMATS)}", "format"
            )
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes.pop()
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise UserloopError(
            "unknown_format",
            f"cannot tell the format of {path.name}; name it .csv, .csv.gz, .parquet, .jsonl, .ndjson or .json, "
            "or give the format",
            "format",
        )
    return fmt


def _describe(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def _load(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, preset: str | None) -> list[_Col]:
    """Copy the file into temp table ``src`` (columns c0, c1, ...; ``ul_bad`` for unreadable lines)."""
    p = _lit(str(path))
    if fmt == "jsonl":
        con.execute(
            f"CREATE TEMP TABLE ul_objs AS SELECT json FROM read_json_objects({p}, format='auto', ignore_errors=true)"
        )
        keys = con.execute(
            """SELECT k FROM (SELECT r, unnest(ks) AS k, generate_subscripts(ks, 1) AS i
                              FROM (SELECT rowid AS r, json_keys(json) AS ks FROM ul_objs
                                    WHERE json_type(json) = 'OBJECT'))
               GROUP BY k ORDER BY min(r), min(i)"""
        ).fetchall()
        names = [str(k[0]) for k in keys]
        pointers = ["/" + n.replace("~", "~0").replace("/", "~1") for n in names]
        select = [
            f"CASE WHEN json_type(json -> {_lit(ptr)}) <> 'NULL' THEN json -> {_lit(ptr)} END AS c{i}"
            for i, ptr in enumerate(pointers)
        ]
        con.execute(
            f"CREATE TEMP TABLE src AS SELECT {', '.join([*select, 'json IS NULL AS ul_bad'])} FROM ul_objs"
        )
        con.execute("DROP TABLE ul_objs")
        return [_Col(n, f"c{i}", "JSON", "JSON") for i, n in enumerate(names)]
    if fmt == "parquet":
        reader = f"read_parquet({p})"
        described = _describe(con, reader)
        types = [t for _, t in described]
    elif preset == "taobao":
        reader = f"read_csv({p}, header=false, all_varchar=true, null_padding=true, names={list(TAOBAO_COLUMNS)!r})"
        described = _describe(con, reader)
        types = ["VARCHAR"] * len(described)
    else:
        described = _describe(con, f"read_csv({p}, header=true, null_padding=true)")
        types = [t for _, t in described]
        reader = f"read_csv({p}, header=true, null_padding=true, all_varchar=true)"
    positional = ", ".join(f"#{i + 1} AS c{i}" for i in range(len(described)))
    con.execute(f"CREATE TEMP TABLE src AS SELECT {positional}, false AS ul_bad FROM {reader}")
    src_types = [t for _, t in _describe(con, "src")]
    return [_Col(n, f"c{i}", src_types[i], types[i]) for i, (n, _) in enumerate(described)]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _find(cols: list[_Col], name: str) -> _Col:
    for c in cols:
        if c.name == name:
            return c
    folded = [c for c in cols if c.name.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise UserloopError(
        "unknown_column",
        f"column {name!r} (from the mapping) is not in the file; it has: {', '.join(c.name for c in cols)}",
        "mapping",
    )


def _resolve(cols: list[_Col], mapping: dict[str, str]) -> tuple[dict[str, _Col], list[_Col]]:
    """``{field: column}`` and the columns that become properties under their own names."""
    fields: dict[str, _Col] = {}
    used: set[str] = set()
    for name, target in mapping.items():
        col = _find(cols, name)
        used.add(col.name)
        if target != "-":
            fields[target] = col
    names = {c.name for c in cols}
    if set(EVENT_FIELDS) <= names:  # a userloop export
        used.update(_SYSTEM_COLUMNS)
    by_norm = {_norm(f): f for f in MAPPABLE_FIELDS}
    for exact in (True, False):
        for col in cols:
            if col.name in used:
                continue
            default: str | None
            if col.name.startswith("properties.") and len(col.name) > len("properties."):
                default = col.name
            elif exact:
                default = col.name if col.name in MAPPABLE_FIELDS else None
            else:
                default = by_norm.get(_norm(col.name))
            if default is not None and default not in fields:
                fields[default] = col
                used.add(col.name)
    props = [c for c in cols if c.name not in used]
    for required in ("event", "timestamp"):
        if required not in fields:
            raise UserloopError(
                "missing_field",
                f"no column for {required}: map one with --map COLUMN={required}; "
                f"the file has: {', '.join(c.name for c in cols)}",
                required,
            )
    if not {"distinct_id", "user_id", "anonymous_id"} & fields.keys():
        raise UserloopError(
            "missing_field",
            "no column for distinct_id: map one with --map COLUMN=distinct_id (or user_id / anonymous_id); "
            f"the file has: {', '.join(c.name for c in cols)}",
            "distinct_id",
        )
    return fields, props


def _rows_sql(
    cols: list[_Col], fields: dict[str, _Col], props: list[_Col], sig: str, project_id: int, received: str
) -> str:
    """Every source row as an events row plus ``ul_reason`` (NULL = import it)."""
    a = ["rowid AS ul_row", "ul_bad"]
    a += [f"{_text(fields[f]) if f in fields else 'CAST(NULL AS VARCHAR)'} AS f_{f}" for f in _TEXT_FIELDS]
    a.append(f"{_time(fields['timestamp'])} AS f_ts")
    values: dict[str, str] = {c.name: _value(c) for c in props}
    values.update(
        {f[len("properties.") :]: _value(c) for f, c in fields.items() if f.startswith("properties.")}
    )
    patch = "'{}'"
    if values:
        patch = f"json_merge_patch('{{}}', json_object({', '.join(f'{_lit(k)}, {v}' for k, v in values.items())}))"
    base = _object(fields["properties"]) if "properties" in fields else "'{}'"
    a.append(f"CAST(json_merge_patch(coalesce({base}, '{{}}'), {patch}) AS VARCHAR) AS f_props")
    row_text = ", ".join(f"coalesce(CAST({c.sql} AS VARCHAR), '')" for c in cols)
    a.append(
        f"'imp-' || md5(concat_ws(chr(31), {_lit(sig)}, CAST(rowid AS VARCHAR){', ' if cols else ''}{row_text})) AS f_hash"
    )

    b = ["*", "coalesce(f_distinct_id, f_user_id, f_anonymous_id) AS f_did",
         "CASE WHEN year(f_ts) BETWEEN 1970 AND 9000 THEN f_ts END AS f_time",
         "regexp_replace(" + _host("f_referrer") + ", '^www\\.', '') AS f_host"]  # fmt: skip
    exprs = {f: f"f_{f}" for f in _TEXT_FIELDS}
    if "url" in fields:
        if "path" not in fields:
            exprs["path"] = (
                "coalesce(f_path, nullif(regexp_extract(f_url, '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)', 1), ''))"
            )
        for u in _UTM:
            if u not in fields:
                exprs[u] = (
                    f"coalesce(f_{u}, nullif(url_decode(regexp_extract(f_url, '[?&]{u}=([^&#]*)', 1)), ''))"
                )
    exprs.update(
        project_id=f"CAST({int(project_id)} AS INTEGER)",
        message_id="coalesce(f_message_id, f_hash)",
        type="'track'",
        distinct_id="f_did",
        timestamp="f_time",
        original_timestamp="f_time",
        received_at=received,
        properties="f_props",
        referring_domain=_host("f_referrer"),
        source="'import'",
    )
    if {"url", "referrer", "utm_source", "utm_medium"} & fields.keys():
        exprs["channel"] = _channel(exprs["utm_source"], exprs["utm_medium"], "f_host")
    reason = """CASE WHEN ul_bad THEN 'bad_json'
        WHEN f_event IS NULL OR trim(f_event) = '' THEN 'missing_event'
        WHEN length(f_event) > 200 THEN 'bad_event'
        WHEN f_did IS NULL OR trim(f_did) = '' THEN 'missing_distinct_id'
        WHEN f_time IS NULL THEN 'bad_timestamp'
        WHEN length(f_message_id) > 200 THEN 'bad_message_id' END"""
    return f"""SELECT {event_columns_sql(exprs)}, {reason} AS ul_reason
        FROM (SELECT {", ".join(b)} FROM (SELECT {", ".join(a)} FROM src))"""


# -- the import ------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    con: duckdb.DuckDBPyConnection
    events_sql: str
    total: int
    skipped: dict[str, int]


def _prepare(spec: ImportSpec, received_at: datetime | None) -> _Prepared:
    path = Path(spec.path)
    if spec.preset is not None and spec.preset not in PRESETS:
        raise UserloopError(
            "unknown_preset", f"unknown preset {spec.preset!r}; use one of {', '.join(PRESETS)}", "preset"
        )
    if not path.is_file():
        raise UserloopError("file_not_found", f"no such file: {path}", "path")
    fmt = "csv" if spec.preset else _format_of(spec, path)
    if spec.preset and spec.format is not None and _FORMAT_ALIASES.get(spec.format.lower()) != "csv":
        raise UserloopError("bad_format", f"preset {spec.preset} reads CSV, not {spec.format}", "format")
    mapping = dict(spec.mapping)
    _check_mapping(mapping)
    received = received_at or datetime.now(UTC)
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    received_sql = f"CAST({_lit(received.astimezone(UTC).isoformat())} AS TIMESTAMPTZ)"
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        if spec.preset == "online_retail":
            if mapping:
                raise UserloopError("bad_mapping", "preset online_retail takes no column mapping", "mapping")
            reader = f"read_csv({_lit(str(path))}, header=true, all_varchar=true)"
            names = [n for n, _ in _describe(con, reader)]
            create, events_sql, skipped_sql = online_retail_sql(reader, names, spec.project_id, received_sql)
            con.execute(create)
            row = con.execute(f"SELECT count(*) FROM ({events_sql})").fetchone()
            total = int(row[0]) if row else 0
            skipped = {str(r): int(n) for r, n in con.execute(skipped_sql).fetchall()}
        else:
            if spec.preset == "taobao":
                mapping = {**TAOBAO_MAPPING, **mapping}
                _check_mapping(mapping)
            cols = _load(con, path, fmt, spec.preset)
            fields, props = _resolve(cols, mapping)
            sig = json.dumps(
                [spec.preset, sorted((f, c.name) for f, c in fields.items()), [c.name for c in props]]
            )
            con.execute(
                f"CREATE TEMP VIEW ul_rows AS {_rows_sql(cols, fields, props, sig, spec.project_id, received_sql)}"
            )
            counts = {
                r: int(n)
                for r, n in con.execute(
                    "SELECT ul_reason, count(*) FROM ul_rows GROUP BY ul_reason"
                ).fetchall()
            }
            total = counts.pop(None, 0)
            skipped = {str(r): n for r, n in counts.items()}
            names_sql = ", ".join(f'"{f}"' for f in EVENT_FIELDS)
            events_sql = f"SELECT {names_sql} FROM ul_rows WHERE ul_reason IS NULL"
    except duckdb.Error as exc:
        con.close()
        raise UserloopError(
            "bad_file", f"cannot import {path.name} as {fmt}: {str(exc).splitlines()[0]}", "path"
        ) from exc
    except BaseException:
        con.close()
        raise
    return _Prepared(con, events_sql, total, dict(sorted(skipped.items())))


class ImportChunks(Iterator[pa.Table]):
    """The Arrow tables of one import (EVENTS_SCHEMA, file order), and what it skips.

    ``total``: event rows it will yield; ``skipped`` / ``skipped_by_reason``: source rows (lines of an
    invoice file) left out, by reason (``missing_event``, ``missing_distinct_id``, ``bad_timestamp``,
    ``bad_event``, ``bad_message_id``, ``bad_json``, ``missing_customer``, ...); ``rows``: yielded so far.
    """

    def __init__(self, prepared: _Prepared, chunk_rows: int):
        self.total = prepared.total
        self.skipped_by_reason = prepared.skipped
        self.skipped = sum(prepared.skipped.values())
        self.rows = 0
        self._con: duckdb.DuckDBPyConnection | None = prepared.con
        self._reader = prepared.con.sql(prepared.events_sql).to_arrow_reader(chunk_rows)

    def __next__(self) -> pa.Table:
        if self._con is None:
            raise StopIteration
        try:
            batch = self._reader.read_next_batch()
        except StopIteration:
            self.close()
            raise
        except duckdb.Error as exc:
            self.close()
            raise UserloopError("bad_file", f"import failed: {str(exc).splitlines()[0]}") from exc
        table = pa.Table.from_batches([batch]).cast(EVENTS_SCHEMA)
        self.rows += table.num_rows
        return table

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def iter_chunks(
    spec: ImportSpec, *, chunk_rows: int = 100_000, received_at: datetime | None = None
) -> ImportChunks:
    """Read and check the file now (UserloopError on a bad spec or file); the tables come lazily."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be positive")
    return ImportChunks(_prepare(spec, received_at), chunk_rows)


def count_rows(spec: ImportSpec) -> int:
    """Event rows the import produces (reads the file; ``iter_chunks(...).total`` is the same number)."""
    prepared = _prepare(spec, None)
    prepared.con.close()
    return prepared.total


__all__ = [
    "FORMATS",
    "MAPPABLE_FIELDS",
    "ImportChunks",
    "ImportSpec",
    "count_rows",
    "iter_chunks",
    "parse_mapping",
]
