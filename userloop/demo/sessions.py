"""Playing the planned sessions: landing pages, reading, learning, shopping, signing up, buying.

Each session starts from its source (utm tags and the external referrer, carried by all its events),
lands on a page that fits the source (a pushed article, an advertised course, the home page), then
takes a few steps whose mix depends on the visitor's state: anonymous visitors read and browse,
members also learn, enrolled learners mostly continue their courses, and buyers buy in the sessions
their plan marks.
"""

from __future__ import annotations

import bisect
import math
from typing import Any
from urllib.parse import urlencode

from userloop.demo import reference as ref
from userloop.demo.catalogue import DAY, Article, Course, Product, iso
from userloop.demo.world import _WECHATISH, Plan, Visitor, World, _geometric, _pick

_NO_SOURCE: tuple[str | None, ...] = (None, None, None, None, None, None)
_UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")


class Simulation(World):
    def __init__(self, project_id: int, users: int, days: int, seed: int, start: float, start_weekday: int):
        super().__init__(project_id, users, days, seed, start, start_weekday)
        self.courses = {c.id: c for c in self.cat.courses}
        alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
        self.videos = ["BV1" + "".join(self.rnd.choices(alphabet, k=9)) for _ in range(12)]
        self.share_times: list[float] = []
        self.share_rows: list[tuple[str, str, Article]] = []
        self.src_key = "direct"
        self.last = -math.inf
        self.pending: list[tuple[float, str, dict[str, Any]]] = []
        self.share_article: Article | None = None

    def run(self) -> None:
        for u in self.visitors:
            self.play(u)

    def play(self, u: Visitor) -> None:
        self.u = u
        first_seq = len(self.ev_t)
        plans = self.plan(u)
        self.share_article = None
        if plans and plans[0].source == "wechat_share" and not self.find_share(u):
            plans[0].source = "wechat"
        self.last = -math.inf
        self.pending = []
        for p in plans:
            if p.kind == "recall_coupon":
                self.recall_coupon(p)
            else:
                self.session(p)
        for t, name, props in self.pending:
            seq = self.server_event(t, name, props)
            self.profile(seq, "set", {"wechat_follower": False})
        if len(self.ev_t) > first_seq:
            first = min(range(first_seq, len(self.ev_t)), key=self.ev_t.__getitem__)
            self.first_visit_profile(u, first)

    def find_share(self, u: Visitor) -> bool:
        lo = bisect.bisect_left(self.share_times, u.arrival - 2 * DAY)
        hi = bisect.bisect_left(self.share_times, u.arrival)
        if hi <= lo:
            return False
        u.share_id, u.inviter, self.share_article = self.share_rows[self.rnd.randrange(lo, hi)]
        return True

    def server_event(self, t: float, name: str, props: dict[str, Any]) -> int:
        saved = (self.dev, self.src, self.url, self.path, self.t)
        self.dev, self.src, self.url, self.path, self.t = (
            self.server,
            self.source_index(_NO_SOURCE),
            None,
            None,
            t,
        )
        seq = self.emit(name, props)
        self.dev, self.src, self.url, self.path, self.t = saved
        return seq

    def recall_coupon(self, p: Plan) -> None:
        k = self.cat.coupons["RECALL20"]
        expires = p.start + k.valid_days * DAY
        self.server_event(p.start, "receive_coupon", {**self.coupon_props(k.id, expires), "send_channel": "wechat_template",
                                                      "campaign": f"recall_{p.recall}"})  # fmt: skip
        self.u.wallet[k.id] = expires

    def coupon_props(self, coupon_id: str, expires: float) -> dict[str, Any]:
        k = self.cat.coupons[coupon_id]
        return {"coupon_id": k.id, "coupon_type": k.kind, "discount": k.discount, "threshold": k.threshold,
                "expires_at": iso(expires)}  # fmt: skip

    # -- a session --------------------------------------------------------------------------
    def session(self, p: Plan) -> None:
        u, rnd = self.u, self.rnd
        self.t = max(p.start, self.last + 31 * 60)
        if self.t >= self.end:
            return
        dev = self.dev = u.devices[p.device]
        if dev.platform == "web" and dev.logged_in and rnd.random() < 0.12:
            dev.logged_in = False  # the cookie expired
        landing = self.session_source(p)
        member = u.registered_at is not None
        first_visit = p.start == u.arrival and not u.existing
        bounce = not p.register and not p.purchase and rnd.random() < (0.36 if first_visit else 0.14)
        steps = 0 if bounce else 1 + _geometric(rnd, u.eng * (1.7 if member else 1.1))
        login_at = reg_at = -1
        if (
            member
            and not dev.logged_in
            and (p.purchase or not (dev.merged or dev.linked) or rnd.random() < 0.5)
        ):
            login_at = rnd.randint(0, min(1, steps))
        if p.register:
            reg_at = rnd.randint(0, min(2, steps))
        self.land(*landing)
        for i in range(steps + 1):
            if i == login_at:
                self.wait(2, 15)
                self.login()
            if i == reg_at:
                self.wait(2, 15)
                self.sign_up()
            if i == 1:
                self.claim_promo(p)
            if i == steps:
                break
            self.wait(3, 20)
            self.step()
        if dev.logged_in:
            if p.purchase:
                self.wait(5, 30)
                self.buy()
            elif rnd.random() < 0.012:
                self.wait(5, 30)
                self.buy(abandon=True)
        self.last = self.t

    def session_source(self, p: Plan) -> tuple[str, Any, str]:
        """Sets the session's source columns; returns the landing (kind, item, how it was found)."""
        rnd, s, d = self.rnd, p.source, self.day(self.t)
        row: tuple[str | None, ...] = _NO_SOURCE
        landing: tuple[str, Any, str] = ("home", None, "direct")
        extra = {}
        if s == "wechat":
            a = self.cat.recent_article(rnd, d)
            row = ("wechat", "article", "oa_push_" + self.local_date(a.published, "%m%d"), a.id, None, None)
            landing = ("article", a, "push")
        elif s == "wechat_share":
            shared = self.share_article
            row = ("wechat", "share", "user_share", shared.id if shared else None, None, None)
            landing = ("article", shared, "share")
            extra = {"share_id": self.u.share_id}
        elif s == "menu":
            row = ("wechat", "menu", "oa_menu", None, None, None)
        elif s == "recall":
            row = ("wechat", "template_msg", f"recall_{p.recall}", None, None, None)
            landing = ("activity", None, "recall")
        elif s == "miniprogram":
            row = ("wechat_miniprogram", "miniprogram", None, _pick(rnd, ref.MINI_SCENES), None, None)
        elif s == "weibo":
            a = self.cat.article(rnd, d, self.interest())
            row, landing = (
                ("weibo", "social", "weibo_post", a.id, None, "https://weibo.com/"),
                ("article", a, "social"),
            )
        elif s == "douyin":
            if self.ad[0] <= self.t < self.ad[1] and rnd.random() < 0.6:
                c = self.cat.course(rnd, d, self.interest(), paid_only=True)
                row, landing = (
                    ("douyin", "feed_ad", f"dy_ad_{c.category}", c.id, None, None),
                    ("course", c, "ad"),
                )
            else:
                row = ("douyin", "short_video", "dy_organic", None, None, "https://www.douyin.com/")
                landing = ("course", None, "video") if rnd.random() < 0.4 else ("article", None, "video")
        elif s == "bilibili":
            row = (
                "bilibili",
                "video",
                "up_collab",
                None,
                None,
                f"https://www.bilibili.com/video/{rnd.choice(self.videos)}/",
            )
            landing = ("course", None, "video") if rnd.random() < 0.5 else ("article", None, "video")
        elif s == "search":
            row = (None, None, None, None, None, _pick(rnd, ref.SEARCH_ENGINES))
            landing = ("article", None, "search")
        elif s == "paid_search":
            c = self.cat.course(rnd, d, self.interest(), paid_only=True)
            term = c.tags[0] + rnd.choice(["课程", "教程", "培训", "怎么学", "入门"])
            row, landing = (
                ("baidu", "cpc", f"sem_{c.category}", None, term, "https://www.baidu.com/"),
                ("course", c, "ad"),
            )
        elif s == "zhihu":
            row = (
                None,
                None,
                None,
                None,
                None,
                f"https://www.zhihu.com/question/{rnd.randint(10**8, 6 * 10**8)}",
            )
            landing = ("article", None, "social")
        elif s == "xiaohongshu":
            row, landing = (
                ("xiaohongshu", "social", "xhs_notes", None, None, None),
                ("article", None, "social"),
            )
        elif s == "push":
            row = ("app_push", "push", "daily_push", None, None, None)
            landing = ("article", self.cat.recent_article(rnd, d), "push")
        self.src = self.source_index(row)
        self.src_key = s
        query = [(k, v) for k, v in zip(_UTM_KEYS, row, strict=False) if v]
        self.query = urlencode(query + list(extra.items())) if query else None
        return landing

    def land(self, kind: str, item: Any, via: str) -> None:
        if kind == "article":
            extra = {"inviter_id": self.u.inviter, "share_id": self.u.share_id} if via == "share" else None
            self.read(item, via, extra)
        elif kind == "course":
            self.course_step(item, via)
        elif kind == "activity":
            self.page(
                "activity", "老朋友回归礼", "/activity/welcome-back", "pages/activity/index", "Activity"
            )
            self.wait(5, 40)
            self.course_step(None, "recall")
        else:
            self.page("home", "首页", "/", "pages/index/index", "Home")

    def interest(self) -> str | None:
        return self.rnd.choice(self.u.interests) if self.rnd.random() < 0.75 else None

    # -- pages and steps --------------------------------------------------------------------
    def page(
        self, kind: str, title: str, web: str, mini: str, screen: str, extra: dict[str, Any] | None = None
    ) -> None:
        plat = self.dev.platform
        props: dict[str, Any] = {"title": title, "page_type": kind}
        if plat == "web":
            self.url, self.path = ref.SITE + web + (f"?{self.query}" if self.query else ""), web
        elif plat == "mini":
            self.url, self.path = None, mini
        else:
            self.url = self.path = None
            props["screen_name"] = screen
        self.query = None
        if extra:
            props.update(extra)
        self.emit("$screen" if plat in ("ios", "android") else "$pageview", props)
        self.wait(0.5, 3)

    def step(self) -> None:
        u, logged = self.u, self.dev.logged_in
        active = any(n <= self.courses[c].lessons for c, n in u.enrolled.items())
        learn = (0.5 if active else 0.07) if logged else 0.0
        kind = self.rnd.choices(
            ["article", "course", "learn", "product", "search"], [0.56, 0.14, learn, 0.06, 0.08]
        )[0]
        if kind == "article":
            self.read(None, "feed")
        elif kind == "course":
            self.course_step(None, "feed")
        elif kind == "learn":
            self.learn()
        elif kind == "product":
            self.product_step(None, "feed")
        else:
            self.search()

    def read(self, a: Article | None, via: str, extra: dict[str, Any] | None = None) -> None:
        u, rnd = self.u, self.rnd
        a = a or self.cat.article(rnd, self.day(self.t), self.interest())
        extra = extra or {}
        self.page(
            "article",
            a.title,
            f"/articles/{a.id}",
            "pages/article/detail",
            "ArticleDetail",
            {"article_id": a.id, **extra},
        )
        self.emit("view_article", {"article_id": a.id, "category": a.category, "from": via, **extra})
        expected = a.words / 8.0  # about 480 characters a minute
        if rnd.random() < 0.5 + 0.2 * (a.category in u.interests):
            dur = expected * rnd.uniform(0.25, 1.15)
            self.t += dur
            self.emit("read_article", {"article_id": a.id, "category": a.category, "read_duration": round(dur),
                                       "read_percent": min(100, round(100 * dur / expected))})  # fmt: skip
            wechatish = self.src_key in _WECHATISH
            if rnd.random() < 0.04:
                self.wait(1, 5)
                self.emit("collect", {"item_type": "article", "item_id": a.id})
            if rnd.random() < 0.05 * (1.8 if wechatish else 1.0):
                self.wait(1, 8)
                self.share(a)
            if not u.follower and rnd.random() < (0.1 if wechatish else 0.01):
                self.wait(1, 6)
                self.follow()
        else:
            self.wait(4, 30)

    def share(self, a: Article) -> None:
        channel = _pick(self.rnd, ref.SHARE_CHANNELS)
        sid = f"sh{len(self.ev_t):07d}"
        seq = self.emit(
            "share", {"item_type": "article", "item_id": a.id, "share_channel": channel, "share_id": sid}
        )
        if channel.startswith("wechat"):
            i = bisect.bisect_right(self.share_times, self.t)
            self.share_times.insert(i, self.t)
            self.share_rows.insert(i, (sid, self.ev_did[seq], a))

    def follow(self) -> None:
        seq = self.emit("follow", {"account": ref.OFFICIAL_ACCOUNT, "from": "article"})
        self.u.follower = True
        self.profile(seq, "set", {"wechat_follower": True})
        self.profile(seq, "set_once", {"followed_at": iso(self.t)})
        if self.rnd.random() < 0.08:
            t = self.t + self.rnd.expovariate(1 / 15) * DAY
            if t < self.end:
                self.pending.append((t, "unfollow", {"account": ref.OFFICIAL_ACCOUNT}))

    def course_step(self, c: Course | None, via: str) -> None:
        u, rnd = self.u, self.rnd
        c = c or self.cat.course(rnd, self.day(self.t), self.interest())
        self.page(
            "course", c.title, f"/courses/{c.id}", "pages/course/detail", "CourseDetail", {"course_id": c.id}
        )
        self.emit("view_course", {"course_id": c.id, "category": c.category, "price": c.price, "from": via})
        self.wait(8, 90)
        if not self.dev.logged_in:
            return
        r = rnd.random()
        if c.id not in u.enrolled and r < 0.3:
            if c.price == 0:
                u.enrolled[c.id] = 1
            self.lesson(c, 1)
        elif r < 0.34:
            self.emit("collect", {"item_type": "course", "item_id": c.id})
        elif r < 0.37 and c.price > 0:
            self.emit("add_to_cart", self.item(c, "course"))

    def learn(self) -> None:
        u, rnd = self.u, self.rnd
        active = [c for c, n in u.enrolled.items() if n <= self.courses[c].lessons]
        if not active:
            c = self.cat.course(rnd, self.day(self.t), self.interest())
            self.course_step(c, "recommend")
            return
        c = self.courses[active[-1] if rnd.random() < 0.7 else rnd.choice(active)]
        for _ in range(3):
            if not self.lesson(c, u.enrolled[c.id]) or u.enrolled[c.id] > c.lessons or rnd.random() > 0.35:
                break
            self.wait(5, 40)

    def lesson(self, c: Course, no: int) -> bool:
        u, rnd = self.u, self.rnd
        self.page("lesson", f"{c.title} 第{no}讲", f"/courses/{c.id}/lessons/{no}", "pages/course/lesson", "Lesson",
                  {"course_id": c.id})  # fmt: skip
        props = {"course_id": c.id, "lesson_id": f"{c.id}-{no:02d}", "lesson_no": no,
                 "is_trial": c.id not in u.enrolled and no <= c.trial_lessons}  # fmt: skip
        self.emit("start_lesson", props)
        finished = rnd.random() < 0.62
        watched = c.lesson_minutes * 60 * (rnd.uniform(0.9, 1.0) if finished else rnd.uniform(0.05, 0.85))
        self.t += watched
        if finished:
            self.emit("finish_lesson", {**props, "duration": round(watched)})
            if c.id in u.enrolled:
                u.enrolled[c.id] = no + 1
        return finished

    def product_step(self, p: Product | None, via: str) -> None:
        rnd = self.rnd
        if p is None:
            books = [b for b in self.cat.books if b.topic in self.u.interests] or self.cat.books
            p = rnd.choice(books) if rnd.random() < 0.7 else rnd.choice(self.cat.memberships)
        self.page(
            "product",
            p.title,
            f"/products/{p.id}",
            "pages/product/detail",
            "ProductDetail",
            {"product_id": p.id},
        )
        self.emit("view_product", {"product_id": p.id, "category": p.category, "price": p.price, "from": via})
        self.wait(5, 60)
        if self.dev.logged_in and rnd.random() < 0.04:
            self.emit("add_to_cart", self.item(p, "product"))

    def search(self) -> None:
        rnd = self.rnd
        cat = self.interest() or rnd.choice(ref.CATEGORY_KEYS)
        keyword = rnd.choice(next(c[3] for c in ref.CATEGORIES if c[0] == cat))
        self.page("search", "搜索", "/search", "pages/search/index", "Search")
        self.emit("search", {"keyword": keyword, "result_count": rnd.randint(3, 60)})
        self.wait(2, 12)
        d = self.day(self.t)
        if rnd.random() < 0.6:
            self.read(self.cat.article(rnd, d, cat), "search")
        else:
            self.course_step(self.cat.course(rnd, d, cat), "search")

    @staticmethod
    def item(x: Course | Product, kind: str) -> dict[str, Any]:
        return {"item_type": kind, "item_id": x.id, "category": x.category, "price": x.price}

    # -- identity ---------------------------------------------------------------------------
    def sign_up(self) -> None:
        u, rnd = self.u, self.rnd
        self.page("signup", "注册", "/signup", "pages/account/signup", "SignUp")
        self.wait(15, 90)
        u.registered_at = self.t
        props: dict[str, Any] = {
            "method": "wechat" if self.dev.platform == "mini" or rnd.random() < 0.6 else "phone"
        }
        if u.inviter:
            props["inviter_id"] = u.inviter
        seq = self.identify("sign_up", props)
        channel = self.channel_of(seq)
        self.profile(seq, "set_once", {**self.member_props(u, self.t), "signup_channel": channel,
                                       "signup_platform": self.dev.platform})  # fmt: skip
        self.profile(seq, "set", {"interests": u.interests, "member_level": "normal"})
        if u.inviter:
            self.profile(seq, "set_once", {"inviter_id": u.inviter})
        self.wait(2, 10)
        k = self.cat.coupons["NEW10"]
        expires = self.t + k.valid_days * DAY
        self.emit("receive_coupon", self.coupon_props(k.id, expires))
        u.wallet[k.id] = expires

    def login(self) -> None:
        self.page("login", "登录", "/login", "pages/account/login", "Login")
        self.wait(5, 40)
        self.identify(
            "login",
            {"method": "wechat" if self.dev.platform == "mini" or self.rnd.random() < 0.7 else "phone"},
        )

    # -- coupons and orders -----------------------------------------------------------------
    def claim_promo(self, p: Plan) -> None:
        u = self.u
        if (
            not (self.promo[0] <= self.t < self.promo[1])
            or u.promo_claimed
            or not self.dev.logged_in
            or u.sens == 0
        ):
            return
        if not p.purchase and self.rnd.random() > 0.25 * u.sens:
            return
        u.promo_claimed = True
        for cid in ("PROMO30", "PROMO100") if self.rnd.random() < 0.5 else ("PROMO30",):
            self.wait(1, 6)
            self.emit("receive_coupon", {**self.coupon_props(cid, self.promo[1]), "campaign": "summer_sale"})
            u.wallet[cid] = self.promo[1]

    def buy(self, abandon: bool = False) -> None:
        u, rnd = self.u, self.rnd
        r = rnd.random()
        d = self.day(self.t)
        x: Course | Product
        if r < 0.18 and u.member_until < self.t + 7 * DAY:
            x = self.cat.memberships[0 if rnd.random() < 0.55 else 1]
        elif r < 0.33:
            x = rnd.choice([b for b in self.cat.books if b.topic in u.interests] or self.cat.books)
        else:
            x = self.cat.course(rnd, d, self.interest(), paid_only=True)
            for _ in range(3):
                if x.id not in u.enrolled:
                    break
                x = self.cat.course(rnd, d, None, paid_only=True)
        kind = "course" if isinstance(x, Course) else "product"
        if isinstance(x, Course):
            self.course_step(x, "recommend")
        else:
            self.product_step(x, "recommend")
        self.claim_promo(Plan(self.t, purchase=True))
        items = [{"item_type": kind, "item_id": x.id, "price": x.price, "quantity": 1}]
        if rnd.random() < 0.55:
            self.wait(2, 10)
            self.emit("add_to_cart", self.item(x, kind))
            self.wait(3, 30)
            self.page("cart", "购物车", "/cart", "pages/cart/index", "Cart")
        usable = [
            c for c, exp in u.wallet.items() if exp > self.t and self.cat.coupons[c].threshold <= x.price
        ]
        coupon = max(usable, key=lambda c: self.cat.coupons[c].discount) if usable else None
        if coupon and rnd.random() > ref.COUPON_USE[u.sens]:
            coupon = None
        discount = self.cat.coupons[coupon].discount if coupon else 0.0
        self.orders += 1
        order_id = f"O{self.local_date(self.t, '%Y%m%d')}{self.orders:06d}"
        pay = round(x.price - discount, 2)
        self.wait(3, 20)
        self.page("order", "确认订单", "/orders/confirm", "pages/order/confirm", "OrderConfirm")
        order = {"order_id": order_id, "items": items, "original_amount": x.price, "discount": discount,
                 "coupon_id": coupon, "amount": pay}  # fmt: skip
        self.emit("submit_order", order)
        if abandon:
            return
        if coupon:
            self.wait(0.2, 1)
            self.emit("use_coupon", {"coupon_id": coupon, "discount": discount, "order_id": order_id})
            del u.wallet[coupon]
        self.wait(8, 60)
        method = "wechat_pay" if self.dev.platform == "mini" or rnd.random() < 0.78 else "alipay"
        seq = self.emit("purchase", {**order, "revenue": pay, "pay_method": method})
        self.profile(seq, "increment", {"total_spent": pay, "order_count": 1})
        self.profile(seq, "set", {"last_purchase_at": iso(self.t)})
        self.profile(seq, "set_once", {"first_purchase_at": iso(self.t)})
        if isinstance(x, Course):
            u.enrolled[x.id] = 1
        elif x.member_level:
            u.member_until = max(u.member_until, self.t) + x.member_days * DAY
            self.profile(
                seq, "set", {"member_level": self.level(u, self.t), "member_until": iso(u.member_until)}
            )
