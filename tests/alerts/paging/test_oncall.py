"""Who is on call: rotations, hand-offs in wall-clock time, daily windows, layers and overrides."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from facmon.alerts.paging.oncall import Roster
from facmon.config.errors import ConfigError
from facmon.config.loader import parse_config
from facmon.config.oncall import OncallConfig, Target

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")

SITES = """
sites:
  - id: s
    buildings: [{id: b, devices: [{id: p1, type: pump, name: Pump}]}]
notifications:
  channels:
    log: {type: console}
"""


def oncall(text: str) -> OncallConfig:
    return parse_config(SITES + text, env={}).oncall


def at(text: str, tz: ZoneInfo = SHANGHAI) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


WEEKLY = """
oncall:
  people:
    - {id: a, name: A, contacts: {log: ""}}
    - {id: b, name: B, contacts: {log: ""}}
    - {id: c, name: C, contacts: {log: ""}}
    - {id: n, name: Night, contacts: {log: ""}}
  teams:
    - {id: all, members: [a, b, c]}
  schedules:
    - id: duty
      layers:
        - {name: week, members: [a, b, c], start: "2026-11-02T09:00", turn: 7d}
        - {name: nights, members: [n], start: "2026-11-02T00:00", turn: 1d, hours: "22:00-07:00", days: [fri, sat]}
      overrides:
        - {person: a, start: "2026-11-18T12:00", end: "2026-11-18T18:00"}
"""


@pytest.mark.parametrize(
    ("when", "person", "layer"),
    [
        ("2026-11-02T09:00", "a", "week"),  # the first turn begins at the layer's start
        ("2026-11-09T08:59", "a", "week"),
        ("2026-11-09T09:00", "b", "week"),  # hand-off on the minute
        ("2026-11-16T09:00", "c", "week"),
        ("2026-11-23T09:00", "a", "week"),  # and round again
        ("2026-11-18T12:00", "a", "override"),  # an override wins over the layers
        ("2026-11-18T18:00", "c", "week"),  # until its end
        ("2026-11-20T22:00", "n", "nights"),  # Friday night: the later layer wins where it covers
        ("2026-11-21T06:59", "n", "nights"),  # the window runs over midnight into Saturday
        ("2026-11-21T07:00", "c", "week"),
        ("2026-11-22T23:00", "c", "week"),  # Sunday night is not in the nights layer's days
        ("2026-11-23T08:59", "c", "week"),
    ],
)
def test_who_is_on_call(when: str, person: str, layer: str) -> None:
    shift = Roster(oncall(WEEKLY), SHANGHAI).shift("duty", at(when))
    assert (shift.person, shift.layer) == (person, layer)


def test_before_the_first_turn_nobody_is_on_call() -> None:
    roster = Roster(oncall(WEEKLY), SHANGHAI)
    assert roster.on_call("duty", at("2026-11-01T12:00")) is None
    # ...and the shift says when someone will be
    assert roster.shift("duty", at("2026-11-01T12:00")).until == at("2026-11-02T09:00")


def test_a_shift_ends_when_the_person_changes() -> None:
    roster = Roster(oncall(WEEKLY), SHANGHAI)
    assert roster.shift("duty", at("2026-11-17T10:00")).until == at("2026-11-18T12:00")  # the override
    assert roster.shift("duty", at("2026-11-18T13:00")).until == at("2026-11-18T18:00")
    assert roster.shift("duty", at("2026-11-19T10:00")).until == at("2026-11-20T22:00")  # the nights layer
    assert roster.shift("duty", at("2026-11-20T23:00")).until == at("2026-11-21T07:00")


def test_targets_reach_people() -> None:
    roster = Roster(oncall(WEEKLY), SHANGHAI)
    when = at("2026-11-10T10:00")
    assert roster.reach(Target(schedule="duty"), when) == ["b"]
    assert roster.reach(Target(team="all"), when) == ["a", "b", "c"]
    assert roster.reach(Target(person="n"), when) == ["n"]
    assert roster.reach(Target(schedule="duty"), at("2026-11-01T00:00")) == []


def test_hand_offs_stay_at_wall_clock_time_across_daylight_saving() -> None:
    config = oncall("""
oncall:
  people:
    - {id: a, name: A, contacts: {log: ""}}
    - {id: b, name: B, contacts: {log: ""}}
  schedules:
    - id: duty
      timezone: Europe/Berlin
      layers:
        - {members: [a, b], start: "2026-03-27T09:00", turn: 1d}
""")
    roster = Roster(config, SHANGHAI)  # the schedule's own zone wins over the facility's
    # Clocks go forward on 2026-03-29 at 02:00 in Berlin; the 09:00 hand-offs stay at 09:00 local.
    assert roster.on_call("duty", at("2026-03-29T08:59", BERLIN)) == "b"
    assert roster.on_call("duty", at("2026-03-29T09:00", BERLIN)) == "a"
    assert roster.shift("duty", at("2026-03-29T10:00", BERLIN)).until == at("2026-03-30T09:00", BERLIN)
    hand_off = roster.shift("duty", at("2026-03-28T10:00", BERLIN)).until
    assert hand_off is not None and hand_off.utcoffset() == timedelta(hours=2)  # summer time by then


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            "people: [{id: a, name: A, contacts: {sms: '1'}}]",
            "oncall.people.0.contacts.sms: no channel 'sms' (log)",
        ),
        (
            "people: [{id: a, name: A, contacts: {log: ''}}]\n  teams: [{id: t, members: [a, ghost]}]",
            "oncall.teams.0.members.1: no person has the id 'ghost'",
        ),
        (
            "escalation_policies: [{id: p, steps: [{notify: {schedule: nope}}]}]",
            "oncall.escalation_policies.0.steps.0.notify.0.schedule: no schedule has the id 'nope'",
        ),
        ("escalate: {p1: missing}", "oncall.escalate.P1: no escalation policy has the id 'missing'"),
        (
            "escalation_policies: [{id: p, steps: [{notify: {person: a, team: t}}]}]",
            "give exactly one of schedule, person or team",
        ),
        (
            "schedules: [{id: s, layers: [{members: [a], start: '2026-01-01T00:00', hours: '25:00-01:00'}]}]",
            "is not a daily window",
        ),
        ("link_secret: short", "at least 16 characters"),
    ],
)
def test_config_mistakes_are_named(snippet: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        oncall(f"oncall:\n  {snippet}\n")
    assert expected in str(caught.value)
