"""The REST API on a live server: catalogue, keys, the feed, clicks and purchases into online CTR."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from tests.conftest import LiveServer
from tests.recommend.conftest import CATALOGUE, EVENTS, NOW


def _segment(e: dict[str, Any], i: int) -> dict[str, Any]:
    return {"type": "track", "userId": e["distinct_id"], "event": e["event"], "properties": e["properties"],
            "timestamp": e["ts"].isoformat(), "messageId": f"ev{i}"}


def _setup(s: LiveServer) -> tuple[dict[str, str], dict[str, str]]:
    secret = {"Authorization": f"Bearer {s.project.secret_key}"}
    write = {"Authorization": f"Bearer {s.project.write_key}"}
    assert httpx.post(f"{s.url}/api/items", json=CATALOGUE, headers=secret).status_code == 200
    batch = [_segment(e, i) for i, e in enumerate(EVENTS)]
    assert httpx.post(f"{s.url}/v1/batch", json={"batch": batch}, auth=(s.project.write_key, "")).status_code == 200
    return secret, write


def test_catalogue_api_and_csv_import(live_server: LiveServer) -> None:
    s = live_server
    secret, write = _setup(s)
    bad = httpx.post(f"{s.url}/api/items", json={"items": [{"type": "post", "id": "x"}, {"type": "post", "id": "y", "price": "cheap"}]},
                     headers=secret)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "items[1].price"
    assert httpx.get(f"{s.url}/api/items/post/x", headers=secret).status_code == 404  # nothing half-saved
    listed = httpx.get(f"{s.url}/api/items", params={"type": "course"}, headers=secret).json()
    assert listed["total"] == 2 and [i["item_id"] for i in listed["items"]] == ["c1", "c2"]
    assert listed["items"][0]["tags"] == ["ai"] and listed["items"][0]["price"] == 99.0
    csv = ("type,id,title,tags,price,created_at,active,level\n"
           "course,c1,,ai|advanced,,,,3\n"                      # merge: title and price stay
           "course,c3,New course,ai | new,10,2026-01-02T03:04:05Z,false,1\n"
           "course,,No id,,,,,\n"                                 # line 4: no id
           "course,c4,Bad price,,ten,,,\n"                        # line 5
           "course,c5,Five,,5,,,\n"
           "course,c5,Five v2,,,,,\n")                             # a later row for the same item wins
    report = httpx.post(f"{s.url}/api/items/import", content=csv.encode(), headers={**secret, "Content-Type": "text/csv"}).json()
    assert report == {"rows": 6, "stored": 3, "skipped": 2,
                      "errors": [{"line": 4, "error": "id is empty"}, {"line": 5, "error": "price is not a number"}]}
    c1 = httpx.get(f"{s.url}/api/items/course/c1", headers=secret).json()
    assert (c1["title"], c1["tags"], c1["price"], c1["properties"]["level"]) == ("AI course", ["ai", "advanced"], 99.0, "3")
    c3 = httpx.get(f"{s.url}/api/items/course/c3", headers=secret).json()
    assert (c3["title"], c3["tags"], c3["price"], c3["active"]) == ("New course", ["ai", "new"], 10.0, False)
    assert c3["created_at"].startswith("2026-01-02T03:04:05")
    c5 = httpx.get(f"{s.url}/api/items/course/c5", headers=secret).json()
    assert (c5["title"], c5["price"]) == ("Five v2", None)
    multipart = httpx.post(f"{s.url}/api/items/import", files={"file": ("i.csv", b"item_type,item_id,title\npost,p9,Nine\n")},
                           headers=secret).json()
    assert multipart["stored"] == 1
    assert httpx.delete(f"{s.url}/api/items/post/p9", headers=secret).json()["deleted"] is True
    assert httpx.get(f"{s.url}/api/items/post/p9", headers=secret).json()["deleted"] is True
    assert httpx.post(f"{s.url}/api/items", json=CATALOGUE, headers=write).json()["error"]["code"] == "write_key_cannot_read"
    tags = httpx.get(f"{s.url}/api/recommend/tags", headers=secret).json()["tags"]
    assert {t["tag"]: t["items"] for t in tags} == {"ai": 4, "advanced": 1, "book": 1, "cooking": 2, "practice": 1}


def test_keys_the_feed_clicks_and_conversions(live_server: LiveServer) -> None:
    s = live_server
    secret, write = _setup(s)
    trained = httpx.post(f"{s.url}/api/recommend/train", headers=secret)
    assert trained.status_code == 201 and trained.json()["model_id"] == 1
    # the write key may read the feed, and nothing else
    feed = httpx.get(f"{s.url}/api/recommend", params={"distinct_id": "b", "n": 2, "scene": "home"}, headers=write)
    assert feed.status_code == 200, feed.text
    assert httpx.get(f"{s.url}/api/recommend", params={"distinct_id": "b", "key": s.project.write_key}).status_code == 200
    assert httpx.get(f"{s.url}/api/recommend", params={"distinct_id": "b"}, auth=(s.project.write_key, "")).status_code == 200
    second = httpx.get(f"{s.url}/api/recommend", params={"distinct_id": "c", "n": 3, "scene": "home"}, headers=secret).json()
    # the internal person id goes to secret-key callers only
    person_c = httpx.get(f"{s.url}/api/persons/c", headers=secret).json()["person_id"]
    assert "person_id" not in feed.json() and second["person_id"] == person_c
    for path in ("/api/recommend/preview", "/api/recommend/models", "/api/recommend/config", "/api/items"):
        r = httpx.get(f"{s.url}{path}", params={"distinct_id": "b"}, headers=write)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "write_key_cannot_read"), path
    assert httpx.get(f"{s.url}/api/recommend", params={"distinct_id": "b"}).json()["error"]["code"] == "missing_key"
    nope = httpx.get(f"{s.url}/api/recommend", headers={"Authorization": "Bearer nope"})
    assert (nope.status_code, nope.json()["error"]["code"]) == (401, "unknown_key")
    bad = httpx.get(f"{s.url}/api/recommend", params={"distinct_id": "b", "n": "many"}, headers=write)
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "n")
    # cold start through the app's key
    put = httpx.put(f"{s.url}/api/recommend/interests", json={"distinct_id": "newbie", "tags": ["cooking"]}, headers=write)
    assert put.status_code == 200
    cold = httpx.get(f"{s.url}/api/recommend", params={"distinct_id": "newbie", "n": 2}, headers=write).json()
    assert {i["item_id"] for i in cold["items"]} == {"p3", "c2"}

    # b clicks the first item of its feed and buys it within the hour; c clicks nothing
    first = feed.json()
    clicked = first["items"][0]
    later = NOW + timedelta(minutes=10)
    track = [
        {"type": "track", "userId": "b", "event": "$recommend_click", "messageId": "k1", "timestamp": later.isoformat(),
         "properties": {"rec_id": first["rec_id"], "item_type": clicked["item_type"], "item_id": clicked["item_id"]}},
        {"type": "track", "userId": "b", "event": "$recommend_click", "messageId": "k2",  # a double click counts once
         "timestamp": later.isoformat(),
         "properties": {"rec_id": first["rec_id"], "item": f"{clicked['item_type']}:{clicked['item_id']}"}},
        {"type": "track", "userId": "b", "event": "purchase", "messageId": "k3",
         "timestamp": (later + timedelta(minutes=20)).isoformat(),
         "properties": {"items": [{"item_type": clicked["item_type"], "item_id": clicked["item_id"]}]}},
    ]
    assert httpx.post(f"{s.url}/v1/batch", json={"batch": track}, auth=(s.project.write_key, "")).status_code == 200
    stats = httpx.get(f"{s.url}/api/recommend/stats", params={"date_from": (NOW - timedelta(days=1)).isoformat()},
                      headers=secret).json()
    shown = [(r["scene"], r["variant"], i["source"]) for r in (first, second) for i in r["items"]]
    home = {(r["source"]): r for r in stats["rows"] if r["scene"] == "home"}
    assert home["*"]["impressions"] == len(shown) and home["*"]["responses"] == 2
    assert home["*"]["clicks"] == 1 and home["*"]["conversions"] == 1
    assert home["*"]["ctr"] == round(1 / len(shown), 6) and home["*"]["conversion_rate"] == 1.0
    by_source = {src: sum(1 for sc, _, x in shown if x == src) for src in {x for _, _, x in shown}}
    for src, n in by_source.items():
        assert home[src]["impressions"] == n
        assert home[src]["clicks"] == (1 if src == clicked["source"] else 0)
    default = [r for r in stats["rows"] if r["scene"] == "default" and r["source"] == "*"]
    assert default[0]["responses"] == 3 and default[0]["clicks"] == 0  # the ?key= and Basic checks, newbie


def test_config_api_validates_and_schedules(live_server: LiveServer) -> None:
    s = live_server
    secret, _ = _setup(s)
    bad = httpx.put(f"{s.url}/api/recommend/config", json={"scenes": [{"name": "x", "weights": {"magic": 1}}]}, headers=secret)
    assert (bad.status_code, bad.json()["error"]["code"], bad.json()["error"]["field"]) == (400, "unknown_field", "scenes[0].weights.magic")
    bad = httpx.put(f"{s.url}/api/recommend/config", json={"schedule": "every day"}, headers=secret)
    assert (bad.json()["error"]["code"], bad.json()["error"]["field"]) == ("invalid_schedule", "schedule")
    bad = httpx.put(f"{s.url}/api/recommend/config", json={"params": {"cf": "magic"}}, headers=secret)
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "params.cf")
    body = {"events": [{"event": "view", "weight": 2}], "schedule": "cron:0 3 * * *", "params": {"cf": "itemknn"}}
    ok = httpx.put(f"{s.url}/api/recommend/config", json=body, headers=secret).json()
    assert ok["schedule"] == "cron:0 3 * * *" and ok["events"][0]["weight"] == 2.0 and ok["detected_events"] is None
    got = httpx.get(f"{s.url}/api/recommend/config", headers=secret).json()
    assert got["params"]["cf"] == "itemknn"
    model = httpx.post(f"{s.url}/api/recommend/train", headers=secret).json()
    assert model["cf"] == "itemknn" and model["interactions"] == 9  # views only: the purchase rule is gone
    models = httpx.get(f"{s.url}/api/recommend/models", headers=secret).json()["models"]
    assert [m["model_id"] for m in models] == [1]
