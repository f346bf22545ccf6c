"""Every condition kind, delays, deadband, latching and suppression, table-driven with explicit times.

Each case is a small rule set and a timeline of (second, device, fields) readings and (second, None) ticks; the
expectation is the condition events the engine emits, as (second, change, rule, device, severity).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facmon.config.loader import parse_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import Reading, Scalar
from facmon.rules.conditions import RuleSet
from facmon.rules.engine import ConditionEvent, EngineState, Memory, evaluate, tick

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)

SITE = """
sites:
  - id: s
    buildings:
      - id: A
        devices:
          - {id: p1, type: pump, name: P1, nominal: {pressure_bar: 4.0}}
          - {id: p2, type: pump, name: P2, nominal: {pressure_bar: 4.0}}
          - {id: v1, type: power, name: V1, nominal: {voltage_v: 230}}
          - {id: e1, type: elevator, name: E1}
      - id: B
        devices:
          - {id: p3, type: pump, name: P3, nominal: {pressure_bar: 4.0}}
"""

Step = tuple[float, str | None, dict[str, Scalar]]


def ruleset(rules_yaml: str) -> RuleSet:
    config = parse_config(SITE + "rules:\n" + rules_yaml, env={})
    return RuleSet.compile(config.rules, DeviceRegistry.from_config(config))


def run(rules: RuleSet, steps: list[Step], state: EngineState | None = None) -> tuple[EngineState, list]:
    state = state or EngineState()
    seen: list[tuple[float, str, str, str, str]] = []
    for second, device, fields in steps:
        now = T0 + timedelta(seconds=second)
        events: list[ConditionEvent]
        if device is None:
            state, events = tick(rules, state, now)
        else:
            state, events = evaluate(rules, state, Reading(device, int(now.timestamp() * 1000), fields), now)
        seen += [(second, e.kind.value, e.rule, e.device_id, e.severity.value) for e in events]
    return state, seen


LOW = (
    "  - {id: low, name: Low, select: {types: [pump]}, field: pressure_bar, levels: [{severity: major, below: 3.0}]}\n"
)


def test_on_delay_raises_only_when_the_condition_holds_for_its_time() -> None:
    rules = ruleset(LOW.replace("levels:", "for: 10s, levels:"))
    steps: list[Step] = [
        (0, "p1", {"pressure_bar": 2.0}),
        (5, "p1", {"pressure_bar": 4.0}),
        (6, "p1", {"pressure_bar": 2.0}),
    ]
    steps += [(15, None, {}), (16, None, {}), (17, "p1", {"pressure_bar": 2.5})]
    assert run(rules, steps)[1] == [(16, "raised", "low", "p1", "major")]  # the 0 s episode broke at 5 s


def test_off_delay_clears_only_when_normal_for_its_time() -> None:
    rules = ruleset(LOW.replace("levels:", "clear_for: 30s, levels:"))
    steps: list[Step] = [(0, "p1", {"pressure_bar": 2.0}), (10, "p1", {"pressure_bar": 4.0})]
    steps += [(20, "p1", {"pressure_bar": 2.0}), (30, "p1", {"pressure_bar": 4.0}), (59, None, {}), (60, None, {})]
    assert run(rules, steps)[1] == [(0, "raised", "low", "p1", "major"), (60, "cleared", "low", "p1", "major")]


def test_deadband_absolute_and_percent() -> None:
    absolute = ruleset(LOW.replace("levels:", "deadband: 0.2, levels:"))
    steps: list[Step] = [
        (0, "p1", {"pressure_bar": 2.9}),
        (1, "p1", {"pressure_bar": 3.1}),
        (2, "p1", {"pressure_bar": 3.21}),
    ]
    assert run(absolute, steps)[1] == [(0, "raised", "low", "p1", "major"), (2, "cleared", "low", "p1", "major")]
    # 2 % of a 0..10 bar transmitter's span is 0.2 bar too.
    span = ruleset(LOW.replace("levels:", "deadband: 2%, range: [0, 10], levels:"))
    assert run(span, steps)[1] == run(absolute, steps)[1]


def test_thresholds_as_a_percentage_of_nominal() -> None:
    rules = ruleset(
        "  - {id: dip, name: Dip, select: {types: [power]}, field: [voltage_l1_v, voltage_l2_v, voltage_l3_v],"
        " levels: [{severity: critical, below: 5%}, {severity: major, below: 90%}, {severity: major, above: 110%}]}\n"
    )
    steps: list[Step] = [
        (0, "v1", {"voltage_l1_v": 207.5, "voltage_l2_v": 230.0, "voltage_l3_v": 230.0}),  # 90.2 %: normal
        (1, "v1", {"voltage_l1_v": 206.0}),  # below 207 V
        (2, "v1", {"voltage_l1_v": 11.0, "voltage_l2_v": 11.0, "voltage_l3_v": 11.0}),  # below 11.5 V
        (3, "v1", {"voltage_l1_v": 254.0, "voltage_l2_v": 230.0, "voltage_l3_v": 230.0}),  # above 253 V
    ]
    assert run(rules, steps)[1] == [
        (1, "raised", "dip", "v1", "major"),
        (2, "severity_changed", "dip", "v1", "critical"),
        (3, "severity_changed", "dip", "v1", "major"),
    ]


def test_rate_of_change_a_burst_pipe_is_a_fast_fall() -> None:
    rules = ruleset(
        "  - {id: burst, name: Burst, select: {types: [pump]}, field: pressure_bar,"
        " levels: [{severity: critical, falls: 1.0, within: 30s}]}\n"
    )
    slow = [(float(t), "p1", {"pressure_bar": 4.0 - t * 0.01}) for t in range(0, 200, 10)]  # 0.3 bar per 30 s
    assert run(rules, slow)[1] == []  # type: ignore[arg-type]
    fast: list[Step] = [
        (0, "p1", {"pressure_bar": 4.0}),
        (10, "p1", {"pressure_bar": 3.5}),
        (20, "p1", {"pressure_bar": 2.9}),
    ]
    fast += [(60, "p1", {"pressure_bar": 1.2}), (100, "p1", {"pressure_bar": 1.2})]
    assert run(rules, fast)[1] == [
        (20, "raised", "burst", "p1", "critical"),
        (60, "cleared", "burst", "p1", "critical"),
    ]
    rises = ruleset(
        "  - {id: surge, name: Surge, select: {types: [pump]}, field: pressure_bar,"
        " levels: [{severity: major, rises: 2, within: 10s}]}\n"
    )
    assert run(rises, [(0, "p1", {"pressure_bar": 4.0}), (5, "p1", {"pressure_bar": 6.5})])[1] == [
        (5, "raised", "surge", "p1", "major")
    ]


def test_no_data_raises_after_silence_and_clears_when_data_returns() -> None:
    rules = ruleset("  - {id: silent, name: Silent, select: {ids: [p1]}, levels: [{severity: major, no_data: 60s}]}\n")
    steps: list[Step] = [(0, "p1", {"pressure_bar": 4.0}), (30, None, {}), (59, None, {}), (60, None, {})]
    steps += [(61, None, {}), (90, "p1", {"pressure_bar": 4.0}), (91, None, {})]
    assert run(rules, steps)[1] == [(60, "raised", "silent", "p1", "major"), (90, "cleared", "silent", "p1", "major")]


def test_no_data_counts_from_start_for_a_device_never_heard_from() -> None:
    rules = ruleset("  - {id: silent, name: Silent, select: {ids: [p2]}, levels: [{severity: major, no_data: 60s}]}\n")
    assert run(rules, [(0, None, {}), (59, None, {}), (60, None, {})])[1] == [(60, "raised", "silent", "p2", "major")]


def test_a_late_reading_does_not_race_the_silence_timer() -> None:
    # Data that arrives after the timer fired clears the alarm by its arrival, whatever time the reading carries.
    rules = ruleset("  - {id: silent, name: Silent, select: {ids: [p1]}, levels: [{severity: major, no_data: 60s}]}\n")
    state, _seen = run(rules, [(0, "p1", {"pressure_bar": 4.0}), (60, None, {})])
    later = T0 + timedelta(seconds=65)
    backlog = Reading("p1", int((T0 + timedelta(seconds=30)).timestamp() * 1000), {"pressure_bar": 4.0})
    state, events = evaluate(rules, state, backlog, later)
    assert [e.kind.value for e in events] == ["cleared"]


def test_state_match_any_and_all() -> None:
    rules = ruleset(
        "  - id: trapped\n    name: Trapped\n    select: {types: [elevator]}\n    levels:\n"
        "      - severity: critical\n"
        "        all: [{field: state, in: [fault, idle]}, {field: entrapment, equals: true}]\n"
        "  - id: stopped\n    name: Stopped\n    select: {types: [elevator]}\n    levels:\n"
        "      - severity: minor\n"
        "        any: [{field: state, equals: out_of_service}, {field: alarm_button, equals: true}]\n"
    )
    steps: list[Step] = [
        (0, "e1", {"state": "running", "entrapment": True}),  # moving: nobody is trapped yet
        (1, "e1", {"state": "fault", "entrapment": True}),
        (2, "e1", {"state": "fault", "entrapment": False, "alarm_button": True}),
        (3, "e1", {"state": "idle", "alarm_button": False}),
    ]
    assert run(rules, steps)[1] == [
        (1, "raised", "trapped", "e1", "critical"),
        (2, "cleared", "trapped", "e1", "critical"),
        (2, "raised", "stopped", "e1", "minor"),
        (3, "cleared", "stopped", "e1", "minor"),
    ]


def test_derived_voltage_unbalance() -> None:
    rules = ruleset(
        "  - {id: unbalance, name: Unbalance, select: {types: [power]},"
        " derived: {kind: unbalance, fields: [voltage_l1_v, voltage_l2_v, voltage_l3_v]},"
        " levels: [{severity: minor, above: 2}]}\n"
    )
    steps: list[Step] = [
        (0, "v1", {"voltage_l1_v": 230.0, "voltage_l2_v": 231.0, "voltage_l3_v": 229.0}),  # 0.4 %
        (1, "v1", {"voltage_l1_v": 230.0, "voltage_l2_v": 238.0, "voltage_l3_v": 222.0}),  # 3.5 %
    ]
    state, seen = run(rules, steps)
    assert seen == [(1, "raised", "unbalance", "v1", "minor")]
    assert (
        state.memory[("unbalance", "v1")].message
        == "Unbalance: unbalance of voltage_l1_v, voltage_l2_v, voltage_l3_v 3.47826 above 2"
    )


def test_derived_pump_starts_per_hour() -> None:
    rules = ruleset(
        "  - {id: cycling, name: Short-cycling, select: {ids: [p1]},"
        " derived: {kind: starts_per_hour, fields: pump_running, window: 1h}, levels: [{severity: minor, above: 6}]}\n"
    )
    steps: list[Step] = []
    for start in range(7):  # 7 starts in 35 minutes
        steps += [(start * 300.0, "p1", {"pump_running": False}), (start * 300.0 + 60, "p1", {"pump_running": True})]
    seen = run(rules, steps)[1]
    assert seen == [(1860.0, "raised", "cycling", "p1", "minor")]


def test_derived_deviation_from_the_recent_mean() -> None:
    rules = ruleset(
        "  - {id: odd, name: Anomaly, select: {ids: [p1]},"
        " derived: {kind: deviation, fields: pressure_bar, window: 10m}, levels: [{severity: warning, above: 4}]}\n"
    )
    steady = [(float(t), "p1", {"pressure_bar": 4.0 + (0.05 if t % 20 else -0.05)}) for t in range(0, 300, 10)]
    spike: list[Step] = [(300, "p1", {"pressure_bar": 5.0})]
    assert run(rules, steady + spike)[1] == [(300, "raised", "odd", "p1", "warning")]  # type: ignore[operator]


def test_latched_alarm_stays_active_in_the_events() -> None:
    rules = ruleset(LOW.replace("levels:", "latched: true, levels:"))
    _state, seen = run(rules, [(0, "p1", {"pressure_bar": 2.0}), (1, "p1", {"pressure_bar": 4.0})])
    # The engine reports the condition; the lifecycle keeps the alarm (see test_lifecycle).
    assert seen == [(0, "raised", "low", "p1", "major"), (1, "cleared", "low", "p1", "major")]


def test_suppression_by_the_devices_own_state() -> None:
    rules = ruleset(
        "  - {id: fault, name: Fault, select: {types: [elevator]}, field: state,"
        " levels: [{severity: major, equals: fault}],"
        " suppress_when: {field: state, equals: inspection}}\n"
        "  - {id: stuck, name: Stuck, select: {types: [elevator]}, field: entrapment,"
        " levels: [{severity: major, equals: true}],"
        " suppress_when: {field: state, equals: inspection}}\n"
    )
    state = EngineState()
    now = T0
    state, events = evaluate(rules, state, Reading("e1", 0, {"state": "inspection", "entrapment": True}), now)
    assert [(e.kind.value, e.rule, e.suppressed) for e in events] == [("raised", "stuck", True)]
    state, events = evaluate(rules, state, Reading("e1", 1, {"state": "idle"}), now)
    assert [(e.kind.value, e.rule, e.suppressed) for e in events] == [("unsuppressed", "stuck", False)]


def test_a_power_loss_suppresses_the_low_pressure_alarms_it_causes() -> None:
    rules = ruleset(
        LOW + "  - {id: outage, name: Outage, select: {types: [power]}, field: voltage_l1_v,"
        " levels: [{severity: critical, below: 5%}], suppresses: {rules: [low], scope: building}}\n"
    )
    steps: list[Step] = [(0, "p1", {"pressure_bar": 2.0}), (1, "v1", {"voltage_l1_v": 0.0})]
    state, seen = run(rules, steps)
    assert seen == [
        (0, "raised", "low", "p1", "major"),
        (1, "raised", "outage", "v1", "critical"),
        (1, "suppressed", "low", "p1", "major"),
    ]
    # p3 is in building B, outside the outage's scope; p2 is suppressed from its first raise.
    state, events = evaluate(rules, state, Reading("p3", 2, {"pressure_bar": 2.0}), T0)
    assert [(e.device_id, e.suppressed) for e in events] == [("p3", False)]
    state, events = evaluate(rules, state, Reading("p2", 3, {"pressure_bar": 2.0}), T0)
    assert [(e.device_id, e.suppressed) for e in events] == [("p2", True)]
    state, events = evaluate(rules, state, Reading("v1", 4, {"voltage_l1_v": 230.0}), T0)
    assert sorted((e.kind.value, e.device_id) for e in events) == [
        ("cleared", "v1"),
        ("unsuppressed", "p1"),
        ("unsuppressed", "p2"),
    ]


def test_memory_survives_json_so_a_restart_keeps_an_on_delay() -> None:
    rules = ruleset(LOW.replace("levels:", "for: 60s, levels:"))
    state, seen = run(rules, [(0, "p1", {"pressure_bar": 2.0}), (30, "p1", {"pressure_bar": 2.0})])
    assert seen == []
    # The process restarts: its memory comes back from the store as JSON.
    saved = {key: Memory.from_json(mem.to_json()) for key, mem in state.memory.items()}
    restored = EngineState(state.memory.__class__(saved))
    assert run(rules, [(59, None, {}), (60, None, {})], restored)[1] == [(60, "raised", "low", "p1", "major")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=2.81, max_value=3.19, allow_nan=False), min_size=1, max_size=60))
def test_a_signal_inside_the_deadband_never_toggles_the_alarm(wander: list[float]) -> None:
    rules = ruleset(LOW.replace("levels:", "deadband: 0.2, levels:"))
    # Raise it well below the limit, then let the signal wander within 3.0 ± 0.19.
    steps: list[Step] = [(0, "p1", {"pressure_bar": 2.0})] + [
        (float(i + 1), "p1", {"pressure_bar": v}) for i, v in enumerate(wander)
    ]
    assert run(rules, steps)[1] == [(0, "raised", "low", "p1", "major")]


@pytest.mark.parametrize("start", [2.0, 4.0])
def test_rules_without_the_field_in_a_reading_are_left_alone(start: float) -> None:
    rules = ruleset(LOW)
    state, _first = run(rules, [(0, "p1", {"pressure_bar": start})])
    _, later = run(rules, [(1, "p1", {"flow_m3h": 1.0})], state)
    assert later == []


def test_a_derived_value_with_an_on_delay_raises_on_the_tick() -> None:
    rules = ruleset(
        "  - {id: unbalance, name: Unbalance, select: {types: [power]}, for: 60s,"
        " derived: {kind: unbalance, fields: [voltage_l1_v, voltage_l2_v, voltage_l3_v]},"
        " levels: [{severity: minor, above: 2}]}\n"
    )
    steps: list[Step] = [(0, "v1", {"voltage_l1_v": 230.0, "voltage_l2_v": 238.0, "voltage_l3_v": 222.0})]
    steps += [(30, None, {}), (59, None, {}), (60, None, {})]
    assert run(rules, steps)[1] == [(60, "raised", "unbalance", "v1", "minor")]


def test_each_rate_looks_back_its_own_time_only() -> None:
    # Two levels keep 60 s of history; the 10 s level must not see a fall that took 55 s.
    rules = ruleset(
        "  - {id: fall, name: Fall, select: {types: [pump]}, field: pressure_bar, levels:"
        " [{severity: critical, falls: 2, within: 10s}, {severity: minor, falls: 2, within: 60s}]}\n"
    )
    slow: list[Step] = [(0, "p1", {"pressure_bar": 4.0}), (55, "p1", {"pressure_bar": 2.0})]
    assert run(rules, slow)[1] == [(55, "raised", "fall", "p1", "minor")]


def test_an_on_delay_runs_out_on_the_tick_in_a_rule_that_also_watches_for_silence() -> None:
    rules = ruleset(
        "  - {id: both, name: Both, select: {ids: [p1]}, field: pressure_bar, for: 30s,"
        " levels: [{severity: major, below: 3.0}, {severity: minor, no_data: 10m}]}\n"
    )
    steps: list[Step] = [(0, "p1", {"pressure_bar": 2.0}), (29, None, {}), (30, None, {})]
    assert run(rules, steps)[1] == [(30, "raised", "both", "p1", "major")]


def test_silence_while_facmon_was_down_is_not_held_against_devices() -> None:
    from facmon.rules.engine import resume

    rules = ruleset("  - {id: silent, name: Silent, select: {ids: [p1]}, levels: [{severity: major, no_data: 60s}]}\n")
    state, _ = run(rules, [(0, "p1", {"pressure_bar": 4.0})])
    state = resume(state, T0 + timedelta(hours=1))  # facmon was stopped for an hour
    later, seen = run(rules, [(3601, None, {}), (3659, None, {})], state)
    assert seen == []
    assert run(rules, [(3660, None, {})], later)[1] == [(3660, "raised", "silent", "p1", "major")]


@pytest.mark.parametrize(
    ("window", "sample", "expected"),
    [
        ((), (10, 1.0), ((10, 1.0),)),
        (((0, 1.0), (5, 2.0)), (10, 3.0), ((5, 2.0), (10, 3.0))),  # 0 is 10 s before the newest: out
        (((5, 2.0), (10, 3.0)), (7, 9.0), ((5, 2.0), (7, 9.0), (10, 3.0))),  # late: at its own time
        (((5, 2.0), (10, 3.0)), (10, 4.0), ((5, 2.0), (10, 4.0))),  # a resend of the same time replaces
        (((5, 2.0), (10, 3.0)), (-5, 9.0), ((5, 2.0), (10, 3.0))),  # too late to matter
    ],
)
def test_a_window_slides_by_measurement_time(window: tuple, sample: tuple[int, float], expected: tuple) -> None:
    from facmon.rules.engine import _slide

    assert _slide(window, sample[0], sample[1], 10) == expected


def test_an_alarm_for_silence_active_at_a_restart_stays_raised() -> None:
    from facmon.rules.engine import resume

    rules = ruleset("  - {id: silent, name: Silent, select: {ids: [p1]}, levels: [{severity: major, no_data: 60s}]}\n")
    state, seen = run(rules, [(0, "p1", {"pressure_bar": 4.0}), (60, None, {})])
    assert seen == [(60, "raised", "silent", "p1", "major")]
    state = resume(state, T0 + timedelta(hours=1))
    assert run(rules, [(3601, None, {}), (3700, None, {})], state)[1] == []  # no flap: still silent


def test_silence_does_not_downgrade_a_worse_known_condition() -> None:
    rules = ruleset(
        "  - {id: both, name: Both, select: {ids: [p1]}, field: pressure_bar,"
        " levels: [{severity: major, below: 3.0}, {severity: minor, no_data: 60s}]}\n"
    )
    steps: list[Step] = [(0, "p1", {"pressure_bar": 2.0}), (61, None, {}), (120, None, {})]
    assert run(rules, steps)[1] == [(0, "raised", "both", "p1", "major")]
    quiet: list[Step] = [(0, "p1", {"pressure_bar": 4.0}), (61, None, {})]
    assert run(rules, quiet)[1] == [(61, "raised", "both", "p1", "minor")]
