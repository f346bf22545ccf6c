"""Errors of the facility package.

FacilityError
└── StateStoreError    the state store cannot be opened or reached, or stays locked (SQLite)
    └── NotFoundError  a requested alarm, work order, … does not exist
"""

from __future__ import annotations


class FacilityError(Exception):
    """Base of the facility package's errors."""


class StateStoreError(FacilityError):
    pass


class NotFoundError(StateStoreError):
    def __init__(self, what: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key} not found")
