"""The notification log: what the outbox has queued, sent and given up on."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from facmon.api.deps import ServicesDep
from facmon.api.routes.params import Limit, Offset, enum_list
from facmon.api.schemas import NotificationPublic, Page, local_time
from facmon.facility.model import NotificationState, QueuedNotification

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


@router.get("", response_model=Page[NotificationPublic], summary="The notification log, newest first")
def list_notifications(
    services: ServicesDep,
    state: Annotated[
        list[str] | None, Query(description="`pending`, `sent`, `dead`; several comma-separated; all if absent")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[NotificationPublic]:
    states = enum_list(state, NotificationState, "state") or None
    page = services.state.list_notifications(states=states, limit=limit, offset=offset)
    return Page(items=[public_notification(n, services.config.tz) for n in page.items], total=page.total)


def public_notification(row: QueuedNotification, tz: ZoneInfo) -> NotificationPublic:
    return NotificationPublic(
        id=row.id,
        channel=row.channel,
        kind=row.kind,
        ref=row.ref,
        language=row.language,
        subject=row.subject,
        state=row.state,
        attempts=row.attempts,
        created_at=row.created_at.astimezone(tz),
        # Only a pending row will be tried again; a lease or backoff time on a finished row would mislead.
        next_attempt_at=local_time(row.next_attempt_at, tz) if row.state is NotificationState.PENDING else None,
        sent_at=local_time(row.sent_at, tz),
        last_error=row.last_error,
        recipient=row.recipient,
        address=row.address,
    )
