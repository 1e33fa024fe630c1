"""PostHog capture API (``/batch``, ``/capture``, ``/e``, ``/i/v0/e``) -> Payload.

Bodies: ``{"api_key", "batch": [...], "sent_at"}``, one event ``{"api_key"|"token", "event",
"distinct_id", "properties", "timestamp", "uuid"}``, a JSON array of events, or posthog-js's legacy
form body ``data=<base64 or JSON>``. Every event is stored (``type`` ``"capture"``); besides:

* ``$identify`` with ``$anon_distinct_id`` merges the anonymous id into the identified one;
* ``$create_alias`` / ``$merge_dangerously`` merge ``properties.alias`` into the event's id;
* ``$groupidentify`` sets ``$group_set`` on the group ``($group_type, $group_key)``;
* ``$set`` / ``$set_once`` / ``$unset`` (top level or in properties, on any event) change the person.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import msgspec

from userloop.errors import UserloopError
from userloop.ingest.event import (
    GroupOp,
    Merge,
    Op,
    Payload,
    ProfileOp,
    ProfileOpKind,
    Rejected,
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
from userloop.ingest.sensors import b64decode_lenient
from userloop.ingest.useragent import parse_user_agent

_decode = msgspec.json.Decoder().decode
_PERSON_KEYS = ("$set", "$set_once", "$unset")
_PROFILE_OPS: tuple[tuple[str, ProfileOpKind], ...] = (
    ("$set", "set"),
    ("$set_once", "set_once"),
    ("$unset", "unset"),
)
_HASHED = ("event", "distinct_id", "timestamp", "properties", "$set", "$set_once", "$unset")
_MERGE_EVENTS = ("$create_alias", "$merge_dangerously")


# -- decoding ------------------------------------------------------------------------------------
def _json(raw: bytes, what: str) -> Any:
    try:
        return _decode(raw)
    except msgspec.DecodeError as exc:
        raise UserloopError("malformed_json", f"{what} is not valid JSON: {exc}") from exc


def _form_data(text: str) -> str | None:
    fields = parse_qs(text, keep_blank_values=True)
    values = fields.get("data")
    return values[0] if values else None


def decode(raw: bytes, content_type: str, query: Mapping[str, str]) -> Any:
    """The JSON body (already gunzipped), or the ``data`` field of a form body, base64 or not."""
    if not raw.strip():
        raise UserloopError("empty_body", "request body is empty")
    compression = (query.get("compression") or "").lower()
    if compression == "lz64":
        raise UserloopError("unsupported_compression", "lz64 compression is not supported; use gzip-js")
    stripped = raw.lstrip()
    if stripped[:1] in (b"{", b"[") and "form-urlencoded" not in content_type.lower():
        return _json(raw, "request body")
    data = _form_data(raw.decode("utf-8", errors="replace"))
    if data is None:
        if "json" in content_type.lower() or "form-urlencoded" in content_type.lower():
            return _json(raw, "request body")  # raises: it is neither JSON nor a data= form
        data = raw.decode("utf-8", errors="replace")  # a bare base64 body (compression=base64)
    data = data.strip()
    if data[:1] in ("{", "["):
        return _json(data.encode(), "data")
    try:
        decoded = b64decode_lenient(data)
    except (binascii.Error, ValueError) as exc:
        raise UserloopError("malformed_json", "body is neither JSON nor base64-encoded JSON") from exc
    return _json(decoded, "data (base64-decoded)")


def api_key_of(body: Any) -> str | None:
    """``api_key`` / ``token`` at the top, else ``properties.token`` (or ``api_key``) of the first event."""
    first = body
    if isinstance(body, dict):
        for name in ("api_key", "token", "$token"):
            if isinstance(body.get(name), str) and body[name]:
                return str(body[name])
        batch = body.get("batch")
        if isinstance(batch, list) and batch:
            first = batch[0]
    elif isinstance(body, list) and body:
        first = body[0]
    if not isinstance(first, dict):
        return None
    for candidate in (first.get("api_key"), first.get("token"), _dict(first.get("properties")).get("token")):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


# -- messages ------------------------------------------------------------------------------------
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def context_of(msg: dict[str, Any], props: dict[str, Any]) -> Context:
    ua_os, ua_browser, ua_device = parse_user_agent(props.get("$raw_user_agent"))
    lib = props.get("$lib")
    if lib and props.get("$lib_version"):
        lib = f"{lib}/{props['$lib_version']}"
    referrer = props.get("$referrer")
    return Context(
        url=props.get("$current_url"),
        path=props.get("$pathname"),
        referrer=None if referrer == "$direct" else referrer,
        utm_source=props.get("utm_source"),
        utm_medium=props.get("utm_medium"),
        utm_campaign=props.get("utm_campaign"),
        utm_content=props.get("utm_content"),
        utm_term=props.get("utm_term"),
        os=props.get("$os") or ua_os,
        browser=props.get("$browser") or ua_browser,
        device_type=props.get("$device_type") or ua_device,
        app_version=props.get("$app_version"),
        lib=lib,
        ip=props.get("$ip") or msg.get("ip"),
        city=props.get("$geoip_city_name"),
        region=props.get("$geoip_subdivision_1_name"),
        country=props.get("$geoip_country_code"),
    )


def _person_updates(msg: dict[str, Any], props: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``$set`` / ``$set_once`` / ``$unset`` from properties, then the top level (which wins)."""
    out: dict[str, dict[str, Any]] = {}
    for key in _PERSON_KEYS:
        merged: dict[str, Any] = {}
        for source in (props, msg):
            value = source.get(key)
            if value is None:
                continue
            if key == "$unset" and isinstance(value, list):
                value = {str(k): None for k in value}
            if not isinstance(value, dict):
                raise MessageError(
                    f"{key} must be a JSON object" + (" or array" if key == "$unset" else ""),
                    "bad_properties",
                )
            merged.update(value)
        if merged:
            out[key] = merged
    return out


def _original_time(
    msg: dict[str, Any], props: dict[str, Any], received_at: datetime
) -> tuple[datetime | None, bool]:
    """The event time and whether it is already relative to our clock (posthog-js ``offset``)."""
    ts = parse_time(msg.get("timestamp"), "timestamp")
    if ts is not None:
        return ts, False
    offset = msg.get("offset")
    if isinstance(offset, int | float) and not isinstance(offset, bool):
        return received_at - timedelta(milliseconds=offset), True
    return parse_time(props.get("$time"), "properties.$time"), False


def _message_id(msg: dict[str, Any], project_id: int, arrival: datetime | None) -> str:
    """The client's ``uuid``, else a hash of the event (plus its arrival when it carries no timestamp)."""
    if msg.get("uuid") not in (None, ""):
        return message_id_for(project_id, msg["uuid"], {})
    hashed = {k: msg.get(k) for k in _HASHED}
    if arrival is not None:  # nothing stable tells two sends apart: each arrival is its own event
        hashed["received_at"] = arrival.isoformat()
    return message_id_for(project_id, None, hashed)


def parse_message(
    msg: Any,
    *,
    project_id: int,
    received_at: datetime,
    batch_sent_at: datetime | None,
    out: Payload,
    check_size: bool,
) -> None:
    if not isinstance(msg, dict):
        raise MessageError("each event must be a JSON object")
    if check_size:
        check_message_size(msg)
    raw_props = msg.get("properties")
    if raw_props is not None and not isinstance(raw_props, dict):
        raise MessageError("properties must be a JSON object", "bad_properties")
    props: dict[str, Any] = raw_props or {}
    updates = _person_updates(msg, props)
    event = msg.get("event")
    if event is None and updates and "$distinct_id" in msg:
        event = "$set"  # legacy /engage body
    if not isinstance(event, str) or not event:
        raise MessageError("event name is missing", "missing_event")
    distinct_id = (
        as_id(msg.get("distinct_id")) or as_id(props.get("distinct_id")) or as_id(msg.get("$distinct_id"))
    )
    if distinct_id is None:
        raise MessageError("distinct_id is required (top level or in properties)", "missing_distinct_id")
    original, relative = _original_time(msg, props, received_at)
    sent_at = None if relative else (parse_time(msg.get("sent_at"), "sent_at") or batch_sent_at)

    anonymous_id = as_id(props.get("$device_id"))
    user_id = distinct_id if props.get("$user_state") == "identified" else None
    ops: list[Op] = []
    if event == "$identify":
        user_id = distinct_id
        anon = as_id(props.get("$anon_distinct_id"))
        if anon is not None:
            anonymous_id = anon
            if anon != distinct_id:
                ops.append(Merge(project_id=project_id, distinct_id=distinct_id, other_id=anon, kind=event))
    elif event in _MERGE_EVENTS:
        alias = as_id(props.get("alias"))
        if alias is None:
            raise MessageError(f"{event} needs properties.alias", "missing_alias")
        if alias != distinct_id:
            ops.append(Merge(project_id=project_id, distinct_id=distinct_id, other_id=alias, kind=event))
    elif event == "$groupidentify":
        group_type, group_key = as_id(props.get("$group_type")), as_id(props.get("$group_key"))
        if group_type is None or group_key is None:
            raise MessageError("$groupidentify needs $group_type and $group_key", "missing_group")
        group_set = props.get("$group_set") or {}
        if not isinstance(group_set, dict):
            raise MessageError("$group_set must be a JSON object", "bad_properties")
        ops.append(
            GroupOp(project_id=project_id, group_type=group_type, group_key=group_key, properties=group_set)
        )
    for key, op in _PROFILE_OPS:
        if key in updates:
            ops.append(
                ProfileOp(project_id=project_id, distinct_id=distinct_id, op=op, properties=updates[key])
            )

    stored_props = {**props, **{k: msg[k] for k in _PERSON_KEYS if k in msg and k not in props}}
    out.events.append(
        build_event(
            project_id=project_id,
            message_id=_message_id(msg, project_id, received_at if original is None or relative else None),
            event=event,
            type="capture",
            distinct_id=distinct_id,
            anonymous_id=anonymous_id,
            user_id=user_id,
            original=original,
            sent_at=sent_at,
            received_at=received_at,
            properties=stored_props,
            ctx=context_of(msg, props),
            source="posthog",
        )
    )
    out.ops += ops


def parse(body: Any, *, project_id: int, received_at: datetime, check_sizes: bool = False) -> Payload:
    """A batch, a single event or a list of events -> Payload (invalid events rejected, the rest kept)."""
    batch_sent_at = None
    if isinstance(body, list):
        messages = body
    elif isinstance(body, dict):
        try:
            batch_sent_at = parse_time(body.get("sent_at"), "sent_at")
        except MessageError:
            batch_sent_at = None
        batch = body.get("batch")
        if batch is None:
            messages = [body]
        elif isinstance(batch, list):
            messages = batch
        else:
            raise MessageError("batch must be a JSON array of events", "bad_batch")
    else:
        raise MessageError("request body must be a JSON object or array", "bad_body")
    out = Payload()
    for msg in messages:
        n_ops, n_events = len(out.ops), len(out.events)
        try:
            parse_message(
                msg,
                project_id=project_id,
                received_at=received_at,
                batch_sent_at=batch_sent_at,
                out=out,
                check_size=check_sizes,
            )
            stamp_merges(out.ops[n_ops:], out.events[-1].message_id)
            out.accepted += 1
        except MessageError as exc:
            del out.ops[n_ops:], out.events[n_events:]
            mid = msg.get("uuid") if isinstance(msg, dict) else None
            out.rejected.append(
                Rejected(messageId=None if mid is None else str(mid), error=str(exc), code=exc.code)
            )
    return out
