"""Sign-in under attack: a limit per client address before any hash, lockouts per address and from all addresses,
and answers that do not tell which usernames exist."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from facmon.api.app import create_app
from facmon.cmd.service import Service
from facmon.facility.accounts import Accounts
from facmon.facility.errors import SignInError
from facmon.facility.model import Role
from tests.hashing import CountingHasher

LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse battery"
WRONG = "a wrong guess"


def app_with(svc: Service, accounts: Accounts, **api: Any) -> FastAPI:
    """The service's app, with these accounts and `api` settings."""
    services = svc.app.state.services
    config = services.config.model_copy(update={"api": services.config.api.model_copy(update=api)})
    return create_app(replace(services, accounts=accounts, config=config))


def client(app: FastAPI, address: str) -> TestClient:
    return TestClient(app, client=(address, 50000))


def sign_in(browser: TestClient, username: str, password: str = WRONG) -> tuple[int, Any, str | None]:
    answer = browser.post(LOGIN, json={"username": username, "password": password})
    return answer.status_code, answer.json(), answer.headers.get("retry-after")


def test_sign_ins_from_one_address_are_limited_before_a_password_is_hashed(service) -> None:
    svc, clock, _ = service
    hasher = CountingHasher()
    accounts = Accounts(svc.state, hasher=hasher)
    accounts.add_user("zhang.wei", PASSWORD, Role.ENGINEER, at=clock.now())
    app = app_with(svc, accounts, sign_ins_per_minute=3)
    here = client(app, "192.0.2.7")
    # One password tried on several usernames is held up as much as guesses at one user.
    for username in ("admin", "li.na", "wang.jun"):
        assert sign_in(here, username)[0] == 401
    status, body, retry_after = sign_in(here, "zhang.wei", PASSWORD)
    assert (status, retry_after) == (429, "20")
    assert body["detail"] == "too many sign-ins from this address: try again later"
    assert hasher.checked == 3  # no hash for the refused one
    assert sign_in(client(app, "192.0.2.8"), "zhang.wei", PASSWORD)[0] == 200  # another address is not held up
    clock.advance(seconds=20)
    assert sign_in(here, "zhang.wei", PASSWORD)[0] == 200


def test_the_addresses_of_one_ipv6_network_share_a_limit(service) -> None:
    svc, _clock, _ = service
    app = app_with(svc, Accounts(svc.state, hasher=CountingHasher()), sign_ins_per_minute=2)
    assert sign_in(client(app, "2001:db8:1:2::1"), "nobody")[0] == 401
    assert sign_in(client(app, "2001:db8:1:2:ffff::9"), "nobody")[0] == 401
    assert sign_in(client(app, "2001:db8:1:2::77"), "nobody")[0] == 429  # the same /64
    assert sign_in(client(app, "2001:db8:1:3::1"), "nobody")[0] == 401


def test_a_username_that_no_one_has_is_answered_exactly_like_a_user(service) -> None:
    svc, clock, _ = service
    hasher = CountingHasher()
    accounts = Accounts(svc.state, hasher=hasher)
    accounts.add_user("zhang.wei", PASSWORD, Role.ENGINEER, at=clock.now())
    with pytest.raises(SignInError):  # the decoy hash is made at the first sign-in of a username no one has
        accounts.sign_in("someone", "warm up", clock.now())
    app = app_with(svc, accounts)

    def answers(browser: TestClient, username: str) -> list[tuple[int, Any, str | None, int]]:
        seen = []
        for _ in range(7):
            checked = hasher.checked
            seen.append((*sign_in(browser, username), hasher.checked - checked))
        return seen

    known = answers(client(app, "198.51.100.1"), "zhang.wei")
    unknown = answers(client(app, "198.51.100.2"), "nobody")
    assert known == unknown
    assert [status for status, *_ in known] == [401] * 4 + [429] * 3
    assert [retry_after for _, _, retry_after, _ in known] == [None] * 4 + ["900"] * 3
    assert [hashes for *_, hashes in known] == [1] * 5 + [0] * 2  # a hash each until locked out, none after


def test_failures_from_one_address_lock_the_user_out_only_from_there(service) -> None:
    svc, clock, _ = service
    accounts = Accounts(svc.state, hasher=CountingHasher())
    accounts.add_user("zhang.wei", PASSWORD, Role.ENGINEER, at=clock.now())
    app = app_with(svc, accounts)
    prankster, desk = client(app, "10.20.0.66"), client(app, "10.20.0.12")
    assert [sign_in(prankster, "zhang.wei")[0] for _ in range(5)] == [401] * 4 + [429]
    assert sign_in(prankster, "zhang.wei", PASSWORD)[0] == 429
    assert sign_in(desk, "zhang.wei", PASSWORD)[0] == 200
    clock.advance(minutes=15)
    assert sign_in(prankster, "zhang.wei", PASSWORD)[0] == 200


def test_failures_from_many_addresses_lock_the_user_out_everywhere_until_a_new_password(service) -> None:
    svc, clock, _ = service
    accounts = Accounts(svc.state, max_failures=2, max_failures_total=6, hasher=CountingHasher())
    accounts.add_user("zhang.wei", PASSWORD, Role.ENGINEER, at=clock.now())
    app = app_with(svc, accounts)
    for username in ("zhang.wei", "nobody"):  # alike, as ever
        guesses = [sign_in(client(app, f"203.0.113.{i}"), username)[0] for i in range(3) for _ in range(2)]
        assert guesses == [401, 429] * 3
    fresh = client(app, "203.0.113.200")
    status, body, retry_after = sign_in(fresh, "zhang.wei", PASSWORD)  # the right password, from a new address
    assert (status, retry_after) == (429, "900")
    assert sign_in(fresh, "nobody", PASSWORD) == (status, body, retry_after)
    accounts.set_password("zhang.wei", "a new long password", clock.now())
    assert sign_in(fresh, "zhang.wei", "a new long password")[0] == 200
    assert sign_in(client(app, "203.0.113.0"), "zhang.wei", "a new long password")[0] == 200
