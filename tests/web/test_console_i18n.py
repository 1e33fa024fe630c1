"""The console's catalogue is complete in both languages; language choice; number and time formats."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from userloop.actions import action_names
from userloop.web.console import auth, forms, i18n
from userloop.web.console.messages import CATALOGUE
from userloop.web.console.nav import ANALYSES

CONSOLE = Path(i18n.__file__).parent
NAMESPACES = (
    "nav|kind|about|form|col|table|range|math|interval|measure|attribution|chart|kpi|builder|segments|funnel|"
    "dashboard|settings|error|role|auth|lang|people|portrait|tags|layers|alerts|action|campaigns|recommend|live|"
    "overview"
)
LITERAL = re.compile(rf"""["']((?:{NAMESPACES})\.[a-z0-9_]+)["']""")


def used_keys() -> set[str]:
    keys: set[str] = set()
    not_messages = set(action_names()) | {"recommend.feed", "recommend.metrics"}
    for path in [*CONSOLE.glob("*.py"), *CONSOLE.glob("templates/*.html")]:
        if path.name == "messages.py":
            continue
        found = set(LITERAL.findall(path.read_text()))
        # action names, template names and prefixes ('tags.kind_' ~ kind) are not messages
        keys |= {k for k in found if k not in not_messages and not k.endswith((".html", "_"))}
    # keys made from a prefix and a value
    keys |= {f"{p}.{k}" for p in ("kind", "about") for k in ANALYSES}
    keys |= {f"role.{r}" for r in auth.ROLES} | {f"lang.{lang}" for lang in i18n.LANGUAGES}
    keys |= {f"range.{r}" for r in forms.RANGES} | {"range.14d"}
    keys |= {f"settings.{k}" for k in ("write_key", "secret_key")}
    keys |= {f"campaigns.{k}" for k in ("reach", "evaluation", "coupons", "strategies")}
    keys |= {f"tags.kind_{k}" for k in ("static", "semi_dynamic", "dynamic")}
    keys |= {f"segments.type_{k}" for k in ("static", "dynamic")}
    keys |= {f"builder.{k}" for k in ("not", "all", "any", "group", "times", "in_last", "days", "value", "remove")}
    keys |= {f"builder.kind_{k}" for k in ("person", "event", "no_event", "tag", "segment", "layer", "funnel", "aggregate")}
    for kind in ANALYSES:  # every label and option of every form
        for f in forms.fields(kind, ["$pageview"]) + forms.common_fields():
            keys.add(f.label)
            keys |= {label for _, label in f.options if LITERAL.fullmatch(f'"{label}"')}
    from userloop.web.console import results

    for cols in (results.CHANNEL_COLUMNS, results.CONTENT_COLUMNS, results.VIRALITY_COLUMNS):
        keys |= {f"col.{k}" for k, _ in cols}
    keys |= {f"col.{m}" for m in ("visits", "visitors", "pageviews", "bounces", "depth", "avg_duration_seconds", "bounce_rate")}
    keys |= {"table.entry_pages", "table.exit_pages"}
    return keys


def test_every_key_in_use_is_in_the_catalogue() -> None:
    missing = sorted(k for k in used_keys() if k not in CATALOGUE)
    assert missing == []


def test_both_languages_are_written_with_the_same_placeholders() -> None:
    def names(text: str) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f}

    empty = [k for k, (en, zh) in CATALOGUE.items() if not en.strip() or not zh.strip()]
    mismatched = [k for k, (en, zh) in CATALOGUE.items() if names(en) != names(zh)]
    assert (empty, mismatched) == ([], [])


@pytest.mark.parametrize("cookie, header, lang", [
    ("zh", "en-US,en;q=0.9", "zh"),  # the switch wins
    (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    (None, "en-GB,en;q=0.9,zh-CN;q=0.8", "en"),
    (None, "fr-FR, zh;q=0.5", "zh"),  # the first language we have
    (None, "zh;q=0, en;q=0.1", "en"),  # q=0: not acceptable
    (None, "en;q=0.4, zh-TW;q=0.6", "zh"),  # by q, not by position
    ("xx", None, "en"),
    (None, "", "en"),
])  # fmt: skip
def test_language_negotiation(cookie: str | None, header: str | None, lang: str) -> None:
    assert i18n.negotiate(cookie, header) == lang


def test_formats() -> None:
    en = i18n.Formatter("en", "Asia/Shanghai")
    zh = i18n.Formatter("zh", "America/New_York")
    assert (en.number(1234567), en.number(1234.5), en.number(0.125, 1), en.number(None)) == ("1,234,567", "1,234.50", "0.1", "—")
    assert (en.percent(0.1234), en.change(110, 100), en.change(90, 100), en.change(5, 0)) == ("12.3%", "+10.0%", "-10.0%", "—")
    assert en.datetime("2026-11-23T16:30:00Z") == "2026-11-24 00:30:00"  # UTC+8
    assert zh.datetime("2026-11-23T16:30:00+00:00") == "2026-11-23 11:30:00"  # UTC-5
    assert (en.date("2026-03-05"), zh.date("2026-03-05")) == ("05 Mar 2026", "2026年3月5日")
    assert (en.duration(3725), zh.duration(65), en.duration(None)) == ("1h 2m 5s", "1分5秒", "—")
    assert i18n.parse_number("1,234.50") == 1234.5 and i18n.parse_number("12.3%") == 12.3
    assert i18n.translate("zh", "funnel.dropoff_row", n="1,234", step=1, next=2) == "1,234 位用户到达第 1 步但未到达第 2 步"
