"""Who is on call: schedules of rotating layers and overrides, read in wall-clock time of the schedule's zone.

A layer's turns are counted in wall-clock time from its `start`, so a hand-off at 09:00 stays at 09:00 when the
clocks change. Where several layers have someone on call, the last layer in the list wins (a night layer above a
day layer), and an override wins over every layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from facmon.config.oncall import WEEKDAYS, Layer, OncallConfig, Schedule, Target

# How far ahead `shift` looks for the end of the current shift.
_HORIZON = timedelta(days=62)


@dataclass(frozen=True, slots=True)
class Shift:
    """Who is on call for a schedule at a time, by which layer (or override), and until when."""

    schedule: str
    person: str | None
    layer: str | None
    until: datetime | None


def _local(value: datetime, tz: ZoneInfo) -> datetime:
    """Wall-clock time in `tz`, without its offset: turns and windows are counted on the wall clock."""
    return value.astimezone(tz).replace(tzinfo=None) if value.tzinfo else value


def _aware(wall: datetime, tz: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=tz)


class Roster:
    """Answers who is on call, and whom a step of an escalation policy reaches."""

    def __init__(self, config: OncallConfig, tz: ZoneInfo) -> None:
        self._config = config
        self._tz = tz
        self._schedules = {s.id: s for s in config.schedules}

    def zone(self, schedule: Schedule) -> ZoneInfo:
        return ZoneInfo(schedule.timezone) if schedule.timezone else self._tz

    def on_call(self, schedule_id: str, at: datetime) -> str | None:
        person, _ = self._who(self._schedules[schedule_id], at)
        return person

    def shift(self, schedule_id: str, at: datetime) -> Shift:
        """The shift at `at`: who, by which layer, until the on-call person next changes (None: not within 62 days)."""
        schedule = self._schedules[schedule_id]
        person, layer = self._who(schedule, at)
        until = None
        for boundary in self._boundaries(schedule, at):
            if self._who(schedule, boundary)[0] != person:
                until = boundary
                break
        return Shift(schedule.id, person, layer, until)

    def now(self, at: datetime) -> list[Shift]:
        """Every schedule's current shift, in config order."""
        return [self.shift(s.id, at) for s in self._config.schedules]

    def reach(self, target: Target, at: datetime) -> list[str]:
        """The people a target stands for at `at`: the schedule's on-call (if any), the person, or the team."""
        if target.schedule is not None:
            person = self.on_call(target.schedule, at)
            return [person] if person else []
        if target.team is not None:
            team = self._config.team(target.team)
            return list(team.members) if team else []
        return [target.person] if target.person else []

    # -- inside

    def _who(self, schedule: Schedule, at: datetime) -> tuple[str | None, str | None]:
        tz = self.zone(schedule)
        wall = _local(at, tz)
        for override in reversed(schedule.overrides):
            if _local(override.start, tz) <= wall < _local(override.end, tz):
                return override.person, "override"
        for index in range(len(schedule.layers) - 1, -1, -1):
            layer = schedule.layers[index]
            person = _layer_person(layer, wall, tz)
            if person is not None:
                return person, layer.name or f"layer {index + 1}"
        return None, None

    def _boundaries(self, schedule: Schedule, at: datetime) -> list[datetime]:
        """Times after `at` at which the answer may change: hand-offs, window edges, overrides' ends."""
        tz = self.zone(schedule)
        wall, end = _local(at, tz), _local(at, tz) + _HORIZON
        found: set[datetime] = set()
        for override in schedule.overrides:
            found.update(t for t in (_local(override.start, tz), _local(override.end, tz)) if wall < t <= end)
        for layer in schedule.layers:
            found.update(t for t in _layer_edges(layer, wall, end, tz) if wall < t <= end)
        return [_aware(t, tz) for t in sorted(found)]


def _layer_person(layer: Layer, wall: datetime, tz: ZoneInfo) -> str | None:
    start = _local(layer.start, tz)
    if wall < start or not _in_window(layer, wall):
        return None
    turns = (wall - start) // layer.turn
    return layer.members[turns % len(layer.members)]


def _in_window(layer: Layer, wall: datetime) -> bool:
    hours = layer.hours
    if hours is None:
        return WEEKDAYS[wall.weekday()] in layer.days
    now = wall.time()
    if not hours.wraps:
        return WEEKDAYS[wall.weekday()] in layer.days and hours.start <= now < hours.end
    if now >= hours.start:
        return WEEKDAYS[wall.weekday()] in layer.days
    if now < hours.end:  # the early part of a window that began the evening before
        return WEEKDAYS[(wall - timedelta(days=1)).weekday()] in layer.days
    return False


def _layer_edges(layer: Layer, wall: datetime, end: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    start = _local(layer.start, tz)
    yield start
    if wall >= start:
        hand_off = start + ((wall - start) // layer.turn + 1) * layer.turn
        while hand_off <= end:
            yield hand_off
            hand_off += layer.turn
    day = datetime.combine(wall.date(), datetime.min.time())
    while day <= end:
        yield day
        if layer.hours is not None:
            yield datetime.combine(day.date(), layer.hours.start)
            yield datetime.combine(day.date(), layer.hours.end)
        day += timedelta(days=1)
