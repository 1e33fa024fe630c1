"""The unmodified PyPI client segment-analytics-python against a live server."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import httpx
from segment.analytics import Client

from tests.conftest import LiveServer


def client(server: LiveServer, **kw: object) -> Client:
    return Client(write_key=server.project.write_key, host=server.url, sync_mode=True, **kw)


def test_track_page_screen_identify_alias_group_read_back(live_server: LiveServer) -> None:
    c = client(live_server)
    ts = datetime(2026, 3, 1, 8, 30, 0, tzinfo=UTC)
    c.track(
        anonymous_id="anon-1",
        event="view_course",
        properties={"course_id": "c42", "price": 199.0},
        context={
            "page": {"url": "https://edu.example.com/courses/c42?utm_source=weibo&utm_medium=social", "referrer": "https://weibo.com/x"},
            "os": {"name": "iOS"},
            "app": {"version": "3.2.1"},
            "device": {"type": "mobile"},
            "ip": "1.2.3.4",
            "location": {"city": "Beijing", "region": "Beijing", "country": "CN"},
        },
        timestamp=ts,
        message_id="m-track-1",
    )
    c.page(anonymous_id="anon-1", name="Course list", properties={"url": "https://edu.example.com/courses"}, message_id="m-page-1")
    c.screen(user_id="u-1", name="Lesson", message_id="m-screen-1")
    c.identify(user_id="u-1", anonymous_id="anon-1", traits={"city": "Beijing", "plan": "free"}, message_id="m-id-1")
    c.alias(previous_id="u-1", user_id="u-1-new", message_id="m-alias-1")
    c.group(user_id="u-1", group_id="school-9", traits={"name": "No. 9 school", "group_type": "school"}, message_id="m-group-1")
    c.flush()

    events = {e["message_id"]: e for e in live_server.events()}
    assert set(events) == {"m-track-1", "m-page-1", "m-screen-1", "m-id-1", "m-alias-1", "m-group-1"}
    track = events["m-track-1"]
    assert track["event"] == "view_course"
    assert track["type"] == "track"
    assert track["distinct_id"] == "anon-1"
    assert track["anonymous_id"] == "anon-1"
    assert track["user_id"] is None
    assert track["properties"] == {"course_id": "c42", "price": 199.0}
    assert track["url"] == "https://edu.example.com/courses/c42?utm_source=weibo&utm_medium=social"
    assert track["path"] == "/courses/c42"
    assert track["utm_source"] == "weibo"
    assert track["utm_medium"] == "social"
    assert track["referrer"] == "https://weibo.com/x"
    assert track["referring_domain"] == "weibo.com"
    assert track["channel"] == "weibo"
    assert (track["os"], track["app_version"], track["device_type"]) == ("iOS", "3.2.1", "mobile")
    assert (track["ip"], track["city"], track["region"], track["country"]) == ("1.2.3.4", "Beijing", "Beijing", "CN")
    assert track["lib"].startswith("analytics-python/")
    assert track["source"] == "segment"
    # the client's clock is right here, so the corrected time is the original within the send delay
    original = datetime.fromisoformat(track["original_timestamp"])
    assert original == ts
    assert abs(datetime.fromisoformat(track["timestamp"]) - ts) < timedelta(seconds=5)

    assert events["m-page-1"]["event"] == "$pageview"
    assert events["m-page-1"]["properties"] == {"url": "https://edu.example.com/courses", "name": "Course list"}
    assert events["m-page-1"]["path"] == "/courses"
    assert events["m-screen-1"]["event"] == "$screen"
    assert events["m-screen-1"]["properties"] == {"name": "Lesson"}
    assert events["m-id-1"]["event"] == "$identify"
    assert events["m-alias-1"]["event"] == "$create_alias"
    assert events["m-group-1"]["event"] == "$groupidentify"

    # anonymous and known ids resolve to one person, in the events and the person API
    person_ids = {e["person_id"] for e in events.values()}
    assert len(person_ids) == 1
    person = live_server.person("anon-1")
    assert person["person_id"] == person_ids.pop()
    assert person["distinct_ids"] == ["anon-1", "u-1", "u-1-new"]
    assert person["properties"] == {"city": "Beijing", "plan": "free"}
    assert person["event_count"] == 6
    assert live_server.person("u-1-new") == person

    groups = live_server.store.query("SELECT group_type, group_key, properties FROM groups")
    assert groups == [
        {"group_type": "school", "group_key": "school-9", "properties": json.dumps({"name": "No. 9 school", "group_type": "school"}, separators=(",", ":"))}
    ]


def test_batched_gzip_client_and_dedup_of_retries(live_server: LiveServer) -> None:
    c = Client(write_key=live_server.project.write_key, host=live_server.url, gzip=True, upload_size=50)
    for i in range(120):
        c.track(user_id=f"u{i % 7}", event="pv", properties={"i": i}, message_id=f"pv-{i}")
    c.flush()
    c.shutdown()
    # a retry of an already stored message (same messageId) is stored once
    body = {"batch": [{"type": "track", "userId": "u0", "event": "pv", "messageId": "pv-0", "properties": {"i": 0}}]}
    resp = httpx.post(f"{live_server.url}/v1/batch", json=body, auth=(live_server.project.write_key, ""))
    assert resp.status_code == 200
    assert resp.json() == {"accepted": 1, "rejected": []}
    events = live_server.events(event="pv")
    assert len(events) == 120
    assert sorted(e["properties"]["i"] for e in events) == list(range(120))
    assert {e["distinct_id"] for e in events} == {f"u{i}" for i in range(7)}


def test_write_key_in_body_and_single_message_endpoints(live_server: LiveServer) -> None:
    key = live_server.project.write_key
    r = httpx.post(
        f"{live_server.url}/v1/track",
        json={"writeKey": key, "userId": "w1", "event": "buy", "messageId": "single-1", "properties": {"revenue": 9.5}},
    )
    assert r.status_code == 200, r.text
    raw = gzip.compress(json.dumps({"userId": "w1", "name": "Home", "messageId": "single-2"}).encode())
    r = httpx.post(
        f"{live_server.url}/v1/page",
        content=raw,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=(key, ""),
    )
    assert r.status_code == 200, r.text
    got = {e["message_id"]: (e["event"], e["type"], e["properties"]) for e in live_server.events()}
    assert got == {
        "single-1": ("buy", "track", {"revenue": 9.5}),
        "single-2": ("$pageview", "page", {"name": "Home"}),
    }


def test_clock_skew_is_corrected_and_far_future_clamped(live_server: LiveServer) -> None:
    now = datetime.now(UTC)
    skew = timedelta(hours=2)  # the device clock runs two hours fast
    client_ts = now + skew - timedelta(minutes=10)
    body = {
        "sentAt": (now + skew).isoformat(),
        "batch": [
            {"type": "track", "userId": "c1", "event": "e", "messageId": "skew", "timestamp": client_ts.isoformat()},
            {"type": "track", "userId": "c1", "event": "e", "messageId": "future", "timestamp": (now + timedelta(days=3)).isoformat()},
        ],
    }
    resp = httpx.post(f"{live_server.url}/v1/batch", json=body, auth=(live_server.project.write_key, ""))
    assert resp.status_code == 200
    events = {e["message_id"]: e for e in live_server.events()}
    corrected = datetime.fromisoformat(events["skew"]["timestamp"])
    # ts - (sent_at - received_at) ~= now - 10 minutes (received_at is a moment after `now`)
    assert abs(corrected - (now - timedelta(minutes=10))) < timedelta(seconds=5)
    received = datetime.fromisoformat(events["future"]["received_at"])
    assert datetime.fromisoformat(events["future"]["timestamp"]) == received


def test_messages_without_id_dedupe_by_content_and_timestamp(live_server: LiveServer) -> None:
    key = live_server.project.write_key
    with_ts = {"userId": "h", "event": "buy", "timestamp": "2026-02-02T00:00:00Z", "properties": {"n": 1}}
    without_ts = {"userId": "h", "event": "view"}
    for _ in range(2):
        assert httpx.post(f"{live_server.url}/v1/track", json=with_ts, auth=(key, "")).status_code == 200
        assert httpx.post(f"{live_server.url}/v1/track", json=without_ts, auth=(key, "")).status_code == 200
    events = live_server.events()
    assert sorted(e["event"] for e in events) == ["buy", "view", "view"]
    assert all(e["message_id"].startswith("h-") for e in events)
