"""Errors of the facility package.

FacilityError
├── ConfigError        the config file cannot be read or does not validate; carries every problem found
└── StateStoreError    the state store cannot be opened or reached, or stays locked (SQLite)
    └── NotFoundError  a requested alarm, work order, … does not exist
"""

from __future__ import annotations

from dataclasses import dataclass


class FacilityError(Exception):
    """Base of the facility package's errors."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config: where (file, key path, line) and what."""

    source: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(FacilityError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StateStoreError(FacilityError):
    pass


class NotFoundError(StateStoreError):
    def __init__(self, what: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key} not found")
