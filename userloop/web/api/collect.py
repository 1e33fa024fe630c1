"""The collector: Segment, PostHog and Sensors Data endpoints, drop-in for their SDKs.

Each handler authenticates, decodes, lets its wire format (``userloop/ingest/<format>.py``) turn the
body into a Payload, and answers only after the writer has committed it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from userloop.config import MAX_EVENT_BYTES
from userloop.errors import AuthError, UserloopError
from userloop.ingest import posthog, segment, sensors, workers
from userloop.ingest.event import Payload
from userloop.ingest.normalize import MessageError
from userloop.ingest.workers import Parsed, ParsePool
from userloop.web.http import (
    JSON,
    basic_user,
    decode_json,
    project_for_write_key,
    read_body,
    store_of,
)


async def store_payload(request: Request, payload: Payload) -> Response:
    """Commit what was valid; 200 lists rejected messages, 400 when nothing was valid."""
    rejected = [{"messageId": r.messageId, "error": r.error, "code": r.code} for r in payload.rejected]
    if payload.accepted == 0 and rejected:
        first = payload.rejected[0]
        return JSON(
            {"error": {"code": first.code, "message": first.error}, "accepted": 0, "rejected": rejected},
            status_code=400,
        )
    if payload.events or payload.ops:
        writer = request.app.state.writer
        try:
            await asyncio.wrap_future(writer.submit(payload))
        except Exception as exc:  # the store failed: tell the SDK to retry, nothing was acknowledged
            raise UserloopError("store_unavailable", f"could not store the events: {exc}", status=503) from exc
    return JSON({"accepted": payload.accepted, "rejected": rejected})


async def store_parsed(request: Request, parsed: Parsed) -> Response:
    """The same answer as :func:`store_payload`, for a request a parse worker encoded."""
    if parsed.error is not None:
        code, message, status, field = parsed.error
        raise UserloopError(code, message, field, status=status)
    rejected = [{"messageId": r.messageId, "error": r.error, "code": r.code} for r in parsed.rejected]
    if parsed.accepted == 0 and rejected:
        first = parsed.rejected[0]
        return JSON(
            {"error": {"code": first.code, "message": first.error}, "accepted": 0, "rejected": rejected},
            status_code=400,
        )
    if parsed.n_events or parsed.n_ops:
        try:
            await asyncio.wrap_future(request.app.state.writer.submit_parsed(parsed))
        except Exception as exc:
            raise UserloopError("store_unavailable", f"could not store the events: {exc}", status=503) from exc
    return JSON({"accepted": parsed.accepted, "rejected": rejected})


def _pool(request: Request) -> ParsePool | None:
    """The parse workers, when the server has them and the writer spools (see ingest/workers.py)."""
    pool = getattr(request.app.state, "parse_pool", None)
    return pool if pool is not None and request.app.state.writer.spooled else None


def _now() -> datetime:
    return datetime.now(UTC)


def _whole_body_error(exc: MessageError) -> UserloopError:
    return UserloopError(exc.code, str(exc))


# -- Segment ----------------------------------------------------------------------------------------
async def segment_endpoint(request: Request) -> Response:
    received_at = _now()
    key = basic_user(request)
    if key is not None:
        project_for_write_key(request, key)  # 401 before reading a body we would refuse anyway
    raw = await read_body(request)
    kind = request.path_params.get("kind")
    endpoint_type = None if kind == "batch" else kind
    pool = _pool(request)
    if pool is not None and key is not None:  # the project is known: parse in a worker process
        project = project_for_write_key(request, key)
        parsed = await pool.run(workers.segment_job, raw, project.id, received_at, endpoint_type, MAX_EVENT_BYTES)
        return await store_parsed(request, parsed)
    if endpoint_type is None and len(raw) <= MAX_EVENT_BYTES:
        fast = segment.decode_batch_fast(raw)  # typed decode of plain track/page batches
        if fast is not None:
            project = project_for_write_key(request, key or segment.write_key_of_fast(fast))
            return await store_payload(
                request, segment.parse_fast(fast, project_id=project.id, received_at=received_at)
            )
    body = decode_json(raw)
    project = project_for_write_key(request, key or segment.write_key_of(body))
    try:
        payload = segment.parse(
            body,
            project_id=project.id,
            received_at=received_at,
            endpoint_type=endpoint_type,
            check_sizes=len(raw) > MAX_EVENT_BYTES,
        )
    except MessageError as exc:
        raise _whole_body_error(exc) from exc
    return await store_payload(request, payload)


# -- PostHog ----------------------------------------------------------------------------------------
async def posthog_capture(request: Request) -> Response:
    received_at = _now()
    raw = await read_body(request)
    body = posthog.decode(raw, request.headers.get("content-type", ""), request.query_params)
    project = project_for_write_key(request, posthog.api_key_of(body) or request.query_params.get("token"))
    try:
        payload = posthog.parse(
            body, project_id=project.id, received_at=received_at, check_sizes=len(raw) > MAX_EVENT_BYTES
        )
    except MessageError as exc:
        raise _whole_body_error(exc) from exc
    return await store_payload(request, payload)


async def posthog_flags(request: Request) -> Response:
    """We serve no feature flags: an empty, valid answer keeps PostHog clients quiet."""
    return JSON(
        {
            "flags": {},
            "featureFlags": {},
            "featureFlagPayloads": {},
            "errorsWhileComputingFlags": False,
            "requestId": None,
            "sessionRecording": False,
            "supportedCompression": ["gzip", "gzip-js"],
        }
    )


# -- Sensors Data -----------------------------------------------------------------------------------
def _sensors_project(request: Request) -> Any:
    q = request.query_params
    store = store_of(request)
    token = q.get("token")
    project_param = q.get("project")
    if token:
        project = project_for_write_key(request, token)
        if project_param and project_param not in (project.name, "default") and project_param != token:
            raise AuthError("project_mismatch", f"token does not belong to project {project_param!r}")
        return project
    if project_param:
        project = store.project_by_write_key(project_param)
        if project is not None:
            return project
    return project_for_write_key(request, project_param)


async def sensors_endpoint(request: Request) -> Response:
    received_at = _now()
    project = _sensors_project(request)
    limit = request.app.state.settings.max_request_bytes
    if request.method == "GET":
        fields = dict(request.query_params)
        raw_size = len(str(request.url))
    else:
        raw = await read_body(request)
        raw_size = len(raw)
        pool = _pool(request)
        if pool is not None:
            parsed = await pool.run(
                workers.sensors_job, raw, request.headers.get("content-type", ""), project.id, received_at,
                limit, MAX_EVENT_BYTES,
            )
            return await store_parsed(request, parsed)
        fields = sensors.form_fields(raw, request.headers.get("content-type", ""))
    messages = sensors.decode_fields(fields, limit)
    try:
        payload = sensors.parse(
            messages, project_id=project.id, received_at=received_at, check_sizes=raw_size > MAX_EVENT_BYTES
        )
    except MessageError as exc:
        raise _whole_body_error(exc) from exc
    return await store_payload(request, payload)
