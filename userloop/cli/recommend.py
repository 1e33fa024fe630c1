"""`userloop recommend ...`: each command calls one ``recommend.*`` action (on the file, or through the server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from userloop.cli import DbOption, _fail, _print_json, out
from userloop.cli.common import ProjectOption, read_text, run
from userloop.config import DEFAULT_DB
from userloop.errors import UserloopError

app = typer.Typer(help="Recommendations: train, evaluate, preview feeds, manage the catalogue.", no_args_is_help=True)
items_app = typer.Typer(help="The item catalogue.", no_args_is_help=True)
config_app = typer.Typer(help="Recommendation settings (events, parameters, scenes, schedule).", no_args_is_help=True)
app.add_typer(items_app, name="items")
app.add_typer(config_app, name="config")

COLUMNS = ("ndcg@10", "hr@10", "recall@10", "coverage", "train_s")


def table(result: dict[str, Any]) -> str:
    """The evaluation as a fixed-width text table (one row per recommender)."""
    head = f"{'recommender':<18}" + "".join(f"{c:>11}" for c in COLUMNS)
    lines = [f"split={result['split']} test users={result['test_users']} (new: {result['new_test_users']}) "
             f"items={result['items']} train interactions={result['train_interactions']}", head, "-" * len(head)]
    for row in result["rows"]:
        name = row["recommender"] + (" *" if row.get("reference") else "")
        lines.append(f"{name:<18}" + "".join(f"{row[c]:>11.4f}" if c != "train_s" else f"{row[c]:>11.2f}" for c in COLUMNS))
    lines.append("* reference model (tuned on validation); default = the blend served by GET /api/recommend")
    return "\n".join(lines)


@app.command("evaluate")
def evaluate(
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    split: Annotated[str, typer.Option("--split", help="loo (leave last out) | time (global time split)")] = "loo",
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="tune hyper-parameters on a validation part")] = True,
    apply: Annotated[bool, typer.Option("--apply", help="save the tuned parameters as the project's")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """NDCG@10, HR@10, recall@10, coverage and training time per recommender."""
    result = run(db, project, "recommend.evaluate", {"split": split, "tune": tune, "apply": apply})
    if as_json:
        _print_json(result)
    else:
        out.print(table(result), highlight=False, soft_wrap=True)


@app.command("evaluations")
def evaluations(
    project: ProjectOption,
    db: DbOption = DEFAULT_DB,
    split: Annotated[str | None, typer.Option("--split", help="only loo or time")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """The latest stored evaluation per split (what `evaluate` printed), with its time."""
    result = run(db, project, "recommend.evaluations", {"split": split} if split else {})
    if as_json:
        _print_json(result)
        return
    texts = [f"evaluated at {e['evaluated_at']} (best: {e['best']})\n{table(e)}" for e in result["evaluations"]]
    out.print("\n\n".join(texts) or "no evaluation yet: run `userloop recommend evaluate`", highlight=False, soft_wrap=True)


@app.command("train")
def train(project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Train now: fit every recommender and replace the served model."""
    _print_json(run(db, project, "recommend.train", {"trigger": "cli"}))


@app.command("preview")
def preview(
    project: ProjectOption,
    distinct_id: Annotated[str | None, typer.Option("--distinct-id", help="the person")] = None,
    db: DbOption = DEFAULT_DB,
    n: Annotated[int, typer.Option("-n", help="how many items")] = 10,
    type: Annotated[str | None, typer.Option("--type", help="only items of this type")] = None,
    scene: Annotated[str | None, typer.Option("--scene", help="a configured scene")] = None,
    item: Annotated[str | None, typer.Option("--item", help="the item on screen, type:id")] = None,
) -> None:
    """A person's feed as the API would serve it (no impression is recorded)."""
    params = {"distinct_id": distinct_id, "n": n, "type": type, "scene": scene, "item": item}
    _print_json(run(db, project, "recommend.preview", {k: v for k, v in params.items() if v is not None}))


@app.command("similar")
def similar(item: Annotated[str, typer.Argument(help="type:id")], project: ProjectOption, db: DbOption = DEFAULT_DB,
            n: Annotated[int, typer.Option("-n")] = 10,
            type: Annotated[str | None, typer.Option("--type", help="only items of this type")] = None) -> None:
    """Similar and related items of an item."""
    _print_json(run(db, project, "recommend.similar", {"item": item, "n": n, **({"type": type} if type else {})}))


@app.command("people")
def people(distinct_id: str, project: ProjectOption, db: DbOption = DEFAULT_DB,
           n: Annotated[int, typer.Option("-n")] = 10) -> None:
    """People you may like."""
    _print_json(run(db, project, "recommend.people", {"distinct_id": distinct_id, "n": n}))


@app.command("models")
def models(project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Trained models, newest first."""
    _print_json(run(db, project, "recommend.models", {}))


@app.command("stats")
def stats(project: ProjectOption, db: DbOption = DEFAULT_DB,
          date_from: Annotated[str | None, typer.Option("--from", help="ISO time (default: 30 days ago)")] = None,
          date_to: Annotated[str | None, typer.Option("--to", help="ISO time (default: now)")] = None,
          window_hours: Annotated[float, typer.Option(help="a purchase this soon after a click converts")] = 24) -> None:
    """Online impressions, clicks, CTR and conversions per scene, variant and source."""
    params: dict[str, Any] = {"window_hours": window_hours}
    params.update({k: v for k, v in (("date_from", date_from), ("date_to", date_to)) if v})
    _print_json(run(db, project, "recommend.stats", params))


@config_app.command("get")
def config_get(project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """The settings (with the interaction rules detected from the events when none are set)."""
    _print_json(run(db, project, "recommend.config.get", {}))


@config_app.command("set")
def config_set(file: Annotated[Path, typer.Argument(help="settings (JSON); '-' reads stdin")],
               project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Replace the settings (validated as a whole)."""
    try:
        body = json.loads(read_text(file))
    except json.JSONDecodeError as exc:
        _fail(UserloopError("malformed_json", f"{file} is not valid JSON: {exc}"))
        raise
    _print_json(run(db, project, "recommend.config.set", body))


@items_app.command("import")
def items_import(file: Annotated[Path, typer.Argument(help="CSV with type,id[,title,tags,category,price,...]")],
                 project: ProjectOption, db: DbOption = DEFAULT_DB) -> None:
    """Import items from a CSV file (tags separated by '|')."""
    _print_json(run(db, project, "recommend.items.import", {"csv": read_text(file)}))


@items_app.command("list")
def items_list(project: ProjectOption, db: DbOption = DEFAULT_DB,
               type: Annotated[str | None, typer.Option("--type")] = None,
               tag: Annotated[str | None, typer.Option("--tag")] = None,
               limit: Annotated[int, typer.Option("--limit")] = 100) -> None:
    """List catalogue items."""
    params: dict[str, Any] = {"limit": limit, **{k: v for k, v in (("type", type), ("tag", tag)) if v}}
    _print_json(run(db, project, "recommend.items.list", params))
