"""The work order lifecycle, as a table and a pure function from a work order and a request to its next state.

    open         → assigned, in_progress, cancelled
    assigned     → in_progress, on_hold, open (unassigned), cancelled
    in_progress  → on_hold, resolved, cancelled
    on_hold      → in_progress, cancelled
    resolved     → closed, in_progress (reopened)
    closed, cancelled: final

Moving to `assigned` needs an assignee, to `resolved` a note of what was done, to `cancelled` a reason (the note).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from facmon.alerts.errors import TransitionInputError, TransitionNotAllowedError
from facmon.facility.model import WorkOrder, WorkOrderEvent, WorkOrderStatus

S = WorkOrderStatus

# The statuses of a work order that someone still has to act on.
OPEN_STATUSES = (S.OPEN, S.ASSIGNED, S.IN_PROGRESS, S.ON_HOLD)

TRANSITIONS: Mapping[WorkOrderStatus, tuple[WorkOrderStatus, ...]] = {
    S.OPEN: (S.ASSIGNED, S.IN_PROGRESS, S.CANCELLED),
    S.ASSIGNED: (S.IN_PROGRESS, S.ON_HOLD, S.OPEN, S.CANCELLED),
    S.IN_PROGRESS: (S.ON_HOLD, S.RESOLVED, S.CANCELLED),
    S.ON_HOLD: (S.IN_PROGRESS, S.CANCELLED),
    S.RESOLVED: (S.CLOSED, S.IN_PROGRESS),
    S.CLOSED: (),
    S.CANCELLED: (),
}

# The ones someone is working on: a move to one of them out of `open` is the first response.
_TAKEN_UP = (S.ASSIGNED, S.IN_PROGRESS)
_NEEDS_NOTE = {S.RESOLVED: "say what was done to resolve it", S.CANCELLED: "give the reason for cancelling"}


def allowed_transitions(status: WorkOrderStatus) -> tuple[WorkOrderStatus, ...]:
    """The statuses a work order in `status` may move to; none for a final one."""
    return TRANSITIONS[status]


def transition(
    order: WorkOrder,
    to: WorkOrderStatus,
    *,
    by: str,
    at: datetime,
    note: str | None = None,
    assignee: str | None = None,
) -> tuple[WorkOrder, WorkOrderEvent]:
    """Move a work order to `to`: the work order after it and the line for its history.

    Raises TransitionNotAllowedError when its status does not lead to `to`, TransitionInputError when the
    request lacks the assignee or note that `to` needs, or gives an assignee where none is taken.
    """
    allowed = allowed_transitions(order.status)
    if to not in allowed:
        raise TransitionNotAllowedError(order.number, order.status, to, allowed)
    note = note.strip() if note and note.strip() else None
    assignee = assignee.strip() if assignee and assignee.strip() else None
    if to is S.ASSIGNED and assignee is None:
        raise TransitionInputError("assignee", "assigning needs an assignee")
    if assignee is not None and to not in _TAKEN_UP:
        raise TransitionInputError("assignee", f"only a move to {' or '.join(_TAKEN_UP)} takes an assignee")
    if to in _NEEDS_NOTE and note is None:
        raise TransitionInputError("note", _NEEDS_NOTE[to])

    new = replace(order, status=to, updated_at=at)
    if assignee is not None:
        new = replace(new, assignee=assignee)
    if to is S.OPEN:
        new = replace(new, assignee=None)
    if to in _TAKEN_UP and order.first_response_at is None:
        new = replace(new, first_response_at=at)
    if to is S.RESOLVED:
        new = replace(new, resolved_at=at)
    elif order.status is S.RESOLVED and to is S.IN_PROGRESS:
        # Reopened: it is resolved again only when it is resolved again.
        new = replace(new, resolved_at=None)
    if to is S.CLOSED:
        new = replace(new, closed_at=at)
    event = WorkOrderEvent(
        work_order_id=order.id,
        at=at,
        kind="transition",
        status=to,
        actor=by,
        note=note,
        from_status=order.status,
        assignee=new.assignee,
    )
    return new, event


def response_time(order: WorkOrder) -> timedelta | None:
    """From opening to the first time someone took it up; None until then."""
    return order.first_response_at - order.created_at if order.first_response_at else None


def resolution_time(order: WorkOrder) -> timedelta | None:
    """From opening to its (last) resolution; None while unresolved."""
    return order.resolved_at - order.created_at if order.resolved_at else None
