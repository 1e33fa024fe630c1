"""The simulated world: visitors, their devices, their planned sessions, and what happens in them.

Visitors are simulated one at a time, in order of arrival, each from a seeded :class:`random.Random`.
A visitor first gets a plan (session start times from a decaying activity rate, the session where
they register, the sessions where they buy, a second device, recall coupons while they sleep), then
the sessions are played: each emits a few events seconds or minutes apart. Events are appended to
column lists; ops are attached to the event that causes them (``(event index, op)``), so whoever
chunks the events can send each op with the chunk that holds its event.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from userloop.demo import reference as ref
from userloop.demo.catalogue import DAY, Catalogue, iso
from userloop.ingest.event import Merge, Op, ProfileOp, ProfileOpKind
from userloop.ingest.normalize import channel_for, domain_of

EVENT_TYPES = {"$pageview": "page", "$screen": "screen", "$identify": "identify"}
EVENT_NAMES = [
    "$pageview", "$screen", "$identify", "view_article", "read_article", "share", "collect", "follow",
    "unfollow", "sign_up", "login", "view_course", "start_lesson", "finish_lesson", "view_product",
    "add_to_cart", "receive_coupon", "use_coupon", "submit_order", "purchase", "search",
]  # fmt: skip
EVENT_CODE = {name: i for i, name in enumerate(EVENT_NAMES)}
_WECHATISH = ("wechat", "wechat_share", "menu", "recall")
_EXISTING_CHANNEL = {
    "wechat": "wechat",
    "miniprogram": "wechat_miniprogram",
    "direct": "direct",
    "search": "search",
}


@dataclass
class Device:
    idx: int
    anon: str | None
    platform: str  # web | ios | android | mini | server
    os: str | None
    browser: str | None
    device_type: str | None
    lag: float  # seconds between a release and this device running it
    logged_in: bool = False
    linked: bool = False  # the person behind anon is known (registered before the window)
    merged: bool = False  # a Merge(user, anon) has been issued
    seen: bool = False  # anon has been the distinct id of an event


@dataclass
class Plan:
    start: float
    kind: str = "session"  # session | recall_coupon
    device: int = 0
    source: str = "direct"
    register: bool = False
    purchase: bool = False
    recall: int = 0  # which recall campaign (1-based) sent the visitor back


@dataclass
class Visitor:
    idx: int
    arrival: float
    source: str
    existing: bool
    city: int
    gender: str
    age: int
    interests: list[str]
    sens: int
    eng: float
    will_register: bool
    buyer: bool
    uid: str | None = None
    registered_at: float | None = None
    devices: list[Device] = field(default_factory=list)
    follower: bool = False
    wallet: dict[str, float] = field(default_factory=dict)  # coupon id -> expires at
    enrolled: dict[str, int] = field(default_factory=dict)  # course id -> next lesson
    member_until: float = 0.0
    promo_claimed: bool = False
    inviter: str | None = None
    share_id: str | None = None


def _geometric(rnd: random.Random, mean: float) -> int:
    """0, 1, 2, ... with the given mean."""
    if mean <= 0:
        return 0
    p = 1.0 / (1.0 + mean)
    return int(math.log(1.0 - rnd.random()) / math.log(1.0 - p))


def _pick(rnd: random.Random, pairs: list[tuple[Any, float]]) -> Any:
    return rnd.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]


class World:
    def __init__(self, project_id: int, users: int, days: int, seed: int, start: float, start_weekday: int):
        self.project_id = project_id
        self.days = days
        self.start = start
        self.end = start + days * DAY
        self.start_weekday = start_weekday
        self.rnd = random.Random(f"userloop-demo:{seed}")
        self.cat = Catalogue(random.Random(f"userloop-demo:{seed}:catalogue"), start, days)
        self.promo = (start + round(days * 0.62) * DAY, start + (round(days * 0.62) + 7) * DAY)
        self.ad = (start + round(days * 0.2) * DAY, start + round(days * 0.35) * DAY)
        self.recalls = [start + round(days * f) * DAY + 2 * 3600 for f in (1 / 3, 2 / 3)]  # 10:00 local
        self.releases = {
            p: [(v, start + f * days * DAY if f >= 0 else -math.inf) for v, f in rel]
            for p, rel in (("app", ref.APP_RELEASES), ("mini", ref.MINI_RELEASES))
        }
        # event columns
        self.ev_t: list[float] = []
        self.ev_code: list[int] = []
        self.ev_user: list[int] = []
        self.ev_dev: list[int] = []
        self.ev_src: list[int] = []
        self.ev_did: list[str] = []
        self.ev_anon: list[str | None] = []
        self.ev_uid: list[str | None] = []
        self.ev_url: list[str | None] = []
        self.ev_path: list[str | None] = []
        self.ev_props: list[dict[str, Any]] = []
        self.ops: list[tuple[int, Op]] = []
        self.devices: list[Device] = []
        self.sources: dict[tuple[str | None, ...], int] = {}
        self.source_rows: list[tuple[str | None, ...]] = []
        self.orders = 0
        self.server = Device(0, None, "server", None, None, None, 0.0)
        self.devices.append(self.server)
        self.visitors = self._population(users)
        # the session being played
        self.u: Visitor = self.visitors[0] if self.visitors else None  # type: ignore[assignment]
        self.dev = self.server
        self.src = 0
        self.t = start
        self.url: str | None = None
        self.path: str | None = None
        self.query: str | None = None

    # -- time -------------------------------------------------------------------------------
    def day(self, t: float) -> int:
        return int((t - self.start) // DAY)

    def weekend(self, day: int) -> bool:
        return (self.start_weekday + day) % 7 >= 5

    def time_in_day(self, day: int) -> float:
        hours = ref.HOURS_WEEKEND if self.weekend(day) else ref.HOURS_WEEKDAY
        hour = self.rnd.choices(range(24), hours)[0]
        return self.start + day * DAY + hour * 3600 + self.rnd.random() * 3600

    def local_date(self, t: float, fmt: str) -> str:
        return datetime.fromtimestamp(t + 8 * 3600, UTC).strftime(fmt)

    def _process(self, t0: float, lam: float, tau_days: float) -> list[float]:
        """Session times after ``t0``: a Poisson process whose daily rate decays (churn)."""
        out: list[float] = []
        t = t0
        while True:
            rate = lam * math.exp(-(t - t0) / (tau_days * DAY))
            if rate < 0.004:
                return out
            t += self.rnd.expovariate(rate) * DAY
            if t >= self.end:
                return out
            d = self.day(t)
            if self.weekend(d) and self.rnd.random() > ref.WEEKEND_ACTIVITY:
                continue
            ts = self.time_in_day(d)
            if ts > t0 + 3600:
                out.append(ts)

    # -- population -------------------------------------------------------------------------
    def _population(self, n: int) -> list[Visitor]:
        rnd = self.rnd
        sources = list(ref.ACQUISITION)
        base = [ref.ACQUISITION[s][0] for s in sources]
        cells: list[tuple[int, int]] = []
        weights: list[float] = []
        for d in range(self.days):
            t = self.start + d * DAY
            f = (1 + 0.3 * d / self.days) * (0.85 if self.weekend(d) else 1.0)
            f *= 1.5 if self.promo[0] <= t < self.promo[1] else 1.0
            for i, s in enumerate(sources):
                spike = 4.0 if s == "douyin" and self.ad[0] <= t < self.ad[1] else 1.0
                cells.append((d, i))
                weights.append(base[i] * f * spike)
        out = []
        n_existing = round(n * 0.12)
        for i in range(n):
            existing = i < n_existing
            if existing:
                arrival, source = (
                    self.start,
                    rnd.choices(["wechat", "miniprogram", "direct", "search"], [4, 2, 2, 1])[0],
                )
            else:
                day, si = rnd.choices(cells, weights)[0]
                arrival, source = self.time_in_day(day), sources[si]
            young = source in ("bilibili", "douyin")
            age = rnd.choices(
                range(len(ref.AGE_GROUPS)), ref.AGE_WEIGHTS_YOUNG if young else ref.AGE_WEIGHTS
            )[0]
            gender = _pick(rnd, ref.GENDERS)
            cat_w = [
                c[2] * (1.5 if (gender == "male") == (c[0] in ("programming", "data")) else 1.0)
                for c in ref.CATEGORIES
            ]
            interests: list[str] = []
            for _ in range(rnd.choices([1, 2, 3], [0.45, 0.4, 0.15])[0]):
                k = rnd.choices(ref.CATEGORY_KEYS, cat_w)[0]
                if k not in interests:
                    interests.append(k)
            _, p_reg, buy_f = ref.ACQUISITION[source]
            eng = rnd.lognormvariate(0, 0.45)
            will_register = existing or rnd.random() < 1.04 * p_reg * min(eng, 1.6)
            p_buy = 0.23 * buy_f * ref.AGE_BUY_FACTOR[age] * (1.25 if existing else 1.0)
            out.append(
                Visitor(
                    idx=i, arrival=arrival, source=source, existing=existing,
                    city=rnd.choices(range(len(ref.CITIES)), [c[2] for c in ref.CITIES])[0],
                    gender=gender, age=age, interests=interests,
                    sens=rnd.choices(range(4), ref.SENSITIVITY_WEIGHTS)[0], eng=eng,
                    will_register=will_register, buyer=will_register and rnd.random() < p_buy,
                )
            )  # fmt: skip
        ids = rnd.sample(range(100000, 1000000), sum(v.will_register for v in out))
        for v, uid in zip((v for v in out if v.will_register), ids, strict=False):
            v.uid = str(uid)
        out.sort(key=lambda v: (v.arrival, v.idx))
        return out

    def _new_device(self, platform: str, source: str) -> Device:
        rnd = self.rnd
        browser: str | None = None
        if platform == "web":
            desktop_p = {
                "search": 0.55,
                "paid_search": 0.5,
                "bilibili": 0.45,
                "zhihu": 0.4,
                "direct": 0.6,
            }.get(source, 0.06)
            if rnd.random() < desktop_p:
                os_ = rnd.choices(["Windows", "macOS"], [0.72, 0.28])[0]
                browsers = (
                    [("Chrome", 0.6), ("Edge", 0.32), ("Firefox", 0.08)]
                    if os_ == "Windows"
                    else [("Safari", 0.45), ("Chrome", 0.55)]
                )
                browser = _pick(rnd, browsers)
                if source in _WECHATISH:
                    browser = "WeChat"
                kind = "Desktop"
            else:
                os_ = rnd.choices(["iOS", "Android", "HarmonyOS"], [0.42, 0.5, 0.08])[0]
                browser = "Safari" if os_ == "iOS" else "Chrome"
                browser = {"wechat": "WeChat", "wechat_share": "WeChat", "menu": "WeChat", "recall": "WeChat",
                           "weibo": "Weibo", "douyin": "Douyin"}.get(source, browser)  # fmt: skip
                kind = "Tablet" if os_ == "iOS" and rnd.random() < 0.05 else "Mobile"
        elif platform == "ios":
            os_, kind = "iOS", ("Tablet" if rnd.random() < 0.07 else "Mobile")
        elif platform == "android":
            os_, kind = rnd.choices(["Android", "HarmonyOS"], [0.85, 0.15])[0], "Mobile"
        else:  # mini program
            os_, kind, browser = (
                rnd.choices(["iOS", "Android", "HarmonyOS"], [0.42, 0.5, 0.08])[0],
                "Mobile",
                "WeChat",
            )
        if platform == "mini":
            lag = rnd.expovariate(1 / 0.7) * DAY
        else:
            lag = rnd.expovariate(1 / (25 if rnd.random() < 0.12 else 4)) * DAY
        dev = Device(
            len(self.devices),
            str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            platform,
            os_,
            browser,
            kind,
            lag,
        )
        self.devices.append(dev)
        return dev

    def _first_platform(self, source: str) -> str:
        r = self.rnd.random()
        if source == "miniprogram":
            return "mini"
        if source == "douyin" and r < 0.25:
            return "ios" if r < 0.1 else "android"
        if source == "direct" and r < 0.55:
            return "ios" if r < 0.25 else "android"
        return "web"

    def _second_platform(self, first: Device) -> str:
        r = self.rnd.random()
        if first.platform == "web":
            if first.device_type == "Desktop":
                return "ios" if r < 0.4 else "android"
            return ("ios" if first.os == "iOS" else "android") if r < 0.7 else "mini"
        if first.platform == "mini":
            return ("ios" if first.os == "iOS" else "android") if r < 0.7 else "web"
        return "mini" if r < 0.5 else "web"

    # -- planning ---------------------------------------------------------------------------
    def plan(self, u: Visitor) -> list[Plan]:
        rnd = self.rnd
        lam = rnd.lognormvariate(math.log(0.33), 0.6) * u.eng * (1.35 if u.buyer else 1.0)
        reg = -1
        if u.existing:
            times = (
                self._process(self.start, lam * 0.8, 10 + rnd.expovariate(1 / 35))
                if rnd.random() < 0.55
                else []
            )
            u.registered_at = self.start - rnd.uniform(5, 700) * DAY
            dev = self._new_device(
                rnd.choices(["web", "ios", "android", "mini"], [0.35, 0.25, 0.25, 0.15])[0], u.source
            )
            dev.logged_in = dev.linked = True
            u.devices.append(dev)
            if rnd.random() < 0.3:
                u.member_until = self.start + rnd.uniform(-60, 240) * DAY
        else:
            u.devices.append(self._new_device(self._first_platform(u.source), u.source))
            if u.will_register:
                tau = 6 + rnd.expovariate(1 / 18) + (10 if u.buyer else 0)
                times = [u.arrival, *self._process(u.arrival, lam, tau)]
                reg = min(rnd.choices([0, 1, 2, 3], [0.45, 0.3, 0.15, 0.1])[0], len(times) - 1)
            else:
                times = [u.arrival]
                for _ in range(_geometric(rnd, 0.7 * u.eng)):
                    t = times[-1] + rnd.expovariate(1 / 3.5) * DAY
                    if t >= self.end:
                        break
                    ts = self.time_in_day(self.day(t))
                    times.append(ts if ts > times[-1] + 3600 else t)
        plans = [Plan(t) for t in sorted(times)]
        if plans and not u.existing:
            plans[0].source = u.source
            if reg >= 0:
                plans[reg].register = True
        reg_time = u.registered_at if u.existing else (plans[reg].start if reg >= 0 else None)
        # recall coupons for sleeping members, some come back
        if reg_time is not None:
            for k, r in enumerate(self.recalls, 1):
                if reg_time > r - DAY or any(
                    r - 14 * DAY <= p.start < r + DAY for p in plans if p.kind == "session"
                ):
                    continue
                plans.append(Plan(r + rnd.uniform(0, 7200), kind="recall_coupon", recall=k))
                if rnd.random() < ref.RECALL_REACTIVATE[u.sens] * (1.5 if u.buyer else 1.0):
                    first = r + 600 + rnd.expovariate(1 / 0.6) * DAY
                    if first < self.end:
                        plans.append(
                            Plan(
                                first, source="recall", recall=k, purchase=rnd.random() < 0.1 + 0.08 * u.sens
                            )
                        )
                        plans += [Plan(t) for t in self._process(first, 0.45 * u.eng, 6)]
                plans.sort(key=lambda p: p.start)
        sessions = [p for p in plans if p.kind == "session"]
        after = [i for i, p in enumerate(sessions) if reg_time is not None and p.start >= reg_time]
        later = [i for i in after if not sessions[i].register]
        # a second device once registered (logging in there links it), used more and more
        if later and rnd.random() < (0.3 + 0.2 * u.buyer):
            j = later[rnd.randrange(len(later))]
            if j > 0 or u.existing:
                u.devices.append(self._new_device(self._second_platform(u.devices[0]), "direct"))
                for i in range(j, len(sessions)):
                    sessions[i].device = 1 if i == j or rnd.random() < 0.65 else 0
        for i, p in enumerate(sessions):
            if (i > 0 or u.existing) and p.source == "direct" and not p.recall:
                p.source = self._return_source(u, u.devices[p.device])
        # the sessions where a buyer buys: newcomer coupons, the promotion and recalls pull
        if u.buyer and after:
            w = []
            for i in after:
                p = sessions[i]
                x = 0.4 if p.register else 1.0
                if reg_time is not None and p.start - reg_time < 7 * DAY and u.sens >= 1:
                    x *= 3
                if self.promo[0] <= p.start < self.promo[1]:
                    x *= (1, 2, 4, 5)[u.sens]
                w.append(x * (4 if p.recall else 1))
            for _ in range(min(1 + _geometric(rnd, 0.7), len(after))):
                k = rnd.choices(range(len(after)), w)[0]
                sessions[after[k]].purchase = True
                w[k] = 0.0
                if not any(w):
                    break
        return plans

    def _return_source(self, u: Visitor, dev: Device) -> str:
        if dev.platform == "mini":
            return "miniprogram"
        if dev.platform in ("ios", "android"):
            return "push" if self.rnd.random() < 0.22 else "direct"
        again = (
            "wechat" if u.source in ("wechat_share", "miniprogram") else u.source
        )  # back the way they came
        mix = [("direct", 0.35), ("wechat", 0.3), ("search", 0.12), ("menu", 0.08), (again, 0.15)]
        return str(_pick(self.rnd, mix))

    # -- emitting ---------------------------------------------------------------------------
    def source_index(self, row: tuple[str | None, ...]) -> int:
        idx = self.sources.get(row)
        if idx is None:
            idx = self.sources[row] = len(self.source_rows)
            self.source_rows.append(row)
        return idx

    def emit(self, name: str, props: dict[str, Any]) -> int:
        u, dev = self.u, self.dev
        uid: str | None = None
        anon: str | None = None
        if dev.platform == "server":  # the user id once known, else the WeChat-linked visitor id
            if u.registered_at is not None and u.registered_at <= self.t:
                uid = u.uid
            did = uid or u.devices[0].anon
        elif dev.logged_in:
            did = uid = u.uid
            anon = dev.anon
        else:
            did = anon = dev.anon
        assert did is not None
        seq = len(self.ev_t)
        self.ev_t.append(self.t)
        self.ev_code.append(EVENT_CODE[name])
        self.ev_user.append(u.idx)
        self.ev_dev.append(dev.idx)
        self.ev_src.append(self.src)
        self.ev_did.append(did)
        self.ev_anon.append(anon)
        self.ev_uid.append(uid)
        self.ev_url.append(self.url)
        self.ev_path.append(self.path)
        self.ev_props.append(props)
        if did == dev.anon and dev.platform != "server":
            dev.seen = True
            if dev.linked and not dev.merged:  # linked before the window: the store learns it now
                self.merge(seq, u, dev)
        return seq

    def merge(self, seq: int, u: Visitor, dev: Device) -> None:
        """Link the device's anonymous id to the user, with event ``seq``."""
        assert u.uid is not None and dev.anon is not None
        self.op(seq, Merge(project_id=self.project_id, distinct_id=u.uid, other_id=dev.anon))
        dev.merged = True

    def op(self, seq: int, op: Op) -> None:
        self.ops.append((seq, op))

    def profile(self, seq: int, kind: ProfileOpKind, props: dict[str, Any]) -> None:
        """A profile operation on the distinct id of event ``seq``, sent with that event."""
        self.op(
            seq,
            ProfileOp(project_id=self.project_id, distinct_id=self.ev_did[seq], op=kind, properties=props),
        )

    def wait(self, lo: float, hi: float) -> None:
        self.t += self.rnd.uniform(lo, hi)

    # -- identity ---------------------------------------------------------------------------
    def identify(self, how: str, props: dict[str, Any]) -> int:
        """sign_up or login on the current device: from here on its events carry the user id."""
        u, dev = self.u, self.dev
        dev.logged_in = True
        seq = self.emit(how, props)
        self.wait(0.05, 0.8)
        self.emit("$identify", {"method": how, "$anon_distinct_id": dev.anon})
        if not dev.merged:
            if dev.seen:
                self.merge(seq, u, dev)
            else:
                dev.linked = True
        return seq

    def first_visit_profile(self, u: Visitor, first: int) -> None:
        city, _, _ = ref.CITIES[u.city]
        props: dict[str, Any] = {"city": city, "first_channel": self.channel_of(first), "first_visit_at": iso(self.ev_t[first]),
                                 "first_platform": u.devices[0].platform}  # fmt: skip
        if u.existing and u.registered_at is not None:
            props["first_channel"] = _EXISTING_CHANNEL[u.source]
            props["first_visit_at"] = iso(u.registered_at - DAY * self.rnd.uniform(0, 20))
            self.profile(first, "set_once", props)
            self.profile(first, "set_once", self.member_props(u, u.registered_at))
            self.profile(
                first, "set", {"interests": u.interests, "member_level": self.level(u, self.ev_t[first])}
            )
        else:
            self.profile(first, "set_once", props)

    def member_props(self, u: Visitor, at: float) -> dict[str, Any]:
        return {"registered_at": iso(at), "gender": u.gender, "age_group": ref.AGE_GROUPS[u.age]}

    def level(self, u: Visitor, t: float) -> str:
        if u.member_until > t:
            return "svip" if u.member_until - t > 40 * DAY else "vip"
        return "normal"

    def channel_of(self, seq: int) -> str:
        s = self.source_rows[self.ev_src[seq]]
        return channel_for(s[0], s[1], domain_of(s[5]))
