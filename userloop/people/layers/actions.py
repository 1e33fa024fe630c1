"""The ``layers.*`` operations (REST, CLI and console call these) and the recompute schedule."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from userloop.actions import ActionContext, action
from userloop.people.layers import service
from userloop.schedule import ScheduledJob, register_provider

if TYPE_CHECKING:
    from userloop.store.duckdb import Store
    from userloop.store.writer import Writer

log = logging.getLogger("userloop.layers")


@action("layers.create")
def create(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.create(ctx.store, ctx.project, params)


@action("layers.list")
def list_models(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.list_models(ctx.store, ctx.project)


@action("layers.get")
def get(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.get(ctx.store, ctx.project, params.get("name"))


@action("layers.update")
def update(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.update(ctx.store, ctx.project, params)


@action("layers.delete")
def delete(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.delete(ctx.store, ctx.project, params.get("name"))


@action("layers.compute")
def compute(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.compute(ctx.store, ctx.project, params.get("name"), params.get("as_of"))


@action("layers.members")
def members(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.members(ctx.store, ctx.project, params)


@action("layers.migration")
def migration(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.migration(ctx.store, ctx.project, params)


def scheduled_jobs(store: Store, writer: Writer | None) -> list[ScheduledJob]:
    """One job per model with a schedule: recompute as of now."""
    jobs = []
    rows = store.query(
        "SELECT project_id, name, schedule FROM layer_models WHERE schedule IS NOT NULL ORDER BY 1, 2"
    )
    for r in rows:
        project = store.project(r["project_id"])

        def run(project: Any = project, name: str = r["name"]) -> None:
            result = service.compute(store, project, name)
            log.info("layer model %s/%s computed: %s members, %s changed", project.id, name,
                     result["members"], result["changed"])  # fmt: skip

        jobs.append(ScheduledJob(id=f"layer:{project.id}:{r['name']}", trigger=r["schedule"], run=run,
                                 timezone=project.timezone))  # fmt: skip
    return jobs


register_provider("layers", scheduled_jobs)
