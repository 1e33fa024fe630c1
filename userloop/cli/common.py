"""What the sub-command modules (tags, segments, layers, alerts, persons, recommend) share: the
``--project`` option, reading a file argument ('-' is standard input), and calling one action on the
file or through the running server (``userloop.backend``), printing its JSON answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from userloop.cli import _fail, _print_json, backend
from userloop.errors import UserloopError

ProjectOption = Annotated[int, typer.Option("--project", help="project id")]


def read_text(file: Path) -> str:
    """A file's text ('-': standard input; a UTF-8 byte order mark is dropped); a clean error otherwise."""
    try:
        return sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        _fail(UserloopError("file_unreadable", f"cannot read {file}: {exc}", "file"))
        raise


def read_object(file: Path) -> dict[str, Any]:
    """One JSON object from a file ('-': standard input); a clean error otherwise."""
    try:
        body = json.loads(read_text(file))
    except json.JSONDecodeError as exc:
        _fail(UserloopError("malformed_json", f"{file} is not valid JSON: {exc}"))
        raise
    if not isinstance(body, dict):
        _fail(UserloopError("invalid_body", f"{file} must hold one JSON object"))
    return body  # type: ignore[no-any-return]


def run(db: Path, project: int, name: str, params: dict[str, Any], *, field_in_message: bool = False) -> Any:
    """The action's answer. ``field_in_message``: name the offending field in the message too (a rule
    tree's path helps on a terminal; the JSON error has it apart)."""
    with backend(db) as b:
        try:
            return b.call(name, project, params)
        except UserloopError as exc:
            if field_in_message and exc.field and exc.field not in exc.message:
                exc.message = f"{exc.message} (at {exc.field})"
            raise


def call(db: Path, project: int, name: str, params: dict[str, Any], *, field_in_message: bool = False) -> None:
    """Run the action and print its answer as JSON."""
    _print_json(run(db, project, name, params, field_in_message=field_in_message))
