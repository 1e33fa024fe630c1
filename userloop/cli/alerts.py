"""`userloop alerts ...`: each command calls one ``alerts.*`` action (on the file, or through the server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from userloop.cli import DbOption
from userloop.cli.common import ProjectOption, call, read_object
from userloop.config import DEFAULT_DB

app = typer.Typer(help="Early warning: alert rules on layer flows and metrics.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="alert rule name")]


@app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="rule definition (JSON); '-' reads stdin")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Create an alert rule."""
    call(db, project, "alerts.create", read_object(file))


@app.command("list")
def list_rules(project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """List the project's alert rules."""
    call(db, project, "alerts.list", {})


@app.command("get")
def get(name: NameArg, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """One rule (passwords and header values masked)."""
    call(db, project, "alerts.get", {"name": name})


@app.command("update")
def update(
    name: NameArg,
    file: Annotated[Path, typer.Argument(help="fields to change (JSON); '-' reads stdin")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Change condition, channels, schedule, cooldown_minutes, enabled or description."""
    call(db, project, "alerts.update", {**read_object(file), "name": name})


@app.command("delete")
def delete(name: NameArg, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Delete a rule (its log stays)."""
    call(db, project, "alerts.delete", {"name": name})


@app.command("check")
def check(
    name: NameArg,
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="evaluate only: deliver and log nothing")
    ] = False,
) -> None:
    """Evaluate a rule now; when it fires, deliver it and log it."""
    call(db, project, "alerts.check", {"name": name, "dry_run": dry_run})


@app.command("log")
def log(
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    rule: Annotated[str | None, typer.Option(help="only this rule")] = None,
    limit: Annotated[int, typer.Option(help="page size")] = 100,
    offset: Annotated[int, typer.Option(help="skip this many")] = 0,
) -> None:
    """Fired alerts, newest first."""
    params = {"rule": rule, "limit": limit, "offset": offset}
    call(db, project, "alerts.log", {k: v for k, v in params.items() if v is not None})
