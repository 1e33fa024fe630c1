"""The ``alerts.*`` operations (REST, CLI and console call these) and the check schedule."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from userloop.actions import ActionContext, action
from userloop.people.alerts import service
from userloop.schedule import ScheduledJob, register_provider

if TYPE_CHECKING:
    from userloop.store.duckdb import Store
    from userloop.store.writer import Writer

log = logging.getLogger("userloop.alerts")


@action("alerts.create")
def create(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.create(ctx.store, ctx.project, params)


@action("alerts.list")
def list_rules(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.list_rules(ctx.store, ctx.project)


@action("alerts.get")
def get(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.get(ctx.store, ctx.project, params.get("name"))


@action("alerts.update")
def update(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.update(ctx.store, ctx.project, params)


@action("alerts.delete")
def delete(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.delete(ctx.store, ctx.project, params.get("name"))


@action("alerts.check")
def check(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.check(
        ctx.store, ctx.project, params.get("name"), dry_run=bool(params.get("dry_run", False))
    )


@action("alerts.log")
def log_action(ctx: ActionContext, params: dict[str, Any]) -> Any:
    return service.log(ctx.store, ctx.project, params)


def scheduled_jobs(store: Store, writer: Writer | None) -> list[ScheduledJob]:
    """One job per enabled rule with a schedule: a check that respects the cooldown."""
    jobs = []
    for project_id, name, trigger in service.scheduled_rules(store):
        project = store.project(project_id)

        def run(project: Any = project, name: str = name) -> None:
            result = service.check(store, project, name, trigger="schedule")
            if result["fired"]:
                log.info("alert %s/%s fired: %s", project.id, name, result["message"])

        jobs.append(
            ScheduledJob(id=f"alert:{project_id}:{name}", trigger=trigger, run=run, timezone=project.timezone)
        )
    return jobs


register_provider("alerts", scheduled_jobs)
