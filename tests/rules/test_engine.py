"""The pure core, table-driven, with explicit times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from facmon.config.loader import parse_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import Reading, Scalar, Severity
from facmon.rules.conditions import Check, RuleSet
from facmon.rules.engine import EngineState, evaluate

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def run(
    ruleset: RuleSet, device: str, series: list[dict[str, Scalar]], rule: str | None = None
) -> list[tuple[int, str, str, str, Scalar]]:
    """Feed readings a minute apart; return (minute, change, rule, severity, value) for each event of `rule`."""
    state = EngineState()
    seen = []
    for i, fields in enumerate(series):
        now = T0 + timedelta(minutes=i)
        state, events = evaluate(ruleset, state, Reading(device, int(now.timestamp() * 1000), fields), now)
        seen += [(i, e.kind.value, e.rule, e.severity.value, e.value) for e in events if rule in (None, e.rule)]
    return seen


def test_pressure_falls_through_major_to_critical_and_recovers(ruleset: RuleSet) -> None:
    series = [{"pressure_bar": v} for v in (4.0, 3.2, 2.9, 2.0, 1.5, 1.2, 2.5, 3.05, 3.1)]
    assert run(ruleset, "pump-1", series, "pump-pressure-low") == [
        (2, "raised", "pump-pressure-low", "major", 2.9),
        (4, "severity_changed", "pump-pressure-low", "critical", 1.5),
        (6, "severity_changed", "pump-pressure-low", "major", 2.5),
        (8, "cleared", "pump-pressure-low", "major", 3.1),  # 3.05 is still inside the 2 % deadband
    ]


def test_over_pressure_is_its_own_rule(ruleset: RuleSet) -> None:
    assert run(ruleset, "pump-2", [{"pressure_bar": 6.5}, {"pressure_bar": 5.0}], "pump-pressure-high") == [
        (0, "raised", "pump-pressure-high", "major", 6.5),
        (1, "cleared", "pump-pressure-high", "major", 5.0),
    ]


def test_any_phase_out_of_band_raises_the_voltage_rule(ruleset: RuleSet) -> None:
    series: list[dict[str, Scalar]] = [
        {"voltage_l1_v": 229.0, "voltage_l2_v": 230.0, "voltage_l3_v": 231.0},
        {"voltage_l1_v": 229.0, "voltage_l2_v": 200.0, "voltage_l3_v": 231.0},  # dip on L2
        {"voltage_l1_v": 0.0, "voltage_l2_v": 0.0, "voltage_l3_v": 0.0},  # interruption
        {"voltage_l1_v": 260.0, "voltage_l2_v": 230.0, "voltage_l3_v": 230.0},  # swell on L1
        {"voltage_l1_v": 230.0, "voltage_l2_v": 230.0, "voltage_l3_v": 230.0},
    ]
    assert run(ruleset, "panel-1", series, "voltage-dip-swell") == [
        (1, "raised", "voltage-dip-swell", "major", 200.0),
        (4, "cleared", "voltage-dip-swell", "major", 230.0),
    ]
    assert run(ruleset, "panel-1", series, "supply-interruption") == [
        (2, "raised", "supply-interruption", "critical", 0.0),
        (3, "cleared", "supply-interruption", "critical", 260.0),
    ]


def test_state_matches_on_enums_and_booleans(ruleset: RuleSet) -> None:
    lift: list[dict[str, Scalar]] = [
        {"state": "running", "entrapment": False},
        {"state": "fault", "entrapment": True},
        {"state": "out_of_service", "entrapment": False},
        {"state": "idle", "entrapment": False},
    ]
    assert run(ruleset, "lift-A1", lift) == [
        (1, "raised", "elevator-entrapment", "critical", True),
        (1, "raised", "elevator-fault", "major", "fault"),
        (2, "cleared", "elevator-entrapment", "critical", False),
        (2, "severity_changed", "elevator-fault", "minor", "out_of_service"),
        (3, "cleared", "elevator-fault", "minor", "idle"),
    ]
    smoke: list[dict[str, Scalar]] = [{"state": "normal", "battery_pct": 50}, {"state": "alarm", "battery_pct": 15}]
    assert run(ruleset, "smoke-B-03", smoke) == [
        (1, "raised", "smoke-alarm", "critical", "alarm"),
        (1, "raised", "smoke-battery-low", "warning", 15),
    ]


def test_a_reading_without_the_field_changes_nothing(ruleset: RuleSet) -> None:
    series: list[dict[str, Scalar]] = [{"pressure_bar": 1.0}, {"flow_m3h": 3.0}, {"pressure_bar": 1.0}]
    assert [e[1] for e in run(ruleset, "pump-1", series)] == ["raised"]


def test_rules_only_judge_the_devices_they_select() -> None:
    text = """
sites:
  - id: s
    buildings:
      - id: A
        devices:
          - {id: a1, type: pump, name: A1, labels: {zone: high}}
          - {id: a2, type: pump, name: A2}
      - id: B
        devices: [{id: b1, type: pump, name: B1, labels: {zone: high}}]
rules:
  - {id: by-building, name: X, select: {buildings: [A]}, field: pressure_bar, levels: [{severity: minor, below: 2}]}
  - {id: by-label, name: Y, select: {labels: {zone: high}}, field: pressure_bar, levels: [{severity: minor, below: 2}]}
  - {id: by-id, name: Z, select: {ids: [a2]}, field: pressure_bar, levels: [{severity: minor, below: 2}]}
  - {id: disabled, name: W, enabled: false, field: pressure_bar, levels: [{severity: minor, below: 2}]}
"""
    config = parse_config(text, env={})
    ruleset = RuleSet.compile(config.rules, DeviceRegistry.from_config(config))
    fired = {d: sorted(e[2] for e in run(ruleset, d, [{"pressure_bar": 1.0}])) for d in ("a1", "a2", "b1")}
    assert fired == {"a1": ["by-building", "by-label"], "a2": ["by-building", "by-id"], "b1": ["by-label"]}


def test_state_is_not_mutated_and_unchanged_state_is_reused(ruleset: RuleSet) -> None:
    start = EngineState()
    reading = Reading("pump-1", 0, {"pressure_bar": 1.0})
    after, events = evaluate(ruleset, start, reading, T0)
    assert start.active() == {} and len(after.active()) == 1 and events
    again, none = evaluate(ruleset, after, reading, T0 + timedelta(seconds=1))
    assert none == [] and {k: m.active for k, m in again.active().items()} == {
        ("pump-pressure-low", "pump-1"): Severity.CRITICAL
    }
    assert after.memory[("pump-pressure-low", "pump-1")].since_ms == int(T0.timestamp() * 1000)


@pytest.mark.parametrize(
    ("equals", "value", "holds"),
    [(True, True, True), (True, 1, False), ("fault", "fault", True), ("fault", "idle", False)],
)
def test_equality_does_not_mix_booleans_and_numbers(equals: Scalar, value: Scalar, holds: bool) -> None:
    test = Check("equals", ("f",), {}, {}, expected=equals)
    assert (test.holds({"f": value}, {}, active=False) is not None) is holds


def test_messages_say_how_the_value_meets_the_level(ruleset: RuleSet) -> None:
    def messages(device: str, fields: dict[str, Scalar]) -> list[str]:
        return [e.message for e in evaluate(ruleset, EngineState(), Reading(device, 0, fields), T0)[1]]

    assert messages("pump-1", {"pressure_bar": 1.25}) == ["Supply pressure low: pressure_bar 1.25 below 1.6"]
    assert messages("lift-A1", {"state": "fault", "entrapment": True}) == [
        "Passenger trapped in lift: entrapment is true",
        "Lift fault: state is fault",
    ]
    assert messages("smoke-A-01", {"state": "alarm"}) == ["Fire alarm: state is alarm"]


def test_a_repeated_value_is_not_judged_again_unless_something_waits_on_it() -> None:
    config = parse_config(
        """
sites: [{id: s, buildings: [{id: b, devices: [{id: lift-1, type: elevator, name: L}]}]}]
rules:
  - {id: trapped, name: T, field: entrapment, levels: [{severity: critical, equals: true}],
     suppress_when: {field: state, equals: inspection}}
  - {id: fault, name: F, field: state, for: 2m, levels: [{severity: major, equals: fault}]}
""",
        env={},
    )
    rules = RuleSet.compile(config.rules, DeviceRegistry.from_config(config))
    idle = {"state": "idle", "entrapment": False}
    first, _ = evaluate(rules, EngineState(), Reading("lift-1", 0, idle), T0)
    same, events = evaluate(rules, first, Reading("lift-1", 5000, idle), T0 + timedelta(seconds=5))
    assert events == [] and same.memory[("trapped", "lift-1")] is first.memory[("trapped", "lift-1")]

    # A field the rule's suppression reads is news.
    inspection = {"state": "inspection", "entrapment": False}
    moved, _ = evaluate(rules, same, Reading("lift-1", 10_000, inspection), T0 + timedelta(seconds=10))
    assert moved.memory[("trapped", "lift-1")] is not same.memory[("trapped", "lift-1")]

    # While a delay runs, the same value again is judged: the delay can run out on it.
    fault = {"state": "fault", "entrapment": False}
    state, _ = evaluate(rules, moved, Reading("lift-1", 15_000, fault), T0 + timedelta(seconds=15))
    state, events = evaluate(rules, state, Reading("lift-1", 140_000, fault), T0 + timedelta(seconds=140))
    assert [(e.kind.value, e.rule) for e in events] == [("raised", "fault")]
