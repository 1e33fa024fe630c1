"""RFM and frequency x value on the real UCI Online Retail invoices, against pandas on the raw CSV.

Skipped only when ../shared/data/online_retail is absent.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.conftest import require_shared
from tests.people.test_layers import GROUPS, ntile5
from userloop.backend import LocalBackend
from userloop.ingest.files import ImportSpec, iter_chunks

AS_OF = date(2011, 12, 10)  # the day after the last invoice, the classic RFM reference


def invoices(path: Path) -> pd.DataFrame:
    """Purchase invoices per customer from the raw lines: exact cents, London local dates."""
    raw = pd.read_csv(path, dtype=str)
    raw = raw[raw.CustomerID.notna() & ~raw.InvoiceNo.str.startswith("C")].copy()
    # prices have at most 3 decimals: whole thousandths, then cents rounded half away from zero
    raw["milli"] = raw.Quantity.astype(np.int64) * (raw.UnitPrice.astype(float) * 1000).round().astype(
        np.int64
    )
    raw["when"] = pd.to_datetime(raw.InvoiceDate)
    inv = raw.groupby("InvoiceNo").agg(
        customer=("CustomerID", "first"), when=("when", "min"), milli=("milli", "sum")
    )
    inv["cents"] = (inv.milli.abs() + 5) // 10 * np.sign(inv.milli)
    inv["customer"] = inv.customer.map(lambda c: str(int(float(c))))
    return inv.reset_index()


def test_online_retail_rfm_and_quadrants_match_pandas(tmp_path: Path) -> None:
    path = require_shared("online_retail", "online_retail.csv.gz")
    b = LocalBackend(tmp_path / "retail.duckdb")
    try:
        pid = b.create_project("retail", "Europe/London")["id"]
        for chunk in iter_chunks(ImportSpec(path=path, project_id=pid, preset="online_retail")):
            b.import_table(pid, chunk)
        for name, kind in (("rfm", "rfm"), ("vf", "value_frequency")):
            b.call(
                "layers.create", pid, {"name": name, "kind": kind, "params": {"amount_property": "revenue"}}
            )
            got = b.call("layers.compute", pid, {"name": name, "as_of": str(AS_OF)})
            assert got["latest"] and got["members"] > 4000
        rfm = b.call("layers.members", pid, {"name": "rfm", "limit": 10_000})
        vf = b.call("layers.members", pid, {"name": "vf", "limit": 10_000})
        person = {
            r["distinct_id"]: r["person_id"]
            for r in b.store.query("SELECT distinct_id, person_id FROM identities")
        }
    finally:
        b.close()

    inv = invoices(path)
    g = inv.groupby("customer").agg(
        last=("when", "max"), frequency=("InvoiceNo", "size"), cents=("cents", "sum")
    )
    g.index = [person[c] for c in g.index]
    g["recency_days"] = [(AS_OF - t.date()).days for t in g["last"]]
    ids = list(g.index)
    r = ntile5(sorted(ids, key=lambda p: (-g.recency_days[p], p)))
    f = ntile5(sorted(ids, key=lambda p: (g.frequency[p], p)))
    m = ntile5(sorted(ids, key=lambda p: (g.cents[p], p)))

    got: dict[str, dict[str, Any]] = {x["person_id"]: x for x in rfm["results"]}
    assert rfm["total"] == len(g) == len(got)
    groups = {}
    for p in ids:
        s = got[p]["scores"]
        assert (s["r"], s["f"], s["m"]) == (r[p], f[p], m[p]), p
        assert (s["recency_days"], s["frequency"]) == (g.recency_days[p], g.frequency[p]), p
        assert round(s["monetary"] * 100) == g.cents[p], p
        groups[p] = GROUPS[(r[p], -(-(f[p] + m[p]) // 2))]
        assert got[p]["layer"] == groups[p], p
    # the classic picture: every group is there, champions and lost among the big ones
    counts = pd.Series(groups).value_counts()
    assert set(counts.index) == set(GROUPS.values())
    assert counts["champions"] > 400 and counts["lost"] > 100

    # frequency x value: high when >= the medians over the buyers
    value = g.cents / 100
    fth, vth = g.frequency.median(), value.median()
    for x in vf["results"]:
        p = x["person_id"]
        hf, hv = g.frequency[p] >= fth, value[p] >= vth
        want = f"{'high' if hf else 'low'}_frequency_{'high' if hv else 'low'}_value"
        assert x["layer"] == want, p
        assert x["scores"]["frequency_threshold"] == fth
        assert abs(x["scores"]["value_threshold"] - vth) < 1e-9
    assert vf["total"] == len(g)
