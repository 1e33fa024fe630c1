"""The one dispatch on ``kind``: decode a request into its typed query, validate, run.

Analyses register themselves with :func:`register` (``userloop/analytics/__init__.py`` imports
them all). The HTTP API, the CLI and the console call :func:`run_query`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Union

import msgspec

from userloop.errors import UserloopError
from userloop.query.model import Query
from userloop.query.sql import Ctx
from userloop.store.duckdb import Project, Store

Runner = Callable[[Ctx, Any], dict[str, Any]]
_REGISTRY: dict[str, tuple[type[Query], Runner]] = {}
_decoder: msgspec.json.Decoder[Any] | None = None


def register(cls: type[Query], runner: Runner) -> None:
    global _decoder
    kind = cls.__struct_config__.tag
    assert isinstance(kind, str), f"{cls.__name__} needs tag='<kind>'"
    _REGISTRY[kind] = (cls, runner)
    _decoder = None


def kinds() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def _load() -> None:
    import userloop.analytics  # noqa: F401  (registers every analysis)


def _get_decoder() -> msgspec.json.Decoder[Any]:
    global _decoder
    _load()
    if _decoder is None:
        types = tuple(cls for cls, _ in _REGISTRY.values())
        _decoder = msgspec.json.Decoder(Union[types])  # type: ignore[valid-type]  # noqa: UP007
    return _decoder


_AT = re.compile(r" - at `\$\.?(.*)`$")


def _validation_error(exc: msgspec.ValidationError | msgspec.DecodeError, raw: bytes) -> UserloopError:
    text = str(exc)
    m = _AT.search(text)
    field = m.group(1) if m else None
    message = _AT.sub("", text)
    if field == "kind" or ("kind" in text and "Missing required field" in text):
        return UserloopError("unknown_kind", f"unknown or missing kind; expected one of {', '.join(kinds())}", "kind")
    if "unknown field" in text:
        name = re.search(r"unknown field `([^`]*)`", text)
        full = f"{field}.{name.group(1)}" if field and name else (name.group(1) if name else field)
        return UserloopError("unknown_field", message, full)
    if isinstance(exc, msgspec.ValidationError):
        return UserloopError("invalid_field", message, field)
    return UserloopError("malformed_json", f"query is not valid JSON: {text}")


def decode_query(raw: bytes | str | dict[str, Any]) -> Query:
    if isinstance(raw, dict):
        raw = msgspec.json.encode(raw)
    if isinstance(raw, str):
        raw = raw.encode()
    try:
        query = _get_decoder().decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _validation_error(exc, raw) from exc
    assert isinstance(query, Query)
    return query


def run_query(store: Store, project: Project, raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Decode, check the project, validate and run one query; errors are :class:`UserloopError`."""
    query = decode_query(raw)
    if query.project != project.id:
        raise UserloopError("project_forbidden", "this key cannot query that project", "project", status=403)
    query.validate()
    kind = query.__struct_config__.tag
    _, runner = _REGISTRY[str(kind)]
    ctx = Ctx(store=store, project=project, segment=query.segment)
    if query.segment is not None:
        found = store.query(
            "SELECT 1 AS ok FROM segments WHERE project_id = ? AND name = ?", [project.id, query.segment]
        )
        if not found:
            raise UserloopError("unknown_segment", f"no saved segment named {query.segment!r}", "segment")
    result = runner(ctx, query)
    return {"kind": kind, **result}
