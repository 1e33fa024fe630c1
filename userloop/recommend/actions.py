"""The recommendation operations, registered once for REST, CLI and console (``userloop/actions.py``).

Serving: ``recommend.get`` (the feed; tracks an impression), ``recommend.preview`` (the same, not
tracked), ``recommend.similar``, ``recommend.people``. Models: ``recommend.train``,
``recommend.models``, ``recommend.evaluate``, ``recommend.evaluations`` (the latest stored evaluation
per split), ``recommend.stats``. Settings:
``recommend.config.get|set``. Catalogue: ``recommend.items.set|get|list|delete|import``,
``recommend.tags``, ``recommend.interests.set|get``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from userloop.actions import ActionContext, action
from userloop.errors import UserloopError
from userloop.recommend import catalogue, serve, stats, train
from userloop.recommend import config as cfgmod
from userloop.schedule import reload_current


def _str(params: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise UserloopError("missing_field", f"{key} is required", key)
        return None
    if not isinstance(value, str):
        raise UserloopError("invalid_field", f"{key} must be text", key)
    return value


def _int(params: dict[str, Any], key: str, default: int) -> int:
    value = params.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise UserloopError("invalid_field", f"{key} must be an integer", key) from exc


def _bool(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("1", "true", "yes"):
        return True
    if str(value).lower() in ("0", "false", "no"):
        return False
    raise UserloopError("invalid_field", f"{key} must be true or false", key)


def _feed(ctx: ActionContext, params: dict[str, Any], track: bool) -> dict[str, Any]:
    known = {"distinct_id", "n", "type", "scene", "item", "fresh"}
    unknown = set(params) - known
    if unknown:
        name = sorted(unknown)[0]
        raise UserloopError("unknown_field", f"unknown parameter {name!r}", name)
    fresh = _bool(params, "fresh", True) if "fresh" in params else None
    return serve.recommend(
        ctx.store, ctx.project, ctx.writer, distinct_id=_str(params, "distinct_id", required=False),
        n=_int(params, "n", 10), type=_str(params, "type", False), scene=_str(params, "scene", False),
        item=_str(params, "item", False), track=track, fresh=fresh,
    )


@action("recommend.get")
def get(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """A personalised list (``distinct_id``, ``n``, ``type``, ``scene``, ``item`` on a detail page)."""
    return _feed(ctx, params, track=True)


@action("recommend.preview")
def preview(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """What ``recommend.get`` would return, without recording an impression."""
    return _feed(ctx, params, track=False)


@action("recommend.similar")
def similar(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return serve.similar(ctx.store, ctx.project, str(_str(params, "item")), n=_int(params, "n", 10),
                         type=_str(params, "type", False))


@action("recommend.people")
def people(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return serve.people(ctx.store, ctx.project, str(_str(params, "distinct_id")), n=_int(params, "n", 10))


@action("recommend.train")
def train_now(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return train.train(ctx.store, ctx.project, trigger=str(params.get("trigger") or "api"))


@action("recommend.models")
def models(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    rows = ctx.store.query(
        """SELECT model_id, created_at, data_until, cf, users, items, interactions, seconds, bytes, trigger
           FROM recommend_models WHERE project_id = ? ORDER BY model_id DESC""", [ctx.project.id])
    return {"models": rows}


@action("recommend.evaluate")
def evaluate(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Offline evaluation of every recommender on the project's interactions (``split``: loo | time);
    ``apply``: save the tuned parameters (CF model, hyper-parameters, blend weights) as the project's."""
    from userloop.recommend import interactions
    from userloop.recommend.evaluate import evaluate as run

    split = params.get("split", "loo")
    if split not in ("loo", "time"):
        raise UserloopError("invalid_field", "split must be 'loo' or 'time'", "split")
    tune = _bool(params, "tune", True)
    apply = _bool(params, "apply", False)
    cfg = cfgmod.load(ctx.store, ctx.project)
    log = interactions.load_log(ctx.store, ctx.project, cfg)
    if len(log.user) == 0:
        raise UserloopError("no_interactions", "the project has no item interactions to evaluate", "events")
    started = time.perf_counter()
    result = run(log, split, tune=tune)
    result["seconds"] = round(time.perf_counter() - started, 2)
    ctx.store.cursor().execute(
        "INSERT INTO recommend_evaluations VALUES (?, ?, ?, ?)",
        [ctx.project.id, datetime.now(UTC), split, msgspec.json.encode(result).decode()],
    )
    if apply:
        cfg = msgspec.structs.replace(cfg, params=msgspec.convert(result["params"], cfgmod.ModelParams))
        cfgmod.save(ctx.store, ctx.project, cfg)
        serve.config_changed(ctx.store, ctx.project)
        result["applied"] = True
    return result


def _metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The numeric fields of the rows (``ndcg@10``, ``hr@10``, ``recall@10``, ``coverage``, ``train_s``), in order."""
    cols: list[str] = []
    for row in rows:
        cols += [k for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool) and k not in cols]
    return cols


@action("recommend.evaluations")
def evaluations(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """The latest stored ``recommend.evaluate`` result per split (``split``: only loo or time), as
    stored, with ``evaluated_at``, ``metrics`` (the metric columns of ``rows``) and ``best`` (the
    recommender with the highest NDCG@10, the first such row on ties; none when no row hit)."""
    split = params.get("split") or None
    if split not in (None, "loo", "time"):
        raise UserloopError("invalid_field", "split must be 'loo' or 'time'", "split")
    rows = ctx.store.query(
        """SELECT evaluated_at, split, result FROM recommend_evaluations
           WHERE project_id = ? AND (? IS NULL OR split = ?)
           QUALIFY row_number() OVER (PARTITION BY split ORDER BY evaluated_at DESC) = 1
           ORDER BY split""", [ctx.project.id, split, split])  # fmt: skip
    out = []
    for r in rows:
        result: dict[str, Any] = msgspec.json.decode(r["result"])
        table = result.get("rows") or []
        best = max(table, key=lambda x: x.get("ndcg@10") or 0.0, default=None)  # max keeps the first on ties
        out.append({**result, "split": r["split"], "evaluated_at": r["evaluated_at"], "metrics": _metric_columns(table),
                    "best": best["recommender"] if best and (best.get("ndcg@10") or 0.0) > 0 else None})
    return {"evaluations": out}


@action("recommend.stats")
def online(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    serve.flush_impressions()  # buffered impressions first; the writer is serial, so an empty
    if ctx.writer is not None:  # payload returns once they are stored
        from userloop.ingest.event import Payload

        ctx.writer.write(Payload())
        if ctx.writer.spooled:  # acknowledged means spooled: wait until they are in DuckDB
            ctx.writer.sync()
    return stats.online_stats(ctx.store, ctx.project, params)


@action("recommend.config.get")
def config_get(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    cfg = cfgmod.load(ctx.store, ctx.project)
    from userloop.recommend.interactions import rules_of

    out: dict[str, Any] = msgspec.to_builtins(cfg)
    out["detected_events"] = msgspec.to_builtins(rules_of(ctx.store, ctx.project, cfg)) if cfg.events is None else None
    return out


@action("recommend.config.set")
def config_set(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Replace the settings (validated as a whole; nothing is saved when any field is wrong)."""
    cfg = cfgmod.decode(params)
    cfgmod.save(ctx.store, ctx.project, cfg)
    serve.config_changed(ctx.store, ctx.project)
    reload_current()
    return config_get(ctx, {})


@action("recommend.items.set")
def items_set(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return catalogue.set_items(ctx.store, ctx.writer, ctx.project, params.get("items"))


@action("recommend.items.get")
def items_get(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return catalogue.get_item(ctx.store, ctx.project, str(_str(params, "type")), str(_str(params, "id")))


@action("recommend.items.list")
def items_list(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return catalogue.list_items(ctx.store, ctx.project, params)


@action("recommend.items.delete")
def items_delete(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return catalogue.delete_item(ctx.store, ctx.writer, ctx.project, str(_str(params, "type")), str(_str(params, "id")))


@action("recommend.items.import")
def items_import(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    text = params.get("csv")
    if not isinstance(text, str):
        raise UserloopError("missing_field", "csv (the file's text) is required", "csv")
    return catalogue.import_csv(ctx.store, ctx.project, text)


@action("recommend.tags")
def tags(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return catalogue.catalogue_tags(ctx.store, ctx.project)


@action("recommend.interests.set")
def interests_set(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return catalogue.set_interests(ctx.store, ctx.project, params.get("distinct_id"), params.get("tags"))


@action("recommend.interests.get")
def interests_get(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return catalogue.get_interests(ctx.store, ctx.project, str(_str(params, "distinct_id")))
