"""The ISA-18.2 alarm lifecycle, as pure functions from an alarm and a happening to the alarm after it.

    normal ──raise──▶ active_unacked ──ack──▶ active_acked
                          │                       │
                       condition               condition
                        clears                  clears
                          ▼                       ▼
                   returned_unacked ──ack──▶ cleared (episode over; a new raise is a new alarm)

A raise while returned-unacknowledged re-activates the same alarm. A rise in severity re-annunciates it
(back to unacknowledged); a fall does not. A latched alarm stays active when its condition clears, until an
operator resets it. Shelving and suppression are flags beside the state: they hide an alarm from the
operator's list without changing where it is in the diagram. Each function returns the new alarm and the
audit event.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from facmon.facility.model import Alarm, AlarmEvent, AlarmState, Device
from facmon.rules.engine import ConditionChange, ConditionEvent
from facmon.rules.errors import LifecycleError


def on_condition(alarm: Alarm | None, event: ConditionEvent, device: Device) -> tuple[Alarm, AlarmEvent] | None:
    """Apply a condition change from the engine; None when it changes nothing."""
    at = event.at
    if event.kind is ConditionChange.RAISED:
        if alarm is None or alarm.state is AlarmState.CLEARED:
            new = Alarm(
                id=0,
                rule=event.rule,
                device_id=event.device_id,
                site=device.site,
                severity=event.severity,
                state=AlarmState.ACTIVE_UNACKED,
                raised_at=at,
                value=event.value,
                message=event.message,
                updated_at=at,
                suppressed=event.suppressed,
                latched=event.latched,
            )
            # A suppressed alarm is recorded but not annunciated: it must not count towards alarm rates or floods.
            return new, _event(new, "raised_suppressed" if event.suppressed else "raised", at, note=event.message)
        # Returned but not yet acknowledged (or latched and not yet reset): the same alarm comes back. Only one
        # that the operator is shown again counts as annunciated: not a suppressed one, nor one still acknowledged.
        if event.suppressed:
            kind = "reactivated_suppressed"
        elif alarm.state is AlarmState.ACTIVE_ACKED:
            kind = "recurred"
        else:
            kind = "reactivated"
        new = replace(
            alarm,
            state=AlarmState.ACTIVE_UNACKED if alarm.state is not AlarmState.ACTIVE_ACKED else alarm.state,
            severity=event.severity,
            value=event.value,
            message=event.message,
            returned_at=None,
            suppressed=event.suppressed,
            updated_at=at,
        )
        return new, _event(new, kind, at, note=event.message)

    if alarm is None or alarm.state is AlarmState.CLEARED:
        return None

    if event.kind is ConditionChange.SEVERITY_CHANGED:
        escalated = event.severity.rank > alarm.severity.rank
        state = AlarmState.ACTIVE_UNACKED if escalated else alarm.state
        new = replace(
            alarm, severity=event.severity, state=state, value=event.value, message=event.message, updated_at=at
        )
        note = f"severity {alarm.severity} → {event.severity}"
        return new, _event(new, "severity_changed", at, note=note)

    if event.kind in (ConditionChange.SUPPRESSED, ConditionChange.UNSUPPRESSED):
        suppressed = event.kind is ConditionChange.SUPPRESSED
        new = replace(alarm, suppressed=suppressed, updated_at=at)
        return new, _event(new, event.kind.value, at, note="suppressed by design" if suppressed else None)

    # The condition cleared.
    if alarm.latched and alarm.state in (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED):
        new = replace(alarm, value=event.value, returned_at=at, updated_at=at)
        return new, _event(new, "returned_latched", at, note="latched: stays active until reset")
    if alarm.state is AlarmState.ACTIVE_ACKED:
        new = _off_shelf(
            replace(alarm, state=AlarmState.CLEARED, value=event.value, returned_at=at, cleared_at=at, updated_at=at)
        )
        return new, _event(new, "cleared", at, note=event.message)
    if alarm.state is AlarmState.ACTIVE_UNACKED:
        new = replace(alarm, state=AlarmState.RETURNED_UNACKED, value=event.value, returned_at=at, updated_at=at)
        return new, _event(new, "returned", at, note=event.message)
    return None


def acknowledge(alarm: Alarm, actor: str, at: datetime, note: str | None = None) -> tuple[Alarm, AlarmEvent]:
    """An operator acknowledges: active → active-acknowledged; returned → cleared."""
    if alarm.state is AlarmState.ACTIVE_UNACKED:
        new = replace(alarm, state=AlarmState.ACTIVE_ACKED, acked_at=at, acked_by=actor, updated_at=at)
    elif alarm.state is AlarmState.RETURNED_UNACKED:
        new = _off_shelf(
            replace(alarm, state=AlarmState.CLEARED, acked_at=at, acked_by=actor, cleared_at=at, updated_at=at)
        )
    else:
        raise LifecycleError(f"alarm {alarm.id} is {alarm.state}: there is nothing to acknowledge")
    return new, _event(new, "acknowledged", at, actor=actor, note=note)


def _off_shelf(alarm: Alarm) -> Alarm:
    """A cleared alarm is over: it is no longer on any shelf."""
    return replace(alarm, shelved=False, shelved_until=None, shelved_by=None, shelve_reason=None)


def _event(alarm: Alarm, kind: str, at: datetime, *, actor: str = "system", note: str | None = None) -> AlarmEvent:
    return AlarmEvent(alarm.id, at, kind, alarm.state, alarm.severity, actor, alarm.value, note)


def shelve(alarm: Alarm, actor: str, at: datetime, until: datetime, reason: str) -> tuple[Alarm, AlarmEvent]:
    """Take an alarm off the operator's list until `until`, for a stated reason."""
    if alarm.state is AlarmState.CLEARED:
        raise LifecycleError(f"alarm {alarm.id} is cleared: there is nothing to shelve")
    if until <= at:
        raise LifecycleError("a shelf ends in the future")
    new = replace(alarm, shelved=True, shelved_until=until, shelved_by=actor, shelve_reason=reason, updated_at=at)
    return new, _event(new, "shelved", at, actor=actor, note=f"{reason} (until {until.isoformat()})")


def unshelve(alarm: Alarm, actor: str, at: datetime, note: str | None = None) -> tuple[Alarm, AlarmEvent]:
    """Back on the list: by an operator, or by the system when the shelf time is up."""
    if not alarm.shelved:
        raise LifecycleError(f"alarm {alarm.id} is not shelved")
    new = replace(alarm, shelved=False, shelved_until=None, shelved_by=None, shelve_reason=None, updated_at=at)
    return new, _event(new, "unshelved", at, actor=actor, note=note)


def reset(alarm: Alarm, actor: str, at: datetime, note: str | None = None) -> tuple[Alarm, AlarmEvent]:
    """Release a latched alarm whose condition has returned."""
    if not alarm.latched or alarm.state not in (AlarmState.ACTIVE_UNACKED, AlarmState.ACTIVE_ACKED):
        raise LifecycleError(f"alarm {alarm.id} is not a latched active alarm: there is nothing to reset")
    if alarm.returned_at is None:
        raise LifecycleError(f"alarm {alarm.id}: its condition is still present")
    if alarm.state is AlarmState.ACTIVE_ACKED:
        new = _off_shelf(replace(alarm, state=AlarmState.CLEARED, cleared_at=at, updated_at=at))
    else:
        new = replace(alarm, state=AlarmState.RETURNED_UNACKED, updated_at=at)
    return new, _event(new, "reset", at, actor=actor, note=note)


def comment(alarm: Alarm, actor: str, at: datetime, text: str) -> tuple[Alarm, AlarmEvent]:
    """A note on the audit trail; the alarm itself does not change."""
    return alarm, _event(alarm, "comment", at, actor=actor, note=text)


def set_service(alarm: Alarm, in_service: bool, actor: str, at: datetime, note: str | None) -> tuple[Alarm, AlarmEvent]:
    """The alarm's device was taken out of service (not annunciated meanwhile) or returned to it."""
    new = replace(alarm, suppressed=not in_service, updated_at=at)
    return new, _event(new, "in_service" if in_service else "out_of_service", at, actor=actor, note=note)


def retire(alarm: Alarm, actor: str, at: datetime, note: str) -> tuple[Alarm, AlarmEvent]:
    """The rule that raised the alarm is gone: nothing can ever clear it, so it is closed, with why."""
    new = _off_shelf(replace(alarm, state=AlarmState.CLEARED, cleared_at=at, updated_at=at))
    return new, _event(new, "retired", at, actor=actor, note=note)
