"""The live stream: Server-Sent Events of alarm changes, work-order changes and readings.

Alarm and work-order changes come from their audit trails in the state store, so a stream sees every change
whichever service instance made it, and in order. Each such event's id is the pair of cursors `A-W` (the last
alarm event and work-order event sent); a browser that reconnects sends it back as `Last-Event-ID` and gets
everything it missed, up to `REPLAY_MAX` changes, before new ones. Readings are the latest values of each
device this instance ingests, at most one event per device per `reading_every`; they carry no id, as a missed
reading is superseded by the next one.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from facmon.api.deps import Services, ServicesDep
from facmon.api.routes.alarms import public_alarm
from facmon.api.routes.params import invalid
from facmon.api.routes.work_orders import public_event, public_work_order
from facmon.api.schemas import from_epoch_ms

router = APIRouter(prefix="/api/v1", tags=["stream"])

POLL_S = 0.5
HEARTBEAT_S = 15.0
TOKEN_CHECK_S = 10.0
# How long a missing id holds back the events after it: on PostgreSQL, concurrent writers can commit a later id
# first; the earlier one shows up a moment after (or never, when its transaction rolled back).
GAP_WAIT_S = 2.0
REPLAY_MAX = 1000
_CURSOR = re.compile(r"^(\d{1,18})-(\d{1,18})$")
TYPES = ("alarm", "work_order", "reading")


@router.get(
    "/stream",
    summary="Live events (Server-Sent Events): alarm and work-order changes, readings",
    description="`event: alarm` (the change and the alarm as it is now), `event: work_order` (the history line "
    "and the work order), `event: reading` (a device's latest values, at most one per device per "
    "`reading_every` seconds). Alarm and work-order events carry an `id`; reconnecting with `Last-Event-ID` "
    "(browsers do it by themselves) replays what was missed. A comment line every 15 s keeps proxies open.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 422: {"description": "Bad cursor or types"}},
)
async def stream(
    request: Request,
    services: ServicesDep,
    types: Annotated[str, Query(description="Comma-separated: alarm, work_order, reading")] = ",".join(TYPES),
    reading_every: Annotated[float, Query(ge=0.2, le=3600, description="Seconds between a device's readings")] = 1.0,
    last_event_id: Annotated[str | None, Header(description="Resume after this event id (`A-W`)")] = None,
    after: Annotated[str | None, Query(description="The same as Last-Event-ID, for clients that cannot set it")] = None,
) -> StreamingResponse:
    wanted = {t.strip() for t in types.split(",") if t.strip()}
    unknown = sorted(wanted - set(TYPES))
    if unknown or not wanted:
        raise invalid("query", "types", f"unknown {', '.join(unknown)}; choose from {', '.join(TYPES)}")
    cursor_text = last_event_id or after
    if cursor_text is not None:
        match = _CURSOR.match(cursor_text.strip())
        if match is None:
            where = ("header", "last-event-id") if last_event_id else ("query", "after")
            raise invalid(*where, "an event id of this stream looks like 120-37")
        cursor = (int(match.group(1)), int(match.group(2)))
    else:
        cursor = await run_in_threadpool(services.state.last_change_ids)
    events = _events(request, services, wanted, cursor, reading_every)
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    request: Request, services: Services, wanted: set[str], cursor: tuple[int, int], reading_every: float
) -> AsyncIterator[bytes]:
    alarm_after, work_order_after = cursor
    gaps = Gaps()
    sent_ms: dict[str, int] = {}  # per device: ts of the reading last sent
    next_reading_at: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    quiet_since = checked_at = loop.time()
    token: str = request.state.token
    yield b"retry: 2000\n\n"
    while not await request.is_disconnected():
        if loop.time() - checked_at >= TOKEN_CHECK_S:
            # A stream outlives no sign-out, revocation or expiry by more than this: it ends, and the browser's
            # reconnect meets the 401.
            checked_at = loop.time()
            if await run_in_threadpool(services.accounts.authenticate, token, services.clock.now()) is None:
                return
        chunks: list[bytes] = []
        if "alarm" in wanted or "work_order" in wanted:
            alarm_after, work_order_after, changes = await run_in_threadpool(
                _changes, services, wanted, alarm_after, work_order_after, gaps
            )
            chunks += changes
        if "reading" in wanted:
            chunks += _readings(services, sent_ms, next_reading_at, loop.time(), reading_every)
        if chunks:
            quiet_since = loop.time()
            yield b"".join(chunks)
        elif loop.time() - quiet_since >= HEARTBEAT_S:
            quiet_since = loop.time()
            yield b": keep-alive\n\n"
        await asyncio.sleep(POLL_S)


class Gaps:
    """Ids missing from a stream's sequence, and since when: events after a missing id wait for it a moment."""

    def __init__(self, wait_s: float = GAP_WAIT_S) -> None:
        self._wait_s = wait_s
        self._seen: dict[tuple[str, int], float] = {}

    def ready(self, kind: str, after: int, ids: list[int], now: float) -> int:
        """How many of `ids` (ascending, all above `after`) can be sent now, in order."""
        expected = after + 1
        for count, found in enumerate(ids):
            if found != expected:
                first_seen = self._seen.setdefault((kind, expected), now)
                if now - first_seen < self._wait_s:
                    return count  # hold back until the missing one comes, or its wait is over
                self._seen.pop((kind, expected), None)
            expected = found + 1
        return len(ids)


def _changes(
    services: Services, wanted: set[str], alarm_after: int, work_order_after: int, gaps: Gaps
) -> tuple[int, int, list[bytes]]:
    """The changes after the cursors, alarms first; each event's id is the cursor just after it, so a client that
    resumes from any event gets exactly what came after it."""
    tz = services.config.tz
    chunks: list[bytes] = []
    now = time.monotonic()
    if "alarm" in wanted:
        changes = services.state.alarm_changes_after(alarm_after, REPLAY_MAX)
        changes = changes[: gaps.ready("alarm", alarm_after, [e.id or 0 for e, _ in changes], now)]
        for event, alarm in changes:
            alarm_after = event.id or alarm_after
            data = {
                "kind": event.kind,
                "at": event.at.astimezone(tz).isoformat(),
                "actor": event.actor,
                "note": event.note,
                "alarm": public_alarm(alarm, tz).model_dump(mode="json"),
            }
            chunks.append(_sse("alarm", data, f"{alarm_after}-{work_order_after}"))
    if "work_order" in wanted:
        lines = services.state.work_order_changes_after(work_order_after, REPLAY_MAX)
        lines = lines[: gaps.ready("work_order", work_order_after, [e.id or 0 for e, _ in lines], now)]
        for line, order in lines:
            work_order_after = line.id or work_order_after
            data = {
                "event": public_event(line, tz).model_dump(mode="json"),
                "work_order": public_work_order(order, tz).model_dump(mode="json"),
            }
            chunks.append(_sse("work_order", data, f"{alarm_after}-{work_order_after}"))
    return alarm_after, work_order_after, chunks


def _readings(
    services: Services, sent_ms: dict[str, int], next_at: dict[str, float], now: float, every: float
) -> list[bytes]:
    tz = services.config.tz
    chunks = []
    for device_id, snapshot in services.presence.snapshots():
        if snapshot.latest_ts_ms <= sent_ms.get(device_id, 0) or now < next_at.get(device_id, 0.0):
            continue
        sent_ms[device_id] = snapshot.latest_ts_ms
        next_at[device_id] = now + every
        data = {
            "device_id": device_id,
            "ts": from_epoch_ms(snapshot.latest_ts_ms, tz).isoformat(),
            "latest": snapshot.latest,
        }
        chunks.append(_sse("reading", data, None))
    return chunks


def _sse(name: str, data: object, event_id: str | None) -> bytes:
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id else "")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"
