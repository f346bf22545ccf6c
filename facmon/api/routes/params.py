"""Parameters shared by the endpoints: the list endpoints' paging and filters, the ids in paths."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, TypeVar

from fastapi import Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator

from facmon.api.schemas import MAX_ID, later_by, storable_text
from facmon.config.durations import parse_duration

# The state store takes an offset as a 64-bit integer (SQLite and PostgreSQL alike); a larger one overflows there.
MAX_OFFSET = 2**63 - 1

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many to skip")]
# An alarm's, work order's or token's id in a path: one out of the ids' range (schemas.MAX_ID) names nothing, and is
# refused as invalid before it reaches the store, where it would overflow.
Id = Annotated[int, Path(ge=1, le=MAX_ID)]


def _storable_text(value: str | None) -> str | None:
    return None if value is None else storable_text(value)


# A filter on text the state store holds, such as `?site=`: it is compared there, so it must be text the store can
# take (schemas.storable_text).
TextFilter = Annotated[str | None, AfterValidator(_storable_text)]

E = TypeVar("E", bound=StrEnum)


def enum_list(values: list[str] | None, enum: type[E], name: str) -> list[E]:
    """`?x=a,b` and `?x=a&x=b` mean the same; an unknown value is a 422 like any invalid parameter."""
    out: list[E] = []
    for part in (p.strip() for value in values or [] for p in value.split(",")):
        if not part:
            continue
        try:
            out.append(enum(part))
        except ValueError:
            raise invalid("query", name, f"{part!r} is not one of {', '.join(enum)}") from None
    return out


def invalid(where: str, name: str, message: str) -> RequestValidationError:
    """A 422 for one parameter or body field, answered like any other invalid request."""
    return RequestValidationError([{"loc": (where, name), "msg": message, "type": "value_error"}])


def ends_after(now: datetime, duration: str | None, field: str) -> datetime | None:
    """`now` plus the duration a body gives in `field` (None without one); a 422 naming the field when it is not
    a duration or ends after the latest time there is."""
    if duration is None:
        return None
    try:
        return later_by(now, parse_duration(duration))
    except ValueError as exc:
        raise invalid("body", field, str(exc)) from None
