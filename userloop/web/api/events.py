"""Read back: ``GET /api/events`` (newest first, cursor pages). Persons: ``userloop/web/api/persons.py``."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from userloop.config import MAX_EVENTS_PAGE
from userloop.errors import UserloopError
from userloop.web.http import JSON, project_for_secret, store_of

_LIST_COLUMNS = (
    "message_id, event, type, distinct_id, anonymous_id, user_id, timestamp, original_timestamp, sent_at, "
    "received_at, properties, url, path, referrer, referring_domain, utm_source, utm_medium, utm_campaign, "
    "utm_content, utm_term, channel, os, browser, device_type, app_version, lib, ip, city, region, country, source"
)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _cursor_encode(ts: datetime, message_id: str) -> str:
    raw = msgspec.json.encode([int(ts.timestamp() * 1_000_000), message_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(text: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        us, mid = msgspec.json.decode(raw, type=tuple[int, str])
        return us, mid
    except (ValueError, msgspec.DecodeError) as exc:
        raise UserloopError("bad_cursor", "after must be a cursor from a previous page's 'next'", "after") from exc


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise UserloopError("bad_parameter", f"{name} must be an integer", name) from exc
    if not lo <= value <= hi:
        raise UserloopError("bad_parameter", f"{name} must be between {lo} and {hi}", name)
    return value


async def list_events(request: Request) -> Response:
    project = project_for_secret(request)
    q = request.query_params
    limit = _int_param(request, "limit", 100, 1, MAX_EVENTS_PAGE)
    where = ["e.project_id = ?"]
    params: list[Any] = [project.id]
    if q.get("event"):
        where.append("e.event = ?")
        params.append(q["event"])
    if q.get("distinct_id"):
        where.append("e.distinct_id = ?")
        params.append(q["distinct_id"])
    if q.get("person_id"):
        where.append("i.person_id = ?")
        params.append(q["person_id"])
    if q.get("after"):
        us, mid = _cursor_decode(q["after"])
        where.append("(epoch_us(e.timestamp) < ? OR (epoch_us(e.timestamp) = ? AND e.message_id < ?))")
        params += [us, us, mid]
    sql = (
        f"SELECT {', '.join('e.' + c.strip() for c in _LIST_COLUMNS.split(','))}, "
        "coalesce(i.person_id, e.person_id) AS person_id "
        "FROM events e LEFT JOIN identities i ON i.project_id = e.project_id AND i.distinct_id = e.distinct_id "
        f"WHERE {' AND '.join(where)} ORDER BY e.timestamp DESC, e.message_id DESC LIMIT ?"
    )
    rows = store_of(request).query(sql, params + [limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    results = []
    for row in rows:
        row["properties"] = msgspec.json.decode(row["properties"] or "{}")
        results.append({k: _iso(v) for k, v in row.items()})
    next_url = None
    if more and rows:
        last = rows[-1]
        cursor = _cursor_encode(datetime.fromisoformat(results[-1]["timestamp"]), last["message_id"])
        next_url = str(request.url.include_query_params(after=cursor))
    return JSON({"results": results, "next": next_url})
