"""Alarm-system health after ISA-18.2 / IEC 62682 and EEMUA 191: how many alarms operators get, and which are noise.

`compute_kpis` is a pure function of alarm events, open alarms and a window ending at `end`. Intervals are open
at their start and closed at their end, so an alarm raised at the moment the window ends is counted.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from facmon.facility.model import ACTIVE_STATES, Alarm, AlarmTransition, Severity

# An annunciation is an alarm put in front of an operator: a new alarm, or one that came back before it was acked.
ANNUNCIATIONS = ("raised", "reactivated")
# The changes of an alarm's condition; acknowledgements and operator actions are not a sign of chattering.
TRANSITIONS = (
    "raised",
    "raised_suppressed",
    "reactivated",
    "reactivated_suppressed",
    "recurred",
    "returned",
    "returned_latched",
    "cleared",
)

RATE_BUCKET = timedelta(minutes=10)
CHATTER_WINDOW = timedelta(seconds=60)
CHATTER_TRANSITIONS = 3
STALE_AFTER = timedelta(hours=24)
TOP_COUNT = 10


@dataclass(frozen=True, slots=True)
class RateBucket:
    """Annunciations after `start` up to and including `end`."""

    start: datetime
    end: datetime
    count: int


@dataclass(frozen=True, slots=True)
class AlarmRate:
    average_per_10min: float
    max_per_10min: int
    buckets: tuple[RateBucket, ...]


@dataclass(frozen=True, slots=True)
class ChatteringAlarm:
    """A (rule, device) that changed state at least 3 times within 60 s; `transitions` is its most in any 60 s."""

    rule: str
    device_id: str
    transitions: int


@dataclass(frozen=True, slots=True)
class StaleAlarm:
    alarm_id: int
    rule: str
    device_id: str
    raised_at: datetime
    active_for: timedelta


@dataclass(frozen=True, slots=True)
class FrequentAlarm:
    rule: str
    device_id: str
    count: int


@dataclass(frozen=True, slots=True)
class AlarmKpis:
    start: datetime
    end: datetime
    site: str | None
    rate: AlarmRate
    chattering: tuple[ChatteringAlarm, ...]
    stale: tuple[StaleAlarm, ...]
    top: tuple[FrequentAlarm, ...]
    priority_mix: Mapping[Severity, int]


def compute_kpis(
    transitions: Iterable[AlarmTransition],
    active_alarms: Iterable[Alarm],
    *,
    start: datetime,
    end: datetime,
    site: str | None = None,
) -> AlarmKpis:
    """The health of one site's alarm system (all sites when `site` is None) over the window `start`…`end`.

    `transitions` are the alarm events in the window (others are ignored), `active_alarms` the alarms that may be
    stale; `end` is the present, from which stale alarms' ages are measured.
    """
    if end <= start:
        raise ValueError("the window must end after it starts")
    events = [t for t in transitions if start < t.at <= end and (site is None or t.site == site)]
    annunciations = [t for t in events if t.kind in ANNUNCIATIONS]
    return AlarmKpis(
        start=start,
        end=end,
        site=site,
        rate=alarm_rate(annunciations, start, end),
        chattering=chattering_alarms(events),
        stale=stale_alarms([a for a in active_alarms if site is None or a.site == site], end),
        top=most_frequent(annunciations),
        priority_mix=priority_mix(annunciations),
    )


def alarm_rate(annunciations: Iterable[AlarmTransition], start: datetime, end: datetime) -> AlarmRate:
    """Annunciations per 10 minutes, in buckets counted back from `end`; the oldest is cut short at `start`."""
    size = math.ceil((end - start) / RATE_BUCKET)
    counts = [0] * size
    for event in annunciations:
        if start < event.at <= end:
            counts[size - 1 - (end - event.at) // RATE_BUCKET] += 1
    buckets = tuple(
        RateBucket(max(start, end - (size - i) * RATE_BUCKET), end - (size - 1 - i) * RATE_BUCKET, count)
        for i, count in enumerate(counts)
    )
    return AlarmRate(
        average_per_10min=sum(counts) / ((end - start) / RATE_BUCKET),
        max_per_10min=max(counts),
        buckets=buckets,
    )


def chattering_alarms(transitions: Iterable[AlarmTransition]) -> tuple[ChatteringAlarm, ...]:
    """(rule, device) pairs with at least 3 transitions within some 60 s, the most transitions first."""
    times: defaultdict[tuple[str, str], list[datetime]] = defaultdict(list)
    for event in transitions:
        if event.kind in TRANSITIONS:
            times[(event.rule, event.device_id)].append(event.at)
    found = []
    for (rule, device_id), ats in times.items():
        ats.sort()
        most, first = 0, 0
        for last, at in enumerate(ats):
            while at - ats[first] > CHATTER_WINDOW:
                first += 1
            most = max(most, last - first + 1)
        if most >= CHATTER_TRANSITIONS:
            found.append(ChatteringAlarm(rule, device_id, most))
    return tuple(sorted(found, key=lambda c: (-c.transitions, c.rule, c.device_id)))


def stale_alarms(alarms: Iterable[Alarm], now: datetime) -> tuple[StaleAlarm, ...]:
    """Alarms still active more than 24 h after they were raised, the oldest first."""
    stale = [
        StaleAlarm(a.id, a.rule, a.device_id, a.raised_at, now - a.raised_at)
        for a in alarms
        if a.state in ACTIVE_STATES and now - a.raised_at > STALE_AFTER
    ]
    return tuple(sorted(stale, key=lambda s: (s.raised_at, s.alarm_id)))


def most_frequent(annunciations: Iterable[AlarmTransition]) -> tuple[FrequentAlarm, ...]:
    """The 10 (rule, device) pairs annunciated most often; ties in rule then device order."""
    counts = Counter((a.rule, a.device_id) for a in annunciations)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(FrequentAlarm(rule, device_id, count) for (rule, device_id), count in ranked[:TOP_COUNT])


def priority_mix(annunciations: Iterable[AlarmTransition]) -> dict[Severity, int]:
    """Annunciations by the severity they were annunciated at, every severity present."""
    mix = dict.fromkeys(Severity, 0)
    for event in annunciations:
        mix[event.severity] += 1
    return mix
