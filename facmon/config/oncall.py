"""On-call as the config writes it: people and how to reach them, teams, schedules, and escalation policies.

A schedule is layers of rotations: each layer hands over from one member to the next every `turn` at the time of
its `start`, optionally only within daily `hours` on some `days`; where layers overlap the later one wins, and
overrides win over all. Times are wall-clock times in the schedule's time zone (the facility's by default), so a
09:00 hand-off stays at 09:00 across daylight-saving changes.

An escalation policy pages its steps in order until someone acknowledges: each step notifies the on-call of a
schedule, a person or a team, then waits; after the last step the policy starts over up to `repeat` times.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, field_validator, model_validator

from facmon.config.types import SECTION, Duration, Identifier, Location, PriorityKeys, TimeZoneName, as_list
from facmon.facility.model import Priority

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-4]):([0-5]\d)\s*$")


class _Model(BaseModel):
    model_config = SECTION


class Person(_Model):
    """Someone who can be paged: `contacts` maps a notification channel to their address on it."""

    id: Identifier
    name: str
    language: Literal["en", "zh"] | None = None
    # channel name → address there: an e-mail address, a mobile number to @-mention in a group chat, a pager id
    # for an MQTT topic's {to}; empty when the channel reaches everyone at once (a console, a siren).
    contacts: dict[str, str] = Field(min_length=1)


class Team(_Model):
    id: Identifier
    name: str | None = None
    members: Annotated[list[Identifier], BeforeValidator(as_list), Field(min_length=1)]


class DailyHours(_Model):
    """A daily window such as 18:00-08:00 (it may run over midnight), on the days it starts."""

    start: time
    end: time

    @property
    def wraps(self) -> bool:
        return self.end <= self.start


def _hours(value: object) -> object:
    if not isinstance(value, str):
        return value
    match = _HOURS.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a daily window such as 08:00-18:00 or 18:00-08:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h2 == 24 and m2:
        raise ValueError(f"{value!r}: a day ends at 24:00")
    end = time(0, 0) if h2 == 24 else time(h2, m2)
    if time(h1, m1) == end:
        raise ValueError(f"{value!r} starts and ends at the same time: leave hours out for all day")
    return {"start": time(h1, m1), "end": end}


class Layer(_Model):
    """A rotation: `members` take `turn`s in order, the first from `start` (a wall-clock time in the zone)."""

    name: str | None = None
    members: Annotated[list[Identifier], BeforeValidator(as_list), Field(min_length=1)]
    start: datetime
    turn: Duration = timedelta(days=7)
    hours: Annotated[DailyHours | None, BeforeValidator(_hours)] = None
    days: Annotated[list[Weekday], BeforeValidator(as_list), Field(min_length=1)] = list(WEEKDAYS)

    @field_validator("turn")
    @classmethod
    def _whole_hours(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1) or value % timedelta(hours=1):
            raise ValueError("a turn is a whole number of hours, at least 1h (e.g. 12h, 1d, 7d)")
        return value

    @field_validator("days", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        if isinstance(value, list):
            return [str(v).lower()[:3] if isinstance(v, str) else v for v in value]
        return value


class Override(_Model):
    """`person` is on call from `start` to `end` instead of whoever the layers say (a swap, a sick day)."""

    person: Identifier
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> Override:
        if self.end.replace(tzinfo=None) <= self.start.replace(tzinfo=None):
            raise ValueError("end must be after start")
        return self


class Schedule(_Model):
    id: Identifier
    name: str | None = None
    timezone: TimeZoneName | None = None
    layers: list[Layer] = Field(min_length=1)
    overrides: list[Override] = []


class Target(_Model):
    """Whom a step notifies: exactly one of the on-call of a schedule, a person, or every member of a team."""

    schedule: Identifier | None = None
    person: Identifier | None = None
    team: Identifier | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if sum(x is not None for x in (self.schedule, self.person, self.team)) != 1:
            raise ValueError("give exactly one of schedule, person or team")
        return self

    def describe(self) -> str:
        if self.schedule is not None:
            return f"on-call of {self.schedule}"
        return f"team {self.team}" if self.team is not None else f"{self.person}"


def _targets(value: object) -> object:
    return [value] if isinstance(value, dict) else value


Targets = Annotated[list[Target], BeforeValidator(_targets), Field(min_length=1)]


class Step(_Model):
    notify: Targets
    # How long to wait for an acknowledgement before the next step.
    wait: Duration = timedelta(minutes=5)

    @field_validator("wait")
    @classmethod
    def _at_least_a_minute(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("wait at least 1s")
        return value


class EscalationPolicy(_Model):
    id: Identifier
    name: str | None = None
    steps: list[Step] = Field(min_length=1)
    # After the last step's wait, page from the first step again, this many times.
    repeat: int = Field(0, ge=0, le=10)
    # An acknowledged work order of these priorities still unresolved after this time pages the acknowledger again
    # (and again, every such time) until it is resolved.
    renotify_unresolved: Annotated[dict[Priority, Duration], PriorityKeys] = {Priority.P1: timedelta(minutes=30)}
    # Who hears of an SLA breach; the last step's targets when not given.
    on_breach: Annotated[list[Target], BeforeValidator(_targets)] = []

    def breach_targets(self) -> list[Target]:
        return list(self.on_breach) or list(self.steps[-1].notify)


class OncallConfig(_Model):
    people: list[Person] = []
    teams: list[Team] = []
    schedules: list[Schedule] = []
    escalation_policies: list[EscalationPolicy] = []
    # Which policy pages for a new work order of each priority; a priority not named pages nobody.
    escalate: Annotated[dict[Priority, Identifier], PriorityKeys] = {}
    # Signs the one-click acknowledge links in pages; without it pages carry no link (acknowledge via the API).
    link_secret: SecretStr | None = None
    link_valid_for: Duration = timedelta(hours=24)

    @field_validator("link_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters (e.g. from `openssl rand -hex 32`)")
        return value

    def person(self, person_id: str) -> Person | None:
        return next((p for p in self.people if p.id == person_id), None)

    def team(self, team_id: str) -> Team | None:
        return next((t for t in self.teams if t.id == team_id), None)

    def schedule(self, schedule_id: str) -> Schedule | None:
        return next((s for s in self.schedules if s.id == schedule_id), None)

    def policy(self, policy_id: str) -> EscalationPolicy | None:
        return next((p for p in self.escalation_policies if p.id == policy_id), None)


def check_oncall(oncall: OncallConfig, channels: set[str], at: Location = ("oncall",)) -> list[tuple[Location, str]]:
    """References across the section: members, targets, policies and channels that exist; ids used once."""
    found: list[tuple[Location, str]] = []

    def unique(kind: str, key: str, ids: list[str]) -> set[str]:
        seen: set[str] = set()
        for i, value in enumerate(ids):
            if value in seen:
                found.append(((*at, key, i, "id"), f"{kind} id {value!r} is used twice"))
            seen.add(value)
        return seen

    people = unique("person", "people", [p.id for p in oncall.people])
    teams = unique("team", "teams", [t.id for t in oncall.teams])
    schedules = unique("schedule", "schedules", [s.id for s in oncall.schedules])
    policies = unique("escalation policy", "escalation_policies", [p.id for p in oncall.escalation_policies])

    def person_ref(loc: Location, person_id: str) -> None:
        if person_id not in people:
            found.append((loc, f"no person has the id {person_id!r} (see oncall.people)"))

    for p, person in enumerate(oncall.people):
        for channel in person.contacts:
            if channel not in channels:
                known = ", ".join(sorted(channels)) or "none configured"
                found.append(((*at, "people", p, "contacts", channel), f"no channel {channel!r} ({known})"))
    for t, team in enumerate(oncall.teams):
        for m, member in enumerate(team.members):
            person_ref((*at, "teams", t, "members", m), member)
    for s, schedule in enumerate(oncall.schedules):
        for y, layer in enumerate(schedule.layers):
            for m, member in enumerate(layer.members):
                person_ref((*at, "schedules", s, "layers", y, "members", m), member)
        for o, override in enumerate(schedule.overrides):
            person_ref((*at, "schedules", s, "overrides", o, "person"), override.person)

    def target_ref(loc: Location, target: Target) -> None:
        if target.person is not None:
            person_ref((*loc, "person"), target.person)
        elif target.team is not None and target.team not in teams:
            found.append(((*loc, "team"), f"no team has the id {target.team!r} (see oncall.teams)"))
        elif target.schedule is not None and target.schedule not in schedules:
            found.append(((*loc, "schedule"), f"no schedule has the id {target.schedule!r} (see oncall.schedules)"))

    for e, policy in enumerate(oncall.escalation_policies):
        for s, step in enumerate(policy.steps):
            for n, target in enumerate(step.notify):
                target_ref((*at, "escalation_policies", e, "steps", s, "notify", n), target)
        for n, target in enumerate(policy.on_breach):
            target_ref((*at, "escalation_policies", e, "on_breach", n), target)
    for priority, policy_id in oncall.escalate.items():
        if policy_id not in policies:
            found.append(((*at, "escalate", str(priority)), f"no escalation policy has the id {policy_id!r}"))
    return found
