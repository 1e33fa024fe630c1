"""`userloop segments ...`: each command calls one ``segments.*`` action (on the file or the server)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from userloop.config import DEFAULT_DB
from userloop.errors import UserloopError

app = typer.Typer(
    help="Segments: rule-based groups of persons (preview, save, compute, export).", no_args_is_help=True
)

DbOption = Annotated[Path, typer.Option("--db", help="DuckDB file", envvar="USERLOOP_DB")]
ProjectOption = Annotated[int, typer.Option("--project", help="project id")]


def _call(db: Path, project: int, name: str, params: dict[str, Any]) -> None:
    from userloop.cli import _print_json, backend

    with backend(db) as b:
        try:
            result = b.call(name, project, params)
        except UserloopError as exc:  # the field path helps on a terminal (the JSON body has it apart)
            if exc.field and exc.field not in exc.message:
                exc.message = f"{exc.message} (at {exc.field})"
            raise
        _print_json(result)


def _read_json(file: Path) -> dict[str, Any]:
    from userloop.cli import _fail

    raw = sys.stdin.read() if str(file) == "-" else file.read_text()
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        _fail(UserloopError("malformed_json", f"{file} is not valid JSON: {exc}"))
        raise
    if not isinstance(body, dict):
        _fail(UserloopError("invalid_body", f"{file} must hold a JSON object"))
    return body


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
    body = _read_json(file)
    if "rule" in body:
        body = {k: v for k, v in body.items() if k in ("rule", "sample", "as_of")}
    else:
        body = {"rule": body}
    _call(db, project, "segments.preview", body)


@app.command()
def create(
    file: Annotated[Path, typer.Argument(help='JSON {"name", "rule", "type", "schedule", "description"}')],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Save a segment and compute its members."""
    _call(db, project, "segments.create", _read_json(file))


@app.command("list")
def list_segments(project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """The saved segments."""
    _call(db, project, "segments.list", {})


@app.command()
def get(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """One saved segment."""
    _call(db, project, "segments.get", {"name": name})


@app.command()
def update(
    name: str,
    file: Annotated[Path, typer.Argument(help="JSON with the fields to change")],
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
) -> None:
    """Change a segment (a new rule or type recomputes its members)."""
    _call(db, project, "segments.update", {**_read_json(file), "name": name})


@app.command()
def delete(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Delete a segment with its members and history."""
    _call(db, project, "segments.delete", {"name": name})


@app.command()
def compute(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Recompute a segment now (a static one: take a new snapshot)."""
    _call(db, project, "segments.compute", {"name": name})


@app.command()
def members(
    name: str,
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    limit: Annotated[int, typer.Option(help="members per page")] = 100,
    offset: Annotated[int, typer.Option(help="members to skip")] = 0,
) -> None:
    """The current members (person_id order)."""
    _call(db, project, "segments.members", {"name": name, "limit": limit, "offset": offset})


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
    _call(db, project, "segments.history", params)


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
    _call(db, project, "segments.export", params)
