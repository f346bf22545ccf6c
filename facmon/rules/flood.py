"""Alarm floods (ISA-18.2, EEMUA 191): more alarms on a site than its operators can handle.

A flood starts when more than 10 alarms were annunciated on a site within the trailing 10 minutes, and ends when
that count has fallen to 5 or fewer. The gap between the two levels keeps a flood from ending and starting again
while the rate hovers around 10. Floods are rows of `alarm_floods`, written as they start, grow and end.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_right
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from facmon.facility.model import AlarmFlood
from facmon.facility.state import StateStore
from facmon.rules.kpis import ANNUNCIATIONS
from facmon.rules.processor import AlarmChange

log = logging.getLogger(__name__)

FLOOD_WINDOW = timedelta(minutes=10)
FLOOD_STARTS_ABOVE = 10
FLOOD_ENDS_AT = 5


@dataclass(frozen=True, slots=True)
class FloodChange:
    """A flood started or ended on a site; `count` is the site's trailing 10-minute count at that moment."""

    site: str
    started: bool
    at: datetime
    count: int


class FloodListener(Protocol):
    def on_flood_change(self, change: FloodChange) -> None:
        """Called after the flood's row is committed."""


class FloodDetector:
    """Counts each site's annunciations in the trailing 10 minutes and records its floods.

    Time comes from the alarm events and from `tick(now)`, which ends floods when time passes without alarms.
    """

    def __init__(self, store: StateStore, *, sites: Collection[str] | None = None) -> None:
        self._store = store
        # In a cluster, the sites of one partition: its holder alone counts their alarms.
        self._sites = None if sites is None else frozenset(sites)
        self._lock = threading.Lock()
        # Per site, the times of its annunciations in the trailing window, oldest first.
        self._recent: dict[str, list[datetime]] = {}
        self._open: dict[str, AlarmFlood] = {}
        self.listeners: list[FloodListener] = []

    def restore(self, now: datetime) -> None:
        """Rebuild from stored alarm events and open floods, so a restart neither loses a flood nor opens another."""
        with self._lock:
            self._open = {flood.site: flood for flood in self._store.open_floods() if self._covers(flood.site)}
            flooded = set(self._open)
            # An open flood ends when its sixth newest annunciation leaves the window, which may be long ago if the
            # service was down; every annunciation since the flood started is enough to find that moment.
            since = min([now - FLOOD_WINDOW, *(f.started_at - FLOOD_WINDOW for f in self._open.values())])
            self._recent = {}
            changes: list[FloodChange] = []
            for event in self._store.alarm_transitions(since, now, ANNUNCIATIONS):
                if not self._covers(event.site):
                    continue
                if event.site in flooded:
                    self._recent.setdefault(event.site, []).append(event.at)
                elif event.at > now - FLOOD_WINDOW:
                    # Replayed, so a flood whose start a crash kept from being recorded is recorded now.
                    changes += self._annunciate(event.site, event.at)
            changes += self._tick(now)
        self._notify(changes)

    def _covers(self, site: str) -> bool:
        return self._sites is None or site in self._sites

    def on_alarm_change(self, change: AlarmChange) -> None:
        if change.event.kind not in ANNUNCIATIONS or not self._covers(change.alarm.site):
            return
        with self._lock:
            changes = self._annunciate(change.alarm.site, change.event.at)
        self._notify(changes)

    def tick(self, now: datetime) -> None:
        """End the floods whose trailing count has fallen to 5 or fewer by `now`."""
        with self._lock:
            changes = self._tick(now)
        self._notify(changes)

    def open_floods(self) -> list[AlarmFlood]:
        with self._lock:
            return sorted(self._open.values(), key=lambda f: f.site)

    def _annunciate(self, site: str, at: datetime) -> list[FloodChange]:
        changes = self._end_if_quiet(site, at)
        recent = self._recent.setdefault(site, [])
        _forget_before(recent, at)
        if recent and at < recent[-1]:
            recent.insert(bisect_right(recent, at), at)
        else:
            recent.append(at)
        count = len(recent)
        flood = self._open.get(site)
        if flood is None and count > FLOOD_STARTS_ABOVE:
            with self._store.begin() as tx:
                flood = tx.insert_flood(site, at, count)
            self._open[site] = flood
            log.warning("alarm flood on site %s: %d alarms in the last 10 minutes", site, count)
            changes.append(FloodChange(site, True, at, count))
        elif flood is not None and count > flood.peak:
            flood = replace(flood, peak=count)
            with self._store.begin() as tx:
                tx.update_flood(flood)
            self._open[site] = flood
        return changes

    def _tick(self, now: datetime) -> list[FloodChange]:
        changes: list[FloodChange] = []
        for site in sorted(self._open):
            changes += self._end_if_quiet(site, now)
        for site, recent in list(self._recent.items()):
            _forget_before(recent, now)
            if not recent:
                del self._recent[site]
        return changes

    def _end_if_quiet(self, site: str, now: datetime) -> list[FloodChange]:
        """End the site's flood at the moment its count fell to 5, if that is no later than `now`."""
        flood = self._open.get(site)
        if flood is None:
            return []
        recent = self._recent.get(site, [])
        if len(recent) > FLOOD_ENDS_AT:
            # No annunciation since the last check: the count falls to 5 as the sixth newest leaves the window.
            ended_at = recent[-FLOOD_ENDS_AT - 1] + FLOOD_WINDOW
            if ended_at > now:
                return []
        else:
            ended_at = now  # the events that would say when are gone from the store
        count = len(recent) - bisect_right(recent, ended_at - FLOOD_WINDOW)
        with self._store.begin() as tx:
            tx.update_flood(replace(flood, ended_at=ended_at))
        del self._open[site]
        log.info("alarm flood on site %s ended: %d alarms in the last 10 minutes", site, count)
        return [FloodChange(site, False, ended_at, count)]

    def _notify(self, changes: list[FloodChange]) -> None:
        for change in changes:
            for listener in self.listeners:
                try:
                    listener.on_flood_change(change)
                except Exception:
                    log.exception("%s failed on the flood change of site %s", type(listener).__name__, change.site)


def _forget_before(recent: list[datetime], now: datetime) -> None:
    """Drop the times that have left the window trailing `now`."""
    del recent[: bisect_right(recent, now - FLOOD_WINDOW)]
