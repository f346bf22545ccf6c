"""`GET /api/v1/devices/{id}/telemetry`: one field's history, downsampled in the store so a chart gets few points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from facmon.api.deps import Services, ServicesDep
from facmon.api.routes.params import invalid
from facmon.api.schemas import EARLIEST, LATEST, TelemetryHistory, TelemetryPoint, from_epoch_ms
from facmon.config.durations import format_duration, parse_duration
from facmon.facility.telemetry import Kind
from facmon.ingest.storage import Aggregate, Point, check_query, field_kind

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
DAY_MS = 86_400_000
# The windows chosen when the caller gives no `every`: round numbers on a chart's time axis.
STEPS = ("1s", "5s", "10s", "30s", "1m", "5m", "10m", "30m", "1h", "3h", "6h", "12h", "1d")
STEPS_MS = tuple(parse_duration(step) // MS for step in STEPS)
TIME_HINT = "RFC 3339 with an offset (2026-11-22T08:00:00+08:00), now, or a duration before now such as -24h"


@router.get(
    "/{device_id}/telemetry",
    response_model=TelemetryHistory,
    summary="One field's history, raw or aggregated over windows",
    description="Raw readings when the span is at most `max_points` seconds and has at most `max_points` "
    "readings; else, without `every`, the shortest of 1s, 5s, 10s, 30s, 1m, 5m, 10m, 30m, 1h, 3h, 6h, 12h, 1d "
    "that gives at most `max_points` windows. Windows are aligned to the Unix epoch (UTC) and named by their "
    "start. The answer says which `every` and `agg` were applied.",
    responses={
        404: {"description": "No such device"},
        422: {"description": "Unknown field, bad time or duration, or too many points"},
        503: {"description": "The telemetry store cannot be read"},
    },
)
def device_telemetry(
    services: ServicesDep,
    device_id: str,
    field: Annotated[str, Query(description="A field of the device type's telemetry contract")],
    start: Annotated[str, Query(description=f"From this time on: {TIME_HINT}")] = "-24h",
    stop: Annotated[str, Query(description=f"Before this time: {TIME_HINT}")] = "now",
    every: Annotated[
        str | None, Query(description="Aggregate over windows this long, at least 1s, such as 10s or 1m")
    ] = None,
    agg: Annotated[
        Aggregate | None,
        Query(
            description="The aggregate of each window; mean, min and max need a numeric field. "
            "Default mean for numeric fields, else last"
        ),
    ] = None,
    max_points: Annotated[int, Query(ge=1, le=10_000, description="The most points to answer")] = 1000,
) -> TelemetryHistory:
    device = services.registry.get(device_id)
    if device is None:
        raise HTTPException(404, f"device {device_id!r} not found")
    now = services.clock.now()
    start_ms = _time_ms("start", start, now)
    stop_ms = _time_ms("stop", stop, now)
    every_ms = _every_ms(every) if every is not None else None
    kind = field_kind(device.type, field)
    if agg is None:
        agg = Aggregate.MEAN if kind in (Kind.NUMBER, Kind.INTEGER) else Aggregate.LAST
    try:
        # The aggregate is checked even when the answer turns out raw: a request does not become invalid as its
        # span grows.
        check_query(device.type, field, start_ms, stop_ms, every_ms or STEPS_MS[0], agg)
    except ValueError as exc:
        culprit = "field" if kind is None else "stop" if stop_ms <= start_ms else "agg"
        raise invalid("query", culprit, str(exc)) from None

    if every_ms is not None:
        windows = _windows(start_ms, stop_ms, every_ms)
        if windows > max_points:
            raise invalid(
                "query",
                "every",
                f"{every} gives {windows} points from start to stop, more than max_points={max_points}: "
                "use a longer every, a shorter span or a larger max_points (at most 10000)",
            )
    elif stop_ms - start_ms <= max_points * 1000:
        # Readings come about once a second at most, so a span this short rarely holds too many; when it does (a
        # fast device, a backlog at millisecond spacing), it is aggregated like a longer span.
        raw = services.telemetry.query(device.id, field, start_ms, stop_ms)
        if len(raw) <= max_points:
            return _history(services, device.id, field, start_ms, stop_ms, None, None, raw)
    if every_ms is None:
        every_ms = _automatic_every(start_ms, stop_ms, max_points)
    points = services.telemetry.query(device.id, field, start_ms, stop_ms, every_ms=every_ms, agg=agg)
    return _history(services, device.id, field, start_ms, stop_ms, every_ms, agg, points)


def _history(
    services: Services,
    device_id: str,
    field: str,
    start_ms: int,
    stop_ms: int,
    every_ms: int | None,
    agg: Aggregate | None,
    points: list[Point],
) -> TelemetryHistory:
    tz = services.config.tz
    return TelemetryHistory(
        device_id=device_id,
        field=field,
        start=from_epoch_ms(start_ms, tz),
        stop=from_epoch_ms(stop_ms, tz),
        every=_format_every(every_ms) if every_ms is not None else None,
        agg=agg,
        points=[TelemetryPoint(t=from_epoch_ms(p.ts_ms, tz), v=p.value) for p in points],
        total=len(points),
    )


def _time_ms(name: str, value: str, now: datetime) -> int:
    """`start` or `stop` in epoch milliseconds; anything unusable is a 422 naming the parameter."""
    text = value.strip()
    try:
        if text == "now":
            at = now
        elif text.startswith("-"):
            at = now - parse_duration(text[1:])
        else:
            at = _rfc3339(text)
    except ValueError as exc:
        raise invalid("query", name, f"{value!r} is not a time: {exc}") from None
    except OverflowError:
        raise invalid("query", name, f"{value!r} is out of range") from None
    if not EARLIEST <= at <= LATEST:  # shown in the facility's time zone, it would not be a time there is
        raise invalid("query", name, f"{value!r} is out of range")
    return (at - EPOCH) // MS


def _rfc3339(text: str) -> datetime:
    # An unencoded `+` in a query string arrives as a space: `…T08:00:00 08:00` means `+08:00`.
    candidates = [text, "+".join(text.rsplit(" ", 1))] if " " in text else [text]
    for candidate in candidates:
        try:
            at = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        if at.tzinfo is None:
            raise ValueError("it has no offset, such as +08:00 or Z")
        return at
    raise ValueError(f"use {TIME_HINT}")


def _every_ms(value: str) -> int:
    try:
        every = parse_duration(value)
    except ValueError as exc:
        raise invalid("query", "every", str(exc)) from None
    if every < timedelta(seconds=1):
        raise invalid("query", "every", "every must be at least 1s")
    return every // MS


def _windows(start_ms: int, stop_ms: int, every_ms: int) -> int:
    """How many epoch-aligned windows hold readings with start <= ts < stop."""
    return (stop_ms - 1) // every_ms - start_ms // every_ms + 1


def _automatic_every(start_ms: int, stop_ms: int, max_points: int) -> int:
    """The shortest step that gives at most `max_points` windows; whole days beyond the list."""
    for step in STEPS_MS:
        if _windows(start_ms, stop_ms, step) <= max_points:
            return step
    days = max(2, -(-(stop_ms - start_ms) // (DAY_MS * max_points)))
    while _windows(start_ms, stop_ms, days * DAY_MS) > max_points:
        days += 1
    return days * DAY_MS


def _format_every(every_ms: int) -> str:
    if every_ms % 1000:
        return f"{every_ms}ms"
    return format_duration(timedelta(milliseconds=every_ms))
