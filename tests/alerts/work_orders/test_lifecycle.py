"""The work order lifecycle as a pure function: which moves are allowed, what each needs, what it stamps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from facmon.alerts.errors import TransitionInputError, TransitionNotAllowedError
from facmon.alerts.work_orders.lifecycle import (
    TRANSITIONS,
    allowed_transitions,
    resolution_time,
    response_time,
    transition,
)
from facmon.facility.model import Category, Priority, WorkOrder, WorkOrderSource
from facmon.facility.model import WorkOrderStatus as S

T0 = datetime(2026, 11, 21, 18, 0, tzinfo=UTC)

ALLOWED = [
    (S.OPEN, S.ASSIGNED),
    (S.OPEN, S.IN_PROGRESS),
    (S.OPEN, S.CANCELLED),
    (S.ASSIGNED, S.IN_PROGRESS),
    (S.ASSIGNED, S.ON_HOLD),
    (S.ASSIGNED, S.OPEN),
    (S.ASSIGNED, S.CANCELLED),
    (S.IN_PROGRESS, S.ON_HOLD),
    (S.IN_PROGRESS, S.RESOLVED),
    (S.IN_PROGRESS, S.CANCELLED),
    (S.ON_HOLD, S.IN_PROGRESS),
    (S.ON_HOLD, S.CANCELLED),
    (S.RESOLVED, S.CLOSED),
    (S.RESOLVED, S.IN_PROGRESS),
]

DISALLOWED = [
    (S.OPEN, S.RESOLVED),  # nobody has worked on it
    (S.OPEN, S.CLOSED),
    (S.OPEN, S.ON_HOLD),
    (S.OPEN, S.OPEN),
    (S.ASSIGNED, S.RESOLVED),
    (S.ASSIGNED, S.ASSIGNED),
    (S.IN_PROGRESS, S.OPEN),
    (S.IN_PROGRESS, S.CLOSED),  # resolved first, then signed off
    (S.ON_HOLD, S.RESOLVED),
    (S.ON_HOLD, S.ASSIGNED),
    (S.RESOLVED, S.CANCELLED),  # the work was done
    (S.RESOLVED, S.OPEN),
    (S.CLOSED, S.IN_PROGRESS),
    (S.CLOSED, S.OPEN),
    (S.CANCELLED, S.OPEN),
    (S.CANCELLED, S.IN_PROGRESS),
]


def order(status: S = S.OPEN, **changes: object) -> WorkOrder:
    base = WorkOrder(
        id=7,
        number="WO-20261122-0001",
        title="Booster pump 1: pressure low",
        device_id="pump-1",
        site="riverside",
        category=Category.WATER,
        priority=Priority.P1,
        status=status,
        source=WorkOrderSource.ALARM,
        created_at=T0,
        due_at=T0 + timedelta(minutes=5),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def move(wo: WorkOrder, to: S, minutes: float = 1, **kw: str) -> WorkOrder:
    """`to` with what it needs: an assignee to assigned, a note to resolved and cancelled."""
    if to is S.ASSIGNED:
        kw.setdefault("assignee", "zhang.wei")
    if to in (S.RESOLVED, S.CANCELLED):
        kw.setdefault("note", "done")
    new, _ = transition(wo, to, by="wang.li", at=T0 + timedelta(minutes=minutes), **kw)
    return new


def test_the_table_names_every_status_and_only_the_allowed_moves() -> None:
    assert set(TRANSITIONS) == set(S)
    assert sorted((a, b) for a, targets in TRANSITIONS.items() for b in targets) == sorted(ALLOWED)
    assert allowed_transitions(S.CLOSED) == allowed_transitions(S.CANCELLED) == ()


@pytest.mark.parametrize(("start", "to"), ALLOWED)
def test_every_allowed_move_is_made_and_recorded(start: S, to: S) -> None:
    before = order(start, assignee="zhang.wei" if start is not S.OPEN else None)
    kw = {"assignee": "li.na"} if to is S.ASSIGNED else {}
    note = "what was done, or why" if to in (S.RESOLVED, S.CANCELLED) else None
    after, event = transition(before, to, by="wang.li", at=T0 + timedelta(minutes=3), note=note, **kw)
    assert after.status is to and after.updated_at == T0 + timedelta(minutes=3)
    assert (event.work_order_id, event.kind, event.from_status, event.status) == (7, "transition", start, to)
    assert (event.actor, event.note, event.at) == ("wang.li", note, T0 + timedelta(minutes=3))


@pytest.mark.parametrize(("start", "to"), DISALLOWED)
def test_a_disallowed_move_names_the_current_status_and_the_allowed_ones(start: S, to: S) -> None:
    with pytest.raises(TransitionNotAllowedError) as raised:
        transition(order(start), to, by="wang.li", at=T0, note="n", assignee="a" if to is S.ASSIGNED else None)
    assert (raised.value.current, raised.value.to, raised.value.allowed) == (start, to, TRANSITIONS[start])
    assert f"is {start}" in str(raised.value)


@pytest.mark.parametrize(
    ("start", "to", "field", "kw"),
    [
        (S.OPEN, S.ASSIGNED, "assignee", {}),
        (S.OPEN, S.ASSIGNED, "assignee", {"assignee": "  "}),
        (S.IN_PROGRESS, S.RESOLVED, "note", {}),
        (S.IN_PROGRESS, S.RESOLVED, "note", {"note": " "}),
        (S.ON_HOLD, S.CANCELLED, "note", {}),
        (S.IN_PROGRESS, S.ON_HOLD, "assignee", {"assignee": "li.na"}),  # not a move that takes one
        (S.ASSIGNED, S.OPEN, "assignee", {"assignee": "li.na"}),
    ],
)
def test_what_a_move_needs_and_what_it_does_not_take(start: S, to: S, field: str, kw: dict[str, str]) -> None:
    with pytest.raises(TransitionInputError) as raised:
        transition(order(start), to, by="wang.li", at=T0, **kw)
    assert raised.value.field == field


def test_assignee_is_set_kept_and_cleared_when_unassigned() -> None:
    assigned = move(order(), S.ASSIGNED, assignee="zhang.wei")
    assert assigned.assignee == "zhang.wei"
    started = move(assigned, S.IN_PROGRESS)
    assert started.assignee == "zhang.wei"
    assert move(started, S.ON_HOLD).assignee == "zhang.wei"
    assert move(assigned, S.OPEN).assignee is None
    assert move(order(), S.IN_PROGRESS, assignee="li.na").assignee == "li.na"


def test_response_and_resolution_times() -> None:
    wo = order()
    assert response_time(wo) is None and resolution_time(wo) is None
    wo = move(wo, S.ASSIGNED, 3)
    assert wo.first_response_at == T0 + timedelta(minutes=3)
    wo = move(move(wo, S.OPEN, 4), S.ASSIGNED, 6)  # handed back and taken again: the first response stands
    wo = move(wo, S.IN_PROGRESS, 10)
    assert response_time(wo) == timedelta(minutes=3)
    wo = move(wo, S.RESOLVED, 50)
    assert (wo.resolved_at, resolution_time(wo)) == (T0 + timedelta(minutes=50), timedelta(minutes=50))
    reopened = move(wo, S.IN_PROGRESS, 60)
    assert reopened.resolved_at is None and resolution_time(reopened) is None
    wo = move(move(reopened, S.RESOLVED, 90), S.CLOSED, 120)
    assert resolution_time(wo) == timedelta(minutes=90) and wo.closed_at == T0 + timedelta(minutes=120)


def test_cancelling_an_open_work_order_is_no_response() -> None:
    cancelled = move(order(), S.CANCELLED, note="duplicate")
    assert cancelled.first_response_at is None and cancelled.closed_at is None
