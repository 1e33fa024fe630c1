"""The demo organisation's catalogue: articles, courses with lessons, products, coupons.

Everything is drawn from a seeded :class:`random.Random`, with publication times placed relative to
the simulated window (articles keep appearing during it, two courses launch in it). The pickers
choose content the way feeds do: popular and recent articles more often, by category.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from userloop.demo.reference import CATEGORIES, CATEGORY_KEYS, GENERIC_TAGS, SITE
from userloop.ingest.event import ItemOp

DAY = 86400.0
_AUTHORS = ["林晓", "陈思远", "王一帆", "张可", "刘洋", "赵敏", "周航", "孙悦", "吴桐", "郑雨"]
_ARTICLE_TITLES = [
    "{t}入门：从零到一的完整路线",
    "一文读懂{t}",
    "{t}实战：10个常见的坑",
    "为什么你学不会{t}？",
    "{t}学习清单（收藏版）",
    "用{t}解决工作中的真实问题",
    "{t}高频面试题精讲",
    "三个月掌握{t}，我是怎么做到的",
]
_COURSE_TITLES = ["{t}系统课", "零基础学{t}", "{t}30天进阶营", "{t}实战项目课", "{t}体验课"]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    category: str
    tags: list[str]
    author: str
    published: float  # epoch seconds, UTC
    words: int
    popularity: float


@dataclass(frozen=True)
class Course:
    id: str
    title: str
    category: str
    tags: list[str]
    price: float
    lessons: int
    lesson_minutes: int
    trial_lessons: int
    level: str
    teacher: str
    published: float
    popularity: float


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    category: str  # book | membership
    topic: str | None  # the content category of a book
    tags: list[str]
    price: float
    member_level: str | None = None
    member_days: int = 0


@dataclass(frozen=True)
class Coupon:
    id: str
    title: str
    kind: str  # newcomer | campaign | recall
    discount: float
    threshold: float
    valid_days: int


class Picker:
    """Weighted choice by bisection over cumulative weights (one uniform draw per pick)."""

    def __init__(self, items: list[Any], weights: list[float]):
        self.items = items
        self.cum: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            self.cum.append(total)

    def __bool__(self) -> bool:
        return bool(self.items)

    def pick(self, rnd: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rnd.random() * self.cum[-1])]


class Catalogue:
    def __init__(self, rnd: random.Random, start: float, days: int):
        self.start = start
        self.days = days
        self.articles = self._articles(rnd, start, days)
        self.courses = self._courses(rnd, start, days)
        self.products = self._products(rnd)
        self.coupons = {
            c.id: c
            for c in [
                Coupon("NEW10", "新人立减10元", "newcomer", 10.0, 49.0, 7),
                Coupon("PROMO30", "大促满199减30", "campaign", 30.0, 199.0, 7),
                Coupon("PROMO100", "大促满699减100", "campaign", 100.0, 699.0, 7),
                Coupon("RECALL20", "老朋友回归券", "recall", 20.0, 49.0, 14),
            ]
        }
        self.books = [p for p in self.products if p.category == "book"]
        self.memberships = [p for p in self.products if p.category == "membership"]
        self._article_pickers: dict[tuple[int, str | None], Picker] = {}
        self._recent: dict[int, Picker] = {}
        self._course_pickers: dict[tuple[int, str | None], Picker] = {}

    # -- building ---------------------------------------------------------------------------
    @staticmethod
    def _articles(rnd: random.Random, start: float, days: int) -> list[Article]:
        published: list[float] = [start - rnd.uniform(1, 120) * DAY for _ in range(50)]
        for d in range(days):  # an evening push on most days
            if rnd.random() < 0.85:
                published.append(start + d * DAY + (12 + rnd.uniform(0, 1.5)) * 3600)  # 20:00-21:30 local
        published.sort()
        weights = [c[2] for c in CATEGORIES]
        out = []
        for i, pub in enumerate(published):
            key, _, _, topics = rnd.choices(CATEGORIES, weights)[0]
            topic = rnd.choice(topics)
            tags = [topic, *rnd.sample(GENERIC_TAGS, rnd.randint(1, 2))]
            out.append(
                Article(
                    id=f"a{i + 1:04d}",
                    title=rnd.choice(_ARTICLE_TITLES).format(t=topic),
                    category=key,
                    tags=tags,
                    author=rnd.choice(_AUTHORS),
                    published=pub,
                    words=rnd.randint(800, 5200),
                    popularity=rnd.lognormvariate(0, 0.8),
                )
            )
        return out

    @staticmethod
    def _courses(rnd: random.Random, start: float, days: int) -> list[Course]:
        out = []
        launches = {7: 0.40, 19: 0.62}  # two courses launch inside the window (one for the promotion)
        n = 0
        for key, _, weight, topics in CATEGORIES:
            for _ in range(3 + (weight >= 0.12)):
                n += 1
                topic = rnd.choice(topics)
                kind = rnd.choices(["free", "mini", "standard", "camp"], [0.12, 0.2, 0.48, 0.2])[0]
                price = {
                    "free": 0.0,
                    "mini": rnd.choice([9.9, 19.9, 29.0]),
                    "standard": rnd.choice([99.0, 149.0, 199.0, 299.0, 399.0]),
                    "camp": rnd.choice([699.0, 999.0, 1299.0, 1999.0]),
                }[kind]
                title = (_COURSE_TITLES[4] if kind == "free" else rnd.choice(_COURSE_TITLES[:4])).format(
                    t=topic
                )
                lessons = {"free": 3, "mini": 6, "standard": 16, "camp": 28}[kind] + rnd.randint(0, 6)
                published = (
                    start + launches[n] * days * DAY + 11 * 3600
                    if n in launches
                    else start - rnd.uniform(30, 400) * DAY
                )
                out.append(
                    Course(
                        id=f"c{n:03d}",
                        title=title,
                        category=key,
                        tags=[
                            topic,
                            rnd.choice(["入门", "进阶", "实战"]),
                            *(["免费"] if kind == "free" else []),
                        ],
                        price=price,
                        lessons=lessons,
                        lesson_minutes=rnd.randint(8, 25),
                        trial_lessons=lessons if kind == "free" else rnd.randint(1, 2),
                        level=rnd.choice(["beginner", "intermediate", "advanced"]),
                        teacher=rnd.choice(_AUTHORS),
                        published=published,
                        popularity=rnd.lognormvariate(0, 0.6) * (1.6 if n in launches else 1.0),
                    )
                )
        return out

    @staticmethod
    def _products(rnd: random.Random) -> list[Product]:
        out = []
        for i, (key, label, _, topics) in enumerate(CATEGORIES):
            topic = rnd.choice(topics)
            out.append(
                Product(
                    id=f"p{i + 1:03d}",
                    title=f"《{topic}从入门到精通》",
                    category="book",
                    topic=key,
                    tags=[topic, label, "图书"],
                    price=rnd.choice([39.0, 49.0, 59.0, 69.0, 89.0, 129.0]),
                )
            )
        out.append(Product("m001", "月度会员", "membership", None, ["会员"], 30.0, "vip", 31))
        out.append(Product("m002", "年度会员", "membership", None, ["会员", "超值"], 298.0, "svip", 365))
        return out

    # -- as items ---------------------------------------------------------------------------
    def item_ops(self, project_id: int) -> list[ItemOp]:
        ops = []
        for a in self.articles:
            props = {"title": a.title, "category": a.category, "tags": a.tags, "author": a.author,
                     "published_at": iso(a.published), "word_count": a.words, "url": f"{SITE}/articles/{a.id}"}  # fmt: skip
            ops.append(
                ItemOp(project_id=project_id, item_type="article", item_id=a.id, op="set", properties=props)
            )
        for c in self.courses:
            props = {"title": c.title, "category": c.category, "tags": c.tags, "price": c.price,
                     "lessons": c.lessons, "lesson_minutes": c.lesson_minutes, "trial_lessons": c.trial_lessons,
                     "level": c.level, "teacher": c.teacher, "published_at": iso(c.published),
                     "url": f"{SITE}/courses/{c.id}"}  # fmt: skip
            ops.append(
                ItemOp(project_id=project_id, item_type="course", item_id=c.id, op="set", properties=props)
            )
        for p in self.products:
            props = {"title": p.title, "category": p.category, "tags": p.tags, "price": p.price,
                     "url": f"{SITE}/products/{p.id}"}  # fmt: skip
            if p.topic:
                props["topic"] = p.topic
            if p.member_level:
                props.update(member_level=p.member_level, member_days=p.member_days)
            ops.append(
                ItemOp(project_id=project_id, item_type="product", item_id=p.id, op="set", properties=props)
            )
        for k in self.coupons.values():
            props = {"title": k.title, "coupon_type": k.kind, "discount": k.discount, "threshold": k.threshold,
                     "valid_days": k.valid_days}  # fmt: skip
            ops.append(
                ItemOp(project_id=project_id, item_type="coupon", item_id=k.id, op="set", properties=props)
            )
        return ops

    # -- feeds ------------------------------------------------------------------------------
    def article(self, rnd: random.Random, day: int, category: str | None) -> Article:
        """Published before ``day`` (window day index): popular and recent ones more often."""
        key = (day, category)
        picker = self._article_pickers.get(key)
        if picker is None:
            now = self.start + day * DAY
            items = [
                a for a in self.articles if a.published < now and (category is None or a.category == category)
            ]
            if not items:  # a category without articles yet: any article
                items = [a for a in self.articles if a.published < now] or self.articles[:1]
            weights = [
                a.popularity * (0.25 + 2.5 * math.exp(-(now - a.published) / (9 * DAY))) for a in items
            ]
            picker = self._article_pickers[key] = Picker(items, weights)
        return picker.pick(rnd)  # type: ignore[no-any-return]

    def recent_article(self, rnd: random.Random, day: int) -> Article:
        """What an official-account push links to: one of the last two evenings' articles."""
        picker = self._recent.get(day)
        if picker is None:
            now = self.start + day * DAY
            items = [a for a in self.articles if now - 2 * DAY <= a.published < now]
            picker = self._recent[day] = Picker(items, [a.popularity for a in items])
        return picker.pick(rnd) if picker else self.article(rnd, day, None)

    def course(self, rnd: random.Random, day: int, category: str | None, paid_only: bool = False) -> Course:
        key = (day * 2 + paid_only, category)
        picker = self._course_pickers.get(key)
        if picker is None:
            now = self.start + day * DAY
            items = [c for c in self.courses if c.published < now and (not paid_only or c.price > 0)]
            in_cat = [c for c in items if category is None or c.category == category]
            items = in_cat or items
            weights = [c.popularity * (3.0 if now - c.published < 14 * DAY else 1.0) for c in items]
            picker = self._course_pickers[key] = Picker(items, weights)
        return picker.pick(rnd)  # type: ignore[no-any-return]


__all__ = ["Article", "Catalogue", "Coupon", "Course", "Product", "CATEGORY_KEYS", "iso"]
