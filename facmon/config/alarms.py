"""The `alarms` section: how long an alarm may be shelved, and how often the rules' timers are judged."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, field_validator

from facmon.config.types import SECTION, Duration


class _Model(BaseModel):
    model_config = SECTION


class AlarmsConfig(_Model):
    # ISA-18.2: shelving is for a known nuisance, for a bounded time; the alarm comes back by itself after.
    max_shelve: Duration = timedelta(hours=8)
    tick: Duration = timedelta(seconds=1)

    @field_validator("max_shelve")
    @classmethod
    def _shelf_bounds(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=7):
            raise ValueError("between 1m and 7d")
        return value

    @field_validator("tick")
    @classmethod
    def _tick_bounds(cls, value: timedelta) -> timedelta:
        # Below 50 ms the ticker would take a core; above a minute, delays and silence would be judged late.
        if not timedelta(milliseconds=50) <= value <= timedelta(minutes=1):
            raise ValueError("between 50ms and 1m")
        return value
