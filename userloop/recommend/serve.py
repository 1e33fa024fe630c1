"""Serving: the hot in-memory model of each project and one request's feed.

``install()`` (after training) or the first request (loading the newest model from DuckDB) puts a
:class:`Served` in the cache: the artifact plus sorted lookup arrays (distinct id -> user index,
``type:id`` -> item index), the interest tags people picked and, per scene, the masks of its
business rules. A request then does only array work on that model: look up the person, read
their events since the training (one small indexed-by-time query, optional), blend
(``userloop/recommend/blend.py``), re-rank, pin, explain, and hand one impression event to the
writer without waiting for it.

A/B: a scene's ``variants`` split persons by a stable hash of ``project:scene:person_id`` (a
person the model does not know yet gets ``md5(project:distinct_id)``, the id ingestion gives a
new person).
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
import pyarrow as pa

from userloop.errors import UserloopError
from userloop.recommend import config as cfgmod
from userloop.recommend.artifact import Artifact
from userloop.recommend.blend import SOURCES, Fused, Request, Weights, diversify, fuse
from userloop.recommend.config import IMPRESSION_EVENT, Match, RecommendConfig, Scene
from userloop.recommend.lists import Lists
from userloop.store.duckdb import Project, Store

if TYPE_CHECKING:
    from userloop.store.writer import Writer

MAX_N = 100
REASONS = {
    "cf": "people with similar taste liked this",
    "recent": "because you viewed {because}",
    "interest": "popular in {tag}, one of your interests",
    "popular": "popular right now",
    "trending": "trending",
    "latest": "new",
    "similar": "similar to {because}",
    "cross": "related to {because}",
    "pin": "featured",
}


def _sorted_keys(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted UTF-8 byte strings, original positions) for searchsorted lookups."""
    if len(values) == 0:
        return np.array([], dtype="S1"), np.zeros(0, np.int64)
    enc = np.char.encode(values.astype(str), "utf-8")
    order = np.argsort(enc, kind="stable")
    return enc[order], order.astype(np.int64)


def _find(keys: np.ndarray, positions: np.ndarray, key: str) -> int:
    b = key.encode()
    if len(keys) == 0 or len(b) > keys.dtype.itemsize or b.endswith(b"\0"):
        return -1
    i = int(np.searchsorted(keys, b))
    return int(positions[i]) if i < len(keys) and keys[i] == b else -1


@dataclass
class Rules:
    allowed: np.ndarray  # bool per item: active, allowed type, not excluded
    boost: np.ndarray | None  # float per item, None without boosts
    pins: list[tuple[int, int]]  # (position 0-based, item index)


@dataclass
class Served:
    project_id: int
    model_id: int
    art: Artifact
    cfg: RecommendConfig
    did_keys: np.ndarray
    did_rows: np.ndarray
    item_keys: np.ndarray
    item_pos: np.ndarray
    interest_keys: np.ndarray
    interest_pos: np.ndarray
    interest_lists: Lists
    interest_overlay: dict[str, np.ndarray] = field(default_factory=dict)
    rules: dict[str, Rules] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def user(self, distinct_id: str) -> int:
        return _find(self.did_keys, self.did_rows, distinct_id)  # the user index, -1 when unknown

    def item(self, key: str) -> int:
        return _find(self.item_keys, self.item_pos, key)

    def interests(self, distinct_id: str) -> np.ndarray:
        if distinct_id in self.interest_overlay:
            return self.interest_overlay[distinct_id]
        i = _find(self.interest_keys, self.interest_pos, distinct_id)
        return self.interest_lists.row(i)[0].astype(np.int64) if i >= 0 else np.zeros(0, np.int64)

    def tag_codes(self, tags: list[str]) -> np.ndarray:
        names = {t: i for i, t in enumerate(self.art.items.tag_names)}
        return np.array([names[t] for t in tags if t in names], np.int64)


_cache: dict[tuple[str, int], Served] = {}  # (DuckDB file, project id): tests open several files
_cache_lock = threading.Lock()


def _key(store: Store, project_id: int) -> tuple[str, int]:
    return (str(store.path), project_id)


def _build(store: Store, project: Project, art: Artifact, cfg: RecommendConfig) -> Served:
    cur = store.new_cursor()
    try:
        cur.execute("SET python_enable_replacements = false")
        users = pa.table({"person_id": pa.array([str(u) for u in art.users.tolist()], pa.string()),
                          "idx": pa.array(np.arange(len(art.users)), pa.int64())})
        cur.register("_rec_users_in", users)
        try:
            ids = cur.execute(
                """SELECT i.distinct_id, u.idx FROM identities i JOIN _rec_users_in u ON u.person_id = i.person_id
                   WHERE i.project_id = ?
                   UNION ALL SELECT u.person_id, u.idx FROM _rec_users_in u
                   WHERE NOT EXISTS (SELECT 1 FROM identities i WHERE i.project_id = ? AND i.person_id = u.person_id)""",
                [project.id, project.id],
            ).fetchnumpy()
        finally:
            cur.unregister("_rec_users_in")
        interests = cur.execute(
            "SELECT distinct_id, t.tag FROM recommend_interests, unnest(tags) AS t(tag) WHERE project_id = ? "
            "ORDER BY distinct_id", [project.id],
        ).fetchnumpy()
    finally:
        cur.close()
    did_keys, did_order = _sorted_keys(np.asarray(ids["distinct_id"], dtype=object))
    did_rows = np.asarray(ids["idx"], np.int64)[did_order]
    item_keys, item_pos = _sorted_keys(art.items.keys)
    # interests: (distinct id, tag) pairs -> per distinct id the codes of this model's tags
    pair_ids = np.asarray(interests["distinct_id"], dtype=object)
    pair_tags = np.asarray(interests["tag"], dtype=object)
    dids, row_of = np.unique(pair_ids.astype(str), return_inverse=True) if len(pair_ids) else (np.array([], str), np.zeros(0, np.int64))
    names = np.array(art.items.tag_names, dtype=str)
    order = np.argsort(names)
    pos = np.searchsorted(names[order], pair_tags.astype(str)) if len(names) else np.zeros(len(pair_tags), np.int64)
    pos = np.minimum(pos, max(len(names) - 1, 0))
    kept = (names[order][pos] == pair_tags.astype(str)) if len(names) else np.zeros(len(pair_tags), bool)
    codes = order[pos[kept]] if len(names) else np.zeros(0, np.int64)
    indptr = np.r_[0, np.cumsum(np.bincount(row_of[kept], minlength=len(dids)))].astype(np.int64)
    ilists = Lists(indptr, codes.astype(np.int32), np.ones(len(codes), np.float32))
    interest_keys, interest_pos = _sorted_keys(dids.astype(object))
    return Served(project.id, int(art.meta.get("model_id", 0)), art, cfg, did_keys, did_rows, item_keys, item_pos,
                  interest_keys, interest_pos, ilists)


def install(store: Store, project: Project, art: Artifact, cfg: RecommendConfig) -> Served:
    served = _build(store, project, art, cfg)
    with _cache_lock:
        _cache[_key(store, project.id)] = served
    return served


def forget(store: Store | None = None, project_id: int | None = None) -> None:
    """Drop cached models (all, or one project's): the next request loads from DuckDB."""
    with _cache_lock:
        if store is None or project_id is None:
            _cache.clear()
        else:
            _cache.pop(_key(store, project_id), None)


def config_changed(store: Store, project: Project) -> None:
    served = _cache.get(_key(store, project.id))
    if served is not None:
        served.cfg = cfgmod.load(store, project)
        served.rules = {}


def interests_changed(store: Store, project_id: int, distinct_id: str, tags: list[str]) -> None:
    served = _cache.get(_key(store, project_id))
    if served is not None:
        served.interest_overlay[distinct_id] = served.tag_codes(tags)


def get(store: Store, project: Project, train_if_missing: bool = True) -> Served:
    served = _cache.get(_key(store, project.id))
    if served is not None:
        return served
    from userloop.recommend.train import project_lock, train

    with project_lock(project.id):
        served = _cache.get(_key(store, project.id))
        if served is not None:
            return served
        rows = store.query(
            "SELECT model_id, meta FROM recommend_models WHERE project_id = ? ORDER BY model_id DESC LIMIT 1", [project.id]
        )
        if rows:
            meta = msgspec.json.decode(rows[0]["meta"])
            cur = store.new_cursor()
            try:
                art = Artifact.load(cur, project.id, int(rows[0]["model_id"]), meta)
            finally:
                cur.close()
            return install(store, project, art, cfgmod.load(store, project))
    if not train_if_missing:
        raise UserloopError("model_not_trained", "no recommendation model yet: train one first", status=409)
    train(store, project, trigger="first_request")
    return _cache[_key(store, project.id)]


# -- one request ---------------------------------------------------------------------------------
def _match(art: Artifact, served: Served, m: Match) -> np.ndarray:
    items = art.items
    mask = np.zeros(art.n_items, bool)
    for t in m.types:
        code = items.type_code(t)
        if code is not None and code >= 0:
            mask |= items.item_type == code
    for c in m.categories:
        if c in items.categories:
            mask |= items.category == items.categories.index(c)
    codes = [items.tag_code(t) for t in m.tags]
    codes = [c for c in codes if c >= 0]
    if codes:
        mask[np.unique(items.tags[:, codes].nonzero()[0])] = True
    for key in m.items:
        i = served.item(key)
        if i >= 0:
            mask[i] = True
    return mask


def rules_for(served: Served, scene: Scene) -> Rules:
    r = served.rules.get(scene.name)
    if r is not None:
        return r
    art = served.art
    allowed = art.items.active.copy()
    if scene.types:
        allowed &= _match(art, served, Match(types=scene.types))
    if scene.exclude is not None:
        allowed &= ~_match(art, served, scene.exclude)
    boost = None
    if scene.boost:
        boost = np.ones(art.n_items, np.float32)
        for b in scene.boost:
            boost[_match(art, served, b.match)] *= b.factor
    pins = [(p.position - 1, served.item(p.item)) for p in sorted(scene.pin, key=lambda p: p.position)]
    r = Rules(allowed, boost, [(pos, i) for pos, i in pins if i >= 0 and art.items.active[i]])
    served.rules[scene.name] = r
    return r


def variant_of(project_id: int, scene: Scene, person_id: str) -> tuple[str, dict[str, float]]:
    """The A/B arm of a person in a scene: stable for the same person id."""
    if not scene.variants:
        return "default", {}
    h = int(hashlib.md5(f"{project_id}:{scene.name}:{person_id}".encode()).hexdigest()[:8], 16) / 2**32
    edge = 0.0
    for v in scene.variants:
        edge += v.share
        if h < edge:
            return v.name, v.weights
    return "default", {}


def person_of(served: Served, project_id: int, distinct_id: str, row: int) -> str:
    if row >= 0:
        return str(served.art.users[row])
    return hashlib.md5(f"{project_id}:{distinct_id}".encode()).hexdigest()


FRESH_EVENTS = 50


def _fresh(store: Store, served: Served, project: Project, distinct_id: str) -> np.ndarray:
    """Items this distinct id touched since the model's data ended, most recent first.

    One scan of the newest events (time-pruned) for this id, at most ``FRESH_EVENTS``; the
    interaction rules are applied to those few rows here (a request's worth, not a table's)."""
    rules = served.art.meta.get("rules")
    rule_objs = msgspec.convert(rules, list[cfgmod.EventRule]) if rules is not None else []
    by_event = {r.event: r for r in rule_objs}
    if not by_event:
        return np.zeros(0, np.int64)
    start = datetime.fromtimestamp(served.art.trained_at, UTC)
    # no ORDER BY ... LIMIT in SQL: DuckDB plans a top-N as a second scan; the rows are few
    rows = store.cursor().execute(
        "SELECT event, properties, timestamp FROM events WHERE project_id = ? AND timestamp >= ? AND distinct_id = ?",
        [project.id, start, distinct_id],
    ).fetchall()
    rows = sorted(rows, key=lambda r: r[2], reverse=True)[:FRESH_EVENTS]
    found: list[int] = []
    for event, props, _ in rows:
        rule = by_event.get(event)
        if rule is None:
            continue
        doc = msgspec.json.decode(props) if isinstance(props, str | bytes) else (props or {})
        if not isinstance(doc, dict):
            continue
        entries = doc.get(rule.items) if rule.items else [doc]
        for e in entries if isinstance(entries, list) else []:
            if not isinstance(e, dict):
                continue
            iid = e.get("item_id" if rule.items else rule.item_id)
            itype = rule.item_type or e.get("item_type" if rule.items else (rule.type_property or ""))
            if iid is None:
                continue
            if itype is None:  # no type on the event: the first catalogue type that has this id
                hits = [served.item(f"{t}:{iid}") for t in served.art.items.types]
                idx = next((h for h in hits if h >= 0), -1)
            else:
                idx = served.item(f"{itype}:{iid}")
            if idx >= 0 and idx not in found:
                found.append(idx)
    return np.array(found, np.int64)


def recommend(
    store: Store,
    project: Project,
    writer: Writer | None,
    *,
    distinct_id: str | None,
    n: int = 10,
    type: str | None = None,
    scene: str | None = None,
    item: str | None = None,
    track: bool = True,
    fresh: bool | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    if not 1 <= n <= MAX_N:
        raise UserloopError("invalid_field", f"n must be between 1 and {MAX_N}", "n")
    served = get(store, project)
    art, cfg = served.art, served.cfg
    sc = cfgmod.scene(cfg, scene)
    rules = rules_for(served, sc)
    row = served.user(distinct_id) if distinct_id else -1
    person = person_of(served, project.id, distinct_id, row) if distinct_id else None
    variant, overrides = variant_of(project.id, sc, person) if person else ("default", {})
    w = msgspec.structs.replace(cfg.params.weights, **{**sc.weights, **overrides}) if (sc.weights or overrides) else cfg.params.weights
    seed = -1
    if item:
        seed = served.item(item)
        if seed < 0:
            raise UserloopError("unknown_item", f"no item {item!r} in the trained catalogue", "item")
    type_code = art.items.type_code(type)
    use_fresh = cfg.fresh_events if fresh is None else fresh
    recent = _fresh(store, served, project, distinct_id) if (use_fresh and distinct_id) else np.zeros(0, np.int64)
    interests = served.interests(distinct_id) if distinct_id else np.zeros(0, np.int64)
    req = Request(users=np.array([row], np.int64), interests=[interests], seed_items=np.array([seed], np.int64) if item else None,
                  fresh=[recent], type_code=type_code)
    f = fuse(art, req, w, max(3 * n, n + len(rules.pins)), exclude_seen=sc.exclude_seen,
             exclude_purchased=sc.exclude_purchased, allowed=rules.allowed, boost=rules.boost)
    f = diversify(f, art.items.item_type, art.items.category, n, sc.diversity)
    if int((f.items[0] >= 0).sum()) < n:  # too few (a new project, a narrow scene): popular, then newest
        backfill = Weights(cf=0, recent=0, interest=0, popular=1.0, trending=0, latest=BACKFILL_LATEST, similar=0,
                           cross=0)
        extra = fuse(art, req, backfill, n, exclude_seen=sc.exclude_seen, exclude_purchased=sc.exclude_purchased,
                     allowed=rules.allowed, boost=rules.boost)
        f = _append(f, extra, n)
    items = _with_pins(f, rules.pins, n, type_code, art)
    out = _explain(served, items, interests)
    rec_id = uuid.uuid4().hex
    if track and cfg.track_impressions and distinct_id and writer is not None and out:
        _track(writer, project, distinct_id, rec_id, sc.name, variant, served.model_id, out)
    return {"rec_id": rec_id, "scene": sc.name, "variant": variant, "model_id": served.model_id,
            "person_id": person, "known_person": row >= 0, "items": out,
            "took_ms": round((time.perf_counter() - started) * 1000, 3)}


BACKFILL_LATEST = 1e-3  # newest items only after every item with a popularity


def _append(f: Fused, extra: Fused, n: int) -> Fused:
    """``f``'s items, then ``extra``'s not already there, at most ``n`` (one row)."""
    have = set(f.items[0][f.items[0] >= 0].tolist())
    keep = [j for j, i in enumerate(extra.items[0].tolist()) if i >= 0 and i not in have]
    mine = np.flatnonzero(f.items[0] >= 0)

    def cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a[0][mine], b[0][keep]])[None, :n]

    return Fused(cat(f.items, extra.items), cat(f.scores, extra.scores), cat(f.source, extra.source),
                 cat(f.because, extra.because))


def _with_pins(f: Fused, pins: list[tuple[int, int]], n: int, type_code: int | None, art: Artifact) -> list[tuple[int, float, int, int]]:
    """(item, score, source index or -1 for a pin, because) in order, pins at their positions."""
    ranked = [(int(i), float(s), int(src), int(b)) for i, s, src, b in zip(f.items[0], f.scores[0], f.source[0], f.because[0], strict=True) if i >= 0]
    pinned = [(pos, i) for pos, i in pins if type_code is None or art.items.item_type[i] == type_code]
    pinned_items = {i for _, i in pinned}
    ranked = [r for r in ranked if r[0] not in pinned_items]
    for pos, i in pinned:
        ranked.insert(min(pos, len(ranked)), (i, float("nan"), -1, -1))
    return ranked[:n]


def _explain(served: Served, ranked: list[tuple[int, float, int, int]], interests: np.ndarray) -> list[dict[str, Any]]:
    items = served.art.items
    types = items.types
    out = []
    for pos, (i, score, src, because) in enumerate(ranked, start=1):
        source = SOURCES[src] if src >= 0 else "pin"
        entry: dict[str, Any] = {"item_type": types[items.item_type[i]], "item_id": str(items.item_id[i]),
                                 "title": str(items.title[i]), "position": pos,
                                 "score": None if score != score else round(score, 6), "source": source}
        text = REASONS[source]
        if because >= 0:
            entry["because"] = {"item_type": types[items.item_type[because]], "item_id": str(items.item_id[because]),
                                "title": str(items.title[because])}
            text = text.format(because=str(items.title[because]) or entry["because"]["item_id"])
        if source == "interest":
            mine = set(items.tags[i].indices.tolist()) & set(interests.tolist())
            text = text.format(tag=items.tag_names[min(mine)] if mine else "")
        entry["reason"] = text
        out.append(entry)
    return out


FLUSH_S = 2.0
FLUSH_EVENTS = 5000


class _Impressions:
    """Impression events buffered per writer and handed over every ``FLUSH_S`` seconds (or at
    ``FLUSH_EVENTS``) as one payload: one writer transaction per flush instead of one per request.
    A writer batch costs tens of milliseconds of CPU at a million identities whatever its size, and
    on two cores every one of them shows in the serving p99. At most ``FLUSH_S`` of impressions are
    lost if the process dies; ``recommend.stats`` flushes first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # writers held weakly: a buffer must not keep a stopped writer (and its DuckDB file) alive
        self.pending: dict[int, tuple[weakref.ref[Writer], list[Any]]] = {}
        self.thread: threading.Thread | None = None

    def add(self, writer: Writer, event: Any) -> None:
        with self.lock:
            events = self.pending.setdefault(id(writer), (weakref.ref(writer), []))[1]
            events.append(event)
            if len(events) >= FLUSH_EVENTS:
                from userloop.ingest.event import Payload

                writer.submit(Payload(events=list(events), accepted=len(events)))
                events.clear()
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="userloop-impressions", daemon=True)
                self.thread.start()

    def flush(self) -> None:
        from userloop.ingest.event import Payload

        with self.lock:  # submitting under the lock keeps flushes in order (the queue put is cheap)
            for ref, events in self.pending.values():
                writer = ref()
                if writer is not None and events and writer.is_alive():
                    writer.submit(Payload(events=events, accepted=len(events)))
            self.pending = {}

    def _loop(self) -> None:
        while True:
            time.sleep(FLUSH_S)
            self.flush()


_impressions = _Impressions()


def flush_impressions() -> None:
    """Hand buffered impression events to their writers now (tests; shutdown)."""
    _impressions.flush()


def _track(writer: Writer, project: Project, distinct_id: str, rec_id: str, scene: str, variant: str,
           model_id: int, out: list[dict[str, Any]]) -> None:
    from userloop.ingest.event import Event

    now = datetime.now(UTC)
    props = {"rec_id": rec_id, "scene": scene, "variant": variant, "model_id": model_id,
             "items": [f"{e['item_type']}:{e['item_id']}" for e in out], "sources": [e["source"] for e in out]}
    event = Event(project_id=project.id, message_id=f"rec-{rec_id}", event=IMPRESSION_EVENT, type="track",
                  distinct_id=distinct_id, timestamp=now, received_at=now,
                  properties=msgspec.json.encode(props).decode(), source="api")
    _impressions.add(writer, event)  # serving never waits for the disk


def similar(store: Store, project: Project, item: str, n: int = 10, type: str | None = None) -> dict[str, Any]:
    """Nearest items of ``item`` (same type: "similar", other types: "related"), no personalisation."""
    served = get(store, project)
    w = Weights(cf=0, recent=0, interest=0, popular=0, trending=0, latest=0, similar=1.0, cross=1.0)
    seed = served.item(item)
    if seed < 0:
        raise UserloopError("unknown_item", f"no item {item!r} in the trained catalogue", "item")
    req = Request(users=np.array([-1]), seed_items=np.array([seed]), type_code=served.art.items.type_code(type))
    f = fuse(served.art, req, w, n, exclude_seen=False, exclude_purchased=False)
    ranked = [(int(i), float(s), int(src), int(b)) for i, s, src, b in zip(f.items[0], f.scores[0], f.source[0], f.because[0], strict=True) if i >= 0]
    return {"item": item, "model_id": served.model_id, "items": _explain(served, ranked, np.zeros(0, np.int64))}


def people(store: Store, project: Project, distinct_id: str, n: int = 10) -> dict[str, Any]:
    """People you may like: similar interests, active."""
    served = get(store, project)
    row = served.user(distinct_id)
    out = []
    if row >= 0:
        idx, scores = served.art.people.row(row)
        activity = np.diff(served.art.history.indptr)
        for u, s in zip(idx[:n].tolist(), scores[:n].tolist(), strict=True):
            out.append({"person_id": str(served.art.users[u]), "score": round(float(s), 6),
                        "activity": int(activity[u]), "reason": "similar interests"})
    return {"distinct_id": distinct_id, "model_id": served.model_id, "people": out}
