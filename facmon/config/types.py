"""The value types that config sections share: durations, ids, paths, and the frozen model that forbids unknown keys."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)

from facmon.config.durations import parse_duration

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
# Ids appear in MQTT topics and URLs: no slashes, wildcards or spaces.
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# Where a problem is: the key path into the config, e.g. ("oncall", "schedules", 0, "layers", 1, "members", 2).
Location = tuple[str | int, ...]


def clock_time(value: object) -> object:
    """A time of day as written, "09:30"; YAML reads an unquoted 9:30 as the number 570, which is refused."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError('write a time of day in quotes, e.g. "09:30" (unquoted, YAML reads 9:30 as a number)')
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as Asia/Shanghai") from None
    return value


# The name of an IANA time zone, checked against the zone database.
TimeZoneName = Annotated[str, AfterValidator(_time_zone)]


def _upper_keys(value: object) -> object:
    return {str(k).upper(): v for k, v in value.items()} if isinstance(value, dict) else value


# On a mapping keyed by priority: `p1` is read as `P1`.
PriorityKeys = BeforeValidator(_upper_keys)


def as_list(value: object) -> object:
    """A single value where a list is expected is a list of one."""
    return [value] if isinstance(value, str) else value


# Every config section's model_config: unknown keys are errors, and a validated section never changes. Each module
# declares its own `class _Model(BaseModel)` with it, so that linters see pydantic models.
SECTION = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir", "."))


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    return value if value.is_absolute() else (base_dir(info) / value).resolve()


# A path in the config: relative ones are relative to the config file's folder.
ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]


_BYTE_SIZE: TypeAdapter[ByteSize] = TypeAdapter(ByteSize)


def _byte_size(value: object) -> ByteSize:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 4096, 4KiB or 100MB")
    try:
        return _BYTE_SIZE.validate_python(value)
    except ValidationError:
        raise ValueError(f"{value!r} is not a size such as 4096, 4KiB or 100MB") from None


# A number of bytes, or with a unit: 4KiB, 100MB (10^6), 1GiB (2^30).
Size = Annotated[ByteSize, BeforeValidator(_byte_size)]


def dotted(loc: Location) -> str:
    """A key path as the config file's reader writes it: `oncall.schedules.0.layers`."""
    return ".".join(str(part) for part in loc)
