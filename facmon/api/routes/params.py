"""Query parameters shared by the list endpoints."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, TypeVar

from fastapi import Query
from fastapi.exceptions import RequestValidationError

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]
Offset = Annotated[int, Query(ge=0, description="How many to skip")]

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
