"""Errors of the facility package.

FacilityError
├── StateStoreError      the state store cannot be opened or reached, or stays locked (SQLite)
│   ├── NotFoundError    a requested alarm, work order, … does not exist
│   └── FencedError      a write on behalf of a lease this worker no longer holds (a partition, the leader's
│                        jobs): refused, nothing written; like an outage, it is tried again or reported
├── AccountError         a user or token that cannot be made or changed as asked: a bad name, a short password
│   │                    (API: 422)
│   └── UserExistsError  a new user whose username is taken (API: 409)
└── SignInError          wrong username or password, or a disabled user; the message never says which (API: 401)
    └── LockedOutError   too many failed sign-ins: refused until `until`, the right password too (API: 429,
                         Retry-After)
"""

from __future__ import annotations

from datetime import datetime


class FacilityError(Exception):
    """Base of the facility package's errors."""


class StateStoreError(FacilityError):
    pass


class NotFoundError(StateStoreError):
    def __init__(self, what: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key} not found")


class AccountError(FacilityError):
    """A user or token that cannot be made or changed as asked (a bad name, a short password, no such user, …)."""


class UserExistsError(AccountError):
    """A new user whose username is taken."""


class SignInError(FacilityError):
    """Wrong username or password, or a disabled user: the message never says which."""


class LockedOutError(SignInError):
    """`until`: when the lockout ends; `at`: when the refused attempt was made, to tell how long to wait."""

    def __init__(self, until: datetime, *, at: datetime) -> None:
        self.until = until
        self.at = at
        super().__init__("too many failed sign-ins: try again later")


class FencedError(StateStoreError):
    def __init__(self, lease: str, epoch: int, current: int | None) -> None:
        self.lease = lease
        self.epoch = epoch
        self.current = current
        now = "is released" if current is None else f"is at epoch {current}"
        super().__init__(f"lease {lease} held at epoch {epoch} {now}: the write is refused")
