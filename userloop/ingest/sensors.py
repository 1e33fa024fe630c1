"""Sensors Data (神策) tracking format -> Payload.

The SDKs send ``data`` (one message) or ``data_list`` (an array) as a form field: base64 of the JSON,
gzipped first when ``gzip=1``. Message ``type``\\s:

* ``track``, ``track_signup`` (``$SignUp``: ``distinct_id`` is the login id, ``original_id`` the
  anonymous one, merged), ``track_id_bind`` / ``track_id_unbind`` (ID-Mapping 3: ``identities``
  merged, or the one named detached): stored as events;
* ``profile_set`` / ``_set_once`` / ``_increment`` / ``_append`` / ``_unset`` / ``_delete`` and
  ``item_set`` / ``item_delete``: operations only, no event.

``time`` and ``_flush_time`` are epoch milliseconds. Newer SDKs also send ``login_id`` and
``anonymous_id``; when both are present and differ the two are merged.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qs

import msgspec

from userloop.errors import TooLarge, UserloopError
from userloop.ingest.compression import gunzip
from userloop.ingest.event import (
    ItemOp,
    Merge,
    Payload,
    ProfileOp,
    ProfileOpKind,
    Rejected,
    Unbind,
    stamp_merges,
)
from userloop.ingest.normalize import (
    Context,
    MessageError,
    as_id,
    build_event,
    check_message_size,
    message_id_for,
    parse_time,
)
from userloop.ingest.useragent import parse_user_agent

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

EVENT_TYPES = {
    "track": None,
    "track_signup": "$SignUp",
    "track_id_bind": "$BindID",
    "track_id_unbind": "$UnbindID",
}
PROFILE_TYPES: dict[str, ProfileOpKind] = {
    "profile_set": "set",
    "profile_set_once": "set_once",
    "profile_increment": "increment",
    "profile_append": "append",
    "profile_unset": "unset",
    "profile_delete": "delete",
}
ITEM_TYPES: dict[str, Literal["set", "delete"]] = {"item_set": "set", "item_delete": "delete"}
TYPES = (*EVENT_TYPES, *PROFILE_TYPES, *ITEM_TYPES)

_HASHED = (
    "type",
    "event",
    "distinct_id",
    "login_id",
    "anonymous_id",
    "original_id",
    "time",
    "properties",
    "identities",
)
LOGIN_KEY = "$identity_login_id"
# Identity keys whose value is itself the distinct id the SDKs track with (anonymous device ids).
_RAW_ID_KEYS = frozenset(
    {
        LOGIN_KEY,
        "$identity_anonymous_id",
        "$identity_cookie_id",
        "$identity_distinct_id",
        "$identity_android_id",
        "$identity_android_uuid",
        "$identity_android_oaid",
        "$identity_idfv",
        "$identity_idfa",
        "$identity_mp_id",
        "$identity_mp_openid",
    }
)
# SDK bookkeeping, not profile or item attributes.
_NOT_PROFILE = frozenset(
    {"$is_login_id", "$project", "$token", "$lib", "$lib_version", "$lib_method", "$lib_detail"}
)


# -- decoding ------------------------------------------------------------------------------------
_B64_MEND = str.maketrans({" ": "+", "-": "+", "_": "/", "\r": None, "\n": None, "\t": None})


def b64decode_lenient(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional; ``+`` turned into a space by form decoding is mended."""
    cleaned = text.strip().translate(_B64_MEND).rstrip("=")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def form_fields(raw: bytes, content_type: str) -> dict[str, str]:
    """The form fields of a POST body; a JSON body (object or array of messages) is taken as is."""
    text = raw.decode("utf-8", errors="replace").strip()
    if "json" in content_type.lower() or text[:1] in ("{", "["):
        try:
            body = _decode(raw)
        except msgspec.DecodeError as exc:
            raise UserloopError("malformed_json", f"request body is not valid JSON: {exc}") from exc
        if isinstance(body, dict) and ("data" in body or "data_list" in body):
            return {k: v if isinstance(v, str) else _encode(v).decode() for k, v in body.items()}
        return {"data_list" if isinstance(body, list) else "data": text}
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items() if v}


def decode_fields(fields: Mapping[str, str], limit: int) -> list[Any]:
    """The messages in the ``data`` / ``data_list`` field (base64, gzipped when ``gzip=1``, or plain JSON)."""
    name = "data_list" if fields.get("data_list") else "data"
    value = fields.get(name)
    if not value:
        raise UserloopError("missing_data", "send the messages in a 'data' or 'data_list' field", name)
    stripped = value.strip()
    if stripped[:1] in ("{", "["):
        decoded = stripped.encode()  # plain JSON: '{' and '[' are not base64
    else:
        try:
            decoded = b64decode_lenient(stripped)
        except (binascii.Error, ValueError) as exc:
            raise UserloopError("bad_base64", f"{name} is not valid base64: {exc}", name) from exc
        if fields.get("gzip", "").strip().lower() in ("1", "true") or decoded[:2] == b"\x1f\x8b":
            decoded = gunzip(decoded, limit)
    if len(decoded) > limit:
        raise TooLarge("request_too_large", f"{name} is larger than {limit} bytes once decoded")
    try:
        body = _decode(decoded)
    except msgspec.DecodeError as exc:
        raise UserloopError("malformed_json", f"{name} is not valid JSON once decoded: {exc}", name) from exc
    return body if isinstance(body, list) else [body]


# -- messages ------------------------------------------------------------------------------------
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def context_of(msg: dict[str, Any], props: dict[str, Any]) -> Context:
    lib_obj = _dict(msg.get("lib"))
    ua_os, ua_browser, ua_device = parse_user_agent(props.get("$user_agent"))
    lib = props.get("$lib") or lib_obj.get("$lib")
    version = props.get("$lib_version") or lib_obj.get("$lib_version")
    if lib and version:
        lib = f"{lib}/{version}"

    def utm(name: str) -> Any:
        return props.get(f"$utm_{name}") or props.get(f"$latest_utm_{name}")

    return Context(
        url=props.get("$url"),
        path=props.get("$url_path"),
        referrer=props.get("$referrer"),
        utm_source=utm("source"),
        utm_medium=utm("medium"),
        utm_campaign=utm("campaign"),
        utm_content=utm("content"),
        utm_term=utm("term"),
        os=props.get("$os") or ua_os,
        browser=props.get("$browser") or ua_browser,
        device_type=props.get("$device_type") or props.get("$model") or ua_device,
        app_version=props.get("$app_version") or lib_obj.get("$app_version"),
        lib=lib,
        ip=props.get("$ip"),
        city=props.get("$city"),
        region=props.get("$province"),
        country=props.get("$country"),
    )


def _identity_ids(identities: dict[str, Any]) -> list[str]:
    """Distinct ids for ID-Mapping identities: raw value for login/device ids, ``key+value`` otherwise."""
    out = []
    for key, value in identities.items():
        text = as_id(value)
        if text is not None:
            out.append(text if key in _RAW_ID_KEYS else f"{key}+{text}")
    return out


def _profile_props(kind: str, props: dict[str, Any]) -> dict[str, Any]:
    clean = {k: v for k, v in props.items() if k not in _NOT_PROFILE}
    if kind == "profile_increment":
        for k, v in clean.items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise MessageError(f"profile_increment value of {k!r} must be a number", "bad_properties")
    elif kind == "profile_append":
        for k, v in clean.items():
            if not isinstance(v, list):
                raise MessageError(f"profile_append value of {k!r} must be a list", "bad_properties")
    return clean


def parse_message(
    msg: Any, *, project_id: int, received_at: datetime, out: Payload, check_size: bool
) -> None:
    if not isinstance(msg, dict):
        raise MessageError("each message must be a JSON object")
    if check_size:
        check_message_size(msg)
    kind = msg.get("type")
    if kind not in TYPES:
        raise MessageError(f"unknown message type {kind!r}; expected one of {', '.join(TYPES)}", "bad_type")
    raw_props = msg.get("properties")
    if raw_props is not None and not isinstance(raw_props, dict | list):
        raise MessageError("properties must be a JSON object", "bad_properties")
    props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}

    if kind in ITEM_TYPES:
        item_type, item_id = as_id(msg.get("item_type")), as_id(msg.get("item_id"))
        if item_type is None or item_id is None:
            raise MessageError(f"{kind} needs item_type and item_id", "missing_item")
        item_props = {k: v for k, v in props.items() if k not in _NOT_PROFILE}
        out.ops.append(
            ItemOp(
                project_id=project_id,
                item_type=item_type,
                item_id=item_id,
                op=ITEM_TYPES[kind],
                properties=item_props,
            )
        )
        return

    login_id = as_id(msg.get("login_id"))
    anonymous_id = as_id(msg.get("anonymous_id"))
    distinct_id = as_id(msg.get("distinct_id")) or login_id or anonymous_id
    if distinct_id is None:
        raise MessageError("distinct_id is required", "missing_distinct_id")
    identities = msg.get("identities")
    if identities is not None and not isinstance(identities, dict):
        raise MessageError("identities must be a JSON object", "bad_identities")
    identities = identities or {}
    merges: list[tuple[str, str, str]] = []  # (keep, other, kind)
    if login_id and anonymous_id and login_id != anonymous_id:
        merges.append((login_id, anonymous_id, "login_id"))

    if kind in PROFILE_TYPES:
        if isinstance(raw_props, list):  # profile_unset may list the keys
            props = {str(k): True for k in raw_props}
        op_props = _profile_props(kind, props)
        _add_merges(out, project_id, merges)
        out.ops.append(
            ProfileOp(
                project_id=project_id, distinct_id=distinct_id, op=PROFILE_TYPES[kind], properties=op_props
            )
        )
        return

    if isinstance(raw_props, list):
        raise MessageError("properties must be a JSON object", "bad_properties")
    event = msg.get("event") or EVENT_TYPES[kind]
    if not isinstance(event, str) or not event:
        raise MessageError(f"{kind} needs an event name", "missing_event")
    original = parse_time(msg.get("time"), "time")
    sent_at = parse_time(msg.get("_flush_time"), "_flush_time")
    original_id = as_id(msg.get("original_id"))
    user_id = login_id
    unbind: list[str] = []
    if kind == "track_signup":
        if original_id is None:
            raise MessageError("track_signup needs original_id", "missing_original_id")
        if original_id != distinct_id:
            merges.append((distinct_id, original_id, "track_signup"))
        user_id = distinct_id
    elif kind == "track_id_bind":
        ids = _identity_ids(identities)
        target = as_id(identities.get(LOGIN_KEY)) or distinct_id
        merges += [(target, other, "bind") for other in dict.fromkeys([distinct_id, *ids]) if other != target]
    elif kind == "track_id_unbind":
        unbind = _identity_ids(identities)
        if not unbind:
            raise MessageError(
                "track_id_unbind needs the identity to unbind in identities", "missing_identity"
            )
    if user_id is None and props.get("$is_login_id") is True:
        user_id = distinct_id

    mid = _message_id(msg, project_id, received_at if original is None else None)
    stored = build_event(
        project_id=project_id,
        message_id=mid,
        event=event,
        type=kind,
        distinct_id=distinct_id,
        anonymous_id=anonymous_id or original_id,
        user_id=user_id,
        original=original,
        sent_at=sent_at,
        received_at=received_at,
        properties=props,
        ctx=context_of(msg, props),
        source="sensors",
    )
    _add_merges(out, project_id, merges)
    if kind == "track_id_unbind":
        out.ops += [Unbind(project_id=project_id, distinct_id=i) for i in unbind]
    out.events.append(stored)


def _message_id(msg: dict[str, Any], project_id: int, arrival: datetime | None) -> str:
    """``_track_id``, else a hash of the message (plus its arrival when it carries no ``time``)."""
    if msg.get("_track_id") not in (None, ""):
        return message_id_for(project_id, msg["_track_id"], {})
    hashed = {k: msg.get(k) for k in _HASHED}
    if arrival is not None:  # nothing stable tells two sends apart: each arrival is its own event
        hashed["received_at"] = arrival.isoformat()
    return message_id_for(project_id, None, hashed)


def _add_merges(out: Payload, project_id: int, merges: list[tuple[str, str, str]]) -> None:
    out.ops += [Merge(project_id=project_id, distinct_id=a, other_id=b, kind=k) for a, b, k in merges]


def parse(messages: Any, *, project_id: int, received_at: datetime, check_sizes: bool = False) -> Payload:
    """Decoded Sensors messages -> Payload; invalid messages are rejected, the rest kept."""
    if not isinstance(messages, list):
        raise MessageError("data_list must be a JSON array of messages", "bad_batch")
    out = Payload()
    for msg in messages:
        n_ops, n_events = len(out.ops), len(out.events)
        try:
            parse_message(
                msg, project_id=project_id, received_at=received_at, out=out, check_size=check_sizes
            )
            # the merge log names the stored event; a profile message stores none: its own id then
            source = out.events[-1].message_id if len(out.events) > n_events else _message_id(msg, project_id, None)
            stamp_merges(out.ops[n_ops:], source)
            out.accepted += 1
        except MessageError as exc:
            del out.ops[n_ops:], out.events[n_events:]
            mid = msg.get("_track_id") if isinstance(msg, dict) else None
            out.rejected.append(
                Rejected(messageId=None if mid is None else str(mid), error=str(exc), code=exc.code)
            )
    return out
