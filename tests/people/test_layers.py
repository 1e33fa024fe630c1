"""Layer models on hand-built events in a real DuckDB store, checked by hand and against pandas.

The project is in Asia/Shanghai, so local days differ from UTC days (an event at 23:30 local is
on the next UTC day's morning... or the other way round): every "days since" is in local days.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tests.analytics.conftest import World
from userloop.errors import UserloopError
from userloop.people.layers import service
from userloop.store.duckdb import Store
from userloop.store.writer import Writer

TZ = "Asia/Shanghai"
ZONE = ZoneInfo(TZ)
PASSIVE = {"receive_coupon", "unfollow"}


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    store = Store(tmp_path / "layers.duckdb")
    project = store.create_project("layers", TZ)
    with Writer(store) as writer:
        yield World(store=store, writer=writer, project=project, rows=[])
    store.close()


def local(text: str) -> datetime:
    """A local (Asia/Shanghai) wall-clock time as a UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=ZONE).astimezone(UTC)


def ev(did: str, event: str, when: str, **props: Any) -> dict[str, Any]:
    return {"distinct_id": did, "event": event, "ts": local(when), "properties": props}


def make(w: World, name: str, kind: str, **params: Any) -> None:
    service.create(w.store, w.project, {"name": name, "kind": kind, "params": params})


def layers_of(w: World, model: str, on: str | None = None) -> dict[str, str]:
    """distinct id -> layer (every distinct id of a person maps to the person's layer)."""
    params: dict[str, Any] = {"name": model, "limit": 10_000}
    if on:
        params["on"] = on
    got = service.members(w.store, w.project, params)
    by_person = {r["person_id"]: r["layer"] for r in got["results"]}
    return {did: by_person[pid] for did, pid in w.persons().items() if pid in by_person}


def members_by_did(w: World, model: str) -> dict[str, dict[str, Any]]:
    got = service.members(w.store, w.project, {"name": model, "limit": 10_000})
    by_person = {r["person_id"]: r for r in got["results"]}
    return {did: by_person[pid] for did, pid in w.persons().items() if pid in by_person}


# -- lifecycle ------------------------------------------------------------------------------------


def test_lifecycle_layers_by_hand(w: World) -> None:
    """As of 2024-03-31 (events before that local day), sleeping after 30 days, churned after 90."""
    w.add(
        [
            ev("pot", "$pageview", "2024-03-20 10:00"),
            ev("fol", "follow", "2024-03-20 10:00"),
            ev("unf", "follow", "2024-03-01 10:00"),
            ev("unf", "unfollow", "2024-03-05 10:00"),
            ev("unf", "$pageview", "2024-03-25 10:00"),
            ev("refol", "follow", "2024-03-01 10:00"),
            ev("refol", "unfollow", "2024-03-05 10:00"),
            ev("refol", "follow", "2024-03-10 10:00"),
            ev("reg", "follow", "2024-03-01 10:00"),
            ev("reg", "sign_up", "2024-03-02 10:00"),
            ev("buy", "purchase", "2024-03-29 10:00", amount=10),
            # last activity on local day 03-01 (23:30 local = 15:30 UTC): 30 days before 03-31 -> sleeping
            ev("sleep30", "purchase", "2024-02-01 10:00", amount=5),
            ev("sleep30", "$pageview", "2024-03-01 23:30"),
            # 00:10 local on 03-02 is 03-01 in UTC: 29 local days -> still buying
            ev("buy29", "purchase", "2024-02-01 10:00", amount=5),
            ev("buy29", "$pageview", "2024-03-02 00:10"),
            # only a pushed coupon since: passive events are not activity -> sleeping
            ev("passive", "purchase", "2024-02-20 10:00", amount=5),
            ev("passive", "receive_coupon", "2024-03-29 10:00"),
            # 90 days without activity -> churned, whatever else (a buyer and a registered person)
            ev("churn", "purchase", "2023-12-31 12:00", amount=5),
            ev("churn_reg", "sign_up", "2023-12-30 12:00"),
            ev("churn89", "sign_up", "2024-01-02 12:00"),  # 89 days -> registered
            ev("only_passive", "receive_coupon", "2024-03-20 10:00"),  # no activity: not in the model
            # the purchase is on the as-of day itself: not counted
            ev("late", "$pageview", "2024-03-30 10:00"),
            ev("late", "purchase", "2024-03-31 00:00", amount=9),
            # two distinct ids of one person (merged below): signed up on the second
            ev("anon", "$pageview", "2024-03-10 10:00"),
            ev("user", "sign_up", "2024-03-11 10:00"),
        ]
    )
    w.merge("user", "anon")
    make(w, "life", "lifecycle")
    got = service.compute(w.store, w.project, "life", "2024-03-31")
    expected = {
        "pot": "potential", "fol": "follower", "unf": "potential", "refol": "follower", "reg": "registered",
        "buy": "buying", "sleep30": "sleeping", "buy29": "buying", "passive": "sleeping", "churn": "churned",
        "churn_reg": "churned", "churn89": "registered", "late": "potential", "anon": "registered",
        "user": "registered",
    }  # fmt: skip
    assert layers_of(w, "life") == expected
    assert got["members"] == len(expected) - 1  # anon and user are one person
    assert got["counts"] == {
        "potential": 3,
        "follower": 2,
        "registered": 3,
        "buying": 2,
        "sleeping": 2,
        "churned": 2,
    }
    scores = members_by_did(w, "life")
    assert scores["sleep30"]["scores"] == {
        "inactive_days": 30,
        "purchases": 1,
        "signed_up": False,
        "following": False,
    }
    assert scores["refol"]["scores"]["following"] is True and scores["unf"]["scores"]["following"] is False


def test_lifecycle_parameters_and_rfm_substrata(w: World) -> None:
    w.add(
        [
            ev("a", "purchase", "2024-03-20 10:00", amount=100),
            ev("a", "purchase", "2024-03-25 10:00", amount=100),
            ev("b", "purchase", "2024-03-01 10:00", amount=1),  # 30 days: sleeping by default, buying with 40
            ev("c", "subscribe", "2024-03-01 10:00"),  # a custom follow event
            ev("d", "$pageview", "2024-03-01 10:00"),
            ev("d", "ping", "2024-03-29 10:00"),  # ping is not activity
        ]
    )
    make(w, "life", "lifecycle", sleeping_days=40, churned_days=60, follow_event="subscribe",
         activity_events=["$pageview", "purchase", "subscribe"], rfm_substrata=True)  # fmt: skip
    service.compute(w.store, w.project, "life", "2024-03-31")
    got = members_by_did(w, "life")
    # two buyers: ntile(5) gives the first two buckets; a: R 2 (more recent), F 2 (ties by person id?
    # no: a bought twice), M 2 -> (2, 2) hibernating; b: (1, 1) lost
    assert {k: v["layer"] for k, v in got.items()} == {
        "a": "buying:hibernating", "b": "buying:lost", "c": "follower", "d": "potential",
    }  # fmt: skip
    assert got["a"]["scores"]["rfm"] == {"r": 2, "f": 2, "m": 2, "recency_days": 6, "frequency": 2,
                                         "monetary": 200.0, "group": "hibernating"}  # fmt: skip
    assert got["d"]["scores"]["inactive_days"] == 30 and got["d"]["scores"]["rfm"] is None
    model = service.get(w.store, w.project, "life")
    assert "buying:champions" in model["layers"] and "buying" not in model["layers"]


# -- stage --------------------------------------------------------------------------------------


def days_before(day: date, n: int, hour: int = 12) -> str:
    return f"{day - timedelta(days=n)} {hour:02d}:00"


def test_stage_layers_by_hand(w: World) -> None:
    d = date(2024, 6, 1)
    events = [
        ev("new", "$pageview", days_before(d, 13)),  # tenure 13 < 14
        ev("grow", "$pageview", days_before(d, 14)),  # tenure 14, 1 active day
        ev("churn", "$pageview", days_before(d, 60)),  # 60 days inactive
        ev("active_new", "$pageview", days_before(d, 5)),
    ]
    # mature: tenure 40, 4 active days in the last 30 (one of them twice, and one at 23:59 local)
    events += [ev("mature", "$pageview", days_before(d, 40))]
    events += [ev("mature", "$pageview", days_before(d, n)) for n in (1, 2, 3)]
    events += [
        ev("mature", "$pageview", days_before(d, 3, hour=20)),
        ev("mature", "$pageview", f"{d - timedelta(days=4)} 23:59"),
    ]
    # almost mature: 4 active days but one of them 30 days ago, outside the window
    events += [ev("almost", "$pageview", days_before(d, 40))]
    events += [ev("almost", "$pageview", days_before(d, n)) for n in (1, 2, 3, 31)]
    # loyal: tenure 100, 8 active days; passive events do not count as activity
    events += [ev("loyal", "$pageview", days_before(d, 100))]
    events += [ev("loyal", "$pageview", days_before(d, n)) for n in range(1, 9)]
    # tenure 100 but 7 active days (+ passive ones) -> mature
    events += [ev("nearly_loyal", "$pageview", days_before(d, 100))]
    events += [ev("nearly_loyal", "$pageview", days_before(d, n)) for n in range(1, 8)]
    events += [ev("nearly_loyal", "receive_coupon", days_before(d, n)) for n in range(8, 12)]
    w.add(events)
    make(w, "stage", "stage")
    service.compute(w.store, w.project, "stage", str(d))
    got = members_by_did(w, "stage")
    assert {k: v["layer"] for k, v in got.items()} == {
        "new": "new", "grow": "growing", "churn": "churned", "active_new": "new", "mature": "mature",
        "almost": "growing", "loyal": "loyal", "nearly_loyal": "mature",
    }  # fmt: skip
    assert got["mature"]["scores"] == {"tenure_days": 40, "inactive_days": 1, "active_days": 4}
    assert got["almost"]["scores"]["active_days"] == 3


# -- RFM against pandas -----------------------------------------------------------------------------

# the documented mapping (docs/people/layers.md), written out again here: (R, FM) -> group
GROUPS = {
    **{(5, fm): "champions" for fm in (4, 5)},
    **{(r, fm): "loyal_customers" for r in (3, 4) for fm in (4, 5)},
    **{(r, fm): "potential_loyalists" for r in (4, 5) for fm in (2, 3)},
    (5, 1): "new_customers", (4, 1): "promising", (3, 3): "need_attention",
    (3, 1): "about_to_sleep", (3, 2): "about_to_sleep",
    **{(r, fm): "at_risk" for r in (1, 2) for fm in (3, 4)},
    (1, 5): "cant_lose_them", (2, 5): "cant_lose_them",
    (2, 1): "hibernating", (2, 2): "hibernating", (1, 2): "hibernating", (1, 1): "lost",
}  # fmt: skip


def ntile5(order: list[str]) -> dict[str, int]:
    """SQL ntile(5) over rows in ``order``: the first n % 5 buckets hold one row more."""
    q, rem = divmod(len(order), 5)
    out, i = {}, 0
    for bucket in range(1, 6):
        size = q + (1 if bucket <= rem else 0)
        for key in order[i : i + size]:
            out[key] = bucket
        i += size
    return out


def rfm_expected(frame: pd.DataFrame, as_of: date, amount: str = "amount", by: str = "fm",
                 window_days: int | None = None) -> pd.DataFrame:  # fmt: skip
    """Recency in local days, frequency, monetary (4-place decimals), scores and groups, per person."""
    end = datetime.combine(as_of, datetime.min.time(), ZONE).astimezone(UTC)
    buys = frame[(frame.event == "purchase") & (frame.ts < end)].copy()
    if window_days is not None:
        start = datetime.combine(as_of - timedelta(days=window_days), datetime.min.time(), ZONE).astimezone(
            UTC
        )
        buys = buys[buys.ts >= start]

    def money(props: dict[str, Any]) -> Decimal:
        v = props.get(amount)
        try:
            return Decimal(str(v)).quantize(Decimal("0.0001"))
        except Exception:
            return Decimal(0)

    buys["money"] = buys.properties.map(money)
    buys["day"] = buys.ts.map(lambda t: t.astimezone(ZONE).date())
    g = buys.groupby("person_id").agg(
        last=("day", "max"), frequency=("event", "size"), monetary=("money", "sum")
    )
    g["recency_days"] = g["last"].map(lambda d: (as_of - d).days)
    ids = list(g.index)
    r = ntile5(sorted(ids, key=lambda p: (-g.recency_days[p], p)))
    f = ntile5(sorted(ids, key=lambda p: (g.frequency[p], p)))
    m = ntile5(sorted(ids, key=lambda p: (g.monetary[p], p)))
    g["r"], g["f"], g["m"] = [r[p] for p in ids], [f[p] for p in ids], [m[p] for p in ids]
    fm = [-(-(f[p] + m[p]) // 2) if by == "fm" else f[p] for p in ids]  # (F + M) / 2 rounded up
    g["group"] = [GROUPS[(r[p], x)] for p, x in zip(ids, fm, strict=True)]
    return g


def check_rfm(got: dict[str, dict[str, Any]], exp: pd.DataFrame) -> None:
    assert set(got) == set(exp.index)
    for pid, row in exp.iterrows():
        s = got[pid]["scores"]
        assert got[pid]["layer"] == row["group"], pid
        assert (s["r"], s["f"], s["m"]) == (row.r, row.f, row.m), pid
        assert (s["recency_days"], s["frequency"]) == (row.recency_days, row.frequency), pid
        assert Decimal(str(s["monetary"])).quantize(Decimal("0.0001")) == row.monetary, pid


def random_shop(w: World, seed: int, persons: int = 83) -> None:
    """Buyers with ties in every measure: few amounts, few days, some text or missing amounts."""
    rnd = random.Random(seed)
    amounts: list[Any] = [5, 10, 10.5, 0.1, 0.2, 0.3, 20, "7.25", None, 99.99]
    events = []
    for i in range(persons):
        did = f"p{i:03d}"
        for _ in range(rnd.choice([1, 1, 1, 2, 2, 3, 5, 8])):
            day = date(2024, 6, 1) - timedelta(days=rnd.choice([1, 2, 3, 10, 30, 45, 90, 200, 400]))
            props = {} if (a := rnd.choice(amounts)) is None else {"amount": a}
            hour = rnd.choice(["00:05", "12:00", "23:55"])
            events.append(ev(did, "purchase", f"{day} {hour}", **props))
        if rnd.random() < 0.2:
            events.append(ev(did, "$pageview", "2024-05-30 10:00"))
        if rnd.random() < 0.1:  # bought again after the reference day: not counted
            events.append(ev(did, "purchase", "2024-06-01 00:00", amount=1000))
    # one person with two distinct ids, buying under both
    events += [
        ev("anon9", "purchase", "2024-05-01 10:00", amount=3),
        ev("p000", "purchase", "2024-05-02 10:00", amount=4),
    ]
    w.add(events)
    w.merge("p000", "anon9")


def by_person(w: World, model: str) -> dict[str, dict[str, Any]]:
    got = service.members(w.store, w.project, {"name": model, "limit": 10_000})
    return {r["person_id"]: r for r in got["results"]}


def test_rfm_scores_and_groups_match_pandas(w: World) -> None:
    random_shop(w, seed=5)
    make(w, "rfm", "rfm")
    make(w, "rfm_f90", "rfm", group_by="f", window_days=90)
    service.compute(w.store, w.project, "rfm", "2024-06-01")
    service.compute(w.store, w.project, "rfm_f90", "2024-06-01")
    frame = w.frame()
    exp = rfm_expected(frame, date(2024, 6, 1))
    assert len(exp) == 83 and exp.frequency.nunique() > 3  # ties in every measure
    check_rfm(by_person(w, "rfm"), exp)
    check_rfm(by_person(w, "rfm_f90"), rfm_expected(frame, date(2024, 6, 1), by="f", window_days=90))
    assert set(exp.group) >= {"champions", "lost", "hibernating"}


# -- frequency x value, promotion -----------------------------------------------------------------


def test_value_frequency_quadrants_median_and_absolute(w: World) -> None:
    w.add([
        *[ev("hh", "purchase", f"2024-05-0{i} 10:00", amount=50) for i in range(1, 5)],  # 4 buys, 200
        *[ev("hl", "purchase", f"2024-05-0{i} 10:00", amount=1) for i in range(1, 4)],  # 3 buys, 3
        ev("lh", "purchase", "2024-05-01 10:00", amount=500),  # 1 buy, 500
        ev("ll", "purchase", "2024-05-01 10:00", amount=2),  # 1 buy, 2
        ev("mid", "purchase", "2024-05-01 10:00", amount=10), ev("mid", "purchase", "2024-05-02 10:00", amount="10"),
        ev("old", "purchase", "2024-01-01 10:00", amount=10_000),  # outside a 90-day window
        ev("none", "$pageview", "2024-05-01 10:00"),  # not a buyer
    ])  # fmt: skip
    make(w, "vf", "value_frequency", window_days=90)  # medians over 5 buyers: frequency 2, value 20
    make(w, "vf_abs", "value_frequency", frequency_threshold=3, value_threshold=100)
    make(w, "vf_avg", "value_frequency", value="avg", window_days=90)  # avg: 50, 1, 500, 2, 10 -> median 10
    for name in ("vf", "vf_abs", "vf_avg"):
        service.compute(w.store, w.project, name, "2024-06-01")
    assert layers_of(w, "vf") == {
        "hh": "high_frequency_high_value", "hl": "high_frequency_low_value", "lh": "low_frequency_high_value",
        "ll": "low_frequency_low_value", "mid": "high_frequency_high_value",  # 2 >= 2 and 20 >= 20
    }  # fmt: skip
    assert layers_of(w, "vf_abs") == {
        "hh": "high_frequency_high_value", "hl": "high_frequency_low_value", "lh": "low_frequency_high_value",
        "ll": "low_frequency_low_value", "mid": "low_frequency_low_value", "old": "low_frequency_high_value",
    }  # fmt: skip
    assert layers_of(w, "vf_avg") == {
        "hh": "high_frequency_high_value", "hl": "high_frequency_low_value", "lh": "low_frequency_high_value",
        "ll": "low_frequency_low_value", "mid": "high_frequency_high_value",
    }  # fmt: skip
    s = members_by_did(w, "vf")["mid"]["scores"]
    assert s == {"frequency": 2, "value": 20.0, "frequency_threshold": 2.0, "value_threshold": 20.0}


def test_promotion_sensitivity(w: World) -> None:
    def buys(did: str, n: int, with_coupon: int) -> list[dict[str, Any]]:
        return [ev(did, "purchase", f"2024-05-{i + 1:02d} 10:00", amount=10,
                   **({"coupon_id": "C1"} if i < with_coupon else {"coupon_id": None}))
                for i in range(n)]  # fmt: skip

    def collects(did: str, n: int) -> list[dict[str, Any]]:
        return [ev(did, "receive_coupon", f"2024-04-{i + 1:02d} 10:00", coupon_id="C1") for i in range(n)]

    w.add([
        *buys("fan", 10, 7), *collects("fan", 3),  # share 0.7 exactly, 3 collected -> fanatic
        *buys("fan_few", 10, 7), *collects("fan_few", 2),  # too few collected -> sensitive
        *buys("sens", 10, 3),  # 0.3 -> sensitive
        *buys("neut", 10, 2), *collects("neut", 9),  # 0.2 -> neutral
        *buys("indiff", 4, 0), *collects("indiff", 5),  # never used one -> indifferent
        ev("empty", "purchase", "2024-05-01 10:00", amount=3, coupon_id=""),  # empty is no coupon
        *collects("collector", 4),  # no purchase: not in the model
    ])  # fmt: skip
    make(w, "promo", "promotion")
    service.compute(w.store, w.project, "promo", "2024-06-01")
    assert layers_of(w, "promo") == {
        "fan": "fanatic", "fan_few": "sensitive", "sens": "sensitive", "neut": "neutral", "indiff": "indifferent",
        "empty": "indifferent",
    }  # fmt: skip
    assert members_by_did(w, "promo")["fan"]["scores"] == {
        "purchases": 10, "coupon_purchases": 7, "coupon_share": 0.7, "coupons_collected": 3,
    }  # fmt: skip


# -- history and migration --------------------------------------------------------------------------


def lifecycle_expected(
    frame: pd.DataFrame, as_of: date, sleeping: int = 30, churned: int = 90
) -> dict[str, str]:
    """The documented lifecycle precedence, in pandas: person -> layer as of the local day."""
    end = datetime.combine(as_of, datetime.min.time(), ZONE).astimezone(UTC)
    d = frame[frame.ts < end]
    out = {}
    for pid, g in d.groupby("person_id"):
        act = g[~g.event.isin(PASSIVE)]
        if act.empty:
            continue
        inactive = (as_of - act.ts.max().astimezone(ZONE).date()).days
        bought = (g.event == "purchase").any()
        follows, unfollows = g.ts[g.event == "follow"], g.ts[g.event == "unfollow"]
        following = len(follows) > 0 and (len(unfollows) == 0 or follows.max() > unfollows.max())
        if inactive >= churned:
            out[pid] = "churned"
        elif bought and inactive >= sleeping:
            out[pid] = "sleeping"
        elif bought:
            out[pid] = "buying"
        elif (g.event == "sign_up").any():
            out[pid] = "registered"
        else:
            out[pid] = "follower" if following else "potential"
    return out


def random_lifecycle(w: World, seed: int, persons: int = 120) -> None:
    rnd = random.Random(seed)
    names = ["$pageview", "$pageview", "follow", "unfollow", "sign_up", "purchase", "receive_coupon"]
    events = []
    for i in range(persons):
        for _ in range(rnd.randint(1, 6)):
            day = date(2024, 1, 1) + timedelta(days=rnd.randint(0, 180))
            events.append(ev(f"u{i}", rnd.choice(names), f"{day} {rnd.randint(0, 23):02d}:30", amount=1))
    w.add(events)


DATES = [date(2024, 3, 1), date(2024, 4, 15), date(2024, 6, 1), date(2024, 7, 1)]


def test_migration_matrix_between_two_as_of_computes(w: World) -> None:
    random_lifecycle(w, seed=11)
    make(w, "life", "lifecycle")
    service.compute(w.store, w.project, "life", "2024-04-15")
    service.compute(w.store, w.project, "life", "2024-06-01")
    frame = w.frame()
    a, b = lifecycle_expected(frame, date(2024, 4, 15)), lifecycle_expected(frame, date(2024, 6, 1))
    pairs = pd.Series([(a.get(p, "none"), b.get(p, "none")) for p in set(a) | set(b)]).value_counts()
    got = service.migration(w.store, w.project, {"name": "life", "from": "2024-04-15", "to": "2024-06-01"})
    assert {(c["from"], c["to"]): c["count"] for c in got["matrix"]} == dict(pairs)
    assert got["persons"] == len(set(a) | set(b))
    assert got["to_totals"]["none"] == 0 and got["from_totals"]["none"] == len(set(b) - set(a)) > 0
    for c in got["matrix"]:
        assert c["share"] == pytest.approx(c["count"] / got["from_totals"][c["from"]])
    # "on a date" reads history: the as-of computes, and the last state of a day in between
    assert layers_of(w, "life", on="2024-04-15") == {d: a[p] for d, p in w.persons().items() if p in a}
    assert layers_of(w, "life", on="2024-05-20") == {d: a[p] for d, p in w.persons().items() if p in a}
    assert layers_of(w, "life", on="2024-04-14") == {}
    assert layers_of(w, "life") == {d: b[p] for d, p in w.persons().items() if p in b}


def history(store: Store, model: str) -> list[tuple[Any, ...]]:
    rows = (
        store.cursor()
        .execute(
            "SELECT person_id, layer, valid_from, valid_to FROM layer_history WHERE model = ? ORDER BY ALL",
            [model],
        )
        .fetchall()
    )
    return rows


def test_backfill_in_any_order_gives_the_same_history(w: World) -> None:
    random_lifecycle(w, seed=3)
    make(w, "in_order", "lifecycle")
    make(w, "shuffled", "lifecycle")
    for d in DATES:
        service.compute(w.store, w.project, "in_order", str(d))
    for d in (DATES[3], DATES[1], DATES[0], DATES[2], DATES[1]):  # DATES[1] twice: a recompute
        got = service.compute(w.store, w.project, "shuffled", str(d))
    assert got["changed"] == 0 and got["latest"] is False
    a, b = history(w.store, "in_order"), history(w.store, "shuffled")
    last = lifecycle_expected(w.frame(), DATES[-1])
    assert a == b and len(a) > len(last)  # every person of the last state, and some changes before
    # only changes are written: one row per person and stay, never two touching rows of one layer
    rows = pd.DataFrame(a, columns=["person", "layer", "start", "end"])
    for _, g in rows.groupby("person"):
        g = g.sort_values("start")
        assert not any((g.end.iloc[i] == g.start.iloc[i + 1]) and g.layer.iloc[i] == g.layer.iloc[i + 1]
                       for i in range(len(g) - 1))  # fmt: skip
    frame = w.frame()
    for d in DATES:
        exp = lifecycle_expected(frame, d)
        assert layers_of(w, "shuffled", on=str(d)) == {x: exp[p] for x, p in w.persons().items() if p in exp}
    # the current members are those of the latest reference time, whatever the order
    assert layers_of(w, "shuffled") == layers_of(w, "in_order")
    snaps = service.get(w.store, w.project, "shuffled")["snapshots"]
    assert [s["as_of"][:10] for s in snaps] == ["2024-02-29", "2024-04-14", "2024-05-31", "2024-06-30"]  # UTC


def test_compute_now_and_a_recompute_writes_nothing(w: World) -> None:
    today = datetime.now(ZONE).date()
    w.add([ev("a", "purchase", f"{today - timedelta(days=2)} 10:00", amount=5),
           ev("b", "$pageview", f"{today - timedelta(days=40)} 10:00")])  # fmt: skip
    make(w, "life", "lifecycle")
    first = service.compute(w.store, w.project, "life")
    second = service.compute(w.store, w.project, "life")
    assert (first["changed"], second["changed"]) == (2, 0) and second["latest"]
    assert layers_of(w, "life") == {"a": "buying", "b": "potential"}
    assert len(history(w.store, "life")) == 2
    assert layers_of(w, "life", on=str(today)) == {"a": "buying", "b": "potential"}


# -- definitions --------------------------------------------------------------------------------


def error_of(fn: Any, *args: Any) -> UserloopError:
    with pytest.raises(UserloopError) as info:
        fn(*args)
    return info.value


@pytest.mark.parametrize(
    ("definition", "code", "field"),
    [
        ({"name": "x", "kind": "pyramid"}, "unknown_kind", "kind"),
        ({"name": "X y", "kind": "rfm"}, "invalid_name", "name"),
        ({"kind": "rfm"}, "missing_field", "name"),
        ({"name": "x", "kind": "rfm", "colour": 1}, "unknown_field", "colour"),
        (
            {"name": "x", "kind": "lifecycle", "params": {"sleeping_days": 0}},
            "invalid_field",
            "params.sleeping_days",
        ),
        (
            {"name": "x", "kind": "lifecycle", "params": {"sleeping_days": 100}},
            "invalid_field",
            "params.churned_days",
        ),
        (
            {"name": "x", "kind": "lifecycle", "params": {"sleep_days": 10}},
            "unknown_field",
            "params.sleep_days",
        ),
        ({"name": "x", "kind": "rfm", "params": {"group_by": "m"}}, "invalid_field", "params.group_by"),
        (
            {"name": "x", "kind": "value_frequency", "params": {"value_threshold": "mean"}},
            "invalid_field",
            "params.value_threshold",
        ),
        (
            {"name": "x", "kind": "promotion", "params": {"fanatic_share": 1.5}},
            "invalid_field",
            "params.fanatic_share",
        ),
        (
            {"name": "x", "kind": "stage", "params": {"activity_events": []}},
            "invalid_field",
            "params.activity_events",
        ),
        (
            {"name": "x", "kind": "stage", "params": {"loyal_active_days": 40}},
            "invalid_field",
            "params.loyal_active_days",
        ),
        ({"name": "x", "kind": "rfm", "schedule": "every day"}, "invalid_schedule", "schedule"),
        (
            {"name": "x", "kind": "rfm", "params": {"purchase_event": "buy"}},
            "unknown_event",
            "params.purchase_event",
        ),
        (
            {"name": "x", "kind": "lifecycle", "params": {"activity_events": ["purchase", "nope"]}},
            "unknown_event",
            "params.activity_events[1]",
        ),
        (
            {"name": "x", "kind": "rfm", "params": {"amount_property": "price"}},
            "unknown_property",
            "params.amount_property",
        ),
    ],
)
def test_invalid_definitions_name_the_field_and_save_nothing(
    w: World, definition: dict[str, Any], code: str, field: str
) -> None:
    w.add([ev("a", "purchase", "2024-05-01 10:00", amount=1)])
    err = error_of(service.create, w.store, w.project, definition)
    assert (err.code, err.field, err.status) == (code, field, 400)
    assert service.list_models(w.store, w.project) == {"results": []}


def test_defaults_need_not_exist_and_duplicates_conflict(w: World) -> None:
    # a shop without follow or sign_up events can still have a lifecycle model (nobody in those layers)
    w.add([ev("a", "purchase", "2024-05-01 10:00", amount=1)])
    made = service.create(
        w.store, w.project, {"name": "life", "kind": "lifecycle", "schedule": "cron:0 3 * * *"}
    )
    assert made["params"]["sleeping_days"] == 30 and made["schedule"] == "cron:0 3 * * *"
    err = error_of(service.create, w.store, w.project, {"name": "life", "kind": "rfm"})
    assert (err.code, err.status) == ("layer_model_exists", 409)
    assert service.get(w.store, w.project, "life")["kind"] == "lifecycle"
    err = error_of(service.get, w.store, w.project, "nope")
    assert (err.code, err.status) == ("layer_model_not_found", 404)
    err = error_of(service.compute, w.store, w.project, "life", "2999-01-01")
    assert (err.code, err.field) == ("invalid_field", "as_of")
    err = error_of(
        service.migration, w.store, w.project, {"name": "life", "from": "2024-05-02", "to": "2024-05-01"}
    )
    assert (err.code, err.field) == ("bad_date_range", "to")
    err = error_of(service.members, w.store, w.project, {"name": "life", "layer": "vip"})
    assert (err.code, err.field) == ("unknown_layer", "layer")


def test_update_resets_history_and_delete_removes_everything(w: World) -> None:
    w.add([ev("a", "purchase", "2024-05-01 10:00", amount=1), ev("b", "$pageview", "2024-05-01 10:00")])
    make(w, "m", "lifecycle")
    service.compute(w.store, w.project, "m", "2024-05-10")
    # a description or schedule change keeps the data
    service.update(
        w.store, w.project, {"name": "m", "description": "main lifecycle", "schedule": "interval:3600"}
    )
    assert service.get(w.store, w.project, "m")["counts"]["buying"] == 1
    # invalid update: nothing changes
    err = error_of(service.update, w.store, w.project, {"name": "m", "params": {"sleeping_days": -1}})
    assert err.field == "params.sleeping_days"
    assert service.get(w.store, w.project, "m")["description"] == "main lifecycle"
    # new parameters: a new history
    got = service.update(
        w.store, w.project, {"name": "m", "params": {"sleeping_days": 5, "churned_days": 20}}
    )
    assert got["member_count"] is None and len(history(w.store, "m")) == 0
    service.compute(w.store, w.project, "m", "2024-05-10")
    assert layers_of(w, "m") == {"a": "sleeping", "b": "potential"}
    # a new kind
    got = service.update(w.store, w.project, {"name": "m", "kind": "rfm"})
    assert got["kind"] == "rfm" and got["params"]["group_by"] == "fm"
    service.compute(w.store, w.project, "m", "2024-05-10")
    assert layers_of(w, "m") == {"a": "lost"}  # one buyer: every score 1
    assert service.delete(w.store, w.project, "m") == {"deleted": "m"}
    for table in ("layer_models", "layer_members", "layer_history", "layer_snapshots"):
        assert w.store.query(f"SELECT count(*) AS n FROM {table}")[0]["n"] == 0


def test_recompute_of_a_past_date_after_late_events(w: World) -> None:
    """Late events before a computed date: recomputing that date rewrites it, later ones stay."""
    w.add([ev("x", "$pageview", "2024-03-01 10:00"), ev("y", "$pageview", "2024-03-01 10:00")])
    make(w, "life", "lifecycle")
    service.compute(w.store, w.project, "life", "2024-03-10")
    service.compute(w.store, w.project, "life", "2024-04-20")
    w.add([ev("x", "purchase", "2024-03-05 10:00", amount=1)])  # arrives late
    got = service.compute(w.store, w.project, "life", "2024-03-10")
    assert (got["changed"], got["latest"]) == (1, False)
    pid = w.persons()["x"]
    rows = [r[1:] for r in history(w.store, "life") if r[0] == pid]
    mar10, apr20 = local("2024-03-10 00:00"), local("2024-04-20 00:00")
    assert rows == [("buying", mar10, apr20), ("potential", apr20, None)]
    assert layers_of(w, "life", on="2024-03-10") == {"x": "buying", "y": "potential"}
    assert layers_of(w, "life") == {"x": "potential", "y": "potential"}  # not recomputed yet
    service.compute(w.store, w.project, "life", "2024-04-20")
    rows = [r[1:] for r in history(w.store, "life") if r[0] == pid]
    assert rows == [("buying", mar10, apr20), ("sleeping", apr20, None)]
    assert layers_of(w, "life") == {"x": "sleeping", "y": "potential"}


def test_names_and_values_are_bound_never_in_the_sql_text(w: World) -> None:
    from userloop.people.layers.compute import Ref, layer_sql
    from userloop.people.layers.model import PARAMS
    from userloop.query.sql import Ctx

    evil = "x'); DROP TABLE events; --"
    ctx = Ctx(w.store, w.project)
    ref = Ref(at=local("2024-06-01 00:00"), day=date(2024, 6, 1))
    for kind, cls in PARAMS.items():
        fields = {f: evil for f in cls.__struct_fields__ if f.endswith(("_event", "_property"))}
        params = cls(
            **fields, **({"activity_events": [evil]} if "activity_events" in cls.__struct_fields__ else {})
        )
        sql = layer_sql(ctx, params, ref)
        assert evil not in sql and "DROP" not in sql, kind
        assert evil in ctx.params.values(), kind
        ctx.params = {}
