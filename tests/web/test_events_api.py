"""GET /api/events and /api/persons: order, pages, filters, merged persons, deletion."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import LiveServer

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def send(server: LiveServer, batch: list[dict]) -> None:
    resp = httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(server.project.write_key, ""))
    assert resp.status_code == 200 and resp.json()["rejected"] == [], resp.text


def test_pages_newest_first_with_full_next_urls(live_server: LiveServer) -> None:
    batch = [
        {"type": "track", "userId": f"u{i % 3}", "event": "pv" if i % 2 else "buy", "messageId": f"m{i:03d}",
         "timestamp": (T0 + timedelta(minutes=i // 2)).isoformat()}
        for i in range(25)
    ]
    send(live_server, batch)
    headers = {"Authorization": f"Bearer {live_server.project.secret_key}"}
    url: str | None = f"{live_server.url}/api/events?limit=10"
    pages = []
    while url:
        body = httpx.get(url, headers=headers).json()
        pages.append([e["message_id"] for e in body["results"]])
        url = body["next"]
        if url:
            assert url.startswith(live_server.url + "/api/events?")
    assert [len(p) for p in pages] == [10, 10, 5]
    # newest first; equal timestamps ordered by message id, descending
    expected = sorted(batch, key=lambda m: (m["timestamp"], m["messageId"]), reverse=True)
    assert [m for p in pages for m in p] == [m["messageId"] for m in expected]

    only_buy = live_server.events(event="buy")
    assert sorted(e["message_id"] for e in only_buy) == [f"m{i:03d}" for i in range(0, 25, 2)]
    only_u1 = live_server.events(distinct_id="u1")
    assert sorted(e["message_id"] for e in only_u1) == [f"m{i:03d}" for i in range(1, 25, 3)]


def test_events_readable_within_a_second(live_server: LiveServer) -> None:
    started = time.monotonic()
    send(live_server, [{"type": "track", "userId": "fast", "event": "pv", "messageId": "fast-1"}])
    assert [e["message_id"] for e in live_server.events(distinct_id="fast")] == ["fast-1"]
    assert time.monotonic() - started < 1.0


def test_person_id_filter_resolves_after_merge(live_server: LiveServer) -> None:
    send(live_server, [
        {"type": "track", "anonymousId": "a1", "event": "pv", "messageId": "before", "timestamp": T0.isoformat()},
        {"type": "track", "userId": "known", "event": "buy", "messageId": "other", "timestamp": (T0 + timedelta(hours=1)).isoformat()},
    ])
    before = {e["message_id"]: e["person_id"] for e in live_server.events()}
    assert before["before"] != before["other"]
    send(live_server, [{"type": "identify", "userId": "known", "anonymousId": "a1", "messageId": "idf",
                        "timestamp": (T0 + timedelta(hours=2)).isoformat()}])
    after = live_server.events()
    person_ids = {e["person_id"] for e in after}
    assert len(person_ids) == 1
    pid = person_ids.pop()
    assert sorted(e["message_id"] for e in live_server.events(person_id=pid)) == ["before", "idf", "other"]
    person = live_server.person("a1")
    assert person["distinct_ids"] == ["a1", "known"]
    assert person["event_count"] == 3
    assert person["first_seen"] == T0.isoformat()
    assert person["last_seen"] == (T0 + timedelta(hours=2)).isoformat()


def test_delete_person_with_and_without_events(live_server: LiveServer) -> None:
    send(live_server, [
        {"type": "identify", "userId": "gone", "anonymousId": "gone-anon", "traits": {"a": 1}, "messageId": "g1"},
        {"type": "track", "anonymousId": "gone-anon", "event": "pv", "messageId": "g2"},
        {"type": "track", "userId": "stay", "event": "pv", "messageId": "s1"},
        {"type": "track", "userId": "keep-events", "event": "pv", "messageId": "k1"},
    ])
    headers = {"Authorization": f"Bearer {live_server.project.secret_key}"}
    resp = httpx.delete(f"{live_server.url}/api/persons/gone?delete_events=true", headers=headers)
    assert resp.status_code == 200
    assert resp.json()["distinct_ids"] == ["gone", "gone-anon"]
    resp = httpx.delete(f"{live_server.url}/api/persons/keep-events", headers=headers)
    assert resp.status_code == 200
    assert sorted(e["message_id"] for e in live_server.events()) == ["k1", "s1"]
    for did in ("gone", "gone-anon", "keep-events"):
        assert httpx.get(f"{live_server.url}/api/persons/{did}", headers=headers).status_code == 404
    assert live_server.person("stay")["event_count"] == 1


def test_health(live_server: LiveServer) -> None:
    resp = httpx.get(f"{live_server.url}/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
