"""Live events, for checking tracking: the newest events as they arrive, without reloading.

The table is an htmx fragment that asks for itself again every :data:`POLL_SECONDS`
(``hx-trigger="every 2s"``, ``hx-swap="outerHTML"``), carrying the newest ``received_at`` it has
shown; rows received after it are highlighted. One query per poll: the project's latest
:data:`ROWS` events by arrival (``received_at``), optionally of one event name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.responses import Response

from userloop.errors import UserloopError
from userloop.store.duckdb import Store
from userloop.web.console import catalog
from userloop.web.console.base import Page, page

ROWS = 50
POLL_SECONDS = 2


def latest(store: Store, project_id: int, event: str | None, limit: int = ROWS) -> list[dict[str, Any]]:
    args: list[Any] = [project_id]
    where = "e.project_id = ?"
    if event:
        where += " AND e.event = ?"
        args.append(event)
    return store.query(
        f"""SELECT e.received_at, e.timestamp, e.event, e.distinct_id, coalesce(o.person_id, e.person_id) AS person_id,
                   e.channel, coalesce(e.path, e.url) AS page, e.os, e.browser, e.lib, CAST(e.properties AS VARCHAR) AS properties,
                   e.message_id
            FROM events e LEFT JOIN person_overrides o ON o.project_id = e.project_id AND o.distinct_id = e.distinct_id
            WHERE {where} ORDER BY e.received_at DESC, e.message_id DESC LIMIT {int(limit)}""",
        args,
    )


def _seen(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise UserloopError("bad_parameter", "seen must be an ISO time", "seen") from exc


def _fragment(pg: Page) -> dict[str, Any]:
    assert pg.project is not None
    event = pg.params.get("event", "").strip() or None
    rows = latest(pg.store, pg.project.id, event)
    seen = _seen(pg.params.get("seen"))
    for r in rows:
        r["new"] = seen is not None and r["received_at"] > seen
    newest = rows[0]["received_at"].isoformat() if rows else (seen.isoformat() if seen else "")
    return {"rows": rows, "newest": newest, "event": event or "", "poll": POLL_SECONDS}


@page("/p/{pid:int}/live")
def live_page(pg: Page) -> Response:
    assert pg.project is not None
    return pg.render("live.html", title=pg.t("nav.live"), catalog=catalog.catalog(pg.store, pg.project.id),
                     **_fragment(pg))  # fmt: skip


@page("/p/{pid:int}/live/rows")
def live_rows(pg: Page) -> Response:
    return pg.render("_live_rows.html", **_fragment(pg))
