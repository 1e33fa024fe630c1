"""Scheduled retraining by the real APScheduler thread, and `userloop recommend ...` on a DuckDB file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.analytics.conftest import World
from tests.recommend.conftest import CATALOGUE, EVENTS
from userloop.actions import ActionContext, run_action
from userloop.backend import LocalBackend
from userloop.cli import app
from userloop.schedule import Scheduler, set_current


def models(ctx: ActionContext) -> list[int]:
    return [m["model_id"] for m in run_action("recommend.models", ctx, {})["models"]]


def test_interval_schedule_retrains(shop: tuple[World, ActionContext]) -> None:
    w, ctx = shop
    sched = Scheduler(w.store, w.writer)
    sched.start()
    set_current(sched)
    try:
        assert not [j for j in sched.job_ids() if j.startswith("recommend:")]
        run_action("recommend.config.set", ctx, {"schedule": "interval:1"})
        assert [j for j in sched.job_ids() if j.startswith("recommend:")] == [f"recommend:{w.project.id}"]
        deadline = time.monotonic() + 20
        while len(models(ctx)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        got = run_action("recommend.models", ctx, {})["models"]
        assert len(got) == 2 and {m["trigger"] for m in got} == {"schedule"}  # the last two are kept
        run_action("recommend.config.set", ctx, {})
        assert not [j for j in sched.job_ids() if j.startswith("recommend:")]
    finally:
        set_current(None)
        sched.stop()


runner = CliRunner()


def cli(db: Path, *args: str, code: int = 0) -> Any:
    result = runner.invoke(app, ["recommend", *args, "--db", str(db), "--project", "1"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 and result.stdout.startswith("{") else result.output


def test_cli_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    b = LocalBackend(db)
    try:
        project = b.store.project(int(b.create_project("shop", "UTC")["id"]))
        World(store=b.store, writer=b.writer, project=project, rows=[]).add(EVENTS)
    finally:
        b.close()
    csv = tmp_path / "items.csv"
    csv.write_text("type,id,title,tags,category,price\n" + "\n".join(
        f"{i['type']},{i['id']},{i['title']},{'|'.join(i['tags'])},{i['category']},{i.get('price', '')}" for i in CATALOGUE))
    assert cli(db, "items", "import", str(csv))["stored"] == 6
    assert [i["item_id"] for i in cli(db, "items", "list", "--type", "post")["items"]] == ["p1", "p2", "p3"]
    (tmp_path / "cfg.json").write_text(json.dumps({"params": {"cf": "itemknn"}, "scenes": [{"name": "home"}]}))
    assert cli(db, "config", "set", str(tmp_path / "cfg.json"))["params"]["cf"] == "itemknn"
    (tmp_path / "bad.json").write_text(json.dumps({"lookback_days": 0}))
    assert "lookback_days" in cli(db, "config", "set", str(tmp_path / "bad.json"), code=1)
    model = cli(db, "train")
    assert (model["model_id"], model["cf"], model["interactions"]) == (1, "itemknn", 9)
    feed = cli(db, "preview", "--distinct-id", "b", "-n", "3", "--scene", "home")
    assert feed["scene"] == "home" and not {"p1", "p2", "c1"} & {i["item_id"] for i in feed["items"]}
    assert cli(db, "similar", "post:p1", "--type", "course")["items"][0]["item_id"] == "c1"
    result = cli(db, "evaluate", "--split", "loo", "--no-tune", "--json")
    assert result["split"] == "loo" and result["rows"][-1]["recommender"] == "default (blend)"
    table = cli(db, "evaluate", "--split", "time", "--no-tune")
    assert "default (blend)" in table and "ndcg@10" in table
