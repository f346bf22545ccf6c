"""A state store that is locked or does not answer: 503 problem+json with Retry-After, from every route, soon."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import httpx
from fastapi.testclient import TestClient

from facmon.api.app import create_app
from facmon.cmd.broker import free_port
from facmon.facility.accounts import Accounts
from facmon.facility.model import Role
from facmon.facility.state import StateStore
from tests.api.conftest import signed_in

ORDER = {"title": "Lamp out, stairwell B", "priority": "P4", "category": "general"}
PASSWORD = "correct horse battery"


def assert_unavailable(answer: httpx.Response, detail: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "5"
    assert answer.json() == {"type": "about:blank", "title": "State store unavailable", "status": 503, "detail": detail}


def test_a_write_to_a_locked_sqlite_state_store_answers_503(service) -> None:
    svc, clock, _ = service
    svc.accounts.add_user("zhang.wei", PASSWORD, Role.ENGINEER, at=clock.now())
    engineer = signed_in(svc, "eng.zhao", Role.ENGINEER)
    assert engineer.get("/api/v1/auth/me").status_code == 200  # the token's use is recorded now, not below
    database = svc.config.storage.state_url.removeprefix("sqlite:///")
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert_unavailable(
            engineer.post("/api/v1/work-orders", json=ORDER), "state store unavailable: database is locked"
        )
        assert engineer.get("/api/v1/work-orders").status_code == 200  # reads go on
        # Signing in counts the attempt first: a write. Without a session, the reason is not said.
        sign_in = TestClient(svc.app).post("/api/v1/auth/login", json={"username": "zhang.wei", "password": PASSWORD})
        assert_unavailable(sign_in, "the state store does not answer: try again shortly")
    finally:
        other.rollback()
        other.close()
    assert engineer.post("/api/v1/work-orders", json=ORDER).status_code == 201


def test_a_postgresql_state_store_on_a_closed_port_answers_503(service) -> None:
    svc, _clock, api = service
    broken = StateStore.open(f"postgresql://facmon@127.0.0.1:{free_port()}/facmon", create=False)
    try:
        app = create_app(replace(svc.app.state.services, state=broken, accounts=Accounts(broken)))
        generic = "the state store does not answer: try again shortly"
        assert_unavailable(TestClient(app, headers=api.headers).get("/api/v1/alarms"), generic)
        assert_unavailable(TestClient(app, headers=api.headers).post("/api/v1/alarms/ack", json={"ids": [1]}), generic)
        login = TestClient(app).post("/api/v1/auth/login", json={"username": "li.na", "password": PASSWORD})
        assert_unavailable(login, generic)
        assert TestClient(app).get("/healthz").status_code == 200  # the process itself is alive
    finally:
        broken.close()
