"""Training a project's recommendations: interactions -> artifact -> DuckDB -> the serving cache.

``train()`` reads the interactions (one SQL query), resolves ``cf = "auto"`` by a leave-last-out
validation on the project's own data (item-kNN, ALS, EASE and content with their parameters; the best
NDCG@10 wins), builds the artifact and saves it with its ``recommend_models`` row in one
transaction (older models beyond the last ``KEEP`` are deleted), then installs it in the serving
cache. A per-project lock keeps a scheduled run and "train now" from interleaving.

The schedule provider turns each project's ``schedule`` into a job (``recommend:<project>``).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from userloop.recommend import config as cfgmod
from userloop.recommend import interactions
from userloop.recommend.build import ModelParams, build_artifact
from userloop.recommend.data import Interactions
from userloop.recommend.evaluate import EventLog, metrics, split
from userloop.recommend.models import PERSONAL_CF
from userloop.schedule import ScheduledJob, register_provider
from userloop.store.duckdb import Project, Store

log = logging.getLogger("userloop.recommend")
KEEP = 2
AUTO_MAX_PAIRS = 2_000_000  # above this, "auto" uses ALS without a validation run
AUTO_MAX_USERS = 2000  # validation users sampled for "auto"

_guard = threading.Lock()
_locks: dict[int, threading.Lock] = {}


def project_lock(project_id: int) -> threading.Lock:
    with _guard:
        return _locks.setdefault(project_id, threading.Lock())


def choose_cf(data: Interactions, params: ModelParams) -> tuple[str, dict[str, float]]:
    """The personal model with the best leave-last-out NDCG@10 on ``data`` itself (ties: the first)."""
    if len(data.pair_user) > AUTO_MAX_PAIRS:
        return "als", {}
    if int((data.activity >= 2).sum()) == 0:  # nobody to hold an item out for: nothing to compare
        return "itemknn", {}
    log_ = EventLog(user=data.pair_user.astype(np.int64), item=data.pair_item.astype(np.int64), ts=data.pair_last,
                    weight=data.pair_weight, bought=data.pair_bought, users=data.users, items=data.items)
    s = split(log_, "loo")
    if len(s.users) == 0:
        return "itemknn", {}
    if len(s.users) > AUTO_MAX_USERS:
        keep = np.random.default_rng(0).choice(len(s.users), AUTO_MAX_USERS, replace=False)
        keep.sort()
        s.users, s.relevant = s.users[keep], s.relevant[keep]
    from userloop.recommend.build import make

    scores = {}
    for name in PERSONAL_CF:
        model = make(name, params).fit(s.train)
        scores[name] = round(metrics(model.recommend(s.users, 10).items, s.relevant, data.n_items)["ndcg@10"], 5)
    return max(PERSONAL_CF, key=lambda n: scores[n]), scores


def train(store: Store, project: Project, trigger: str = "api", until: datetime | None = None) -> dict[str, Any]:
    """Train and install a new model; returns its ``recommend_models`` row."""
    with project_lock(project.id):
        started = time.perf_counter()
        cfg = cfgmod.load(store, project)
        until = until or datetime.now(UTC)
        data = interactions.load(store, project, cfg, until)
        cf: str = cfg.params.cf
        validation: dict[str, float] = {}
        if cf == "auto":
            cf, validation = choose_cf(data, cfg.params)
        cur = store.new_cursor()
        try:
            rows = cur.execute("SELECT coalesce(max(model_id), 0) + 1 FROM recommend_models WHERE project_id = ?",
                               [project.id]).fetchall()
            model_id = int(rows[0][0])
            art = build_artifact(data, cfg.params, cf, model_id)
            art.meta["cf_validation"] = validation
            art.meta["rules"] = msgspec.to_builtins(interactions.rules_of(store, project, cfg))
            cur.execute("BEGIN TRANSACTION")
            try:
                nbytes = art.save(cur, project.id, model_id)
                seconds = round(time.perf_counter() - started, 3)
                art.meta["seconds"] = seconds
                cur.execute(
                    "INSERT INTO recommend_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [project.id, model_id, datetime.now(UTC), until, cf, data.n_users, data.n_items,
                     len(data.pair_user), seconds, nbytes, msgspec.json.encode(art.meta).decode(), trigger],
                )
                old = "SELECT model_id FROM recommend_models WHERE project_id = ? ORDER BY model_id DESC OFFSET ?"
                cur.execute(f"DELETE FROM recommend_arrays WHERE project_id = ? AND model_id IN ({old})",
                            [project.id, project.id, KEEP])
                cur.execute(f"DELETE FROM recommend_models WHERE project_id = ? AND model_id IN ({old})",
                            [project.id, project.id, KEEP])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            cur.close()
        from userloop.recommend import serve

        serve.install(store, project, art, cfg)
        return model_row(store, project, model_id)


def model_row(store: Store, project: Project, model_id: int | None = None) -> dict[str, Any]:
    where = "AND model_id = ?" if model_id is not None else ""
    args: list[Any] = [project.id] + ([model_id] if model_id is not None else [])
    rows = store.query(
        f"""SELECT model_id, created_at, data_until, cf, users, items, interactions, seconds, bytes, trigger,
                   json_extract(meta, '$.cf_validation') AS cf_validation, json_extract(meta, '$.fit_seconds') AS fit_seconds
            FROM recommend_models WHERE project_id = ? {where} ORDER BY model_id DESC LIMIT 1""",
        args,
    )
    if not rows:
        from userloop.errors import NotFound

        raise NotFound("model_not_found", "this project has no trained recommendation model yet", "model")
    row = rows[0]
    for key in ("cf_validation", "fit_seconds"):
        row[key] = msgspec.json.decode(row[key]) if row[key] else {}
    return row


def _jobs(store: Store, writer: object) -> list[ScheduledJob]:
    rows = store.query("SELECT project_id, config FROM recommend_settings ORDER BY project_id")
    jobs = []
    for row in rows:
        cfg = msgspec.json.decode(row["config"], type=cfgmod.RecommendConfig)
        if not cfg.schedule:
            continue
        project = store.project(int(row["project_id"]))

        def run(project: Project = project) -> None:
            train(store, project, trigger="schedule")

        jobs.append(ScheduledJob(id=f"recommend:{project.id}", trigger=cfg.schedule, run=run, timezone=project.timezone))
    return jobs


register_provider("recommend", _jobs)
