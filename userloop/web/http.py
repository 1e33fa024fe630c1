"""HTTP plumbing shared by all routes: bounded body reading, JSON decoding, auth, error bodies."""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from userloop.errors import AuthError, TooLarge, UserloopError
from userloop.ingest.compression import gunzip
from userloop.store.duckdb import Project, Store

log = logging.getLogger("userloop.web")
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)


def error_response(exc: UserloopError) -> JSONResponse:
    return JSON(exc.to_dict(), status_code=exc.status)  # type: ignore[return-value]


async def handle_userloop_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UserloopError)
    return error_response(exc)


async def handle_internal_error(request: Request, exc: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    log.exception("internal error %s on %s %s", error_id, request.method, request.url.path)
    return JSON(
        {"error": {"code": "internal_error", "message": f"internal error, id {error_id} in the server log"}},
        status_code=500,
    )


def settings_of(request: Request) -> Any:
    return request.app.state.settings


def store_of(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def read_body(request: Request) -> bytes:
    """The request body, gunzipped if so encoded, refused past the configured size."""
    limit = settings_of(request).max_request_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge("request_too_large", f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge("request_too_large", f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate") or request.query_params.get("compression") == "gzip-js":
        raw = gunzip(raw, limit)
    return raw


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        raise UserloopError("empty_body", "request body is empty")
    try:
        return _decode(raw)
    except msgspec.DecodeError as exc:
        raise UserloopError("malformed_json", f"request body is not valid JSON: {exc}") from exc


def basic_user(request: Request) -> str | None:
    """The user part of HTTP Basic auth (Segment sends the write key there, empty password)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def project_for_write_key(request: Request, key: str | None) -> Project:
    if not key:
        raise AuthError("missing_write_key", "no write key: send it as HTTP Basic user or in the body")
    project = store_of(request).project_by_write_key(key)
    if project is None:
        raise AuthError("unknown_write_key", "unknown write key")
    return project


def project_for_secret(request: Request) -> Project:
    """Read APIs need the project's secret key as ``Authorization: Bearer``; a write key is refused."""
    key = bearer(request)
    if not key:
        raise AuthError("missing_secret_key", "send the project's secret key as 'Authorization: Bearer <key>'")
    store = store_of(request)
    project = store.project_by_secret_key(key)
    if project is None:
        if store.project_by_write_key(key) is not None:
            raise AuthError("write_key_cannot_read", "a write key can only send events; use the secret key")
        raise AuthError("unknown_secret_key", "unknown secret key")
    return project


async def read_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when empty)."""
    raw = await read_body(request)
    if not raw.strip():
        return {}
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise UserloopError("invalid_body", "the body must be a JSON object")
    return body  # type: ignore[no-any-return]


async def read_csv_upload(request: Request) -> tuple[str, dict[str, str]]:
    """A CSV sent as a multipart file (any field name) or as the body, as text, and the other form
    fields (the query parameters for a plain body); refused past the request size limit."""
    from starlette.datastructures import UploadFile

    limit = settings_of(request).max_request_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge("request_too_large", f"request body is larger than {limit} bytes")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=10) as form:
            files = [v for v in form.values() if isinstance(v, UploadFile)]
            if not files:
                raise UserloopError("invalid_csv", "the form has no file", "file")
            raw = await files[0].read(limit + 1)
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
    else:
        raw = await read_body(request)
        fields = dict(request.query_params)
    if len(raw) > limit:
        raise TooLarge("request_too_large", f"the file is larger than {limit} bytes")
    try:
        return raw.decode("utf-8"), fields
    except UnicodeDecodeError as exc:
        raise UserloopError("invalid_csv", f"the CSV is not UTF-8 text: {exc}", "file") from exc
