"""Sign-in lockout against real state stores: concurrent guesses, counts per address and from all addresses."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from facmon.facility.accounts import Accounts, Tallies
from facmon.facility.errors import LockedOutError, SignInError
from facmon.facility.model import Role
from facmon.facility.state import StateStore
from tests.hashing import CountingHasher

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
GUESSES = 60


def guess_at_once(accounts: Accounts, username: str, addresses: list[str]) -> list[str]:
    """Wrong guesses from each address, all let go at the same moment from threads of their own."""
    barrier = threading.Barrier(len(addresses))

    def guess(address: str) -> str:
        barrier.wait()
        try:
            accounts.sign_in(username, "a wrong guess", T0, address=address)
        except LockedOutError:
            return "locked"
        except SignInError:
            return "wrong"
        return "signed in"

    with ThreadPoolExecutor(len(addresses)) as pool:
        return list(pool.map(guess, addresses))


def test_concurrent_guesses_from_many_addresses_reach_no_more_password_checks_than_the_limit(
    state_store: StateStore,
) -> None:
    """On SQLite, reading the count, checking the password, then writing the count let 55 of 60 concurrent guesses
    through to a password check: each attempt is now counted by one UPDATE before its password is checked."""
    hasher = CountingHasher()
    accounts = Accounts(state_store, max_failures=5, max_failures_total=10, hasher=hasher)
    accounts.add_user("admin", PASSWORD, Role.ADMIN, at=T0)
    outcomes = guess_at_once(accounts, "admin", [f"10.0.{i}.1" for i in range(GUESSES)])
    assert hasher.checked == 10
    assert (outcomes.count("wrong"), outcomes.count("locked")) == (9, GUESSES - 9)
    user = state_store.user("admin")
    assert user is not None and user.failed_logins == GUESSES and user.locked_until == T0 + timedelta(minutes=15)
    with pytest.raises(LockedOutError):
        accounts.sign_in("admin", PASSWORD, T0, address="10.1.0.1")  # locked out everywhere, right password or not


def test_concurrent_guesses_from_one_address_reach_no_more_password_checks_than_its_limit(
    state_store: StateStore,
) -> None:
    hasher = CountingHasher()
    accounts = Accounts(state_store, max_failures=5, hasher=hasher)
    accounts.add_user("admin", PASSWORD, Role.ADMIN, at=T0)
    outcomes = guess_at_once(accounts, "admin", ["203.0.113.9"] * GUESSES)
    assert hasher.checked == 5
    assert (outcomes.count("wrong"), outcomes.count("locked")) == (4, GUESSES - 4)
    # Only from there: the refused guesses did not count towards the lockout from every address.
    user = state_store.user("admin")
    assert user is not None and user.failed_logins == 5 and user.locked_until is None
    token, principal = accounts.sign_in("admin", PASSWORD, T0, address="198.51.100.20")
    assert principal.name == "admin" and token


def test_a_new_password_ends_the_lockout_from_each_address(sqlite_store: StateStore) -> None:
    accounts = Accounts(sqlite_store, max_failures=2, hasher=CountingHasher())
    accounts.add_user("li.na", PASSWORD, Role.OPERATOR, at=T0)
    for _ in range(2):
        with pytest.raises(SignInError):
            accounts.sign_in("li.na", "a wrong guess", T0, address="192.0.2.1")
    with pytest.raises(LockedOutError):
        accounts.sign_in("li.na", PASSWORD, T0, address="192.0.2.1")
    accounts.set_password("li.na", "another long password", T0)
    _token, principal = accounts.sign_in("li.na", "another long password", T0, address="192.0.2.1")
    assert principal.name == "li.na"


def test_a_tally_locks_at_its_limit_until_the_lockout_ends_then_counts_again() -> None:
    tallies = Tallies(limit=3, lockout=timedelta(minutes=15))
    assert [tallies.count("k", T0) for _ in range(4)] == [
        (1, None),
        (2, None),
        (3, T0 + timedelta(minutes=15)),
        (4, T0 + timedelta(minutes=15)),
    ]
    later = T0 + timedelta(minutes=15)
    assert tallies.count("k", later) == (1, T0 + timedelta(minutes=15))  # over: in the past, counting from 1
    assert tallies.count("k", later, stamp=7) == (1, None)  # another stamp: a tally of its own


def test_tallies_forget_the_longest_unused_beyond_their_capacity() -> None:
    tallies = Tallies(limit=3, lockout=timedelta(minutes=15), capacity=2)
    tallies.count("a", T0)
    tallies.count("b", T0)
    tallies.count("a", T0)  # a is used again: b is now the longest unused
    tallies.count("c", T0)
    assert tallies.count("a", T0)[0] == 3
    assert tallies.count("b", T0)[0] == 1  # forgotten
