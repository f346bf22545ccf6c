"""Readiness: open, saying only which part is not ready; why, only to a caller with a token."""

from __future__ import annotations

from dataclasses import replace

from fastapi.testclient import TestClient

from facmon.api.app import create_app
from facmon.cmd.broker import free_port
from facmon.facility.accounts import Accounts
from facmon.facility.model import Role
from facmon.facility.state import StateStore
from tests.api.conftest import signed_in


def test_readiness_tells_why_only_to_a_caller_with_a_token(service) -> None:
    svc, _clock, _ = service
    anonymous = TestClient(svc.app).get("/readyz")
    assert anonymous.status_code == 503  # not started: no broker connection
    assert anonymous.json()["checks"] == {
        "broker": "unavailable",
        "state_store": "ok",
        "telemetry_store": "ok",
        "ingest": "ok",
    }
    for credentials in ({"Authorization": "Bearer fmn_made-up"}, {"Authorization": "Basic bGk6cHc="}):
        assert TestClient(svc.app, headers=credentials).get("/readyz").json() == anonymous.json()
    viewer = signed_in(svc, "wall", Role.VIEWER).get("/readyz")
    assert viewer.status_code == 503
    assert viewer.json()["checks"] == {
        "broker": "not connected",
        "state_store": "ok",
        "telemetry_store": "ok",
        "ingest": "ok",
    }


def test_a_state_store_that_does_not_answer_is_unavailable_without_its_error(service) -> None:
    svc, _clock, api = service
    port = free_port()
    broken = StateStore.open(f"postgresql://facmon@127.0.0.1:{port}/facmon", create=False)
    try:
        app = create_app(replace(svc.app.state.services, state=broken, accounts=Accounts(broken)))
        # The token cannot be checked without the state store: everyone gets the open answer, the log the reason.
        for client in (TestClient(app), TestClient(app, headers=api.headers)):
            answer = client.get("/readyz")
            assert answer.status_code == 503
            assert answer.json()["checks"] == {
                "broker": "unavailable",
                "state_store": "unavailable",
                "telemetry_store": "ok",
                "ingest": "ok",
            }
            assert str(port) not in answer.text and "connection" not in answer.text
    finally:
        broken.close()


def test_readiness_says_when_ingest_has_waited_too_long_for_a_store(service) -> None:
    svc, _clock, api = service
    stalled = {"for": 31.0}
    app = create_app(
        replace(
            svc.app.state.services,
            broker_connected=lambda: True,
            ingest_stalled_for=lambda: stalled["for"],
            ingest_error=lambda: "rules: state store unavailable: database is locked",
        )
    )
    answer = TestClient(app, headers=api.headers).get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["ingest"] == "stalled for 31 s: rules: state store unavailable: database is locked"
    assert TestClient(app).get("/readyz").json()["checks"]["ingest"] == "unavailable"
    stalled["for"] = 29.0  # a store that is back within the wait is an outage ridden out, not unreadiness
    assert TestClient(app).get("/readyz").status_code == 200
