"""ISA-18.2 transitions, one table row per path through the state diagram."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from facmon.facility.model import Alarm, AlarmState, Device, DeviceType, Severity
from facmon.rules.engine import ConditionChange, ConditionEvent
from facmon.rules.lifecycle import LifecycleError, acknowledge, on_condition

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
PUMP = Device("pump-1", DeviceType.PUMP, "riverside", "A", "Pump 1")


def condition(kind: ConditionChange, severity: Severity = Severity.MAJOR, minutes: int = 0) -> ConditionEvent:
    return ConditionEvent(kind, "low", "pump-1", severity, 2.0, f"low {kind}", T0 + timedelta(minutes=minutes))


def raised() -> Alarm:
    result = on_condition(None, condition(ConditionChange.RAISED), PUMP)
    assert result is not None
    return result[0]


def test_raise_makes_an_unacknowledged_alarm_with_an_audit_event() -> None:
    alarm, event = on_condition(None, condition(ConditionChange.RAISED), PUMP) or (None, None)
    assert alarm is not None and event is not None
    assert (alarm.state, alarm.severity, alarm.site, alarm.raised_at) == (
        AlarmState.ACTIVE_UNACKED,
        Severity.MAJOR,
        "riverside",
        T0,
    )
    assert (event.kind, event.actor, event.state) == ("raised", "system", AlarmState.ACTIVE_UNACKED)


@pytest.mark.parametrize(
    ("acked_first", "expected_state", "expected_kind"),
    [(False, AlarmState.RETURNED_UNACKED, "returned"), (True, AlarmState.CLEARED, "cleared")],
)
def test_condition_clearing(acked_first: bool, expected_state: AlarmState, expected_kind: str) -> None:
    alarm = raised()
    if acked_first:
        alarm, _ = acknowledge(alarm, "wang.li", T0 + timedelta(minutes=1))
    result = on_condition(alarm, condition(ConditionChange.CLEARED, minutes=2), PUMP)
    assert result is not None
    after, event = result
    assert (after.state, event.kind) == (expected_state, expected_kind)
    assert after.returned_at == T0 + timedelta(minutes=2)
    assert (after.cleared_at is not None) is acked_first


def test_acknowledging_a_returned_alarm_clears_it() -> None:
    result = on_condition(raised(), condition(ConditionChange.CLEARED, minutes=2), PUMP)
    assert result is not None
    after, event = acknowledge(result[0], "wang.li", T0 + timedelta(minutes=3), "checked on site")
    assert after.state is AlarmState.CLEARED and after.acked_by == "wang.li"
    assert (event.kind, event.actor, event.note) == ("acknowledged", "wang.li", "checked on site")


def test_acknowledging_twice_is_refused() -> None:
    alarm, _ = acknowledge(raised(), "a", T0)
    with pytest.raises(LifecycleError, match="nothing to acknowledge"):
        acknowledge(alarm, "b", T0)


def test_raise_while_returned_reactivates_the_same_alarm() -> None:
    returned = on_condition(raised(), condition(ConditionChange.CLEARED, minutes=1), PUMP)
    assert returned is not None
    again = on_condition(returned[0], condition(ConditionChange.RAISED, minutes=2), PUMP)
    assert again is not None
    assert again[0].state is AlarmState.ACTIVE_UNACKED and again[1].kind == "reactivated"
    assert again[0].raised_at == T0 and again[0].returned_at is None


def test_a_raise_after_clearing_is_a_new_alarm() -> None:
    alarm, _ = acknowledge(raised(), "a", T0)
    cleared = on_condition(alarm, condition(ConditionChange.CLEARED, minutes=1), PUMP)
    assert cleared is not None
    new = on_condition(cleared[0], condition(ConditionChange.RAISED, minutes=5), PUMP)
    assert new is not None
    assert new[1].kind == "raised" and new[0].raised_at == T0 + timedelta(minutes=5) and new[0].acked_by is None


def test_escalation_re_annunciates_but_de_escalation_does_not() -> None:
    acked, _ = acknowledge(raised(), "a", T0)
    up = on_condition(acked, condition(ConditionChange.SEVERITY_CHANGED, Severity.CRITICAL, 1), PUMP)
    assert up is not None and up[0].state is AlarmState.ACTIVE_UNACKED
    assert up[1].note == "severity major → critical"
    acked_again, _ = acknowledge(up[0], "a", T0)
    down = on_condition(acked_again, condition(ConditionChange.SEVERITY_CHANGED, Severity.MINOR, 2), PUMP)
    assert down is not None and down[0].state is AlarmState.ACTIVE_ACKED


def test_changes_to_a_cleared_or_missing_alarm_are_ignored() -> None:
    assert on_condition(None, condition(ConditionChange.CLEARED), PUMP) is None
    assert on_condition(None, condition(ConditionChange.SEVERITY_CHANGED), PUMP) is None
