"""Tags on the Online Retail invoices (a real shop) against pandas: purchases in the last 90 days
(London wall clock, over the BST change), all-time revenue (rule) and net revenue (SQL, exact
decimals), and the 90-day activity level in buckets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import require_shared
from userloop.backend import LocalBackend

AS_OF = "2011-12-10T00:00:00+00:00"  # the day after the last invoice (GMT in December)


def invoices(path: Path) -> pd.DataFrame:
    """One row per invoice, money exact: price in thousandths, revenue rounded half away from zero."""
    raw = pd.read_csv(path, dtype=str)
    raw = raw[raw.CustomerID.notna()].copy()
    raw["milli"] = raw.Quantity.astype(int) * (raw.UnitPrice.astype(float) * 1000).round().astype(int)
    raw["when"] = pd.to_datetime(raw.InvoiceDate)
    inv = raw.groupby("InvoiceNo").agg(customer=("CustomerID", "first"), when=("when", "min"), milli=("milli", "sum"))
    inv["cents"] = (inv.milli.abs() + 5) // 10 * np.sign(inv.milli)
    inv["purchase"] = ~inv.index.str.startswith("C")
    return inv.reset_index()


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalBackend, int, pd.DataFrame]]:
    from userloop.ingest.files import ImportSpec, iter_chunks

    path = require_shared("online_retail", "online_retail.csv.gz")
    b = LocalBackend(tmp_path_factory.mktemp("retail") / "retail.duckdb")
    pid = b.create_project("retail", "Europe/London")["id"]
    for chunk in iter_chunks(ImportSpec(path=path, project_id=pid, preset="online_retail")):
        b.import_table(pid, chunk)
    try:
        yield b, pid, invoices(path)
    finally:
        b.close()


def tag_values(b: LocalBackend, tag: str) -> dict[str, str]:
    rows = b.store.query("SELECT i.distinct_id, v.value FROM tag_values v JOIN identities i USING (project_id, person_id) "
                         "WHERE v.tag = ?", [tag])
    return {r["distinct_id"]: r["value"] for r in rows}


def create(b: LocalBackend, pid: int, **definition: Any) -> dict[str, Any]:
    return b.call("tags.create", pid, {**definition, "as_of": AS_OF})  # type: ignore[no-any-return]


def test_purchases_in_the_last_90_days(retail: tuple[LocalBackend, int, pd.DataFrame]) -> None:
    b, pid, inv = retail
    out = create(b, pid, name="purchases_90d", kind="dynamic", category="consumption",
                 rule={"aggregate": "count", "event": "purchase", "window": {"last_days": 90}})
    # 90 days back on the London wall clock: from 2011-09-11 00:00 BST (= 2011-09-10 23:00 UTC)
    buys = inv[inv.purchase & (inv.when >= "2011-09-11") & (inv.when < "2011-12-10")]
    exp = buys.groupby("customer").size()
    assert tag_values(b, "purchases_90d") == {c: str(n) for c, n in exp.items()}
    assert out["compute"]["persons"] == len(exp) > 2000
    cov = b.call("tags.coverage", pid, {"name": "purchases_90d", "limit": 3})
    persons = inv.customer.nunique()
    assert (cov["persons"], cov["with_value"]) == (persons, len(exp))
    top = exp.value_counts().sort_index(key=lambda s: s.astype(str)).sort_values(ascending=False, kind="stable")
    assert [(d["value"], d["persons"]) for d in cov["distribution"]] == [(str(k), int(v)) for k, v in top[:3].items()]
    assert cov["numeric"]["avg"] == pytest.approx(exp.mean()) and cov["numeric"]["median"] == pytest.approx(exp.median())


def test_revenue_rule_and_net_revenue_sql(retail: tuple[LocalBackend, int, pd.DataFrame]) -> None:
    b, pid, inv = retail
    create(b, pid, name="revenue", kind="semi_dynamic", category="consumption",
           rule={"aggregate": "sum", "event": "purchase", "property": "revenue"})
    exp = inv[inv.purchase].groupby("customer").cents.sum() / 100
    # summed as doubles, shown with 15 significant digits: the exact cents
    assert tag_values(b, "revenue") == {c: f"{v:.15g}" for c, v in exp.items()}
    create(b, pid, name="net_revenue", kind="semi_dynamic", category="consumption",
           sql="SELECT person_id, sum(CAST(json_extract_string(properties, '$.revenue') AS DECIMAL(18, 2))) AS value "
               "FROM events WHERE event IN ('purchase', 'purchase_cancelled') GROUP BY person_id")
    net = inv.groupby("customer").cents.sum()
    assert tag_values(b, "net_revenue") == {c: f"{v / 100:.15g}" for c, v in net.items()}  # exact to the cent


def test_activity_level_buckets(retail: tuple[LocalBackend, int, pd.DataFrame]) -> None:
    b, pid, inv = retail
    buckets = [{"name": "inactive", "max": 0}, {"name": "low", "max": 2}, {"name": "mid", "max": 10}, {"name": "high"}]
    create(b, pid, name="active_level", kind="dynamic", category="activity",
           rule={"aggregate": "count", "event": "purchase", "window": {"last_days": 90}, "buckets": buckets,
                 "fill_zero": True})
    customers = sorted(inv.customer.unique())
    n = inv[inv.purchase & (inv.when >= "2011-09-11") & (inv.when < "2011-12-10")].groupby("customer").size()
    n = n.reindex(customers, fill_value=0)
    exp = pd.cut(n, [-1, 0, 2, 10, np.inf], labels=["inactive", "low", "mid", "high"])
    assert tag_values(b, "active_level") == {c: str(v) for c, v in exp.items()}
    assert {str(k) for k in exp.unique()} == {"inactive", "low", "mid", "high"}
