"""Parse worker processes (``userloop/ingest/workers.py``) store exactly what in-process parsing stores.

The same Segment and Sensors requests go to a server that parses in its own process and to one with
two parse workers; the events, persons and answers read back through the API must be identical.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, serve_in_thread
from userloop.config import Settings

SEGMENT_BATCH = {
    "batch": [
        {"type": "track", "messageId": "s1", "event": "Course Viewed", "anonymousId": "anon-1",
         "timestamp": "2026-11-20T10:00:00Z", "properties": {"course_id": "c1", "price": 9.9},
         "context": {"page": {"url": "https://x.example.com/c/1?utm_source=weibo", "path": "/c/1",
                              "referrer": "https://www.baidu.com/s?wd=x"},
                     "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148"}},
        {"type": "identify", "messageId": "s2", "userId": "u-1", "anonymousId": "anon-1",
         "timestamp": "2026-11-20T10:01:00Z", "traits": {"city": "Beijing"}},
        {"type": "page", "messageId": "s3", "userId": "u-1", "name": "Home", "timestamp": "2026-11-20T10:02:00Z"},
        {"type": "track", "messageId": "s4", "event": "", "userId": "u-1"},  # rejected: no event name
        {"type": "track", "event": "No Message Id", "userId": "u-1", "timestamp": "2026-11-20T10:03:00Z"},
    ],  # no sentAt: corrected times would then depend on each server's receive time
}
FAST_BATCH = {"batch": [
    {"type": "track", "messageId": f"f{i}", "event": "pv", "userId": f"u-{i % 3}",
     "timestamp": f"2026-11-20T11:00:0{i}Z", "properties": {"i": i}} for i in range(5)
]}
SENSORS = [
    {"type": "track", "event": "ViewProduct", "distinct_id": "sa-1", "time": 1763632800000,
     "properties": {"$os": "Android", "product": "p1"}, "_track_id": 11},
    {"type": "profile_set", "distinct_id": "sa-1", "time": 1763632800001, "properties": {"gender": "f"}},
]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    inline = serve_in_thread(tmp_path / "inline.duckdb")
    pooled = serve_in_thread(tmp_path / "pooled.duckdb", Settings(db_path=tmp_path / "pooled.duckdb", parse_workers=2))
    try:
        yield next(inline), next(pooled)
    finally:
        for gen in (inline, pooled):
            next(gen, None)


def send_all(server: LiveServer) -> list[Any]:
    auth = (server.project.write_key, "")
    answers = []
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for body in (SEGMENT_BATCH, FAST_BATCH):
            r = c.post("/v1/batch", json=body, auth=auth)
            answers.append((r.status_code, r.json()))
        r = c.post("/v1/batch", content=gzip.compress(json.dumps(FAST_BATCH).encode()), auth=auth,
                   headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        answers.append((r.status_code, r.json()))  # a retry: stored once
        r = c.post("/v1/batch", content=b"{not json", auth=auth)
        answers.append((r.status_code, r.json()["error"]["code"]))
        data = base64.b64encode(gzip.compress(json.dumps(SENSORS).encode())).decode()
        r = c.post(f"/sa?project={server.project.write_key}", data={"data_list": data, "gzip": "1"})
        answers.append((r.status_code, r.text))
        r = c.post(f"/sa?project={server.project.write_key}", data={"data_list": "%%%"})
        answers.append((r.status_code, r.json()["error"]["code"]))
    return answers


def comparable(server: LiveServer) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    keep = ("message_id", "event", "distinct_id", "timestamp", "properties", "url", "path", "referrer",
            "utm_source", "channel", "os", "device_type")
    events = sorted(({k: e.get(k) for k in keep} for e in server.events()), key=lambda e: e["message_id"])
    persons = {d: server.person(d)["properties"] for d in ("anon-1", "u-1", "sa-1")}
    same_person = server.person("anon-1")["person_id"] == server.person("u-1")["person_id"]
    return events, {"persons": persons, "merged": same_person}


def test_parse_workers_store_the_same_as_in_process(pair: tuple[LiveServer, LiveServer]) -> None:
    inline, pooled = pair
    assert pooled.url != inline.url
    a_inline, a_pooled = send_all(inline), send_all(pooled)
    assert a_inline == a_pooled
    assert a_pooled[0][0] == 200 and a_pooled[0][1]["accepted"] == 4
    assert [r["messageId"] for r in a_pooled[0][1]["rejected"]] == ["s4"]
    assert a_pooled[3] == (400, "malformed_json")
    assert a_pooled[5][0] == 400
    got_inline, got_pooled = comparable(inline), comparable(pooled)
    for a, b in zip(got_inline[0], got_pooled[0], strict=True):
        assert a == b
    assert got_inline == got_pooled
    events, people = got_pooled
    assert len(events) == 4 + 5 + 1  # segment (4 valid), fast batch (5, retried once), sensors (1 track)
    assert people == {"persons": {"anon-1": {"city": "Beijing"}, "u-1": {"city": "Beijing"},
                                  "sa-1": {"gender": "f"}}, "merged": True}
