"""A small shop in a real DuckDB file: a catalogue and item events written through the real writer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.analytics.conftest import World
from userloop.actions import ActionContext, run_action
from userloop.store.duckdb import Store
from userloop.store.writer import Writer

NOW = datetime.now(UTC).replace(microsecond=0)

CATALOGUE: list[dict[str, Any]] = [
    {"type": "post", "id": "p1", "title": "Intro to AI", "tags": ["ai"], "category": "tech", "author": "ann"},
    {"type": "post", "id": "p2", "title": "AI in practice", "tags": ["ai", "practice"], "category": "tech"},
    {"type": "post", "id": "p3", "title": "Bread at home", "tags": ["cooking"], "category": "food"},
    {"type": "course", "id": "c1", "title": "AI course", "tags": ["ai"], "category": "tech", "price": 99.0},
    {"type": "course", "id": "c2", "title": "Cooking course", "tags": ["cooking"], "category": "food", "price": 49.0},
    {"type": "product", "id": "d1", "title": "AI book", "tags": ["ai", "book"], "category": "tech", "price": 39.0},
]


def view(who: str, item_type: str, item_id: str, hours_ago: float) -> dict[str, Any]:
    return {"distinct_id": who, "event": "view", "ts": NOW - timedelta(hours=hours_ago),
            "properties": {"item_type": item_type, "item_id": item_id}}


def purchase(who: str, item_type: str, item_id: str, hours_ago: float) -> dict[str, Any]:
    return {"distinct_id": who, "event": "purchase", "ts": NOW - timedelta(hours=hours_ago),
            "properties": {"items": [{"item_type": item_type, "item_id": item_id, "price": 1}]}}


# a: p1, c1 (bought c1); b: p1, p2, c1; c: p2, d1; d: p3, c2
EVENTS = [
    view("a", "post", "p1", 30), view("a", "course", "c1", 29), purchase("a", "course", "c1", 28),
    view("b", "post", "p1", 20), view("b", "post", "p2", 19), view("b", "course", "c1", 18),
    view("c", "post", "p2", 10), view("c", "product", "d1", 9),
    view("d", "post", "p3", 5), view("d", "course", "c2", 4),
]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[World, ActionContext]]:
    store = Store(tmp_path / "shop.duckdb")
    project = store.create_project("shop", "UTC")
    with Writer(store) as writer:
        w = World(store=store, writer=writer, project=project, rows=[])
        ctx = ActionContext(store=store, writer=writer, project=project)
        run_action("recommend.items.set", ctx, {"items": CATALOGUE})
        w.add(EVENTS)
        yield w, ctx
    store.close()
