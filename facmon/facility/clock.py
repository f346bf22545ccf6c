"""Time, passed in: the rules and alerts never read the wall clock themselves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def epoch_ms(at: datetime) -> int:
    """A timezone-aware time as epoch milliseconds, the unit of readings' time stamps."""
    return int(at.timestamp() * 1000)
