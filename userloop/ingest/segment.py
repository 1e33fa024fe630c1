"""Segment tracking spec (https://segment.com/docs/connections/spec/) -> Payload.

``track`` keeps its event name; ``page`` becomes ``$pageview`` and ``screen`` ``$screen`` (with
``name`` in properties); ``identify``, ``alias`` and ``group`` are stored as ``$identify``,
``$create_alias`` and ``$groupidentify`` and also change persons and groups.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from userloop.ingest.event import Event, GroupOp, Merge, Payload, ProfileOp, Rejected, stamp_merges
from userloop.ingest.normalize import (
    Context,
    MessageError,
    as_id,
    build_event,
    channel_for,
    check_message_size,
    corrected_time,
    domain_of,
    encode_properties,
    message_id_for,
    parse_time,
    path_of,
    utm_from_url,
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


# -- the typed fast path ---------------------------------------------------------------------------
# Most traffic is batches of ``track`` and ``page`` calls with well-formed context. Decoding those
# into typed structs (properties kept as the raw JSON bytes) skips building a dict for every nested
# object and re-encoding the properties. Anything the structs do not describe exactly (a field of an
# unexpected JSON type, identify/alias/group calls, a missing messageId, a batch-level context, a
# very large body) goes through :func:`parse` instead, so both paths store the same events.


# ``gc=False``: decoded JSON holds no reference cycles, and untracked structs keep the garbage
# collector from walking every message of every request (it tripled the decoding cost). Context
# values are typed text: a number there sends the batch to the generic path, which converts it.
class _Named(msgspec.Struct, gc=False):
    name: str | None = None
    version: str | None = None
    type: str | None = None


class _Page(msgspec.Struct, gc=False):
    url: str | None = None
    path: str | None = None
    referrer: str | None = None


class _Campaign(msgspec.Struct, gc=False):
    source: str | None = None
    medium: str | None = None
    name: str | None = None
    content: str | None = None
    term: str | None = None


class _Location(msgspec.Struct, gc=False):
    city: str | None = None
    region: str | None = None
    country: str | None = None


class _Context(msgspec.Struct, gc=False):
    page: _Page | None = None
    campaign: _Campaign | None = None
    os: _Named | None = None
    device: _Named | None = None
    app: _Named | None = None
    location: _Location | None = None
    library: _Named | None = None
    userAgent: str | None = None
    ip: str | None = None


class _Message(msgspec.Struct, gc=False):
    type: Literal["track", "page", "screen"]  # identify, alias, group: the generic path
    messageId: Annotated[str, msgspec.Meta(min_length=1)]  # absent: the generic path hashes one
    event: Any = None
    userId: Any = None
    anonymousId: Any = None
    timestamp: Any = None
    originalTimestamp: Any = None
    sentAt: Any = None
    properties: msgspec.Raw = msgspec.Raw(b"")  # the raw JSON value; empty when absent
    context: _Context | None = None
    name: Any = None
    category: Any = None


class _Batch(msgspec.Struct, gc=False):
    batch: list[_Message]
    sentAt: Any = None
    context: Any = None
    writeKey: Any = None
    write_key: Any = None


_decode_batch = msgspec.json.Decoder(_Batch).decode
_decode_dict = msgspec.json.Decoder(dict[str, Any]).decode
_EMPTY_CONTEXT = _Context()
_EMPTY_PAGE = _Page()
_EMPTY_NAMED = _Named()
_EMPTY_CAMPAIGN = _Campaign()
_EMPTY_LOCATION = _Location()


def decode_batch_fast(raw: bytes) -> _Batch | None:
    """A ``/v1/batch`` body the fast path can take whole, else None (use the generic decoder)."""
    try:
        body = _decode_batch(raw)
    except msgspec.DecodeError:  # includes ValidationError: a field not shaped as expected
        return None
    return body if body.context is None else None


def write_key_of_fast(body: _Batch) -> str | None:
    key = body.writeKey or body.write_key
    return key if isinstance(key, str) else None


def _props_dict(m: _Message) -> dict[str, Any]:
    if bytes(memoryview(m.properties)[:1]) != b"{":
        return {}  # absent or null
    return _decode_dict(m.properties)


def parse_fast(body: _Batch, *, project_id: int, received_at: datetime) -> Payload:
    """The same Payload :func:`parse` makes, for a body :func:`decode_batch_fast` accepted."""
    out = Payload()
    try:
        batch_sent_at = parse_time(body.sentAt, "sentAt")
    except MessageError:
        batch_sent_at = None
    events = out.events
    for m in body.batch:
        try:
            events.append(_fast_event(m, project_id, received_at, batch_sent_at))
            out.accepted += 1
        except MessageError as exc:
            out.rejected.append(Rejected(messageId=m.messageId, error=str(exc), code=exc.code))
    return out


def _fast_event(m: _Message, project_id: int, received_at: datetime, batch_sent_at: datetime | None) -> Event:
    """:func:`parse_message` + :func:`~userloop.ingest.normalize.build_event` for one typed message,
    building the Event directly (this runs for every event of the collector's main path)."""
    uid, aid = m.userId, m.anonymousId
    user_id = None if uid is None or uid == "" else uid if uid.__class__ is str else as_id(uid)
    anonymous_id = None if aid is None or aid == "" else aid if aid.__class__ is str else as_id(aid)
    distinct_id = user_id or anonymous_id
    if distinct_id is None:
        raise MessageError("userId or anonymousId is required", "missing_distinct_id")
    first = bytes(memoryview(m.properties)[:1])  # b"" when absent
    if first != b"{" and first != b"n" and first:
        raise MessageError("properties must be a JSON object", "bad_properties")
    ts = m.timestamp or m.originalTimestamp
    original = parse_time(ts, "timestamp") if ts is not None else None
    sent_at = (parse_time(m.sentAt, "sentAt") if m.sentAt is not None else None) or batch_sent_at
    kind = m.type
    has_props = first == b"{"  # absent or JSON null: no properties
    props: dict[str, Any] | None = None
    if kind == "track":
        event = m.event
        if not isinstance(event, str) or not event:
            raise MessageError("track needs an event name", "missing_event")
    else:
        event = "$pageview" if kind == "page" else "$screen"
    mid = m.messageId  # checks in the generic path's order, so both name the same first problem
    if len(mid) > 200:
        raise MessageError("messageId is longer than 200 characters", "bad_message_id")
    if len(event) > 200:
        raise MessageError("event name is longer than 200 characters", "bad_event")
    if kind == "track":
        properties: Any = encode_properties(m.properties) if has_props else "{}"
    else:
        props = _props_dict(m)
        page_props = dict(props)
        if m.name:
            page_props["name"] = m.name
        if m.category:
            page_props["category"] = m.category
        properties = encode_properties(page_props)
    ctx = m.context or _EMPTY_CONTEXT
    page = ctx.page or _EMPTY_PAGE
    url, path, referrer = page.url or None, page.path or None, page.referrer or None
    if not (url and path and referrer) and has_props and (props is not None or _may_hold(m, url, path, referrer)):
        props = props if props is not None else _props_dict(m)  # the generic path falls back on them
        url = url or _text(props.get("url"))
        path = path or _text(props.get("path"))
        referrer = referrer or _text(props.get("referrer"))
    campaign = ctx.campaign or _EMPTY_CAMPAIGN
    utm_source, utm_medium, utm_campaign = campaign.source or None, campaign.medium or None, campaign.name or None
    utm_content, utm_term = campaign.content or None, campaign.term or None
    if url is not None:
        if "utm_" in url:
            utm = utm_from_url(url)
            if utm:
                utm_source = utm_source or utm.get("utm_source")
                utm_medium = utm_medium or utm.get("utm_medium")
                utm_campaign = utm_campaign or utm.get("utm_campaign")
                utm_content = utm_content or utm.get("utm_content")
                utm_term = utm_term or utm.get("utm_term")
        if path is None:
            path = path_of(url)
    referring_domain = domain_of(referrer) if referrer is not None else None
    library = ctx.library or _EMPTY_NAMED
    location = ctx.location or _EMPTY_LOCATION
    ua_os, ua_browser, ua_device = parse_user_agent(ctx.userAgent)
    lib = library.name or None
    if lib and library.version:
        lib = f"{lib}/{library.version}"
    return Event(
        project_id=project_id,
        message_id=mid,
        event=event,
        type=kind,
        distinct_id=distinct_id,
        anonymous_id=anonymous_id,
        user_id=user_id,
        timestamp=corrected_time(original, sent_at, received_at),
        original_timestamp=original,
        sent_at=sent_at,
        received_at=received_at,
        properties=properties,
        url=url,
        path=path,
        referrer=referrer,
        referring_domain=referring_domain,
        utm_source=utm_source,
        utm_medium=utm_medium,
        utm_campaign=utm_campaign,
        utm_content=utm_content,
        utm_term=utm_term,
        channel=channel_for(utm_source, utm_medium, referring_domain),
        os=(ctx.os or _EMPTY_NAMED).name or ua_os,
        browser=ua_browser,
        device_type=(ctx.device or _EMPTY_NAMED).type or ua_device,
        app_version=(ctx.app or _EMPTY_NAMED).version or None,
        lib=lib,
        ip=ctx.ip or None,
        city=location.city or None,
        region=location.region or None,
        country=location.country or None,
        source="segment",
    )


def _may_hold(m: _Message, url: str | None, path: str | None, referrer: str | None) -> bool:
    """Whether the raw properties may name a missing url/path/referrer (decoding them costs more
    than looking; a key written with ``\\u`` escapes is decoded to be sure)."""
    raw = bytes(m.properties)
    return (
        (url is None and b'"url"' in raw)
        or (path is None and b'"path"' in raw)
        or (referrer is None and b'"referrer"' in raw)
        or b"\\u" in raw
    )


def _text(value: Any) -> str | None:
    """A context value taken from properties, as the generic path converts it."""
    if value is None or value == "":
        return None
    return value if value.__class__ is str else str(value)
