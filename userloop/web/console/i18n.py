"""The console's languages: message catalogues (English, Chinese), the choice of language, and
number and time formatting.

The language is the ``ul_lang`` cookie (set by the switch in the header), else the best of the
browser's ``Accept-Language``, else English. Messages live in :data:`CATALOGUE` as
``key -> (English, Chinese)`` pairs, so a message cannot exist in one language only.
Times are shown in the project's time zone; numbers group thousands with commas in both languages.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from userloop.web.console.messages import CATALOGUE

LANGUAGES = ("en", "zh")
LANG_COOKIE = "ul_lang"


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language when valid, else the first supported one in Accept-Language (by q)."""
    if cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        q = 1.0
        for p in pieces[1:]:
            p = p.strip()
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        lang = tag.split("-")[0]
        if lang in LANGUAGES and q > 0:
            ranked.append((-q, i, lang))
    return sorted(ranked)[0][2] if ranked else "en"


def translate(lang: str, key: str, /, **values: Any) -> str:
    pair = CATALOGUE.get(key)
    if pair is None:
        return key
    text = pair[1] if lang == "zh" else pair[0]
    return text.format(**values) if values else text


class Formatter:
    """Numbers and times for one language and one time zone (Jinja filters use one of these)."""

    def __init__(self, lang: str, timezone: str):
        self.lang = lang
        self.zone = ZoneInfo(timezone)

    def number(self, value: Any, digits: int | None = None) -> str:
        """``1,234`` for integers; ``1,234.57`` (``digits`` decimals, default 2) otherwise; ``—`` for none."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int) and digits is None:
            return f"{value:,}"
        if not isinstance(value, int | float):
            return str(value)
        d = 2 if digits is None else digits
        return f"{value:,.{d}f}"

    def percent(self, ratio: Any, digits: int = 1) -> str:
        """A ratio (0.123) as ``12.3%``."""
        if ratio is None or not isinstance(ratio, int | float) or math.isnan(ratio):
            return "—"
        return f"{ratio * 100:,.{digits}f}%"

    def change(self, current: Any, previous: Any) -> str:
        """Relative change with a sign, ``+12.5%``; ``—`` when there is no previous value."""
        if not isinstance(current, int | float) or not isinstance(previous, int | float) or previous == 0:
            return "—"
        return f"{(current - previous) / abs(previous) * 100:+,.1f}%"

    def duration(self, seconds: Any) -> str:
        if not isinstance(seconds, int | float):
            return "—"
        s = int(round(seconds))
        h, rem = divmod(s, 3600)
        m, sec = divmod(rem, 60)
        if self.lang == "zh":
            return f"{h}小时{m}分{sec}秒" if h else (f"{m}分{sec}秒" if m else f"{sec}秒")
        return f"{h}h {m}m {sec}s" if h else (f"{m}m {sec}s" if m else f"{sec}s")

    def datetime(self, value: Any) -> str:
        """An instant (datetime or ISO text) in the project's zone: ``2026-11-23 15:04:05``."""
        if value is None or value == "":
            return "—"
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return value
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=ZoneInfo("UTC"))
            return value.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(value, date):
            return value.isoformat()
        return str(value)

    def date(self, value: Any) -> str:
        if isinstance(value, str):
            value = date.fromisoformat(value[:10])
        if isinstance(value, datetime):
            value = value.astimezone(self.zone).date()
        if not isinstance(value, date):
            return "—"
        return f"{value.year}年{value.month}月{value.day}日" if self.lang == "zh" else value.strftime("%d %b %Y")


def parse_number(text: str) -> float:
    """The inverse of :meth:`Formatter.number` (tests read rendered numbers back with it)."""
    return float(text.replace(",", "").replace("%", "").strip())
