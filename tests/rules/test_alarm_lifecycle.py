"""ISA-18.2 transitions, one table row per path through the state diagram."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from facmon.facility.model import Alarm, AlarmState, Device, DeviceType, Severity
from facmon.rules.alarm_lifecycle import acknowledge, comment, on_condition, reset, shelve, unshelve
from facmon.rules.engine import ConditionChange, ConditionEvent
from facmon.rules.errors import LifecycleError

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


def test_a_latched_alarm_stays_active_until_reset() -> None:
    latched = replace(raised(), latched=True)
    result = on_condition(latched, condition(ConditionChange.CLEARED, minutes=1), PUMP)
    assert result is not None
    returned, event = result
    assert returned.state is AlarmState.ACTIVE_UNACKED and returned.returned_at is not None
    assert event.kind == "returned_latched"
    acked, _ = acknowledge(returned, "li", T0 + timedelta(minutes=2))
    assert acked.state is AlarmState.ACTIVE_ACKED  # acknowledged, still latched
    after, reset_event = reset(acked, "li", T0 + timedelta(minutes=3), "valve closed, pipe repaired")
    assert after.state is AlarmState.CLEARED and reset_event.kind == "reset" and reset_event.actor == "li"


def test_reset_is_refused_while_the_condition_is_present_or_for_unlatched_alarms() -> None:
    with pytest.raises(LifecycleError, match="still present"):
        reset(replace(raised(), latched=True), "li", T0)
    with pytest.raises(LifecycleError, match="not a latched active alarm"):
        reset(raised(), "li", T0)


def test_unacknowledged_latched_alarm_reset_still_needs_its_acknowledgement() -> None:
    result = on_condition(replace(raised(), latched=True), condition(ConditionChange.CLEARED, minutes=1), PUMP)
    assert result is not None
    after, _ = reset(result[0], "li", T0 + timedelta(minutes=2))
    assert after.state is AlarmState.RETURNED_UNACKED


def test_shelving_needs_a_future_end_and_unshelving_a_shelf() -> None:
    alarm = raised()
    shelved, event = shelve(alarm, "li", T0, T0 + timedelta(hours=2), "sensor being replaced")
    assert shelved.shelved and shelved.shelved_until == T0 + timedelta(hours=2) and shelved.shelved_by == "li"
    assert event.kind == "shelved" and event.note is not None and "sensor being replaced" in event.note
    assert shelved.state is alarm.state  # shelving hides, it does not acknowledge
    with pytest.raises(LifecycleError, match="future"):
        shelve(alarm, "li", T0, T0, "no time")
    back, event = unshelve(shelved, "system", T0 + timedelta(hours=2), "shelf time is up")
    assert not back.shelved and back.shelved_until is None and event.actor == "system"
    with pytest.raises(LifecycleError, match="not shelved"):
        unshelve(back, "li", T0)


def test_suppression_is_recorded_without_changing_the_state() -> None:
    alarm = raised()
    result = on_condition(alarm, condition(ConditionChange.SUPPRESSED), PUMP)
    assert result is not None and result[0].suppressed and result[0].state is alarm.state
    assert result[1].kind == "suppressed"


def test_comments_go_on_the_trail_only() -> None:
    alarm = raised()
    same, event = comment(alarm, "li", T0, "called the pump contractor")
    assert same == alarm and (event.kind, event.note) == ("comment", "called the pump contractor")


def test_only_an_alarm_shown_again_counts_as_reactivated() -> None:
    returned = on_condition(raised(), condition(ConditionChange.CLEARED, minutes=1), PUMP)
    assert returned is not None
    hidden = replace(condition(ConditionChange.RAISED, minutes=2), suppressed=True)
    again = on_condition(returned[0], hidden, PUMP)
    assert again is not None and again[1].kind == "reactivated_suppressed"
    latched, _ = acknowledge(replace(raised(), latched=True), "li", T0)
    back = on_condition(latched, condition(ConditionChange.CLEARED, minutes=1), PUMP)
    assert back is not None
    recurred = on_condition(back[0], condition(ConditionChange.RAISED, minutes=2), PUMP)
    assert recurred is not None and recurred[1].kind == "recurred"
    assert recurred[0].state is AlarmState.ACTIVE_ACKED


def test_a_cleared_alarm_is_off_its_shelf() -> None:
    shelved, _ = shelve(raised(), "li", T0, T0 + timedelta(hours=2), "nuisance")
    returned = on_condition(shelved, condition(ConditionChange.CLEARED, minutes=1), PUMP)
    assert returned is not None and returned[0].shelved  # still active in the diagram: still shelved
    cleared, _ = acknowledge(returned[0], "li", T0 + timedelta(minutes=2))
    assert cleared.state is AlarmState.CLEARED and not cleared.shelved and cleared.shelved_until is None
