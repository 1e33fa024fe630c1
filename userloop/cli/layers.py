"""`userloop layers ...`: each command calls one ``layers.*`` action (on the file, or through the server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from userloop.cli import DbOption
from userloop.cli.common import ProjectOption, call, read_object
from userloop.config import DEFAULT_DB

app = typer.Typer(
    help="Layer models: lifecycle, stage, RFM, frequency x value, promotion sensitivity.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="layer model name")]


@app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="model definition (JSON); '-' reads stdin")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Create a layer model (compute it with `layers compute`)."""
    call(db, project, "layers.create", read_object(file))


@app.command("list")
def list_models(project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """List the project's layer models."""
    call(db, project, "layers.list", {})


@app.command("get")
def get(name: NameArg, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """A model's definition, its current counts per layer and its snapshots."""
    call(db, project, "layers.get", {"name": name})


@app.command("update")
def update(
    name: NameArg,
    file: Annotated[Path, typer.Argument(help="fields to change (JSON); '-' reads stdin")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Change kind, params, schedule or description (new kind/params start a new history)."""
    call(db, project, "layers.update", {**read_object(file), "name": name})


@app.command("delete")
def delete(name: NameArg, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Delete a model with its members and history."""
    call(db, project, "layers.delete", {"name": name})


@app.command("compute")
def compute(
    name: NameArg,
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="YYYY-MM-DD: only events before that day (a backfill)")
    ] = None,
) -> None:
    """Compute the model now (or as of a past date) into members and history."""
    call(db, project, "layers.compute", {"name": name, "as_of": as_of})


@app.command("members")
def members(
    name: NameArg,
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    layer: Annotated[str | None, typer.Option(help="only this layer")] = None,
    on: Annotated[str | None, typer.Option(help="YYYY-MM-DD: the layers on that day, from history")] = None,
    person: Annotated[str | None, typer.Option(help="one person id")] = None,
    limit: Annotated[int, typer.Option(help="page size")] = 100,
    offset: Annotated[int, typer.Option(help="skip this many")] = 0,
) -> None:
    """Members of a model (with scores), now or on a past date."""
    params = {"name": name, "layer": layer, "on": on, "person": person, "limit": limit, "offset": offset}
    call(db, project, "layers.members", {k: v for k, v in params.items() if v is not None})


@app.command("migration")
def migration(
    name: NameArg,
    project: ProjectOption,
    date_from: Annotated[str, typer.Option("--from", help="YYYY-MM-DD")],
    date_to: Annotated[str, typer.Option("--to", help="YYYY-MM-DD")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """How many persons moved from each layer to each other between two dates."""
    call(db, project, "layers.migration", {"name": name, "from": date_from, "to": date_to})
