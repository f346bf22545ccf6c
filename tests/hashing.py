"""A password hasher for the sign-in tests: argon2 at its cheapest, counting the passwords it checks."""

from __future__ import annotations

import threading

from argon2 import PasswordHasher


class CountingHasher(PasswordHasher):
    """argon2id with the least work it allows, which keeps how many passwords were checked against a hash."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.checked = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.checked += 1
        return super().verify(hash, password)
