"""Durations written the way people write them in config files: `90s`, `5m`, `1h30m`, `7d`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """Parse `5m`, `1h30m`, `250ms` or a number of seconds into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 2h or 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _seconds(value, value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 5m, 2h or 1d")
    text = value.strip().replace(" ", "")
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 2h or 1d")
    return _seconds(seconds, value)


def _seconds(seconds: float, value: object) -> timedelta:
    """A timedelta holds at most 999999999 days: a longer duration is as invalid as a malformed one."""
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range: a duration is at most {timedelta.max.days} days") from None


def format_duration(value: timedelta) -> str:
    """The shortest exact form: 300 s → `5m`, 5400 s → `1h30m`."""
    total = int(value.total_seconds())
    if total == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
