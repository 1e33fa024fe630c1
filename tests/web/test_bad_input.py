"""Every bad input gets a clear error in one shape, and nothing valid is lost."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest

from tests.conftest import LiveServer

INGEST_PATHS = ["/v1/batch", "/v1/track", "/batch/", "/capture", "/e/", "/i/v0/e/"]


def assert_error(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) >= {"code", "message"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body


@pytest.mark.parametrize("path", INGEST_PATHS)
def test_unknown_and_missing_write_key_is_401(live_server: LiveServer, path: str) -> None:
    body = {"api_key": "wk_nope", "writeKey": "wk_nope", "event": "pv", "distinct_id": "x", "userId": "x", "batch": []}
    assert_error(httpx.post(live_server.url + path, json=body), 401, "unknown_write_key")
    body = {"event": "pv", "distinct_id": "x", "userId": "x", "batch": []}
    assert_error(httpx.post(live_server.url + path, json=body), 401, "missing_write_key")


def test_sensors_unknown_key_is_401(live_server: LiveServer) -> None:
    resp = httpx.post(live_server.url + "/sa?project=wk_nope", data={"data": "e30="})
    assert_error(resp, 401, "unknown_write_key")


@pytest.mark.parametrize("path", INGEST_PATHS)
def test_malformed_json_is_400(live_server: LiveServer, path: str) -> None:
    resp = httpx.post(
        live_server.url + path,
        content=b'{"batch": [ {"type": "track",',
        auth=(live_server.project.write_key, ""),
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp, 400, "malformed_json")


def test_segment_batch_keeps_valid_messages_and_lists_rejected(live_server: LiveServer) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "ok1", "messageId": "good-1"},
        {"type": "track", "userId": "u1", "messageId": "no-name"},
        {"type": "track", "userId": "u1", "event": "x", "messageId": "bad-ts", "timestamp": "yesterday-ish"},
        {"type": "track", "event": "x", "messageId": "no-id"},
        {"type": "explode", "userId": "u1", "messageId": "bad-type"},
        {"type": "track", "userId": "u1", "event": "x", "messageId": "bad-props", "properties": [1, 2]},
        "not an object",
        {"type": "track", "userId": "u1", "event": "ok2", "messageId": "good-2", "timestamp": "2026-01-02T03:04:05+08:00"},
    ]
    resp = httpx.post(live_server.url + "/v1/batch", json={"batch": batch}, auth=(live_server.project.write_key, ""))
    assert resp.status_code == 200
    body = resp.json()
    assert body["accepted"] == 2
    assert [(r["messageId"], r["code"]) for r in body["rejected"]] == [
        ("no-name", "missing_event"),
        ("bad-ts", "bad_timestamp"),
        ("no-id", "missing_distinct_id"),
        ("bad-type", "bad_type"),
        ("bad-props", "bad_properties"),
        (None, "invalid_message"),
    ]
    assert all(r["error"] for r in body["rejected"])
    events = {e["message_id"]: e for e in live_server.events()}
    assert set(events) == {"good-1", "good-2"}
    assert events["good-2"]["original_timestamp"] == "2026-01-01T19:04:05+00:00"


def test_single_bad_message_is_400(live_server: LiveServer) -> None:
    resp = httpx.post(
        live_server.url + "/v1/track",
        json={"userId": "u1", "event": "x", "timestamp": "not a time"},
        auth=(live_server.project.write_key, ""),
    )
    body = assert_error(resp, 400, "bad_timestamp")
    assert body["accepted"] == 0
    resp = httpx.post(live_server.url + "/v1/track", json={"userId": "u1"}, auth=(live_server.project.write_key, ""))
    assert_error(resp, 400, "missing_event")


def test_batch_that_is_not_a_list_is_400(live_server: LiveServer) -> None:
    resp = httpx.post(live_server.url + "/v1/batch", json={"batch": {"a": 1}}, auth=(live_server.project.write_key, ""))
    assert_error(resp, 400, "bad_batch")
    resp = httpx.post(live_server.url + "/v1/batch", content=b"", auth=(live_server.project.write_key, ""))
    assert_error(resp, 400, "empty_body")


def test_oversized_event_rejected_alone(live_server: LiveServer) -> None:
    big = "x" * 1_100_000
    batch = [
        {"type": "track", "userId": "u1", "event": "big", "messageId": "big", "properties": {"blob": big}},
        {"type": "track", "userId": "u1", "event": "small", "messageId": "small"},
    ]
    resp = httpx.post(live_server.url + "/v1/batch", json={"batch": batch}, auth=(live_server.project.write_key, ""))
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 1
    assert [(r["messageId"], r["code"]) for r in resp.json()["rejected"]] == [("big", "event_too_large")]
    assert [e["message_id"] for e in live_server.events()] == ["small"]


def test_oversized_request_is_413(live_server: LiveServer) -> None:
    blob = b'{"batch": [' + b'{"type":"track","userId":"u","event":"e","properties":{"p":"' + b"y" * 21_000_000 + b'"}}]}'
    resp = httpx.post(
        live_server.url + "/v1/batch",
        content=blob,
        auth=(live_server.project.write_key, ""),
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp, 413, "request_too_large")


def test_gzip_bomb_is_413_and_bad_gzip_is_400(live_server: LiveServer) -> None:
    bomb = gzip.compress(b'{"batch": ["' + b"0" * 30_000_000 + b'"]}')
    assert len(bomb) < 100_000
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    resp = httpx.post(live_server.url + "/v1/batch", content=bomb, auth=(live_server.project.write_key, ""), headers=headers)
    assert_error(resp, 413, "request_too_large")
    resp = httpx.post(
        live_server.url + "/v1/batch", content=b"not gzip at all", auth=(live_server.project.write_key, ""), headers=headers
    )
    assert_error(resp, 400, "bad_compression")


def test_write_key_cannot_read_and_secret_key_is_required(live_server: LiveServer) -> None:
    url = live_server.url + "/api/events"
    assert_error(httpx.get(url), 401, "missing_secret_key")
    assert_error(httpx.get(url, headers={"Authorization": f"Bearer {live_server.project.write_key}"}), 401, "write_key_cannot_read")
    assert_error(httpx.get(url, headers={"Authorization": "Bearer sk_wrong"}), 401, "unknown_secret_key")
    person = live_server.url + "/api/persons/u1"
    assert_error(httpx.get(person, headers={"Authorization": f"Bearer {live_server.project.write_key}"}), 401, "write_key_cannot_read")


def test_read_api_parameter_errors(live_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {live_server.project.secret_key}"}
    assert_error(httpx.get(live_server.url + "/api/events?limit=5000", headers=headers), 400, "bad_parameter")
    assert_error(httpx.get(live_server.url + "/api/events?limit=abc", headers=headers), 400, "bad_parameter")
    assert_error(httpx.get(live_server.url + "/api/events?after=%%%", headers=headers), 400, "bad_cursor")
    assert_error(httpx.get(live_server.url + "/api/persons/nobody", headers=headers), 404, "person_not_found")


def test_admin_api_needs_the_server_token(live_server: LiveServer) -> None:
    resp = httpx.post(live_server.url + "/api/admin/projects", json={"name": "x"})
    assert_error(resp, 401, "admin_token_required")
    resp = httpx.post(
        live_server.url + "/api/admin/projects",
        json={"name": "x"},
        headers={"Authorization": f"Bearer {live_server.project.secret_key}"},
    )
    assert_error(resp, 401, "admin_token_required")
    resp = httpx.post(
        live_server.url + "/api/admin/projects",
        json={"name": "x", "timezone": "Mars/Olympus"},
        headers={"Authorization": f"Bearer {live_server.admin_token}"},
    )
    assert_error(resp, 400, "bad_timezone")


def test_no_valid_event_was_lost_across_all_the_bad_requests(live_server: LiveServer) -> None:
    key = live_server.project.write_key
    httpx.post(live_server.url + "/v1/batch", content=b"{", auth=(key, ""))
    httpx.post(live_server.url + "/v1/track", json={"userId": "a", "event": "kept", "messageId": "k1"}, auth=(key, ""))
    httpx.post(live_server.url + "/v1/batch", content=json.dumps({"batch": "x"}).encode(), auth=(key, ""))
    assert [e["message_id"] for e in live_server.events()] == ["k1"]


def test_context_of_the_wrong_type_is_ignored_not_a_500(live_server: LiveServer) -> None:
    msg = {"type": "track", "userId": "t", "event": "e", "messageId": "odd-ctx",
           "context": {"userAgent": {"not": "text"}, "page": {"url": 42}, "campaign": {"source": ["x"]}}}
    resp = httpx.post(live_server.url + "/v1/batch", json={"batch": [msg]}, auth=(live_server.project.write_key, ""))
    assert resp.status_code == 200, resp.text
    (event,) = live_server.events()
    assert (event["os"], event["url"]) == (None, "42")
