"""File import (userloop.ingest.files): real files through a real store, checked against pandas."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import require_shared
from userloop.backend import LocalBackend
from userloop.errors import UserloopError
from userloop.ingest.files import ImportChunks, ImportSpec, count_rows, iter_chunks, parse_mapping
from userloop.store.writer import EVENTS_SCHEMA

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path / "t.duckdb")
    try:
        yield b
    finally:
        b.close()


def project(backend: LocalBackend, name: str = "p") -> int:
    return int(backend.create_project(name, "UTC")["id"])


def run_import(
    backend: LocalBackend, spec: ImportSpec, chunk_rows: int = 100_000
) -> tuple[int, ImportChunks]:
    chunks = iter_chunks(spec, chunk_rows=chunk_rows, received_at=RECEIVED)
    stored = 0
    for table in chunks:
        assert table.schema.equals(EVENTS_SCHEMA)
        assert table.num_rows <= chunk_rows
        stored += backend.import_table(spec.project_id, table)
    assert chunks.rows == chunks.total
    return stored, chunks


def events(backend: LocalBackend, pid: int, where: str = "true") -> list[dict[str, Any]]:
    return backend.store.query(
        f"SELECT * FROM events WHERE project_id = ? AND ({where}) ORDER BY timestamp, message_id", [pid]
    )


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def code_of(fn: Any, *args: Any, **kwargs: Any) -> UserloopError:
    with pytest.raises(UserloopError) as info:
        fn(*args, **kwargs)
    assert info.value.message
    return info.value


# -- taobao --------------------------------------------------------------------------------------------

TAOBAO_NAMES = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]


def test_taobao_preset_matches_pandas_and_reimport_stores_nothing(backend: LocalBackend) -> None:
    path = require_shared("taobao_userbehavior", "userbehavior_head_sample.csv")
    pid = project(backend)
    spec = ImportSpec(path, pid, preset="taobao")
    assert count_rows(spec) == 84_475

    stored, chunks = run_import(backend, spec, chunk_rows=20_000)
    assert (stored, chunks.total, chunks.skipped, chunks.skipped_by_reason) == (84_475, 84_475, 0, {})

    df = pd.read_csv(path, header=None, names=TAOBAO_NAMES)
    got = {
        r["event"]: r["n"] for r in backend.store.query("SELECT event, count(*) AS n FROM events GROUP BY 1")
    }
    assert got == df["behavior_type"].value_counts().to_dict()
    assert got == {"pv": 75_872, "cart": 4_497, "fav": 2_356, "buy": 1_750}
    n_users = backend.store.query("SELECT count(DISTINCT distinct_id) AS n FROM events")[0]["n"]
    assert n_users == df["user_id"].nunique() == 815
    per_user = backend.store.query("SELECT distinct_id, count(*) AS n FROM events GROUP BY 1")
    assert {r["distinct_id"]: r["n"] for r in per_user} == {
        str(k): v for k, v in df.groupby("user_id").size().items()
    }
    span = backend.store.query("SELECT min(timestamp) AS lo, max(timestamp) AS hi FROM events")[0]
    assert span["lo"] == pd.to_datetime(df["timestamp"].min(), unit="s", utc=True).to_pydatetime()
    assert span["hi"] == pd.to_datetime(df["timestamp"].max(), unit="s", utc=True).to_pydatetime()

    # the first line: 1,2268318,2520377,pv,1511544070
    (row,) = events(
        backend, pid, "distinct_id = '1' AND json_extract_string(properties, '$.item_id') = '2268318'"
    )
    assert (
        row["event"] == "pv"
        and row["user_id"] == "1"
        and row["type"] == "track"
        and row["source"] == "import"
    )
    assert row["timestamp"] == row["original_timestamp"] == datetime.fromtimestamp(1511544070, UTC)
    assert row["timestamp"] == ts("2017-11-25T01:21:10+08:00")
    assert json.loads(row["properties"]) == {"item_id": "2268318", "category_id": "2520377"}
    assert row["received_at"] == RECEIVED and row["channel"] is None

    again, chunks = run_import(backend, spec, chunk_rows=50_000)
    assert again == 0 and chunks.total == 84_475
    assert backend.store.query("SELECT count(*) AS n FROM events")[0]["n"] == 84_475


# -- online retail -------------------------------------------------------------------------------------


def retail_invoices(path: Path, invoice: str, price: str, customer: str) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={invoice: str, "StockCode": str})
    df = df[df[customer].notna()].copy()
    df["line_revenue"] = df["Quantity"] * df[price]
    out = df.groupby(invoice).agg(
        customer=(customer, "first"),
        revenue=("line_revenue", "sum"),
        quantity=("Quantity", "sum"),
        lines=("Quantity", "size"),
        date=("InvoiceDate", "min"),
    )
    out["customer"] = out["customer"].astype("int64").astype(str)
    out["revenue"] = out["revenue"].round(2)
    local = pd.to_datetime(out["date"]).dt.tz_localize("Europe/London")
    out["ts"] = local.dt.tz_convert("UTC")
    return out


def test_online_retail_one_event_per_invoice_matches_pandas(backend: LocalBackend) -> None:
    path = require_shared("online_retail", "online_retail.csv.gz")
    path_ii = require_shared("online_retail", "online_retail_ii_2009_2010.csv.gz")
    pid = project(backend)
    stored, chunks = run_import(backend, ImportSpec(path, pid, preset="online_retail"))
    inv = retail_invoices(path, "InvoiceNo", "UnitPrice", "CustomerID")
    assert stored == chunks.total == len(inv) == 22_190
    assert chunks.skipped_by_reason == {"missing_customer": 135_080}

    rows = events(backend, pid)
    got = pd.DataFrame(
        {
            "invoice": [json.loads(r["properties"])["invoice_no"] for r in rows],
            "event": [r["event"] for r in rows],
            "customer": [r["distinct_id"] for r in rows],
            "revenue": [json.loads(r["properties"])["revenue"] for r in rows],
            "ts": [pd.Timestamp(r["timestamp"]) for r in rows],
        }
    ).set_index("invoice")
    cancelled = inv.index.str.startswith("C")
    assert (got["event"] == "purchase_cancelled").sum() == cancelled.sum()
    assert (got["event"] == "purchase").sum() == (~cancelled).sum()
    got = got.loc[inv.index]
    assert (got["customer"] == inv["customer"]).all()
    assert (got["ts"] == inv["ts"]).all()  # Europe/London: GMT in winter, BST in summer
    assert ((got["revenue"] - inv["revenue"]).abs() < 1e-9).all()

    by_customer = got.groupby("customer")["revenue"].agg(["sum", "size"])
    expected = inv.groupby("customer")["revenue"].agg(["sum", "size"])
    for customer in ["17850", "12346", "13047", "14911", "18102"]:
        assert by_customer.loc[customer, "size"] == expected.loc[customer, "size"]
        assert by_customer.loc[customer, "sum"] == pytest.approx(expected.loc[customer, "sum"], abs=1e-6)
    assert by_customer.loc["12346", "sum"] == pytest.approx(0.0, abs=1e-6)  # bought 74,215, then cancelled

    (first,) = events(backend, pid, "message_id = 'invoice-536365'")
    assert (
        first["event"] == "purchase"
        and first["distinct_id"] == "17850"
        and first["country"] == "United Kingdom"
    )
    assert first["timestamp"] == ts("2010-12-01T08:26:00+00:00")
    assert json.loads(first["properties"]) == {
        "revenue": 139.12,
        "quantity": 40,
        "stock_codes": ["85123A", "71053", "84406B", "84029G", "84029E", "22752", "21730"],
        "lines": 7,
        "invoice_no": "536365",
        "currency": "GBP",
    }
    (cancel,) = events(backend, pid, "message_id = 'invoice-C536379'")
    assert cancel["event"] == "purchase_cancelled" and json.loads(cancel["properties"])["revenue"] < 0

    # Online Retail II ("Customer ID" written as 13085.0) overlaps 2010-12-01..09: those invoices dedup
    inv_ii = retail_invoices(path_ii, "Invoice", "Price", "Customer ID")
    stored_ii, chunks_ii = run_import(backend, ImportSpec(path_ii, pid, preset="online_retail"))
    assert chunks_ii.total == len(inv_ii)
    assert stored_ii == len(inv_ii.index.difference(inv.index))
    (ii_first,) = events(backend, pid, "message_id = 'invoice-489434'")
    assert ii_first["distinct_id"] == "13085" and ii_first["timestamp"] == ts("2009-12-01T07:45:00+00:00")
    assert backend.store.query("SELECT count(*) AS n FROM events WHERE distinct_id LIKE '%.%'")[0]["n"] == 0


def test_online_retail_rejects_other_files_and_mappings(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n")
    err = code_of(iter_chunks, ImportSpec(path, 1, preset="online_retail"))
    assert err.code == "missing_field" and "InvoiceNo" in err.message and "a, b" in err.message
    err = code_of(iter_chunks, ImportSpec(path, 1, preset="online_retail", mapping={"a": "event"}))
    assert err.code in ("bad_mapping", "missing_field")


# -- generic files -------------------------------------------------------------------------------------

CSV = """ts,name,uid,plan,amount,Country,properties.color
1700000000000,signup,u1,pro,9.5,DE,red
2023-11-14T22:13:20+01:00,purchase,u2,,12,FR,
not-a-time,purchase,u3,free,1,US,blue
1700000000,view,,free,2,US,
2023-11-14 23:00:00,view,007,free,3,,
"""
CSV_EXPECTED = [
    # (event, distinct_id, timestamp, properties, country)
    ("purchase", "u2", ts("2023-11-14T21:13:20+00:00"), {"value": 12}, "FR"),  # ISO with offset
    (
        "signup",
        "u1",
        ts("2023-11-14T22:13:20+00:00"),
        {"plan": "pro", "value": 9.5, "color": "red"},
        "DE",
    ),  # ms
    ("view", "007", ts("2023-11-14T23:00:00+00:00"), {"plan": "free", "value": 3}, None),  # naive = UTC
]


def summary(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["event"], r["distinct_id"], r["timestamp"], json.loads(r["properties"]), r["country"])
        for r in rows
    ]


@pytest.mark.parametrize("gz", [False, True])
def test_csv_with_mapping_epoch_ms_iso_offsets_and_skips(
    backend: LocalBackend, tmp_path: Path, gz: bool
) -> None:
    path = tmp_path / ("e.csv.gz" if gz else "e.csv")
    path.write_bytes(gzip.compress(CSV.encode()) if gz else CSV.encode())
    pid = project(backend)
    mapping = parse_mapping(["ts=timestamp", "name=event", "uid=distinct_id", "amount=properties.value"])
    spec = ImportSpec(path, pid, mapping=mapping)
    stored, chunks = run_import(backend, spec, chunk_rows=2)
    assert stored == 3
    assert chunks.skipped_by_reason == {"bad_timestamp": 1, "missing_distinct_id": 1} and chunks.skipped == 2
    assert summary(events(backend, pid)) == CSV_EXPECTED
    rows = events(backend, pid)
    assert all(
        r["message_id"].startswith("imp-") and r["channel"] is None and r["source"] == "import" for r in rows
    )
    assert run_import(backend, spec)[0] == 0  # same file again: nothing new
    other = ImportSpec(path, pid, mapping={**mapping, "plan": "-"})  # another mapping is another import
    assert run_import(backend, other)[0] == 3


def test_jsonl_values_context_columns_and_bad_lines(backend: LocalBackend, tmp_path: Path) -> None:
    lines = [
        {"event": "page", "userId": "u1", "timestamp": 1700000000, "messageId": "m-1",
         "url": "https://shop.example/p/1?utm_source=Weixin&utm_medium=social", "properties": {"a": 1, "b": [1, 2]},
         "extra": {"deep": True}},
        {"event": "page", "anonymous_id": "anon-9", "timestamp": 1700000000123, "referrer": "https://www.google.com/search?q=x",
         "n": 13085.0, "flag": False},
        {"event": "buy", "distinct_id": 42, "timestamp": "2023-11-14T22:13:20Z", "properties": {"a": 2}, "a": 3},
        {"event": "", "distinct_id": "x", "timestamp": 1700000000},
        {"event": "e", "distinct_id": "x", "timestamp": "yesterday"},
    ]  # fmt: skip
    text = (
        "\n".join(json.dumps(x) for x in lines[:2])
        + '\n{"event": "broken",\n'
        + "\n".join(json.dumps(x) for x in lines[2:])
    )
    path = tmp_path / "e.ndjson"
    path.write_text(text + "\n")
    pid = project(backend)
    stored, chunks = run_import(backend, ImportSpec(path, pid))
    assert stored == 3
    assert chunks.skipped_by_reason == {"bad_json": 1, "bad_timestamp": 1, "missing_event": 1}
    by_id = {r["distinct_id"]: r for r in events(backend, pid)}
    one, anon, num = by_id["u1"], by_id["anon-9"], by_id["42"]
    assert one["message_id"] == "m-1" and one["user_id"] == "u1" and one["anonymous_id"] is None
    assert one["timestamp"] == datetime.fromtimestamp(1700000000, UTC)
    assert json.loads(one["properties"]) == {"a": 1, "b": [1, 2], "extra": {"deep": True}}
    assert (one["path"], one["utm_source"], one["utm_medium"], one["channel"]) == (
        "/p/1",
        "Weixin",
        "social",
        "wechat",
    )
    assert anon["timestamp"] == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert (anon["referring_domain"], anon["channel"]) == ("www.google.com", "search")
    assert json.loads(anon["properties"]) == {"n": 13085.0, "flag": False}
    assert num["timestamp"] == ts("2023-11-14T22:13:20+00:00") and json.loads(num["properties"]) == {"a": 3}
    assert num["channel"] == "direct"


def test_parquet_typed_columns(backend: LocalBackend, tmp_path: Path) -> None:
    table = pa.table(
        {
            "Event": ["a", "b"],
            "customer": pa.array([17850.0, 5.0]),
            "when": pa.array([datetime(2024, 5, 1, 12), datetime(2024, 5, 2)], pa.timestamp("ms")),
            "qty": pa.array([1, None], pa.int64()),
            "tags": [["x"], []],
            "city": ["Paris", None],
        }
    )
    path = tmp_path / "e.parquet"
    pq.write_table(table, path)
    pid = project(backend)
    spec = ImportSpec(path, pid, mapping=parse_mapping(["customer=distinct_id", "when = timestamp"]))
    stored, _ = run_import(backend, spec)
    assert stored == 2
    rows = events(backend, pid)
    assert [(r["event"], r["distinct_id"], r["timestamp"], r["city"]) for r in rows] == [
        ("a", "17850", datetime(2024, 5, 1, 12, tzinfo=UTC), "Paris"),
        ("b", "5", datetime(2024, 5, 2, tzinfo=UTC), None),
    ]
    assert [json.loads(r["properties"]) for r in rows] == [{"qty": 1, "tags": ["x"]}, {"tags": []}]


def test_export_round_trips(backend: LocalBackend, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(CSV)
    pid = project(backend)
    mapping = parse_mapping(["ts=timestamp", "name=event", "uid=distinct_id", "amount=properties.value"])
    run_import(backend, ImportSpec(path, pid, mapping=mapping))
    out = tmp_path / "out.parquet"
    assert backend.export_parquet(pid, out) == 3
    df = pd.read_parquet(out)
    assert list(df["event"]) == [e for e, *_ in CSV_EXPECTED]
    assert list(df["distinct_id"]) == [d for _, d, *_ in CSV_EXPECTED]
    assert [t.to_pydatetime() for t in df["timestamp"]] == [t for _, _, t, *_ in CSV_EXPECTED]
    assert [json.loads(p) for p in df["properties"]] == [p for *_, p, _ in CSV_EXPECTED]

    # an export imports back as it was: same ids (so into the same project it adds nothing)
    assert run_import(backend, ImportSpec(out, pid))[0] == 0
    pid2 = project(backend, "copy")
    assert run_import(backend, ImportSpec(out, pid2))[0] == 3
    cols = ["message_id", "event", "distinct_id", "timestamp", "properties", "country", "type", "source"]
    a, b = events(backend, pid), events(backend, pid2)
    assert [{c: r[c] for c in cols} for r in a] == [{c: r[c] for c in cols} for r in b]


# -- errors --------------------------------------------------------------------------------------------


def test_parse_mapping() -> None:
    assert parse_mapping([]) == {}
    assert parse_mapping(["a=event", " b = properties.x ", "c=-", "k=v=user_id"]) == {
        "a": "event",
        "b": "properties.x",
        "c": "-",
        "k=v": "user_id",
    }
    for bad in (
        ["novalue"],
        ["=event"],
        ["a="],
        ["a=nope"],
        ["a=properties."],
        ["a=received_at"],
        ["a=type"],
    ):
        err = code_of(parse_mapping, bad)
        assert err.code == "bad_mapping" and err.field == "mapping"
    assert "distinct_id" in code_of(parse_mapping, ["a=nope"]).message
    assert code_of(parse_mapping, ["a=event", "b=event"]).code == "duplicate_mapping"
    assert code_of(parse_mapping, ["a=event", "a=user_id"]).code == "duplicate_mapping"


def test_missing_fields_and_bad_specs(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("name,who,at\nx,u,1700000000\n")
    err = code_of(iter_chunks, ImportSpec(path, 1))
    assert (err.code, err.field) == ("missing_field", "event")
    assert "name, who, at" in err.message and "--map" in err.message
    err = code_of(count_rows, ImportSpec(path, 1, mapping={"name": "event"}))
    assert (err.code, err.field) == ("missing_field", "timestamp")
    err = code_of(iter_chunks, ImportSpec(path, 1, mapping={"name": "event", "at": "timestamp"}))
    assert (err.code, err.field) == ("missing_field", "distinct_id")
    assert (
        count_rows(ImportSpec(path, 1, mapping={"name": "event", "at": "timestamp", "who": "user_id"})) == 1
    )
    assert code_of(iter_chunks, ImportSpec(path, 1, mapping={"nope": "event"})).code == "unknown_column"
    assert code_of(iter_chunks, ImportSpec(path, 1, mapping={"name": "bogus"})).code == "bad_mapping"
    assert code_of(iter_chunks, ImportSpec(tmp_path / "none.csv", 1)).code == "file_not_found"
    assert code_of(iter_chunks, ImportSpec(path, 1, preset="nope")).code == "unknown_preset"
    assert code_of(iter_chunks, ImportSpec(path, 1, format="xlsx")).code == "unknown_format"
    other = tmp_path / "e.txt"
    other.write_text("x")
    assert code_of(iter_chunks, ImportSpec(other, 1)).code == "unknown_format"
    assert code_of(iter_chunks, ImportSpec(path, 1, format="parquet")).code == "bad_file"
