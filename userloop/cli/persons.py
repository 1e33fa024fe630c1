"""`userloop persons ...`: portraits, merge history, unmerge, portrait settings (one action each)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from userloop.cli import DEFAULT_DB, DbOption
from userloop.cli.common import ProjectOption, call

app = typer.Typer(help="Persons: portraits, merge history and undoing merges.", no_args_is_help=True)

@app.command("get")
def get(
    id: Annotated[str, typer.Argument(help="a distinct id or a person id")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    timeline: Annotated[int, typer.Option(help="how many of the latest events to list")] = 20,
) -> None:
    """The person's portrait (profile, source, totals, tags, segments, layers, latest events)."""
    call(db, project, "persons.get", {"id": id, "timeline": timeline})


@app.command("merges")
def merges(
    id: Annotated[str, typer.Argument(help="a distinct id or a person id")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """The person's merge history (merges, unbinds, unmerges), oldest first."""
    call(db, project, "persons.merges", {"id": id})


@app.command("unmerge")
def unmerge(
    id: Annotated[str, typer.Argument(help="a distinct id or a person id")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    merge: Annotated[int | None, typer.Option("--merge", help="the merge id to undo")] = None,
    distinct_ids: Annotated[
        list[str] | None, typer.Option("--distinct-id", help="an id to split off instead (repeatable)")
    ] = None,
) -> None:
    """Undo a merge (or split distinct ids off): they get their own person again."""
    params: dict[str, Any] = {"id": id}
    if merge is not None:
        params["merge"] = merge
    if distinct_ids:
        params["distinct_ids"] = distinct_ids
    call(db, project, "persons.unmerge", params)


@app.command("settings")
def settings(
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    purchase_event: Annotated[list[str] | None, typer.Option("--purchase-event", help="repeatable")] = None,
    revenue_property: Annotated[str | None, typer.Option("--revenue-property")] = None,
    coupon_event: Annotated[list[str] | None, typer.Option("--coupon-event", help="repeatable")] = None,
    visit_gap_minutes: Annotated[float | None, typer.Option("--visit-gap-minutes")] = None,
) -> None:
    """Show the project's portrait settings, or change the given ones."""
    params: dict[str, Any] = {}
    if purchase_event:
        params["purchase_events"] = purchase_event
    if revenue_property is not None:
        params["revenue_property"] = revenue_property
    if coupon_event:
        params["coupon_events"] = coupon_event
    if visit_gap_minutes is not None:
        params["visit_gap_minutes"] = visit_gap_minutes
    call(db, project, "persons.settings", params)
