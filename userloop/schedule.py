"""Scheduled work in the server process (APScheduler 3.x, one background thread pool).

Capabilities register a *provider*: a function that reads their saved definitions and returns the
jobs to run (``ScheduledJob``). :func:`start` loads every provider; :func:`reload` re-reads them
after a definition changes (create/update/delete through the API calls it).

Triggers are strings: ``"interval:SECONDS"`` or ``"cron:MIN HOUR DOM MON DOW"`` (crontab fields,
in the project's time zone when one is given).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from userloop.errors import UserloopError

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler

    from userloop.store.duckdb import Store
    from userloop.store.writer import Writer

log = logging.getLogger("userloop.schedule")


@dataclass
class ScheduledJob:
    id: str  # unique across providers, e.g. "tag:3:purchases_90d"
    trigger: str  # "interval:3600" or "cron:0 3 * * *"
    run: Callable[[], Any]
    timezone: str = "UTC"


Provider = Callable[["Store", "Writer | None"], list[ScheduledJob]]
_PROVIDERS: dict[str, Provider] = {}


def register_provider(name: str, provider: Provider) -> None:
    _PROVIDERS[name] = provider


def parse_trigger(trigger: str, timezone: str = "UTC") -> Any:
    """An APScheduler trigger for ``interval:SECONDS`` or ``cron:FIVE FIELDS``; 400 when malformed."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    kind, _, spec = trigger.partition(":")
    try:
        if kind == "interval":
            seconds = int(spec)
            if seconds < 1:
                raise ValueError("interval must be at least 1 second")
            return IntervalTrigger(seconds=seconds, timezone=timezone)
        if kind == "cron":
            return CronTrigger.from_crontab(spec.strip(), timezone=timezone)
    except ValueError as exc:
        raise UserloopError("invalid_schedule", f"bad schedule {trigger!r}: {exc}", "schedule") from exc
    raise UserloopError(
        "invalid_schedule", f"schedule must be 'interval:SECONDS' or 'cron:M H DOM MON DOW', got {trigger!r}",
        "schedule",
    )


class Scheduler:
    """Owns the APScheduler instance of one server process."""

    def __init__(self, store: Store, writer: Writer | None = None):
        self.store, self.writer = store, writer
        self._sched: BackgroundScheduler | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        from userloop.actions import load_actions

        load_actions()  # capability modules register their providers on import
        self._sched = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1})
        self._sched.start()
        self.reload()

    def reload(self) -> None:
        if self._sched is None:
            return
        with self._lock:
            wanted: dict[str, ScheduledJob] = {}
            for name, provider in _PROVIDERS.items():
                try:
                    for job in provider(self.store, self.writer):
                        wanted[job.id] = job
                except Exception:  # one broken provider must not stop the others
                    log.exception("schedule provider %s failed", name)
            for existing in self._sched.get_jobs():
                if existing.id not in wanted:
                    existing.remove()
            for job in wanted.values():
                self._sched.add_job(
                    _guarded(job), parse_trigger(job.trigger, job.timezone), id=job.id, replace_existing=True
                )

    def job_ids(self) -> list[str]:
        return sorted(j.id for j in self._sched.get_jobs()) if self._sched else []

    def stop(self) -> None:
        if self._sched is not None:
            self._sched.shutdown(wait=False)
            self._sched = None


def _guarded(job: ScheduledJob) -> Callable[[], None]:
    def run() -> None:
        try:
            job.run()
        except Exception:
            log.exception("scheduled job %s failed", job.id)

    return run


_current: Scheduler | None = None


def current() -> Scheduler | None:
    """The server's scheduler, or None outside a server (CLI on the file, tests without a server)."""
    return _current


def set_current(s: Scheduler | None) -> None:
    global _current
    _current = s


def reload_current() -> None:
    """Call after saving or deleting a scheduled definition."""
    if _current is not None:
        _current.reload()
