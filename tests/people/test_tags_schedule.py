"""Scheduled recompute: a tag with ``interval:1`` is recomputed by the real APScheduler thread."""

from __future__ import annotations

import time
from pathlib import Path

from tests.analytics.conftest import World
from userloop.actions import ActionContext, run_action
from userloop.schedule import Scheduler, set_current
from userloop.store.duckdb import Store
from userloop.store.writer import Writer


def tag_jobs(sched: Scheduler) -> list[str]:
    return [j for j in sched.job_ids() if j.startswith("tag:")]  # other capabilities register jobs too


def test_interval_schedule_recomputes_and_follows_definition_changes(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    project = store.create_project("s", "Europe/Paris")
    with Writer(store) as writer:
        w = World(store=store, writer=writer, project=project, rows=[])
        w.add([{"distinct_id": "a", "event": "buy", "ts": "2026-01-01T10:00:00"}])
        ctx = ActionContext(store=store, writer=writer, project=project)
        run_action("tags.create", ctx, {"name": "buys", "kind": "dynamic", "schedule": "interval:1",
                                        "rule": {"aggregate": "count", "event": "buy"}})
        run_action("tags.create", ctx, {"name": "manual", "kind": "static"})  # no schedule: no job

        def value() -> str:
            rows = store.query("SELECT value FROM tag_values WHERE tag = 'buys'")
            return str(rows[0]["value"])

        sched = Scheduler(store, writer)
        sched.start()
        set_current(sched)
        try:
            assert tag_jobs(sched) == [f"tag:{project.id}:buys"]
            assert value() == "1"
            w.add([{"distinct_id": "a", "event": "buy", "ts": "2026-01-02T10:00:00"}])
            deadline = time.monotonic() + 10
            while value() != "2" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert value() == "2"
            computed = store.query("SELECT computed_at, last_error FROM tags WHERE name = 'buys'")[0]
            assert computed["last_error"] is None
            # the history shows the scheduled change at the time the job computed it
            rows = store.query("SELECT value, valid_from, valid_to FROM tag_history ORDER BY valid_from")
            assert [r["value"] for r in rows] == ["1", "2"] and rows[0]["valid_to"] == rows[1]["valid_from"]
            # saving without a schedule, or deleting, removes the job (reload on save)
            run_action("tags.update", ctx, {"name": "buys", "schedule": None})
            assert tag_jobs(sched) == []
            run_action("tags.update", ctx, {"name": "buys", "schedule": "cron:0 3 * * *"})
            assert tag_jobs(sched) == [f"tag:{project.id}:buys"]
            run_action("tags.delete", ctx, {"name": "buys"})
            assert tag_jobs(sched) == []
        finally:
            set_current(None)
            sched.stop()
    store.close()
