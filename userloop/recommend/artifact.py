"""The serving artifact: every candidate list a feed needs, precomputed by training.

``Artifact`` holds, in compact arrays:

- item metadata (type, category, tags, active, ids, titles) by item index;
- per user (person): the history, most recent first, with a bought flag (``history``), the
  candidates of the personal model (``cf``) and people you may like (``people``);
- per item: similar items (``similar``: behaviour cosine + content, so new items have neighbours)
  and related items of other types (``cross``);
- per tag: its popular items (``tag_popular``), for interest tags picked at sign-up;
- per type (key 0 = all types, key t + 1 = type t): ``popular``, ``trending`` and ``latest``.

It is saved to DuckDB (``recommend_arrays``: one row per array, raw bytes) in one transaction and
loaded into memory by ``userloop/recommend/serve.py``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import scipy.sparse as sp

from userloop.recommend.data import Items
from userloop.recommend.lists import Lists

LIST_FIELDS = ("history", "cf", "people", "similar", "cross", "tag_popular", "popular", "trending", "latest")


@dataclass
class Artifact:
    items: Items
    users: np.ndarray  # object: person id per user index
    history: Lists  # scores: 1.0 bought, 0.0 otherwise; most recent first
    cf: Lists
    people: Lists
    similar: Lists
    cross: Lists
    tag_popular: Lists
    popular: Lists
    trending: Lists
    latest: Lists
    trained_at: float
    meta: dict[str, Any] = field(default_factory=dict)  # model id, parameters, chosen CF, counts

    @property
    def n_items(self) -> int:
        return self.items.n

    # -- persistence ------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "item_type": self.items.item_type, "category": self.items.category, "created": self.items.created,
            "active": self.items.active, "users": _text(self.users), "item_id": _text(self.items.item_id),
            "title": _text(self.items.title),
            "tags_indptr": self.items.tags.indptr, "tags_indices": self.items.tags.indices,
        }
        for name in LIST_FIELDS:
            lst: Lists = getattr(self, name)
            out[f"{name}.indptr"], out[f"{name}.items"], out[f"{name}.scores"] = lst.indptr, lst.items, lst.scores
        return out

    def save(self, cur: duckdb.DuckDBPyConnection, project_id: int, model_id: int) -> int:
        """Insert the arrays as ``recommend_arrays`` rows (inside the caller's transaction); bytes written."""
        total = 0
        rows = []
        for name, arr in self.arrays().items():
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
            blob = buf.getvalue()
            total += len(blob)
            rows.append([project_id, model_id, name, blob])
        cur.executemany("INSERT INTO recommend_arrays VALUES (?, ?, ?, ?)", rows)
        return total

    @staticmethod
    def load(cur: duckdb.DuckDBPyConnection, project_id: int, model_id: int, meta: dict[str, Any]) -> Artifact:
        rows = cur.execute(
            "SELECT name, data FROM recommend_arrays WHERE project_id = ? AND model_id = ?", [project_id, model_id]
        ).fetchall()
        a = {name: np.load(io.BytesIO(bytes(blob)), allow_pickle=False) for name, blob in rows}
        n = len(a["item_type"])
        tags = sp.csr_matrix(
            (np.ones(len(a["tags_indices"]), np.float32), a["tags_indices"], a["tags_indptr"]),
            shape=(n, len(meta["tag_names"])),
        )
        items = Items(
            item_type=a["item_type"], item_id=_objects(a["item_id"]), types=list(meta["types"]), tags=tags,
            tag_names=list(meta["tag_names"]), category=a["category"], categories=list(meta["categories"]),
            created=a["created"], active=a["active"], title=_objects(a["title"]),
        )
        lists = {f: Lists(a[f"{f}.indptr"], a[f"{f}.items"], a[f"{f}.scores"]) for f in LIST_FIELDS}
        return Artifact(items=items, users=_objects(a["users"]), trained_at=float(meta["trained_at"]), meta=meta, **lists)

    def describe(self) -> dict[str, Any]:
        return {
            "items": self.n_items,
            "users": len(self.users),
            **{f"{f}_entries": int(len(getattr(self, f).items)) for f in LIST_FIELDS},
        }


def _text(values: np.ndarray) -> np.ndarray:
    """Object strings as one UTF-8 JSON array (stored without pickle)."""
    return np.frombuffer(json.dumps([str(v) for v in values], ensure_ascii=False).encode(), dtype=np.uint8)


def _objects(buf: np.ndarray) -> np.ndarray:
    return np.array(json.loads(bytes(buf).decode()), dtype=object)


__all__ = ["Artifact", "LIST_FIELDS"]
