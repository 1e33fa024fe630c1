"""A small user-agent reader: os, browser and device type, enough for channel/version analysis."""

from __future__ import annotations

import re
from functools import lru_cache

_OS = [
    (re.compile(r"iPhone|iPad|iPod"), "iOS"),
    (re.compile(r"Android"), "Android"),
    (re.compile(r"HarmonyOS|OpenHarmony"), "HarmonyOS"),
    (re.compile(r"Windows"), "Windows"),
    (re.compile(r"Mac OS X|Macintosh"), "macOS"),
    (re.compile(r"CrOS"), "ChromeOS"),
    (re.compile(r"Linux"), "Linux"),
]
_BROWSER = [
    (re.compile(r"MicroMessenger"), "WeChat"),
    (re.compile(r"Weibo"), "Weibo"),
    (re.compile(r"aweme|Douyin", re.I), "Douyin"),
    (re.compile(r"Edg/"), "Edge"),
    (re.compile(r"OPR/|Opera"), "Opera"),
    (re.compile(r"Firefox/"), "Firefox"),
    (re.compile(r"Chrome/|CriOS/"), "Chrome"),
    (re.compile(r"Safari/"), "Safari"),
]


def parse_user_agent(ua: object) -> tuple[str | None, str | None, str | None]:
    """(os, browser, device_type) from a User-Agent header; None where it says nothing (or not text)."""
    if not ua or not isinstance(ua, str):
        return None, None, None
    return _parse(ua)


@lru_cache(maxsize=4096)  # a site sees few distinct user agents: parse each once
def _parse(ua: str) -> tuple[str | None, str | None, str | None]:
    os_name = next((name for rx, name in _OS if rx.search(ua)), None)
    browser = next((name for rx, name in _BROWSER if rx.search(ua)), None)
    if re.search(r"iPad|Tablet", ua):
        device = "Tablet"
    elif re.search(r"Mobi|iPhone|Android", ua):
        device = "Mobile"
    elif os_name in ("Windows", "macOS", "Linux", "ChromeOS"):
        device = "Desktop"
    else:
        device = None
    return os_name, browser, device
