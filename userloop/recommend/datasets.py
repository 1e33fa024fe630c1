"""Public data sets for offline evaluation, read with DuckDB into an :class:`EventLog`.

- MovieLens 100K (``u.data``, ``u.item``): every rating is an interaction (weight 1); genres are
  the items' tags, the release date their creation time.
- Taobao UserBehavior (``userbehavior_head_sample.csv``: complete 9-day histories of 815 users):
  pv 1, fav 2, cart 3, buy 4 (bought); the category is the item's category; rows outside
  2017-11-25..2017-12-03 (UTC+8) are dropped as the data set's description advises.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import scipy.sparse as sp

from userloop.recommend.data import Items
from userloop.recommend.evaluate import EventLog

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
TAOBAO_FILE = "userbehavior_head_sample.csv"
TAOBAO_START, TAOBAO_END = 1511539200, 1512316800  # 2017-11-25 00:00 to 2017-12-04 00:00, UTC+8
TAOBAO_WEIGHTS = {"pv": 1.0, "fav": 2.0, "cart": 3.0, "buy": 4.0}


def _codes(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> dict[str, np.ndarray]:
    rel = con.execute(sql, params or [])
    return {k: np.asarray(v) for k, v in rel.fetchnumpy().items()}


def movielens_100k(folder: Path) -> EventLog:
    con = duckdb.connect()
    data = str(folder / "u.data").replace("'", "''")
    item_file = str(folder / "u.item").replace("'", "''")
    cols = "{'movie_id': 'INTEGER', 'title': 'VARCHAR', 'release': 'VARCHAR', 'video': 'VARCHAR', 'url': 'VARCHAR', " + ", ".join(
        f"'g{i}': 'INTEGER'" for i in range(19)) + "}"
    items = _codes(con, f"""SELECT movie_id - 1 AS idx, title,
            epoch(try_strptime(release, '%d-%b-%Y')) AS created, [{', '.join(f'g{i}' for i in range(19))}] AS genres
        FROM read_csv('{item_file}', delim='|', header=false, encoding='latin-1', quote='', columns={cols})
        ORDER BY movie_id""")
    ev = _codes(con, f"""SELECT user_id - 1 AS u, item_id - 1 AS i, ts::DOUBLE AS ts
        FROM read_csv('{data}', delim='\t', header=false,
                      columns={{'user_id': 'INTEGER', 'item_id': 'INTEGER', 'rating': 'INTEGER', 'ts': 'BIGINT'}})""")
    n = len(items["idx"])
    genres = np.stack(list(items["genres"])).astype(np.float32) if n else np.zeros((0, 19), np.float32)
    meta = Items(
        item_type=np.zeros(n, np.int16), item_id=(items["idx"] + 1).astype(str).astype(object), types=["movie"],
        tags=sp.csr_matrix(genres), tag_names=GENRES, category=np.full(n, -1, np.int32), categories=[],
        created=np.asarray(items["created"], np.float64), active=np.ones(n, bool), title=items["title"].astype(object),
    )
    n_users = int(ev["u"].max()) + 1
    return EventLog(
        user=ev["u"].astype(np.int64), item=ev["i"].astype(np.int64), ts=ev["ts"].astype(np.float64),
        weight=np.ones(len(ev["u"]), np.float32), bought=np.zeros(len(ev["u"]), bool),
        users=(np.arange(n_users) + 1).astype(str).astype(object), items=meta,
    )


def taobao(folder: Path, file: str = TAOBAO_FILE) -> EventLog:
    con = duckdb.connect()
    path = str(folder / file).replace("'", "''")
    con.execute(f"""CREATE TEMP TABLE tb AS SELECT * FROM read_csv('{path}', header=false,
        columns={{'user_id': 'BIGINT', 'item_id': 'BIGINT', 'category_id': 'BIGINT', 'behavior': 'VARCHAR', 'ts': 'BIGINT'}})
        WHERE ts >= {TAOBAO_START} AND ts < {TAOBAO_END}""")
    con.execute("""CREATE TEMP TABLE tb_items AS SELECT item_id, arg_max(category_id, ts) AS category_id,
        row_number() OVER (ORDER BY item_id) - 1 AS idx FROM tb GROUP BY item_id""")
    con.execute("CREATE TEMP TABLE tb_users AS SELECT user_id, row_number() OVER (ORDER BY user_id) - 1 AS idx FROM (SELECT DISTINCT user_id FROM tb)")
    con.execute("""CREATE TEMP TABLE tb_cats AS SELECT category_id, row_number() OVER (ORDER BY category_id) - 1 AS idx
        FROM (SELECT DISTINCT category_id FROM tb_items)""")
    weights = " ".join(f"WHEN '{k}' THEN {v}" for k, v in TAOBAO_WEIGHTS.items())
    ev = _codes(con, f"""SELECT u.idx AS u, i.idx AS i, tb.ts::DOUBLE AS ts, CASE tb.behavior {weights} ELSE 1.0 END AS w,
            tb.behavior = 'buy' AS bought
        FROM tb JOIN tb_users u USING (user_id) JOIN tb_items i USING (item_id)""")
    items = _codes(con, """SELECT i.item_id::VARCHAR AS item_id, c.idx AS cat FROM tb_items i
        JOIN tb_cats c USING (category_id) ORDER BY i.idx""")
    cats = _codes(con, "SELECT category_id::VARCHAR AS c FROM tb_cats ORDER BY idx")["c"]
    users = _codes(con, "SELECT user_id::VARCHAR AS u FROM tb_users ORDER BY idx")["u"]
    n = len(items["item_id"])
    meta = Items(
        item_type=np.zeros(n, np.int16), item_id=items["item_id"].astype(object), types=["product"],
        tags=sp.csr_matrix((n, 0), dtype=np.float32), tag_names=[], category=items["cat"].astype(np.int32),
        categories=[str(c) for c in cats], created=np.full(n, np.nan), active=np.ones(n, bool),
        title=np.full(n, "", dtype=object),
    )
    return EventLog(
        user=ev["u"].astype(np.int64), item=ev["i"].astype(np.int64), ts=ev["ts"].astype(np.float64),
        weight=ev["w"].astype(np.float32), bought=ev["bought"].astype(bool), users=users.astype(object), items=meta,
    )
