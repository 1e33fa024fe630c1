"""Named operations shared by the REST API, the CLI and the console.

A capability (tags, segments, layers, alerts, ...) registers each operation once::

    @action("segments.preview")
    def preview(ctx: ActionContext, params: dict[str, Any]) -> dict[str, Any]: ...

The REST routes call :func:`run_action`; the CLI calls ``Backend.call(name, project_id, params)``,
which runs the same function on the DuckDB file, or, while a server holds the file, posts to
``/api/admin/actions/{name}``. So every front calls one function and gets one error shape.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from userloop.errors import NotFound

if TYPE_CHECKING:
    from userloop.store.duckdb import Project, Store
    from userloop.store.writer import Writer


@dataclass
class ActionContext:
    store: Store
    writer: Writer | None
    project: Project


Action = Callable[[ActionContext, dict[str, Any]], Any]
_ACTIONS: dict[str, Action] = {}

# modules that register actions when imported
ACTION_MODULES: tuple[str, ...] = (
    "userloop.people.audit",
    "userloop.people.portrait",
    "userloop.people.tags",
    "userloop.people.segments",
    "userloop.people.layers",
    "userloop.people.alerts",
    "userloop.recommend",
    "userloop.people.listing",
)


def action(name: str) -> Callable[[Action], Action]:
    def register(fn: Action) -> Action:
        _ACTIONS[name] = fn
        return fn

    return register


def load_actions() -> None:
    for module in ACTION_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a missing dependency inside an existing module is a real error
                raise


def action_names() -> list[str]:
    """Every registered operation (the console shows a capability's pages when its actions exist)."""
    load_actions()
    return sorted(_ACTIONS)


def run_action(name: str, ctx: ActionContext, params: dict[str, Any] | None = None) -> Any:
    load_actions()
    fn = _ACTIONS.get(name)
    if fn is None:
        raise NotFound("unknown_action", f"no operation named {name!r}", "action")
    return fn(ctx, params or {})
