"""`userloop segments ...`: each command calls one ``segments.*`` action (on the file or the server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from userloop.cli import DbOption
from userloop.cli.common import ProjectOption, call, read_object
from userloop.config import DEFAULT_DB

app = typer.Typer(
    help="Segments: rule-based groups of persons (preview, save, compute, export).", no_args_is_help=True
)


@app.command()
def preview(
    file: Annotated[
        Path,
        typer.Argument(
            help='a segment definition, {"rule": ..., "sample": 10} or just the rule; \'-\': stdin'
        ),
    ],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Count the persons a rule selects (and show a sample) without saving anything. The file may
    be a segment definition (for ``create``): its rule is previewed."""
    body = read_object(file)
    if "rule" in body:
        body = {k: v for k, v in body.items() if k in ("rule", "sample", "as_of")}
    else:
        body = {"rule": body}
    call(db, project, "segments.preview", body, field_in_message=True)


@app.command()
def create(
    file: Annotated[Path, typer.Argument(help='JSON {"name", "rule", "type", "schedule", "description"}')],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Save a segment and compute its members."""
    call(db, project, "segments.create", read_object(file), field_in_message=True)


@app.command("list")
def list_segments(project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """The saved segments."""
    call(db, project, "segments.list", {}, field_in_message=True)


@app.command()
def get(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """One saved segment."""
    call(db, project, "segments.get", {"name": name}, field_in_message=True)


@app.command()
def update(
    name: str,
    file: Annotated[Path, typer.Argument(help="JSON with the fields to change")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Change a segment (a new rule or type recomputes its members)."""
    call(db, project, "segments.update", {**read_object(file), "name": name}, field_in_message=True)


@app.command()
def delete(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Delete a segment with its members and history."""
    call(db, project, "segments.delete", {"name": name}, field_in_message=True)


@app.command()
def compute(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Recompute a segment now (a static one: take a new snapshot)."""
    call(db, project, "segments.compute", {"name": name}, field_in_message=True)


@app.command()
def members(
    name: str,
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    limit: Annotated[int, typer.Option(help="members per page")] = 100,
    offset: Annotated[int, typer.Option(help="members to skip")] = 0,
) -> None:
    """The current members (person_id order)."""
    call(db, project, "segments.members", {"name": name, "limit": limit, "offset": offset}, field_in_message=True)


@app.command()
def history(
    name: str,
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    person: Annotated[str | None, typer.Option("--person", help="one person id")] = None,
    limit: Annotated[int, typer.Option(help="rows")] = 1000,
) -> None:
    """Who entered and left the segment, and when."""
    params: dict[str, Any] = {"name": name, "limit": limit}
    if person is not None:
        params["person_id"] = person
    call(db, project, "segments.history", params, field_in_message=True)


@app.command()
def export(
    name: str,
    out: Annotated[Path, typer.Argument(metavar="OUT", help="file to write")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    format: Annotated[str, typer.Option("--format", help="csv | parquet")] = "csv",
    properties: Annotated[
        str, typer.Option("--properties", help="person properties as columns: city,gender")
    ] = "",
    distinct_ids: Annotated[
        bool, typer.Option("--distinct-ids", help="add each member's distinct ids")
    ] = False,
) -> None:
    """Write the members with chosen person properties to a CSV or Parquet file."""
    params = {
        "name": name,
        "path": str(out.resolve()),
        "format": format,
        "properties": properties,
        "distinct_ids": distinct_ids,
    }
    call(db, project, "segments.export", params, field_in_message=True)
