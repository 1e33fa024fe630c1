"""The unmodified PyPI client ``SensorsAnalyticsSDK`` (and raw Sensors requests) against a live server."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sensorsanalytics
from sensorsanalytics import SensorsAnalyticsIdentity as Identity
from sensorsanalytics.sdk import SDK_VERSION

from tests.conftest import LiveServer

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
MS0 = int(T0.timestamp() * 1000)


def sa_url(server: LiveServer) -> str:
    return f"{server.url}/sa?project={server.project.write_key}"


def by_event(server: LiveServer) -> dict[str, dict[str, Any]]:
    events = server.events()
    out = {e["event"]: e for e in events}
    assert len(out) == len(events), "event names are unique in these tests"
    return out


def items(server: LiveServer) -> list[tuple[str, str, dict[str, Any], bool]]:
    rows = server.store.query(
        "SELECT item_type, item_id, properties, deleted FROM items ORDER BY item_type, item_id"
    )
    return [(r["item_type"], r["item_id"], json.loads(r["properties"]), r["deleted"]) for r in rows]


def send_raw(
    server: LiveServer, messages: Any, *, field: str = "data_list", gz: bool = True, **params: str
) -> httpx.Response:
    raw = json.dumps(messages).encode()
    encoded = base64.b64encode(gzip.compress(raw) if gz else raw).decode()
    form = {field: encoded, "gzip": "1" if gz else "0"}
    return httpx.post(f"{server.url}/sa", params={"project": server.project.write_key, **params}, data=form)


def test_default_consumer_track_signup_profiles_items(live_server: LiveServer) -> None:
    sa = sensorsanalytics.SensorsAnalytics(sensorsanalytics.DefaultConsumer(sa_url(live_server)))
    sa.register_super_properties({"$app_version": "2.3.0"})
    track_props = {
        "$url": "https://m.example.com/p/5?from=feed",
        "$url_path": "/p/5",
        "$referrer": "https://www.baidu.com/s?wd=course",
        "$os": "Android",
        "$browser": "Chrome",
        "$model": "Mate 60",
        "$ip": "8.8.8.8",
        "$city": "深圳",
        "$province": "广东",
        "$country": "中国",
        "$latest_utm_source": "baidu",
        "$utm_medium": "cpc",
        "$utm_campaign": "spring",
        "product_id": 5,
    }
    sa.track("anon-7", "ViewProduct", {**track_props, "$time": MS0})
    sa.track_signup("user-7", "anon-7", {"$time": MS0 + 60_000, "channel": "sms"})
    sa.profile_set("user-7", {"name": "Li", "level": 1, "source": "ad"}, is_login_id=True)
    sa.profile_set_once("user-7", {"name": "ignored", "first_city": "深圳"})
    sa.profile_increment("user-7", {"level": 2})
    sa.profile_append("user-7", {"tags": ["a", "b"]})
    sa.profile_append("user-7", {"tags": ["c"]})
    sa.profile_unset("user-7", ["source"])
    sa.item_set("book", "b1", {"title": "Learning Go", "price": 10})
    sa.item_set("book", "b2", {"title": "Gone soon"})
    sa.item_set("book", "b1", {"price": 12})
    sa.item_delete("book", "b2")
    sa.close()

    events = by_event(live_server)
    assert set(events) == {"ViewProduct", "$SignUp"}  # profile_* and item_* are operations only
    view = events["ViewProduct"]
    expected = {
        "type": "track",
        "distinct_id": "anon-7",
        "user_id": None,
        "url": "https://m.example.com/p/5?from=feed",
        "path": "/p/5",
        "referrer": "https://www.baidu.com/s?wd=course",
        "referring_domain": "www.baidu.com",
        "utm_source": "baidu",
        "utm_medium": "cpc",
        "utm_campaign": "spring",
        "channel": "paid_search",
        "os": "Android",
        "browser": "Chrome",
        "device_type": "Mate 60",
        "app_version": "2.3.0",
        "lib": f"python/{SDK_VERSION}",
        "ip": "8.8.8.8",
        "city": "深圳",
        "region": "广东",
        "country": "中国",
        "source": "sensors",
        "sent_at": None,
    }
    assert {k: view[k] for k in expected} == expected
    assert view["properties"] == {
        "$lib": "python",
        "$lib_version": SDK_VERSION,
        "$app_version": "2.3.0",
        **track_props,
    }
    assert datetime.fromisoformat(view["timestamp"]) == T0
    assert datetime.fromisoformat(view["original_timestamp"]) == T0
    assert view["message_id"].startswith("h-")  # the Python SDK sends no _track_id

    signup = events["$SignUp"]
    assert (signup["type"], signup["distinct_id"], signup["user_id"], signup["anonymous_id"]) == (
        "track_signup",
        "user-7",
        "user-7",
        "anon-7",
    )
    assert signup["properties"] == {
        "$lib": "python",
        "$lib_version": SDK_VERSION,
        "$app_version": "2.3.0",
        "channel": "sms",
    }
    assert datetime.fromisoformat(signup["timestamp"]) == T0 + timedelta(minutes=1)
    assert view["person_id"] == signup["person_id"]

    person = live_server.person("anon-7")
    assert person["person_id"] == live_server.person("user-7")["person_id"] == view["person_id"]
    assert person["distinct_ids"] == ["anon-7", "user-7"]
    assert person["properties"] == {"name": "Li", "level": 3, "first_city": "深圳", "tags": ["a", "b", "c"]}
    assert items(live_server) == [
        ("book", "b1", {"title": "Learning Go", "price": 12}, False),
        ("book", "b2", {"title": "Gone soon"}, True),
    ]


def test_bind_unbind_and_profile_delete(live_server: LiveServer) -> None:
    sa = sensorsanalytics.SensorsAnalytics(sensorsanalytics.DefaultConsumer(sa_url(live_server)))
    sa.track("cookie-8", "Browse", {"$time": MS0})
    sa.bind(
        Identity(Identity.LOGIN_ID, "user-8"),
        Identity("$identity_cookie_id", "cookie-8"),
        Identity(Identity.EMAIL, "li@example.com"),
    )
    bound = live_server.person("cookie-8")
    assert bound["distinct_ids"] == ["$identity_email+li@example.com", "cookie-8", "user-8"]
    assert bound["person_id"] == live_server.person("user-8")["person_id"]
    sa.profile_set_by_id({"vip": True}, Identity(Identity.LOGIN_ID, "user-8"))

    sa.unbind(Identity("$identity_cookie_id", "cookie-8"))
    alone = live_server.person("cookie-8")
    assert alone["distinct_ids"] == ["cookie-8"]
    assert alone["person_id"] != live_server.person("user-8")["person_id"]
    assert live_server.person("user-8")["properties"] == {"vip": True}

    events = by_event(live_server)
    assert set(events) == {"Browse", "$BindID", "$UnbindID"}
    bind = events["$BindID"]
    assert (bind["type"], bind["distinct_id"], bind["source"]) == ("track_id_bind", "user-8", "sensors")
    assert bind["person_id"] == live_server.person("user-8")["person_id"]
    assert events["$UnbindID"]["type"] == "track_id_unbind"
    assert events["$UnbindID"]["distinct_id"] == "$identity_cookie_id+cookie-8"  # as the SDK names it

    sa.profile_delete("user-8", is_login_id=True)
    gone = httpx.get(
        f"{live_server.url}/api/persons/user-8",
        headers={"Authorization": f"Bearer {live_server.project.secret_key}"},
    )
    assert gone.status_code == 404
    assert live_server.person("cookie-8")["distinct_ids"] == ["cookie-8"]  # unbound before: not deleted


def test_batch_consumer_with_project_name_and_token(live_server: LiveServer) -> None:
    url = f"{live_server.url}/sa?project=test&token={live_server.project.write_key}"
    sa = sensorsanalytics.SensorsAnalytics(sensorsanalytics.BatchConsumer(url, max_size=50))
    for i in range(7):
        sa.track("batch-user", f"Step{i}", {"$time": MS0 + i * 1000, "i": i})
    sa.profile_set("batch-user", {"steps": 7})
    sa.flush()
    sa.close()
    events = sorted(live_server.events(), key=lambda e: e["properties"]["i"])
    assert [e["event"] for e in events] == [f"Step{i}" for i in range(7)]
    assert [datetime.fromisoformat(e["timestamp"]) for e in events] == [
        T0 + timedelta(seconds=i) for i in range(7)
    ]
    assert live_server.person("batch-user")["properties"] == {"steps": 7}

    wrong = httpx.post(
        f"{live_server.url}/sa",
        params={"project": "other", "token": live_server.project.write_key},
        data={"data": "e30"},
    )
    assert wrong.status_code == 401


def test_raw_track_ids_flush_time_login_fields_and_partial_batch(live_server: LiveServer) -> None:
    now = datetime.now(UTC)
    skew = timedelta(hours=3)  # the device clock is 3 hours fast
    sent = int((now + skew).timestamp() * 1000)
    messages = [
        {
            "_track_id": 123456789,
            "type": "track",
            "event": "AppStart",
            "distinct_id": "u-9",
            "login_id": "u-9",
            "anonymous_id": "dev-9",
            "time": sent - 5000,
            "_flush_time": sent,
            "lib": {"$lib": "Android", "$lib_version": "6.8.0", "$app_version": "9.1", "$lib_method": "code"},
            "properties": {"$os": "Android", "$is_login_id": True, "$latest_utm_source": "douyin"},
        },
        {"_track_id": 2, "type": "track_everything", "distinct_id": "u-9", "event": "X"},
        {"_track_id": 3, "type": "track", "event": "NoId", "time": MS0},
        {"_track_id": 4, "type": "track", "distinct_id": "u-9", "time": MS0},
        {"_track_id": 5, "type": "profile_increment", "distinct_id": "u-9", "properties": {"n": "many"}},
        {"_track_id": 6, "type": "track", "event": "BadTime", "distinct_id": "u-9", "time": "yesterday"},
        {"_track_id": 7, "type": "item_set", "item_type": "course", "properties": {"x": 1}},
    ]
    r = send_raw(live_server, messages)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1
    assert [(x["messageId"], x["code"]) for x in body["rejected"]] == [
        ("2", "bad_type"),
        ("3", "missing_distinct_id"),
        ("4", "missing_event"),
        ("5", "bad_properties"),
        ("6", "bad_timestamp"),
        ("7", "missing_item"),
    ]
    (start,) = live_server.events()
    assert start["message_id"] == "123456789"
    assert (start["event"], start["type"], start["distinct_id"], start["user_id"], start["anonymous_id"]) == (
        "AppStart",
        "track",
        "u-9",
        "u-9",
        "dev-9",
    )
    assert (start["lib"], start["app_version"], start["os"], start["utm_source"], start["channel"]) == (
        "Android/6.8.0",
        "9.1",
        "Android",
        "douyin",
        "douyin",
    )
    assert datetime.fromisoformat(start["sent_at"]) == datetime.fromtimestamp(sent / 1000, UTC)
    corrected = datetime.fromisoformat(start["timestamp"])
    assert abs(corrected - (now - timedelta(seconds=5))) < timedelta(seconds=5)  # 3 h of clock skew removed
    assert live_server.person("dev-9")["person_id"] == live_server.person("u-9")["person_id"]

    # a retry of the same _track_id is stored once
    retry = {k: v for k, v in messages[0].items() if k not in ("login_id", "anonymous_id")}
    assert send_raw(live_server, [retry]).status_code == 200
    assert len(live_server.events()) == 1


def test_every_message_of_a_logged_in_user_is_stored(live_server: LiveServer) -> None:
    """Newer SDKs send login_id and anonymous_id on every message after login: each repeats the merge."""
    base = {"type": "track", "distinct_id": "u-10", "login_id": "u-10", "anonymous_id": "dev-10"}
    for i in range(3):
        r = send_raw(live_server, [{**base, "event": f"Tap{i}", "time": MS0 + i, "_track_id": 100 + i}])
        assert r.status_code == 200, r.text
    assert sorted(e["event"] for e in live_server.events()) == ["Tap0", "Tap1", "Tap2"]
    assert live_server.person("dev-10")["distinct_ids"] == ["dev-10", "u-10"]


def test_encodings_get_plain_json_urlsafe_base64(live_server: LiveServer) -> None:
    key = live_server.project.write_key
    one = {"type": "track", "event": "ViaGet", "distinct_id": "g-1", "time": MS0, "_track_id": 11}
    raw = json.dumps(one, ensure_ascii=False).encode()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert httpx.get(f"{live_server.url}/sa.gif", params={"project": key, "data": urlsafe}).status_code == 200

    two = [{"type": "track", "event": "ViaJson", "distinct_id": "g-1", "time": MS0 + 1, "_track_id": 12}]
    r = httpx.post(f"{live_server.url}/sa", params={"project": key}, json=two)
    assert r.status_code == 200, r.text

    three = {"type": "track", "event": "ViaPlainForm", "distinct_id": "g-1", "time": MS0 + 2, "_track_id": 13}
    r = send_raw(live_server, three, field="data", gz=False)
    assert r.status_code == 200, r.text
    assert {e["event"]: e["message_id"] for e in live_server.events()} == {
        "ViaGet": "11",
        "ViaJson": "12",
        "ViaPlainForm": "13",
    }


def test_bad_sensors_input(live_server: LiveServer) -> None:
    url = f"{live_server.url}/sa"
    key = live_server.project.write_key
    r = httpx.post(url, params={"project": key}, data={"data_list": "@@not base64@@", "gzip": "1"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_base64"
    r = httpx.post(
        url, params={"project": key}, data={"data_list": base64.b64encode(b"not gzip").decode(), "gzip": "1"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_compression"
    r = httpx.post(url, params={"project": key}, data={"data": base64.b64encode(b"{nope").decode()})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"
    r = httpx.post(url, params={"project": key}, data={"other": "x"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_data"
    r = httpx.post(url, params={"project": "no-such-key"}, data={"data": "e30"})
    assert r.status_code == 401
    r = send_raw(live_server, [{"type": "track", "event": "X", "time": MS0}])  # all invalid -> 400
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_distinct_id"
    assert live_server.events() == []
