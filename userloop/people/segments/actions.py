"""The segment operations, registered once for the REST API, the CLI and the console."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from userloop.actions import ActionContext, action
from userloop.errors import UserloopError
from userloop.people.segments import read, saved


def _name(params: dict[str, Any]) -> str:
    name = params.get("name")
    if not isinstance(name, str) or not name:
        raise UserloopError("missing_field", "name is required", "name")
    return name


def _as_of(params: dict[str, Any]) -> datetime | None:
    """An optional ``as_of`` instant (ISO 8601; without an offset: UTC) instead of now."""
    value = params.pop("as_of", None)
    if value is None:
        return None
    try:
        at = value if isinstance(value, datetime) else msgspec.convert(value, datetime)
    except msgspec.ValidationError as exc:
        raise UserloopError("invalid_field", f"as_of must be an ISO 8601 time: {exc}", "as_of") from exc
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@action("segments.preview")
def preview(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    as_of = _as_of(params)
    strategy = params.pop("strategy", "columns")
    if strategy not in ("columns", "sets"):
        raise UserloopError("invalid_field", "strategy must be columns or sets", "strategy")
    return read.preview(ctx.store, ctx.project, params, as_of, strategy)


@action("segments.create")
def create(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    return saved.create(ctx.store, ctx.project, params, _as_of(params))


@action("segments.list")
def list_segments(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"segments": saved.list_all(ctx.store, ctx.project)}


@action("segments.get")
def get(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return saved.get(ctx.store, ctx.project, _name(params))


@action("segments.update")
def update(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    as_of = _as_of(params)
    name = _name(params)
    changes = {k: v for k, v in params.items() if k != "name"}
    return saved.update(ctx.store, ctx.project, name, changes, as_of)


@action("segments.delete")
def delete(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return saved.delete(ctx.store, ctx.project, _name(params))


@action("segments.compute")
def compute(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    return saved.compute(ctx.store, ctx.project, _name(params), _as_of(params))


@action("segments.members")
def members(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    return read.members(
        ctx.store, ctx.project, _name(params), params.get("limit", 100), params.get("offset", 0)
    )


@action("segments.history")
def history(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    person = params.get("person_id")
    if person is not None and not isinstance(person, str):
        raise UserloopError("invalid_field", "person_id must be text", "person_id")
    return read.history(
        ctx.store, ctx.project, _name(params), person, params.get("limit", 1000), params.get("offset", 0)
    )


@action("segments.export")
def export(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]:
    """Writes the file at ``path`` on the machine that holds the store (the CLI's own machine)."""
    path = params.get("path")
    if not isinstance(path, str) or not path:
        raise UserloopError("missing_field", "path is required", "path")
    return read.export(
        ctx.store,
        ctx.project,
        _name(params),
        Path(path),
        params.get("format", "csv"),
        params.get("properties"),
        bool(params.get("distinct_ids", False)),
    )
