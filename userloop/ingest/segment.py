"""Segment tracking spec (https://segment.com/docs/connections/spec/) -> Payload.

``track`` keeps its event name; ``page`` becomes ``$pageview`` and ``screen`` ``$screen`` (with
``name`` in properties); ``identify``, ``alias`` and ``group`` are stored as ``$identify``,
``$create_alias`` and ``$groupidentify`` and also change persons and groups.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from userloop.ingest.event import GroupOp, Merge, Payload, ProfileOp, Rejected, stamp_merges
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

TYPES = ("track", "page", "screen", "identify", "alias", "group")
_HASHED = ("type", "event", "userId", "anonymousId", "timestamp", "properties", "traits", "previousId", "groupId")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def context_of(msg: dict[str, Any], props: dict[str, Any]) -> Context:
    ctx = _dict(msg.get("context"))
    page = _dict(ctx.get("page"))
    campaign = _dict(ctx.get("campaign"))
    os_ = _dict(ctx.get("os"))
    device = _dict(ctx.get("device"))
    app = _dict(ctx.get("app"))
    location = _dict(ctx.get("location"))
    library = _dict(ctx.get("library"))
    ua_os, ua_browser, ua_device = parse_user_agent(ctx.get("userAgent"))
    lib = library.get("name")
    if lib and library.get("version"):
        lib = f"{lib}/{library['version']}"
    return Context(
        url=page.get("url") or props.get("url"),
        path=page.get("path") or props.get("path"),
        referrer=page.get("referrer") or props.get("referrer"),
        utm_source=campaign.get("source"),
        utm_medium=campaign.get("medium"),
        utm_campaign=campaign.get("name"),
        utm_content=campaign.get("content"),
        utm_term=campaign.get("term"),
        os=os_.get("name") or ua_os,
        browser=ua_browser,
        device_type=device.get("type") or ua_device,
        app_version=app.get("version"),
        lib=lib,
        ip=ctx.get("ip"),
        city=location.get("city"),
        region=location.get("region"),
        country=location.get("country"),
    )


def parse_message(
    msg: Any,
    *,
    project_id: int,
    received_at: datetime,
    batch_sent_at: datetime | None,
    default_type: str | None,
    out: Payload,
    check_size: bool = False,
) -> None:
    if not isinstance(msg, dict):
        raise MessageError("each message must be a JSON object")
    if check_size:
        check_message_size(msg)
    kind = msg.get("type") or default_type
    if kind not in TYPES:
        raise MessageError(f"unknown message type {kind!r}; expected one of {', '.join(TYPES)}", "bad_type")
    user_id = as_id(msg.get("userId"))
    anonymous_id = as_id(msg.get("anonymousId"))
    distinct_id = user_id or anonymous_id
    if distinct_id is None:
        raise MessageError("userId or anonymousId is required", "missing_distinct_id")
    props = _dict(msg.get("properties"))
    if msg.get("properties") is not None and not isinstance(msg.get("properties"), dict):
        raise MessageError("properties must be a JSON object", "bad_properties")
    traits = msg.get("traits")
    if traits is not None and not isinstance(traits, dict):
        raise MessageError("traits must be a JSON object", "bad_properties")
    traits = traits or {}
    original = parse_time(msg.get("timestamp") or msg.get("originalTimestamp"), "timestamp")
    sent_at = parse_time(msg.get("sentAt"), "sentAt") or batch_sent_at

    if kind == "track":
        event = msg.get("event")
        if not isinstance(event, str) or not event:
            raise MessageError("track needs an event name", "missing_event")
        properties = props
    elif kind in ("page", "screen"):
        event = "$pageview" if kind == "page" else "$screen"
        properties = dict(props)
        if msg.get("name"):
            properties["name"] = msg["name"]
        if msg.get("category"):
            properties["category"] = msg["category"]
    elif kind == "identify":
        event = "$identify"
        properties = {"$set": traits} if traits else {}
        if user_id and anonymous_id and user_id != anonymous_id:
            out.ops.append(Merge(project_id=project_id, distinct_id=user_id, other_id=anonymous_id, kind="identify"))
        if traits:
            out.ops.append(ProfileOp(project_id=project_id, distinct_id=distinct_id, op="set", properties=traits))
    elif kind == "alias":
        event = "$create_alias"
        previous = as_id(msg.get("previousId"))
        if previous is None:
            raise MessageError("alias needs previousId", "missing_previous_id")
        properties = {"previous_id": previous}
        out.ops.append(Merge(project_id=project_id, distinct_id=distinct_id, other_id=previous, kind="alias"))
    else:  # group
        event = "$groupidentify"
        group_id = as_id(msg.get("groupId"))
        if group_id is None:
            raise MessageError("group needs groupId", "missing_group_id")
        group_type = str(traits.get("group_type") or "group")
        properties = {"$group_type": group_type, "$group_key": group_id, "$group_set": traits}
        out.ops.append(
            GroupOp(project_id=project_id, group_type=group_type, group_key=group_id, properties=traits)
        )

    mid = msg.get("messageId")
    if mid in (None, ""):
        hashed = {k: msg.get(k) for k in _HASHED}
        if original is None:  # nothing stable to tell two sends apart: each arrival is its own event
            hashed["received_at"] = received_at.isoformat()
        mid = message_id_for(project_id, None, hashed)
    else:
        mid = message_id_for(project_id, mid, {})
    out.events.append(
        build_event(
            project_id=project_id,
            message_id=mid,
            event=event,
            type=kind,
            distinct_id=distinct_id,
            anonymous_id=anonymous_id,
            user_id=user_id,
            original=original,
            sent_at=sent_at,
            received_at=received_at,
            properties=properties,
            ctx=context_of(msg, props),
            source="segment",
        )
    )


def parse(
    body: Any, *, project_id: int, received_at: datetime, endpoint_type: str | None, check_sizes: bool = False
) -> Payload:
    """A ``/v1/batch`` body or a single ``/v1/<type>`` message -> Payload (bad messages rejected)."""
    out = Payload()
    if not isinstance(body, dict):
        raise MessageError("request body must be a JSON object", "bad_body")
    try:
        batch_sent_at = parse_time(body.get("sentAt"), "sentAt")
    except MessageError:
        batch_sent_at = None
    if endpoint_type is None:
        messages = body.get("batch")
        if not isinstance(messages, list):
            raise MessageError("batch must be a JSON array of messages", "bad_batch")
        shared_ctx = _dict(body.get("context"))
    else:
        messages = [body]
        shared_ctx = {}
    for msg in messages:
        if shared_ctx and isinstance(msg, dict):
            msg = {**msg, "context": {**shared_ctx, **_dict(msg.get("context"))}}
        n_ops = len(out.ops)
        try:
            parse_message(
                msg,
                project_id=project_id,
                received_at=received_at,
                batch_sent_at=batch_sent_at,
                default_type=endpoint_type,
                out=out,
                check_size=check_sizes,
            )
            stamp_merges(out.ops[n_ops:], out.events[-1].message_id)
            out.accepted += 1
        except MessageError as exc:
            del out.ops[n_ops:]
            mid = msg.get("messageId") if isinstance(msg, dict) else None
            out.rejected.append(Rejected(messageId=None if mid is None else str(mid), error=str(exc), code=exc.code))
    return out


def write_key_of(body: Any) -> str | None:
    if isinstance(body, dict):
        key = body.get("writeKey") or body.get("write_key")
        if isinstance(key, str):
            return key
    return None
