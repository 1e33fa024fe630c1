"""The unmodified PyPI client ``posthog`` (and posthog-js shaped raw requests) against a live server."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import posthog
from posthog.utils import system_context
from posthog.version import VERSION

from tests.conftest import LiveServer


def client(server: LiveServer, errors: list[Any], **kw: Any) -> posthog.Posthog:
    return posthog.Posthog(
        project_api_key=server.project.write_key,
        host=server.url,
        sync_mode=True,
        capture_mode="v0",
        max_retries=0,
        on_error=lambda exc, batch: errors.append(exc),
        **kw,
    )


def sdk_props(**extra: Any) -> dict[str, Any]:
    """What posthog-python adds to every captured event's properties."""
    return {
        **system_context(),
        "$lib": "posthog-python",
        "$lib_version": VERSION,
        "$geoip_disable": True,
        "$is_server": True,
        **extra,
    }


def by_id(server: LiveServer) -> dict[str, dict[str, Any]]:
    return {e["message_id"]: e for e in server.events()}


def u(n: int) -> str:
    return str(uuid.UUID(int=n))


def test_sdk_capture_identify_set_alias_group_read_back(live_server: LiveServer) -> None:
    errors: list[Any] = []
    c = client(live_server, errors, super_properties={"$app_version": "5.1.0"})
    ts = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    page_props = {
        "$current_url": "https://shop.example.com/items/9?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
        "$referrer": "https://mail.example.org/inbox",
        "sku": "sku-9",
    }
    c.capture("$pageview", distinct_id="anon-1", properties=page_props, timestamp=ts, uuid=u(1))
    c.capture(
        "$identify",
        distinct_id="user-1",
        properties={"$anon_distinct_id": "anon-1", "$set": {"email": "a@example.com", "plan": "free"}},
        uuid=u(2),
    )
    c.set(distinct_id="user-1", properties={"plan": "pro"}, uuid=u(3))
    c.set_once(distinct_id="user-1", properties={"first_plan": "free", "plan": "ignored"}, uuid=u(4))
    c.alias(previous_id="user-1", distinct_id="user-1-mobile", uuid=u(5))
    c.group_identify("company", "acme", {"name": "Acme", "employees": 11}, distinct_id="user-1", uuid=u(6))
    c.capture(
        "purchase", distinct_id="user-1-mobile", properties={"amount": 30, "$unset": ["email"]}, uuid=u(7)
    )
    c.flush()
    assert errors == []

    events = by_id(live_server)
    assert set(events) == {u(i) for i in range(1, 8)}
    assert {e["type"] for e in events.values()} == {"capture"}
    assert {e["source"] for e in events.values()} == {"posthog"}
    assert {e["lib"] for e in events.values()} == {f"posthog-python/{VERSION}"}

    page = events[u(1)]
    assert page["event"] == "$pageview"
    assert page["distinct_id"] == "anon-1"
    assert page["properties"] == sdk_props(**page_props, **{"$app_version": "5.1.0"})
    assert page["url"] == page_props["$current_url"]
    assert page["path"] == "/items/9"
    assert (page["utm_source"], page["utm_medium"], page["utm_campaign"]) == ("newsletter", "email", "spring")
    assert page["channel"] == "email"
    assert (page["referrer"], page["referring_domain"]) == (
        "https://mail.example.org/inbox",
        "mail.example.org",
    )
    assert page["os"] == system_context()["$os"]
    assert page["app_version"] == "5.1.0"
    assert datetime.fromisoformat(page["original_timestamp"]) == ts
    assert abs(datetime.fromisoformat(page["timestamp"]) - ts) < timedelta(
        seconds=5
    )  # sent_at - received_at is small

    ident = events[u(2)]
    assert (ident["event"], ident["distinct_id"], ident["user_id"], ident["anonymous_id"]) == (
        "$identify",
        "user-1",
        "user-1",
        "anon-1",
    )
    assert ident["properties"]["$set"] == {"email": "a@example.com", "plan": "free"}
    assert events[u(3)]["event"] == "$set"
    assert events[u(3)]["properties"]["$set"] == {"plan": "pro"}  # top-level $set kept for audit
    assert events[u(4)]["event"] == "$set_once"
    assert events[u(5)]["event"] == "$create_alias"
    assert events[u(5)]["properties"]["alias"] == "user-1-mobile"
    assert events[u(6)]["event"] == "$groupidentify"
    assert events[u(7)]["properties"] == sdk_props(
        amount=30, **{"$unset": ["email"], "$app_version": "5.1.0"}
    )

    # anon-1, user-1 and its alias are one person, in the events and in the person API
    assert len({e["person_id"] for e in events.values()}) == 1
    person = live_server.person("anon-1")
    assert person["person_id"] == live_server.person("user-1-mobile")["person_id"] == page["person_id"]
    assert person["distinct_ids"] == ["anon-1", "user-1", "user-1-mobile"]
    assert person["properties"] == {"plan": "pro", "first_plan": "free"}  # email was $unset
    assert person["event_count"] == 7

    groups = live_server.store.query("SELECT group_type, group_key, properties FROM groups")
    assert [(g["group_type"], g["group_key"], json.loads(g["properties"])) for g in groups] == [
        ("company", "acme", {"name": "Acme", "employees": 11})
    ]


def test_sdk_gzip_batches_and_retry_dedup(live_server: LiveServer) -> None:
    errors: list[Any] = []
    c = client(live_server, errors, gzip=True)
    for i in range(5):
        c.capture("lesson_done", distinct_id="learner", properties={"n": i}, uuid=u(100 + i))
    c.capture("lesson_done", distinct_id="learner", properties={"n": 0}, uuid=u(100))  # a retry
    c.flush()
    assert errors == []
    events = live_server.events(event="lesson_done")
    assert sorted(e["properties"]["n"] for e in events) == [0, 1, 2, 3, 4]
    assert {e["message_id"] for e in events} == {u(100 + i) for i in range(5)}


def test_posthog_js_shapes_and_endpoints(live_server: LiveServer) -> None:
    key = live_server.project.write_key
    js_props = {
        "token": key,
        "distinct_id": "web-anon",
        "$current_url": "https://edu.example.com/course/7?utm_source=weixin&utm_medium=social",
        "$pathname": "/course/7",
        "$referrer": "$direct",
        "$os": "iOS",
        "$browser": "Mobile Safari",
        "$device_type": "Mobile",
        "$lib": "web",
        "$lib_version": "1.200.0",
        "$ip": "10.1.2.3",
        "$geoip_city_name": "Hangzhou",
        "$geoip_subdivision_1_name": "Zhejiang",
        "$geoip_country_code": "CN",
        "$set_once": {"$initial_os": "iOS"},
    }
    # /e with ?compression=gzip-js: a JSON list, distinct_id and token only in properties
    body = gzip.compress(
        json.dumps([{"event": "$pageview", "properties": js_props, "uuid": u(10), "offset": 1500}]).encode()
    )
    r = httpx.post(
        f"{live_server.url}/e/?compression=gzip-js&ver=1.200.0",
        content=body,
        headers={"Content-Type": "text/plain"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "rejected": []}

    # /i/v0/e legacy form body: data=<base64 JSON>
    one = {"event": "signup_click", "properties": {"token": key, "distinct_id": "web-anon"}, "uuid": u(11)}
    data = base64.b64encode(json.dumps(one).encode()).decode()
    r = httpx.post(f"{live_server.url}/i/v0/e/", data={"data": data})
    assert r.status_code == 200, r.text

    # /capture: one event, api_key at the top, clock 2 hours fast on both timestamp and sent_at
    now = datetime.now(UTC)
    skewed = now + timedelta(hours=2)
    r = httpx.post(
        f"{live_server.url}/capture/",
        json={
            "api_key": key,
            "event": "late",
            "distinct_id": "web-anon",
            "timestamp": skewed.isoformat(),
            "sent_at": skewed.isoformat(),
            "uuid": u(12),
        },
    )
    assert r.status_code == 200, r.text

    events = by_id(live_server)
    assert set(events) == {u(10), u(11), u(12)}
    page = events[u(10)]
    expected_cols = {
        "event": "$pageview",
        "distinct_id": "web-anon",
        "url": "https://edu.example.com/course/7?utm_source=weixin&utm_medium=social",
        "path": "/course/7",
        "referrer": None,
        "utm_source": "weixin",
        "utm_medium": "social",
        "channel": "wechat",
        "os": "iOS",
        "browser": "Mobile Safari",
        "device_type": "Mobile",
        "lib": "web/1.200.0",
        "ip": "10.1.2.3",
        "city": "Hangzhou",
        "region": "Zhejiang",
        "country": "CN",
        "source": "posthog",
    }
    assert {k: page[k] for k in expected_cols} == expected_cols
    assert page["properties"] == js_props
    ts = datetime.fromisoformat(page["timestamp"])
    received = datetime.fromisoformat(page["received_at"])
    assert ts == received - timedelta(milliseconds=1500)  # posthog-js offset: ms before the request
    assert live_server.person("web-anon")["properties"] == {"$initial_os": "iOS"}
    assert events[u(11)]["event"] == "signup_click"
    late = events[u(12)]
    assert datetime.fromisoformat(late["original_timestamp"]) == datetime.fromisoformat(skewed.isoformat())
    assert abs(datetime.fromisoformat(late["timestamp"]) - now) < timedelta(seconds=5)


def test_partial_batch_rejects_bad_messages_keeps_the_rest(live_server: LiveServer) -> None:
    batch = [
        {"event": "ok_1", "distinct_id": "d1", "uuid": u(20)},
        {"distinct_id": "d1", "uuid": u(21)},  # no event
        {"event": "bad_time", "distinct_id": "d1", "timestamp": "yesterday-ish", "uuid": u(22)},
        {"event": "no_id", "uuid": u(23)},
        {"event": "ok_2", "properties": {"distinct_id": "d2"}, "uuid": u(24)},
    ]
    r = httpx.post(
        f"{live_server.url}/batch/", json={"api_key": live_server.project.write_key, "batch": batch}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    assert [(x["messageId"], x["code"]) for x in body["rejected"]] == [
        (u(21), "missing_event"),
        (u(22), "bad_timestamp"),
        (u(23), "missing_distinct_id"),
    ]
    assert all(isinstance(x["error"], str) and x["error"] for x in body["rejected"])
    assert {e["event"]: e["distinct_id"] for e in live_server.events()} == {"ok_1": "d1", "ok_2": "d2"}

    # duplicate uuid sent twice (a retry) is stored once
    again = {"api_key": live_server.project.write_key, "batch": [batch[0]]}
    assert httpx.post(f"{live_server.url}/batch/", json=again).status_code == 200
    assert len(live_server.events(event="ok_1")) == 1


def test_bad_bodies_and_keys(live_server: LiveServer) -> None:
    url = live_server.url
    r = httpx.post(
        f"{url}/batch/", content=b'{"api_key": "x", "batch": [', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"
    r = httpx.post(f"{url}/e/", data={"data": "%%%not-base64%%%"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"
    r = httpx.post(
        f"{url}/batch/", json={"api_key": "phc_unknown", "batch": [{"event": "x", "distinct_id": "d"}]}
    )
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unknown_write_key"
    r = httpx.post(f"{url}/batch/", json={"batch": [{"event": "x", "distinct_id": "d"}]})
    assert r.status_code == 401
    # every message invalid -> 400 with the reasons
    r = httpx.post(
        f"{url}/batch/", json={"api_key": live_server.project.write_key, "batch": [{"distinct_id": "d"}]}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_event"
    assert live_server.events() == []


def test_flags_endpoints_answer_empty(live_server: LiveServer) -> None:
    for method, path in (("POST", "/flags/?v=4"), ("POST", "/decide/?v=3"), ("GET", "/decide/")):
        r = httpx.request(
            method,
            f"{live_server.url}{path}",
            json={"api_key": live_server.project.write_key, "distinct_id": "d"},
        )
        assert r.status_code == 200
        body = r.json()
        assert body["flags"] == {} and body["featureFlags"] == {}
    errors: list[Any] = []
    c = client(live_server, errors)
    assert c.get_all_flags("someone") == {}
