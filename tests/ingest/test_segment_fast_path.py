"""The typed fast path for Segment batches stores exactly what the generic path stores.

``segment.decode_batch_fast`` + ``parse_fast`` handle plain track/page/screen batches; everything else
must be refused by the fast decoder so that ``segment.parse`` handles it. Both are run on the same
bodies and their events compared field by field (properties compared as parsed JSON, since the fast
path keeps the client's bytes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from userloop.ingest import segment
from userloop.ingest.event import Payload

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.49"


def _norm(p: Payload) -> list[Any]:
    rows = []
    for e in p.events:
        d = msgspec.structs.asdict(e)
        props = d["properties"]
        d["properties"] = msgspec.json.decode(props if isinstance(props, str) else bytes(props))
        rows.append(d)
    return [rows, [(r.messageId, r.code) for r in p.rejected], p.accepted, p.ops]


def both(body: dict[str, Any]) -> tuple[Payload, Payload]:
    raw = msgspec.json.encode(body)
    fast = segment.decode_batch_fast(raw)
    assert fast is not None, "the fast path should take this body"
    return (
        segment.parse_fast(fast, project_id=7, received_at=NOW),
        segment.parse(msgspec.json.decode(raw), project_id=7, received_at=NOW, endpoint_type=None),
    )


MESSAGES: list[dict[str, Any]] = [
    {  # analytics.js-like track with full context
        "type": "track", "messageId": "m1", "event": "Course Viewed", "userId": "u1", "anonymousId": "a1",
        "timestamp": "2026-11-23T11:59:00.000Z",
        "properties": {"course_id": "c1", "price": 9.5, "tags": ["a", "b"], "nested": {"x": None}},
        "context": {
            "page": {"url": "https://x.example.com/c/1?utm_source=weibo&utm_campaign=w1", "path": "/c/1",
                     "referrer": "https://www.baidu.com/s?wd=x"},
            "userAgent": UA, "ip": "1.2.3.4", "library": {"name": "analytics.js", "version": "5.2.0"},
            "location": {"city": "Beijing", "region": "Beijing", "country": "CN"},
            "os": {"name": "iOS"}, "device": {"type": "mobile"}, "app": {"version": "3.1"},
        },
    },
    {  # url/path/referrer only in properties; campaign in context; sentAt on the message
        "type": "page", "messageId": "m2", "anonymousId": "a2", "name": "Home", "category": "Docs",
        "timestamp": "2026-11-23T11:00:00+08:00", "sentAt": "2026-11-23T11:00:05+08:00",
        "properties": {"url": "https://learn.example.com/?utm_medium=email", "referrer": "https://weibo.com/u/1"},
        "context": {"campaign": {"source": "google", "medium": "cpc", "name": "brand", "term": "python"}},
    },
    {"type": "screen", "messageId": "m3", "userId": 42, "name": "Lesson", "properties": None},
    {"type": "track", "messageId": "m4", "userId": "u4", "event": "No Props"},
    {"type": "track", "messageId": "m5", "userId": "u5", "event": ""},  # rejected: no event name
    {"type": "track", "messageId": "m6", "event": "Anon"},  # rejected: no ids
    {"type": "track", "messageId": "m7", "userId": "u7", "event": "Bad Time", "timestamp": "yesterday"},
    {"type": "track", "messageId": "m8", "userId": "u8", "event": "Epoch", "timestamp": 1763899200123},
    {"type": "track", "messageId": "m9", "userId": "u9", "event": "Future", "timestamp": "2030-01-01T00:00:00Z"},
    {"type": "track", "messageId": "m10", "userId": "", "anonymousId": 7.5, "event": "E" * 201},  # bad_event
    {"type": "track", "messageId": "m" * 201, "userId": "u11", "event": "E" * 201},  # the id is named first
    {  # empty context values are absent values; url/referrer fall back on (non-text) properties
        "type": "track", "messageId": "m12", "userId": "u12", "event": "Empty", "properties": {"url": 5, "referrer": ""},
        "context": {"page": {"url": "", "path": "", "referrer": ""}, "campaign": {"source": "", "medium": "email"},
                    "ip": "", "library": {"name": "", "version": "1"}, "location": {"city": ""}},
    },
    {"type": "track", "messageId": "m14", "userId": "u14", "event": "E", "properties": [1]},  # bad_properties
    {"type": "track", "messageId": "m15", "anonymousId": "a15", "event": "E", "properties": "text"},
    {"type": "track", "messageId": "m16", "event": "E", "properties": [1]},  # no id is named first
    {"type": "page", "messageId": "m13", "userId": "u13", "properties": {"path": "/p", "name": "kept?"}, "name": "N"},
]


def test_fast_and_generic_paths_store_the_same_events() -> None:
    fast, generic = both({"batch": MESSAGES, "sentAt": "2026-11-23T12:00:01Z"})
    assert _norm(fast) == _norm(generic)
    assert fast.accepted == 8
    assert [(r.messageId, r.code) for r in fast.rejected] == [
        ("m5", "missing_event"), ("m6", "missing_distinct_id"), ("m7", "bad_timestamp"), ("m10", "bad_event"),
        ("m" * 201, "bad_message_id"), ("m14", "bad_properties"), ("m15", "bad_properties"),
        ("m16", "missing_distinct_id"),
    ]
    assert msgspec.json.decode(bytes(fast.events[0].properties))["tags"] == ["a", "b"]


@pytest.mark.parametrize(
    "body",
    [
        {"batch": [{"type": "identify", "messageId": "i", "userId": "u", "anonymousId": "a", "traits": {"k": 1}}]},
        {"batch": [{"type": "track", "event": "No Id", "userId": "u"}]},  # hashed message id
        {"batch": [{"type": "track", "messageId": 5, "event": "E", "userId": "u"}]},  # numeric id
        {"batch": [{"type": "track", "messageId": "", "event": "E", "userId": "u"}]},  # empty id: hashed
        {"batch": [{"type": "track", "messageId": "x", "event": "E", "userId": "u", "context": {"page": "p"}}]},
        {"batch": [{"type": "track", "messageId": "x", "event": "E", "userId": "u"}], "context": {"ip": "1.1.1.1"}},
        # a number where the context has text: the generic path converts it
        {"batch": [{"type": "track", "messageId": "x", "event": "E", "userId": "u", "context": {"ip": 5}}]},
        {"batch": [{"type": "track", "messageId": "x", "event": "E", "userId": "u",
                    "context": {"app": {"version": 3.1}}}]},
        {"batch": ["not an object"]},
        {"batch": "nope"},
        ["a list"],
    ],
)
def test_everything_else_is_left_to_the_generic_path(body: Any) -> None:
    assert segment.decode_batch_fast(msgspec.json.encode(body)) is None


def test_context_fallbacks_found_in_properties_however_the_keys_are_written() -> None:
    """The fast path only decodes properties that may name a missing url/path/referrer; a key
    spelled with a JSON escape is still found."""
    raw = (
        b'{"batch": ['
        b'{"type": "track", "messageId": "e1", "userId": "u", "event": "E", "properties": {"\\u0072eferrer": "https://weibo.com/x"}},'
        b'{"type": "track", "messageId": "e2", "userId": "u", "event": "E", "properties": {"a": 1},'
        b' "context": {"page": {"url": "https://x.example.com/a?utm_source=douyin"}}},'
        b'{"type": "track", "messageId": "e3", "userId": "u", "event": "E", "properties": {"path": "/p", "n": null}}'
        b'], "sentAt": "2026-11-23T12:00:00Z"}'
    )
    fast = segment.decode_batch_fast(raw)
    assert fast is not None
    got = segment.parse_fast(fast, project_id=7, received_at=NOW)
    generic = segment.parse(msgspec.json.decode(raw), project_id=7, received_at=NOW, endpoint_type=None)
    assert _norm(got) == _norm(generic)
    assert [(e.referrer, e.referring_domain, e.channel, e.path, e.utm_source) for e in got.events] == [
        ("https://weibo.com/x", "weibo.com", "weibo", None, None),
        (None, None, "douyin", "/a", "douyin"),
        (None, None, "direct", "/p", None),
    ]
