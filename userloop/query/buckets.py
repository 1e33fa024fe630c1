"""Time buckets in the project's zone: every interval of a range, and its label."""

from __future__ import annotations

from datetime import date, datetime, timedelta

INTERVAL_LABELS = {"hour": "%Y-%m-%dT%H:00:00", "day": "%Y-%m-%d", "week": "%Y-%m-%d", "month": "%Y-%m-%d"}


def bucket_start(day: date, interval: str) -> datetime:
    d = datetime(day.year, day.month, day.day)
    if interval == "week":  # weeks start on Monday
        return d - timedelta(days=d.weekday())
    if interval == "month":
        return d.replace(day=1)
    return d


def add(start: datetime, interval: str, n: int = 1) -> datetime:
    if interval == "hour":
        return start + timedelta(hours=n)
    if interval == "day":
        return start + timedelta(days=n)
    if interval == "week":
        return start + timedelta(weeks=n)
    month = start.month - 1 + n
    return start.replace(year=start.year + month // 12, month=month % 12 + 1)


def buckets(date_from: date, date_to: date, interval: str) -> list[datetime]:
    """Local wall-clock starts of every bucket touching [date_from, date_to] (inclusive dates)."""
    out = []
    cur = bucket_start(date_from, interval)
    end = datetime(date_to.year, date_to.month, date_to.day) + timedelta(days=1)
    while cur < end:
        out.append(cur)
        cur = add(cur, interval)
    return out


def label(start: datetime, interval: str) -> str:
    return start.strftime(INTERVAL_LABELS[interval])
