"""`userloop tags ...`: each command calls one ``tags.*`` action (on the file, or through the server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from userloop.cli import DbOption
from userloop.cli.common import ProjectOption, call, read_object, read_text
from userloop.config import DEFAULT_DB

app = typer.Typer(help="Tags: static, semi-dynamic and dynamic person attributes.", no_args_is_help=True)

@app.command("create")
def create(file: Annotated[Path, typer.Argument(help="tag definition (JSON); '-' reads stdin")],
           project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Create a tag (computed tags are computed at once)."""
    call(db, project, "tags.create", read_object(file))


@app.command("list")
def list_tags(project: ProjectOption, db: DbOption = DEFAULT_DB,
              kind: Annotated[str | None, typer.Option(help="static | semi_dynamic | dynamic")] = None,
              category: Annotated[str | None, typer.Option(help="a category path and below")] = None) -> None:
    """List the project's tags."""
    call(db, project, "tags.list", {k: v for k, v in (("kind", kind), ("category", category)) if v})


@app.command("get")
def get(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Show one tag's definition and state."""
    call(db, project, "tags.get", {"name": name})


@app.command("update")
def update(name: str, file: Annotated[Path, typer.Argument(help="fields to change (JSON); '-' reads stdin")],
           project: ProjectOption, db: DbOption = DEFAULT_DB,
           replace: Annotated[bool, typer.Option("--replace", help="replace the whole definition")] = False) -> None:
    """Change a tag's definition (null resets a field) and recompute it."""
    call(db, project, "tags.update", {**read_object(file), "name": name, "replace": replace})


@app.command("delete")
def delete(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Delete a tag with its values and history."""
    call(db, project, "tags.delete", {"name": name})


@app.command("compute")
def compute(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB,
            as_of: Annotated[str | None, typer.Option("--as-of", help="ISO time the windows end at")] = None) -> None:
    """Compute a tag now."""
    call(db, project, "tags.compute", {"name": name, "as_of": as_of})


@app.command("import")
def import_values(name: str, file: Annotated[Path, typer.Argument(help="CSV: distinct_id|person_id,value")],
                  project: ProjectOption, db: DbOption = DEFAULT_DB,
                  replace: Annotated[bool, typer.Option("--replace", help="drop values not in the file")] = False,
                  ) -> None:
    """Set a static or semi-dynamic tag's values from a CSV file."""
    call(db, project, "tags.import", {"name": name, "csv": read_text(file), "replace": replace})


@app.command("coverage")
def coverage(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB,
             limit: Annotated[int, typer.Option(help="values listed")] = 20) -> None:
    """Share of persons with a value, and the value distribution."""
    call(db, project, "tags.coverage", {"name": name, "limit": limit})


@app.command("history")
def history(name: str, project: ProjectOption, db: DbOption = DEFAULT_DB,
            person: Annotated[str, typer.Option(help="distinct id or person id")] = "",
            at: Annotated[str | None, typer.Option(help="ISO time: the value then")] = None) -> None:
    """A person's values of a dynamic tag over time."""
    call(db, project, "tags.history", {"name": name, "person": person, "at": at})


@app.command("catalogue")
def catalogue(project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """The tag category tree with counts."""
    call(db, project, "tags.catalogue", {})
