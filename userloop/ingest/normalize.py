"""Shared normalisation for every wire format: timestamps, message ids, context columns.

Kept free of any one SDK's vocabulary: each format maps its own names onto :class:`Context`
fields, then :func:`build_event` applies the rules that are the same everywhere.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from userloop.config import FUTURE_TOLERANCE_SECONDS, MAX_EVENT_BYTES
from userloop.ingest.event import Event

_json_encode = msgspec.json.Encoder().encode
_EPOCH_MS_THRESHOLD = 10_000_000_000  # numbers above this are milliseconds
_FUTURE_TOLERANCE = timedelta(seconds=FUTURE_TOLERANCE_SECONDS)


class MessageError(ValueError):
    """One message is invalid; the rest of its batch is still stored."""

    def __init__(self, message: str, code: str = "invalid_message"):
        super().__init__(message)
        self.code = code


def parse_time(value: Any, field: str) -> datetime | None:
    """ISO-8601 text (``Z`` or offset; naive means UTC) or epoch seconds/milliseconds."""
    if value.__class__ is str and value:  # the common case first: it runs for nearly every event
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise MessageError(f"{field} is not a valid ISO-8601 timestamp: {value!r}", "bad_timestamp") from exc
        tz = parsed.tzinfo
        if tz is None:
            parsed = parsed.replace(tzinfo=UTC)
        if not 1970 <= parsed.year <= 9000:
            raise MessageError(f"{field} is out of range: {value!r}", "bad_timestamp")
        return parsed if tz is None or tz is UTC else parsed.astimezone(UTC)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MessageError(f"{field} must be an ISO-8601 string or epoch number", "bad_timestamp")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise MessageError(f"{field} is out of range: {value!r}", "bad_timestamp") from exc
    if isinstance(value, str):  # a str subclass
        return parse_time(str(value), field)
    raise MessageError(f"{field} must be an ISO-8601 string or epoch number", "bad_timestamp")


def corrected_time(original: datetime | None, sent_at: datetime | None, received_at: datetime) -> datetime:
    """Correct for a wrong client clock: ``ts - (sent_at - received_at)``; far future -> now."""
    if original is None:
        return received_at
    ts = original if sent_at is None else original - (sent_at - received_at)
    return received_at if ts > received_at + _FUTURE_TOLERANCE else ts


def message_id_for(project_id: int, provided: Any, fallback: dict[str, Any]) -> str:
    """The client's id, or a deterministic hash of the message so retries still dedupe."""
    if provided not in (None, ""):
        text = str(provided)
        if len(text) > 200:
            raise MessageError("messageId is longer than 200 characters", "bad_message_id")
        return text
    digest = hashlib.sha256(_json_encode([project_id, fallback])).hexdigest()
    return "h-" + digest[:40]


def check_message_size(msg: Any) -> None:
    """Refuse one message over the event size limit (callers skip this when the body is smaller)."""
    if len(_json_encode(msg)) > MAX_EVENT_BYTES:
        raise MessageError(f"message is larger than {MAX_EVENT_BYTES} bytes", "event_too_large")


def encode_properties(props: Any) -> Any:
    """Properties as JSON text; a ``msgspec.Raw`` object from a typed decode passes through unchanged."""
    if props is None:
        return "{}"
    if type(props) is msgspec.Raw:
        if len(props) > MAX_EVENT_BYTES:
            raise MessageError(f"event is larger than {MAX_EVENT_BYTES} bytes", "event_too_large")
        return props
    if not isinstance(props, dict):
        raise MessageError("properties must be a JSON object", "bad_properties")
    text = _json_encode(props).decode()
    if len(text) > MAX_EVENT_BYTES:
        raise MessageError(f"event is larger than {MAX_EVENT_BYTES} bytes", "event_too_large")
    return text


def as_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MessageError(f"ids must be strings or numbers, got {type(value).__name__}", "bad_id")
    return str(value)


# -- context promoted to columns ----------------------------------------------------------------

SEARCH_HOSTS = ("google.", "baidu.", "bing.", "sogou.", "so.com", "sm.cn", "yahoo.", "duckduckgo.", "yandex.")
CHANNEL_HOSTS = {
    "weixin.qq.com": "wechat",
    "mp.weixin.qq.com": "wechat",
    "weibo.com": "weibo",
    "weibo.cn": "weibo",
    "douyin.com": "douyin",
    "bilibili.com": "bilibili",
    "zhihu.com": "zhihu",
    "xiaohongshu.com": "xiaohongshu",
    "facebook.com": "social",
    "twitter.com": "social",
    "x.com": "social",
    "t.co": "social",
    "linkedin.com": "social",
}
SOURCE_ALIASES = {
    "wechat": "wechat",
    "weixin": "wechat",
    "wechat_mp": "wechat",
    "wechat_miniprogram": "wechat_miniprogram",
    "miniprogram": "wechat_miniprogram",
    "weibo": "weibo",
    "douyin": "douyin",
    "tiktok": "douyin",
    "bilibili": "bilibili",
    "zhihu": "zhihu",
    "xiaohongshu": "xiaohongshu",
    "google": "search",
    "baidu": "search",
    "bing": "search",
    "email": "email",
    "newsletter": "email",
}


@lru_cache(maxsize=8192)
def channel_for(utm_source: str | None, utm_medium: str | None, referring_domain: str | None) -> str:
    """A stable, coarse acquisition channel: utm first, then the referrer, else direct."""
    if utm_medium and utm_medium.lower() in ("cpc", "ppc", "paid", "paidsearch", "sem"):
        return "paid_search"
    if utm_medium and utm_medium.lower() == "email":
        return "email"
    if utm_source:
        return SOURCE_ALIASES.get(utm_source.lower(), "campaign")
    if referring_domain:
        host = referring_domain.lower()
        if host.startswith("www."):
            host = host[4:]
        for suffix, channel in CHANNEL_HOSTS.items():
            if host == suffix or host.endswith("." + suffix):
                return channel
        if any(s in host for s in SEARCH_HOSTS):
            return "search"
        return "referral"
    return "direct"


@lru_cache(maxsize=8192)
def domain_of(url: str | None) -> str | None:
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host or None


@lru_cache(maxsize=8192)
def utm_from_url(url: str | None) -> dict[str, str]:
    if not url or "utm_" not in url:
        return {}
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return {}
    return {k: v[0] for k, v in query.items() if k.startswith("utm_") and v}


@lru_cache(maxsize=8192)
def path_of(url: str) -> str | None:
    try:
        return urlsplit(url).path or None
    except ValueError:
        return None


class Context(msgspec.Struct, kw_only=True, gc=False):
    """Common context, named the same whatever the SDK called it."""

    url: str | None = None
    path: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_content: str | None = None
    utm_term: str | None = None
    os: str | None = None
    browser: str | None = None
    device_type: str | None = None
    app_version: str | None = None
    lib: str | None = None
    ip: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None


def _s(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def build_event(
    *,
    project_id: int,
    message_id: str,
    event: str,
    type: str,
    distinct_id: str,
    anonymous_id: str | None,
    user_id: str | None,
    original: datetime | None,
    sent_at: datetime | None,
    received_at: datetime,
    properties: Any,
    ctx: Context,
    source: str,
) -> Event:
    if not event:
        raise MessageError("event name is missing", "missing_event")
    if len(event) > 200:
        raise MessageError("event name is longer than 200 characters", "bad_event")
    if not distinct_id:
        raise MessageError("no distinct id (userId/anonymousId/distinct_id)", "missing_distinct_id")
    # text or None for every context value (one comprehension: this runs for every event)
    (url, path, referrer, utm_source, utm_medium, utm_campaign, utm_content, utm_term,
     os_name, browser, device_type, app_version, lib, ip, city, region, country) = [
        None if v is None or v == "" else v if v.__class__ is str else str(v)
        for v in (ctx.url, ctx.path, ctx.referrer, ctx.utm_source, ctx.utm_medium, ctx.utm_campaign,
                  ctx.utm_content, ctx.utm_term, ctx.os, ctx.browser, ctx.device_type, ctx.app_version,
                  ctx.lib, ctx.ip, ctx.city, ctx.region, ctx.country)
    ]
    if url is not None:
        if "utm_" in url:
            utm = utm_from_url(url)
            utm_source = utm_source or utm.get("utm_source")
            utm_medium = utm_medium or utm.get("utm_medium")
            utm_campaign = utm_campaign or utm.get("utm_campaign")
            utm_content = utm_content or utm.get("utm_content")
            utm_term = utm_term or utm.get("utm_term")
        if path is None:
            path = path_of(url)
    referring_domain = domain_of(referrer) if referrer is not None else None
    return Event(
        project_id=project_id,
        message_id=message_id,
        event=event,
        type=type,
        distinct_id=distinct_id,
        anonymous_id=anonymous_id,
        user_id=user_id,
        timestamp=corrected_time(original, sent_at, received_at),
        original_timestamp=original,
        sent_at=sent_at,
        received_at=received_at,
        properties=encode_properties(properties),
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
        os=os_name,
        browser=browser,
        device_type=device_type,
        app_version=app_version,
        lib=lib,
        ip=ip,
        city=city,
        region=region,
        country=country,
        source=source,
    )
