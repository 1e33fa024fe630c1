"""The command line: a thin shell over the library. Each command calls one library function."""

from __future__ import annotations

import gc
import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from userloop.backend import Backend, open_backend, remove_server_file, write_server_file
from userloop.config import DEFAULT_DB, Settings
from userloop.errors import UserloopError

app = typer.Typer(help="userloop: collect, analyse and act on user behaviour.", no_args_is_help=True)
project_app = typer.Typer(help="Projects (each has a write key for SDKs and a secret key for reads).")
import_app = typer.Typer(help="Import data from files.")
export_app = typer.Typer(help="Export data to files.")
app.add_typer(project_app, name="project")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")

err = Console(stderr=True)
out = Console()

DbOption = Annotated[Path, typer.Option("--db", help="DuckDB file", envvar="USERLOOP_DB")]


def _fail(exc: UserloopError) -> None:
    err.print(f"[red]error[/red] ({exc.code}): {exc.message}")
    raise typer.Exit(1)


@contextmanager
def backend(db: Path) -> Iterator[Backend]:
    try:
        b = open_backend(db)
    except UserloopError as exc:
        _fail(exc)
        raise
    try:
        yield b
    except UserloopError as exc:
        _fail(exc)
    finally:
        b.close()


def default_parse_workers() -> int:
    """Parse workers pay for themselves from 3 cores: on 2, the IPC costs more than the parallelism
    gains (benchmarks/ingest.py: 41k events/s in-process against 34k with 2 workers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores - 1 if cores >= 3 else 0


@app.command()
def serve(
    db: DbOption = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    parse_workers: Annotated[
        int | None,
        typer.Option(help="processes that parse collector requests (default: cores - 1 from 3 cores up, else 0)"),
    ] = None,
    show_credentials: Annotated[
        bool, typer.Option("--show-credentials", help="reset and print the admin password and project keys")
    ] = False,
) -> None:
    """Run the HTTP server (collector, APIs) on the DuckDB file."""
    import uvicorn

    from userloop.store.duckdb import Store, StoreLocked
    from userloop.web.app import create_app

    try:
        store = Store(db)
    except StoreLocked:
        err.print(f"[red]error[/red]: {db} is in use by another process (is a server already running?)")
        raise typer.Exit(1) from None
    url = f"http://{host}:{port}"
    # first run: no admin account yet, so generate its password and print it (no default credential)
    first_run = not store.query("SELECT 1 FROM admin_users WHERE username = 'admin'")
    if show_credentials or first_run:
        password = secrets.token_urlsafe(12)
        store.set_admin_password("admin", password)
        out.print(f"\n[bold]userloop[/bold] is serving on [link={url}]{url}[/link]")
        out.print(f"  database:        {db}")
        out.print(f"  console:         {url}/console/")
        out.print(f"  admin user:      admin\n  admin password:  {password}")
        for p in store.projects():
            out.print(f"  project {p.id} [bold]{p.name}[/bold] ({p.timezone})")
            out.print(f"    write key:     {p.write_key}")
            out.print(f"    secret key:    {p.secret_key}")
        out.print("")
    else:
        out.print(f"userloop serving {db} on {url}")
    token = write_server_file(db, url)
    settings = Settings(db_path=db, parse_workers=default_parse_workers() if parse_workers is None else parse_workers)
    # the writer thread acknowledges requests: let it take the GIL within 0.5 ms instead of the
    # default 5 ms, or every acknowledgement waits behind request parsing on the event loop
    sys.setswitchinterval(settings.gil_switch_interval_s)
    # the objects made at start-up (modules, the app) are never garbage: keep the cyclic collector
    # from walking them again and again, and let it run less often (requests make few cycles)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.gc_thresholds)
    try:
        uvicorn.run(
            create_app(store, settings=settings, admin_token=token, scheduler=True),
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
        )
    finally:
        remove_server_file(db)
        store.close()


@project_app.command("create")
def project_create(
    name: str,
    db: DbOption = DEFAULT_DB,
    timezone: Annotated[str, typer.Option(help="IANA time zone for day/week buckets")] = "UTC",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Create a project and print its keys."""
    with backend(db) as b:
        project = b.create_project(name, timezone)
    if as_json:
        _print_json(project)
    else:
        for k, v in project.items():
            out.print(f"{k:>10}: {v}")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    )


@app.command()
def demo(
    db: DbOption = DEFAULT_DB,
    users: Annotated[int, typer.Option(help="simulated users")] = 5000,
    days: Annotated[int, typer.Option(help="days of history, ending today")] = 90,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same data)")] = 0,
    name: Annotated[str, typer.Option(help="project name")] = "demo",
) -> None:
    """Generate the demo data set (an online-education organisation) into a project, once."""
    from userloop.demo.loader import load_demo

    with backend(db) as b:
        existing = b.find_project(name)
        if existing is not None:
            out.print(f"project {name!r} (id {existing['id']}) already exists; demo data not loaded again")
            return
        with _progress() as progress:
            task = progress.add_task("demo events", total=None)
            result = load_demo(
                b, users=users, days=days, seed=seed, name=name,
                progress=lambda n: progress.update(task, completed=n),
            )
    _print_json(result)


def _print_json(value: Any) -> None:
    """Machine-readable output: one JSON line on stdout, no colours or wrapping."""
    sys.stdout.write(json.dumps(value, default=str) + "\n")
    sys.stdout.flush()


@import_app.command("events")
def import_events(
    file: Path,
    project: Annotated[int, typer.Option("--project", help="project id")],
    db: DbOption = DEFAULT_DB,
    format: Annotated[str | None, typer.Option("--format", help="csv | parquet | jsonl")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="taobao | online_retail")] = None,
    mapping: Annotated[list[str] | None, typer.Option("--map", help="COLUMN=FIELD, repeatable")] = None,
) -> None:
    """Import events from a CSV, Parquet or JSON-lines file (work done in DuckDB)."""
    from userloop.ingest.files import ImportSpec, iter_chunks, parse_mapping

    with backend(db) as b:
        b.project(project)
        spec = ImportSpec(
            path=file, project_id=project, format=format, preset=preset, mapping=parse_mapping(mapping or [])
        )
        chunks = iter_chunks(spec)
        stored = 0
        with _progress() as progress:
            task = progress.add_task(f"importing {file.name}", total=chunks.total)
            for chunk in chunks:
                stored += b.import_table(project, chunk)
                progress.update(task, completed=chunks.rows)
    _print_json(
        {
            "file": str(file),
            "rows": chunks.rows,
            "stored": stored,
            "duplicates": chunks.rows - stored,
            "skipped": chunks.skipped,
            "skipped_by_reason": chunks.skipped_by_reason,
        }
    )


@export_app.command("events")
def export_events(
    out_path: Annotated[Path, typer.Argument(metavar="OUT")],
    project: Annotated[int, typer.Option("--project", help="project id")],
    db: DbOption = DEFAULT_DB,
    format: Annotated[str, typer.Option("--format", help="parquet")] = "parquet",
) -> None:
    """Export a project's events to a Parquet file."""
    if format != "parquet":
        _fail(UserloopError("bad_format", "only --format parquet is supported", "format"))
    with backend(db) as b:
        rows = b.export_parquet(project, out_path.resolve())
    _print_json({"file": str(out_path), "rows": rows})


@app.command()
def query(
    file: Annotated[Path, typer.Argument(help="a JSON query; '-' reads standard input")],
    project: Annotated[int, typer.Option("--project", help="project id (overrides the file's)")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Run an analysis (trends, funnel, retention, ...) and print its JSON result."""
    raw = sys.stdin.read() if str(file) == "-" else file.read_text()
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        _fail(UserloopError("malformed_json", f"{file} is not valid JSON: {exc}"))
        raise
    if isinstance(body, dict):
        body["project"] = project
    with backend(db) as b:
        _print_json(b.query(project, json.dumps(body).encode()))


def _add_subcommands() -> None:
    """Sub-command groups that live in their own modules (``userloop/cli/<name>.py``, each an ``app``)."""
    import importlib

    for name in ("tags", "segments", "layers", "alerts", "persons", "recommend"):
        module = importlib.import_module(f"userloop.cli.{name}")
        if getattr(module, "app", None) is not None:
            app.add_typer(module.app, name=name)


_add_subcommands()

if __name__ == "__main__":
    app()
