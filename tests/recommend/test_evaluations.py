"""``recommend.evaluations``: the latest stored offline evaluation per split, through the action,
``GET /api/recommend/evaluations`` and ``userloop recommend evaluations``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.analytics.conftest import World
from tests.conftest import LiveServer
from tests.recommend.conftest import CATALOGUE, EVENTS
from tests.recommend.test_api import _setup
from userloop.actions import ActionContext, run_action
from userloop.backend import LocalBackend
from userloop.cli import app
from userloop.errors import UserloopError

METRICS = ["ndcg@10", "hr@10", "recall@10", "coverage", "train_s"]


def stored(ctx: ActionContext) -> list[dict[str, Any]]:
    """The table as written, oldest first, the JSON decoded here."""
    rows = ctx.store.query("SELECT evaluated_at, split, result FROM recommend_evaluations WHERE project_id = ? "
                           "ORDER BY evaluated_at", [ctx.project.id])  # fmt: skip
    return [{**r, "result": json.loads(r["result"])} for r in rows]


def test_the_latest_evaluation_per_split_as_stored(shop: tuple[World, ActionContext]) -> None:
    _, ctx = shop
    assert run_action("recommend.evaluations", ctx, {}) == {"evaluations": []}
    first = run_action("recommend.evaluate", ctx, {"split": "loo", "tune": False})
    timed = run_action("recommend.evaluate", ctx, {"split": "time", "tune": False})
    latest = run_action("recommend.evaluate", ctx, {"split": "loo"})  # tuned: replaces the first loo
    old, time_row, new = stored(ctx)
    assert (old["result"], time_row["result"], new["result"]) == (first, timed, latest)

    got = run_action("recommend.evaluations", ctx, {})["evaluations"]
    assert [(e["split"], e["evaluated_at"]) for e in got] == [("loo", new["evaluated_at"]), ("time", time_row["evaluated_at"])]
    for e, row in zip(got, (new, time_row), strict=True):
        assert {k: v for k, v in e.items() if k not in ("evaluated_at", "metrics", "best")} == row["result"]
        assert e["metrics"] == METRICS
    # loo holds out a: c1, b: c1, c: d1, d: c2. Content similarity (tags, category) ranks each at 1,
    # except c's d1: after c1 and p1, which share c's training item's tag "ai" and fewer other tags.
    loo = {r["recommender"]: r for r in got[0]["rows"]}
    assert (loo["content"]["ndcg@10"], loo["content"]["hr@10"], loo["content"]["recall@10"]) == (0.875, 1.0, 1.0)
    assert got[0]["best"] == "content"
    assert max(r["ndcg@10"] for r in got[0]["rows"]) == 0.875
    # time: the only test person (d, after the cut) is new; no recommender hits: no best
    assert (got[1]["test_users"], got[1]["new_test_users"]) == (1, 1)
    assert {r["ndcg@10"] for r in got[1]["rows"]} == {0.0} and got[1]["best"] is None

    only = run_action("recommend.evaluations", ctx, {"split": "time"})["evaluations"]
    assert [e["evaluated_at"] for e in only] == [time_row["evaluated_at"]]
    with pytest.raises(UserloopError) as exc:
        run_action("recommend.evaluations", ctx, {"split": "random"})
    assert exc.value.field == "split"


def test_rest_route(live_server: LiveServer) -> None:
    s = live_server
    secret, write = _setup(s)
    url = f"{s.url}/api/recommend/evaluations"
    assert httpx.get(url, headers=secret).json() == {"evaluations": []}
    ran = httpx.post(f"{s.url}/api/recommend/evaluate", json={"split": "loo", "tune": False}, headers=secret, timeout=60)
    assert ran.status_code == 200
    body = httpx.get(url, params={"split": "loo"}, headers=secret).json()
    (e,) = body["evaluations"]
    (row,) = s.store.query("SELECT evaluated_at, result FROM recommend_evaluations WHERE project_id = ?", [s.project.id])
    assert e["rows"] == json.loads(row["result"])["rows"] == ran.json()["rows"]
    assert e["evaluated_at"] == row["evaluated_at"].isoformat().replace("+00:00", "Z")
    assert e["best"] == "content" and e["metrics"] == METRICS
    assert httpx.get(url, headers=write).status_code == 401  # a write key does not read results
    assert httpx.get(url, params={"split": "x"}, headers=secret).status_code == 400


def test_cli(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    b = LocalBackend(db)
    try:
        project = b.store.project(int(b.create_project("shop", "UTC")["id"]))
        b.call("recommend.items.set", project.id, {"items": CATALOGUE})
        World(store=b.store, writer=b.writer, project=project, rows=[]).add(EVENTS)
    finally:
        b.close()
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, ["recommend", *args, "--db", str(db), "--project", "1"])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert "no evaluation yet" in cli("evaluations")
    ran = json.loads(cli("evaluate", "--split", "loo", "--no-tune", "--json"))
    got = json.loads(cli("evaluations", "--json"))["evaluations"]
    assert [e["rows"] for e in got] == [ran["rows"]]
    text = cli("evaluations")
    assert "(best: content)" in text and "split=loo test users=4" in text
