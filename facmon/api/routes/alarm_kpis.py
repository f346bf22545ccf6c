"""`GET /api/v1/alarms/kpis`: the ISA-18.2 health of the alarm system."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from facmon.api.deps import ServicesDep
from facmon.api.routes.params import TextFilter, invalid
from facmon.api.schemas import local_time
from facmon.config.durations import format_duration, parse_duration
from facmon.facility.model import Severity
from facmon.rules.kpis import CHATTER_WINDOW, STALE_AFTER, TRANSITIONS, compute_kpis

router = APIRouter(prefix="/api/v1/alarms", tags=["alarms"])

MAX_WINDOW = timedelta(days=31)


class RateBucketPublic(BaseModel):
    start: datetime = Field(description="The bucket counts annunciations after this time, up to 10 minutes later")
    count: int


class AlarmRatePublic(BaseModel):
    average_per_10min: float = Field(
        description="Annunciations per 10 minutes over the window; ISA-18.2: about 1 is very likely acceptable, "
        "about 2 the most that is manageable"
    )
    max_per_10min: int = Field(description="The most annunciations in one bucket")
    buckets: list[RateBucketPublic] = Field(
        description="10-minute buckets counted back from the window's end, oldest first; the oldest may be shorter"
    )


class FloodPublic(BaseModel):
    site: str
    started_at: datetime = Field(description="When the 11th alarm within 10 minutes was raised")
    ended_at: datetime | None = Field(description="When the count fell to 5 or fewer; null while the flood lasts")
    peak: int = Field(description="The most alarms within 10 minutes during the flood")


class ChatteringPublic(BaseModel):
    rule: str
    device_id: str
    transitions: int = Field(
        description="The most changes of state (raised, reactivated, returned, cleared) within 60 s"
    )
    within_seconds: int


class StalePublic(BaseModel):
    alarm_id: int
    rule: str
    device_id: str
    raised_at: datetime
    active_hours: float


class FrequentPublic(BaseModel):
    rule: str
    device_id: str
    count: int = Field(description="Annunciations in the window")


class PriorityMixPublic(BaseModel):
    critical: int
    major: int
    minor: int
    warning: int


class AlarmKpisPublic(BaseModel):
    window_start: datetime
    window_end: datetime
    site: str | None = Field(description="The site asked for; null for all sites")
    alarm_rate: AlarmRatePublic
    flood: bool = Field(description="A flood is going on now on the site, or on any site when none is asked for")
    floods: list[FloodPublic] = Field(description="Floods that lasted into the window, oldest first")
    chattering: list[ChatteringPublic] = Field(
        description="Alarms of a rule on a device that changed state 3 or more times within 60 s, most first"
    )
    stale: list[StalePublic] = Field(description="Alarms still active more than 24 h after being raised, oldest first")
    top: list[FrequentPublic] = Field(description="The 10 alarms (rule and device) annunciated most often")
    priority_mix: PriorityMixPublic = Field(description="Annunciations by the severity they were raised at")


@router.get(
    "/kpis",
    response_model=AlarmKpisPublic,
    summary="Alarm-system health (ISA-18.2): rate, floods, chattering, stale, top 10, priority mix",
    description="Over the window ending now. An annunciation is an alarm raised, or reactivated after it had "
    "returned to normal; a flood is more than 10 annunciations on a site within 10 minutes, and lasts until "
    "there are 5 or fewer.",
)
def alarm_kpis(
    services: ServicesDep,
    site: Annotated[TextFilter, Query(description="Only this site; all sites when absent")] = None,
    window: Annotated[
        str, Query(description="How far back from now, as a duration such as 30m, 8h or 7d; at most 31d")
    ] = "24h",
) -> AlarmKpisPublic:
    span = _window(window)
    site = site or None  # `?site=` means every site, as in the alarm list
    now = services.clock.now()
    start = now - span
    tz = services.config.tz
    kpis = compute_kpis(
        services.state.alarm_transitions(start, now, TRANSITIONS, site=site),
        services.state.active_alarms_raised_before(now - STALE_AFTER, site=site),
        start=start,
        end=now,
        site=site,
    )
    floods = services.state.floods_overlapping(start, now, site=site)
    mix = kpis.priority_mix
    return AlarmKpisPublic(
        window_start=start.astimezone(tz),
        window_end=now.astimezone(tz),
        site=site,
        alarm_rate=AlarmRatePublic(
            average_per_10min=round(kpis.rate.average_per_10min, 2),
            max_per_10min=kpis.rate.max_per_10min,
            buckets=[RateBucketPublic(start=b.start.astimezone(tz), count=b.count) for b in kpis.rate.buckets],
        ),
        flood=any(f.ended_at is None for f in floods),
        floods=[
            FloodPublic(
                site=f.site, started_at=f.started_at.astimezone(tz), ended_at=local_time(f.ended_at, tz), peak=f.peak
            )
            for f in floods
        ],
        chattering=[
            ChatteringPublic(
                rule=c.rule,
                device_id=c.device_id,
                transitions=c.transitions,
                within_seconds=int(CHATTER_WINDOW.total_seconds()),
            )
            for c in kpis.chattering
        ],
        stale=[
            StalePublic(
                alarm_id=s.alarm_id,
                rule=s.rule,
                device_id=s.device_id,
                raised_at=s.raised_at.astimezone(tz),
                active_hours=round(s.active_for / timedelta(hours=1), 1),
            )
            for s in kpis.stale
        ],
        top=[FrequentPublic(rule=t.rule, device_id=t.device_id, count=t.count) for t in kpis.top],
        priority_mix=PriorityMixPublic(
            critical=mix[Severity.CRITICAL],
            major=mix[Severity.MAJOR],
            minor=mix[Severity.MINOR],
            warning=mix[Severity.WARNING],
        ),
    )


def _window(value: str) -> timedelta:
    """The `window` parameter as a timedelta; anything unusable is a 422 like any invalid parameter."""
    try:
        span = parse_duration(value)
    except ValueError as exc:
        message = str(exc)
    else:
        if timedelta(0) < span <= MAX_WINDOW:
            return span
        if span > MAX_WINDOW:
            message = f"{value!r} is longer than the longest window, {format_duration(MAX_WINDOW)}"
        else:
            message = "the window must be longer than 0s"
    raise invalid("query", "window", message)
