"""The service's timed jobs, on one APScheduler 3 background scheduler in the facility's time zone.

Jobs keep no state of their own: each reads what is due from the state store (escalations' next pagings, work
orders' due times, shelves' ends, maintenance occurrences, the day a summary was sent for), so a restart rebuilds
them from the config and loses nothing. Each job runs on its own worker; one that is still running when it comes
due again is not started twice (runs in between are merged), and one that raises is logged and runs again next
time. A job is called with the time of the service's clock, which tests inject.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from facmon.facility.clock import Clock

log = logging.getLogger(__name__)

Job = Callable[[datetime], object]  # what a job returns is ignored


class Scheduler:
    def __init__(self, clock: Clock, tz: ZoneInfo, *, workers: int = 8) -> None:
        self._clock = clock
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=tz,
        )
        # APScheduler logs every run at INFO: a line a second per job. Its warnings (a job missed, a job
        # still running) stay.
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
        logging.getLogger("apscheduler.scheduler").setLevel(logging.WARNING)

    def every(self, name: str, seconds: float, *jobs: Job, at_start: bool = False) -> None:
        """Run `jobs` in order every `seconds`; with `at_start`, also as soon as the scheduler starts."""
        trigger = IntervalTrigger(seconds=seconds)
        self._add(name, trigger, jobs, at_start)

    def cron(self, name: str, job: Job, **fields: Any) -> None:
        """Run `job` at the times the cron fields give (hour=8, minute=0, …), in the facility's zone."""
        self._add(name, CronTrigger(**fields), (job,), False)

    def jobs(self) -> dict[str, datetime | None]:
        """Each job's next run time."""
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def _add(self, name: str, trigger: Any, jobs: tuple[Job, ...], at_start: bool) -> None:
        def run() -> None:
            now = self._clock.now()
            for job in jobs:
                try:
                    job(now)
                except Exception:  # one failing job must not stop the others, nor the next run
                    log.exception("job %s: %s failed", name, getattr(job, "__qualname__", job))

        options: dict[str, Any] = {"id": name, "name": name, "replace_existing": True}
        if at_start:
            options["next_run_time"] = datetime.now(self._scheduler.timezone)
        self._scheduler.add_job(run, trigger, **options)
