"""A project end to end on a real DuckDB file: interactions from SQL, training, the served feed with its
business rules, A/B arms, cold start, fresh behaviour and impressions."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import msgspec
import pytest

from tests.analytics.conftest import World
from tests.recommend.conftest import NOW, view
from userloop.actions import ActionContext, run_action
from userloop.errors import UserloopError
from userloop.ingest.event import Merge, Payload
from userloop.recommend import interactions, serve
from userloop.recommend.config import RecommendConfig

Shop = tuple[World, ActionContext]


def keys(resp: dict) -> list[str]:  # type: ignore[type-arg]
    return [f"{i['item_type']}:{i['item_id']}" for i in resp["items"]]


def test_interactions_come_from_one_query_with_detected_rules_and_merged_persons(shop: Shop) -> None:
    w, ctx = shop
    w.writer.write(Payload(ops=[Merge(project_id=w.project.id, distinct_id="d", other_id="d-phone")], accepted=1))
    w.add([view("d-phone", "product", "d1", 3)])
    rules = interactions.detect_rules(w.store, w.project)
    assert [(r.event, r.weight, r.bought, r.items, r.type_property) for r in rules] == [
        ("purchase", 5.0, True, "items", "item_type"), ("view", 1.0, False, None, "item_type")]
    data = interactions.load(w.store, w.project, RecommendConfig())
    persons = w.persons()
    got = {(str(data.users[u]), str(data.items.keys[i])): (float(wt), bool(b)) for u, i, wt, b in
           zip(data.pair_user, data.pair_item, data.pair_weight, data.pair_bought, strict=True)}
    expected = {
        (persons["a"], "post:p1"): (1.0, False), (persons["a"], "course:c1"): (6.0, True),
        (persons["b"], "post:p1"): (1.0, False), (persons["b"], "post:p2"): (1.0, False),
        (persons["b"], "course:c1"): (1.0, False), (persons["c"], "post:p2"): (1.0, False),
        (persons["c"], "product:d1"): (1.0, False), (persons["d"], "post:p3"): (1.0, False),
        (persons["d"], "course:c2"): (1.0, False), (persons["d"], "product:d1"): (1.0, False),  # via d-phone
    }
    assert got == expected
    assert data.items.types == ["course", "post", "product"]
    assert data.items.tag_names == ["ai", "book", "cooking", "practice"]
    assert sorted(data.items.categories) == ["food", "tech"]


def test_feed_never_shows_seen_or_bought_items_and_explains_itself(shop: Shop) -> None:
    w, ctx = shop
    model = run_action("recommend.train", ctx, {})
    assert (model["model_id"], model["users"], model["items"], model["interactions"]) == (1, 4, 6, 9)
    scores = model["cf_validation"]  # "auto": the best leave-last-out NDCG@10 (the first on ties)
    assert list(scores) == ["itemknn", "als", "ease", "content"]
    assert model["cf"] == max(scores, key=lambda name: scores[name])
    feed = run_action("recommend.preview", ctx, {"distinct_id": "b", "n": 10})
    assert set(keys(feed)) == {"post:p3", "course:c2", "product:d1"}  # p1, p2, c1 seen
    assert feed["known_person"] and feed["person_id"] == w.persons()["b"]
    for item in feed["items"]:
        assert item["reason"] and item["source"] in ("cf", "recent", "popular", "interest", "trending", "latest")
        if item["source"] == "recent":
            assert item["reason"] == f"because you viewed {item['because']['title']}"
    a = run_action("recommend.preview", ctx, {"distinct_id": "a", "n": 10})
    assert not {"course:c1", "post:p1"} & set(keys(a))
    courses = run_action("recommend.preview", ctx, {"distinct_id": "a", "n": 10, "type": "course"})
    assert keys(courses) == ["course:c2"]
    with pytest.raises(UserloopError) as err:
        run_action("recommend.preview", ctx, {"distinct_id": "a", "n": 0})
    assert err.value.field == "n"
    with pytest.raises(UserloopError) as err:
        run_action("recommend.preview", ctx, {"distinct_id": "a", "colour": "red"})
    assert (err.value.code, err.value.field) == ("unknown_field", "colour")


def test_scene_rules_boost_exclude_pin(shop: Shop) -> None:
    w, ctx = shop
    run_action("recommend.train", ctx, {})
    scenes = [
        {"name": "boosted", "diversity": 0.0, "boost": [{"match": {"tags": ["cooking"]}, "factor": 1000}]},
        {"name": "no_products", "exclude": {"types": ["product"]}},
        {"name": "pinned", "pin": [{"item": "product:d1", "position": 1}], "diversity": 0.0},
        {"name": "courses_only", "types": ["course"]},
    ]
    run_action("recommend.config.set", ctx, {"scenes": scenes})
    boosted = run_action("recommend.preview", ctx, {"distinct_id": "b", "scene": "boosted"})
    assert set(keys(boosted)[:2]) == {"post:p3", "course:c2"}  # the cooking items lead
    assert "product:d1" not in keys(run_action("recommend.preview", ctx, {"distinct_id": "b", "scene": "no_products"}))
    pinned = run_action("recommend.preview", ctx, {"distinct_id": "a", "scene": "pinned", "n": 3})
    assert keys(pinned)[0] == "product:d1" and pinned["items"][0]["source"] == "pin"
    assert pinned["items"][0]["reason"] == "featured" and keys(pinned).count("product:d1") == 1
    only = run_action("recommend.preview", ctx, {"distinct_id": "c", "scene": "courses_only"})
    assert {i["item_type"] for i in only["items"]} == {"course"}


def test_ab_variants_split_persons_stably_by_person_id(shop: Shop) -> None:
    w, ctx = shop
    run_action("recommend.train", ctx, {})
    run_action("recommend.config.set", ctx, {"scenes": [{"name": "home", "variants": [
        {"name": "popular_only", "share": 0.5, "weights": {"cf": 0, "recent": 0, "popular": 1}}]}]})
    arms = {}
    for i in range(40):
        did = f"visitor{i}"
        person = hashlib.md5(f"{w.project.id}:{did}".encode()).hexdigest()  # a new person's id at ingestion
        h = int(hashlib.md5(f"{w.project.id}:home:{person}".encode()).hexdigest()[:8], 16) / 2**32
        expected = "popular_only" if h < 0.5 else "default"
        got = [run_action("recommend.preview", ctx, {"distinct_id": did, "scene": "home"})["variant"] for _ in range(2)]
        assert got == [expected, expected]
        arms[did] = expected
    assert set(arms.values()) == {"popular_only", "default"}
    # a known person: the hash of their person id, whichever distinct id asks
    person = w.persons()["b"]
    h = int(hashlib.md5(f"{w.project.id}:home:{person}".encode()).hexdigest()[:8], 16) / 2**32
    assert run_action("recommend.preview", ctx, {"distinct_id": "b", "scene": "home"})["variant"] == (
        "popular_only" if h < 0.5 else "default")


def test_cold_start_interest_tags(shop: Shop) -> None:
    w, ctx = shop
    run_action("recommend.train", ctx, {})
    with pytest.raises(UserloopError) as err:
        run_action("recommend.interests.set", ctx, {"distinct_id": "newbie", "tags": ["cooking", "knitting"]})
    assert (err.value.code, err.value.field) == ("unknown_tag", "tags[1]")
    assert run_action("recommend.interests.get", ctx, {"distinct_id": "newbie"})["tags"] == []
    saved = run_action("recommend.interests.set", ctx, {"distinct_id": "newbie", "tags": ["cooking", "cooking"]})
    assert saved["tags"] == ["cooking"]
    feed = run_action("recommend.preview", ctx, {"distinct_id": "newbie", "n": 2})
    assert set(keys(feed)) == {"post:p3", "course:c2"}
    assert {i["source"] for i in feed["items"]} == {"interest"}
    assert feed["items"][0]["reason"] == "popular in cooking, one of your interests"
    # kept across a reload of the model from DuckDB
    serve.forget()
    again = run_action("recommend.preview", ctx, {"distinct_id": "newbie", "n": 2})
    assert set(keys(again)) == {"post:p3", "course:c2"} and again["model_id"] == 1


def test_behaviour_since_training_blends_in_at_once(shop: Shop) -> None:
    w, ctx = shop
    run_action("recommend.train", ctx, {})
    before = run_action("recommend.preview", ctx, {"distinct_id": "c", "n": 10})
    assert "course:c2" in keys(before)
    w.add([{**view("c", "course", "c2", 0), "ts": NOW + timedelta(minutes=5)}])
    after = run_action("recommend.preview", ctx, {"distinct_id": "c", "n": 10})
    assert "course:c2" not in keys(after)  # seen now
    # p3 is c2's neighbour (d viewed both): pulled in by the fresh view, explained by it
    p3 = next(i for i in after["items"] if i["item_id"] == "p3")
    assert p3["source"] == "recent" and p3["because"]["item_id"] == "c2"
    stale = run_action("recommend.preview", ctx, {"distinct_id": "c", "n": 10, "fresh": False})
    assert "course:c2" in keys(stale)


def test_impressions_are_events_and_preview_records_none(shop: Shop) -> None:
    w, ctx = shop
    run_action("recommend.train", ctx, {})
    run_action("recommend.preview", ctx, {"distinct_id": "b"})
    feed = run_action("recommend.get", ctx, {"distinct_id": "b", "n": 2, "scene": "home"})
    serve.flush_impressions()  # impressions are handed to the writer in batches
    w.writer.write(Payload())  # the writer is serial: this returns after the impression is stored
    rows = w.store.query("SELECT distinct_id, message_id, properties FROM events WHERE event = '$recommend_impression'")
    assert len(rows) == 1
    props = msgspec.json.decode(rows[0]["properties"])
    assert rows[0]["distinct_id"] == "b" and rows[0]["message_id"] == f"rec-{feed['rec_id']}"
    assert props == {"rec_id": feed["rec_id"], "scene": "home", "variant": "default", "model_id": 1,
                     "items": keys(feed), "sources": [i["source"] for i in feed["items"]]}


def test_similar_items_and_people(shop: Shop) -> None:
    w, ctx = shop
    run_action("recommend.train", ctx, {})
    sim = run_action("recommend.similar", ctx, {"item": "post:p1"})
    assert "post:p1" not in keys(sim) and set(keys(sim)) == {"course:c1", "post:p2", "product:d1"}
    # posts: p2 (viewed with p1 by b; both "ai", "tech"); p3 shares no viewer, tag or category
    assert keys(run_action("recommend.similar", ctx, {"item": "post:p1", "type": "post"})) == ["post:p2"]
    # courses: c1 (viewed with p1 by a and b, "ai"); c2 has nothing in common with p1
    cross = run_action("recommend.similar", ctx, {"item": "post:p1", "type": "course"})
    assert keys(cross) == ["course:c1"] and cross["items"][0]["because"]["item_id"] == "p1"
    with pytest.raises(UserloopError) as err:
        run_action("recommend.similar", ctx, {"item": "post:nope"})
    assert err.value.code == "unknown_item"
    ppl = run_action("recommend.people", ctx, {"distinct_id": "a"})
    persons = w.persons()
    # a {p1, c1} and b {p1, p2, c1} share two items; c {p2, d1} shares only the tag "ai"; d
    # (cooking) nothing
    assert [p["person_id"] for p in ppl["people"]] == [persons["b"], persons["c"]]
    assert [p["activity"] for p in ppl["people"]] == [3, 2]


def test_a_new_project_serves_its_newest_items_and_trains_on_the_first_request(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from userloop.store.duckdb import Store
    from userloop.store.writer import Writer

    store = Store(tmp_path / "new.duckdb")
    project = store.create_project("new", "UTC")
    with Writer(store) as writer:
        ctx = ActionContext(store=store, writer=writer, project=project)
        run_action("recommend.items.set", ctx, {"items": [
            {"type": "post", "id": "old", "created_at": (NOW - timedelta(days=9)).isoformat()},
            {"type": "post", "id": "new", "created_at": (NOW - timedelta(days=1)).isoformat()},
            {"type": "post", "id": "off", "created_at": NOW.isoformat(), "active": False},
            {"type": "post", "id": "undated"}]})
        feed = run_action("recommend.get", ctx, {"distinct_id": "first-visitor", "n": 5})
        # no events yet: nothing is popular; the newest active items fill the list, newest first
        assert keys(feed) == ["post:new", "post:old"] and {i["source"] for i in feed["items"]} == {"latest"}
        assert run_action("recommend.models", ctx, {})["models"][0]["trigger"] == "first_request"
    store.close()
