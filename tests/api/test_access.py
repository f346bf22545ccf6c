"""Access control: no endpoint but health without a token; roles; sign-in, sign-out, lockout; machine tokens."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from facmon.facility.model import Role
from tests.api.conftest import signed_in
from tests.publishing import feed

PASSWORD = "correct horse battery"

# Open on purpose: liveness and readiness, sign-in, the dashboard's page (which asks to sign in), the API's
# description, and the acknowledge links (each signed).
OPEN = {
    "/healthz",
    "/readyz",
    "/api/v1/auth/login",
    "/",
    "/ack/{token}",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
}


def test_no_endpoint_but_the_open_ones_answers_without_a_token(service) -> None:
    svc, _clock, _api = service
    anonymous = TestClient(svc.app)
    checked = 0
    for route, operations in svc.app.openapi()["paths"].items():
        if route in OPEN:
            continue
        path = re.sub(r"\{[^}]+\}", "1", route)
        for method in operations:
            response = anonymous.request(method.upper(), path, json={})
            assert response.status_code == 401, f"{method} {route}: {response.status_code}"
            assert response.headers["www-authenticate"].startswith("Bearer")
            checked += 1
    assert checked >= 30
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/api/v1/devices", headers={"Authorization": "Bearer fmn_made-up"}).status_code == 401


def test_a_viewer_reads_but_cannot_acknowledge(service) -> None:
    svc, clock, admin = service
    feed(svc, clock, "smoke", "smoke-B-05", {"state": "alarm"})
    [alarm] = admin.get("/api/v1/alarms").json()["items"]
    viewer = signed_in(svc, "guest", Role.VIEWER)
    assert viewer.get("/api/v1/alarms").json()["total"] == 1
    refused = viewer.post(f"/api/v1/alarms/{alarm['id']}/ack", json={})
    assert refused.status_code == 403
    assert refused.json()["detail"] == "guest is viewer; this needs operator or above"
    assert admin.get(f"/api/v1/alarms/{alarm['id']}").json()["state"] == "active_unacked"
    operator = signed_in(svc, "op.wang", Role.OPERATOR)
    acked = operator.post(f"/api/v1/alarms/{alarm['id']}/ack", json={})
    assert acked.status_code == 200 and acked.json()["acked_by"] == "op.wang"


def test_an_operator_cannot_move_a_work_order_an_engineer_can(service) -> None:
    svc, clock, admin = service
    feed(svc, clock, "smoke", "smoke-B-05", {"state": "alarm"})
    [order] = admin.get("/api/v1/work-orders").json()["items"]
    operator = signed_in(svc, "op.wang", Role.OPERATOR)
    path = f"/api/v1/work-orders/{order['id']}/transition"
    assert operator.post(path, json={"to": "in_progress"}).status_code == 403
    assert (
        operator.post(
            "/api/v1/work-orders", json={"title": "Lamp", "priority": "P4", "category": "general"}
        ).status_code
        == 403
    )
    engineer = signed_in(svc, "eng.zhao", Role.ENGINEER)
    moved = engineer.post(path, json={"to": "in_progress", "note": "on site"})
    assert moved.status_code == 200 and moved.json()["history"][-1]["actor"] == "eng.zhao"
    assert engineer.post("/api/v1/rules/reload").status_code == 403  # admin only


def test_sign_in_gives_a_session_that_sign_out_ends(service) -> None:
    svc, clock, _admin = service
    svc.accounts.set_password("li.na", PASSWORD, clock.now())  # the fixture made li.na without one
    browser = TestClient(svc.app)
    assert browser.post("/api/v1/auth/login", json={"username": "li.na", "password": "wrong"}).status_code == 401
    response = browser.post("/api/v1/auth/login", json={"username": "li.na", "password": PASSWORD})
    assert response.status_code == 200
    session = response.json()
    assert session["name"] == "li.na" and session["kind"] == "session"
    assert session["expires_at"] == "2026-11-22T14:00:00+08:00"  # 12 hours: a shift
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    # The cookie is enough for the dashboard; a bearer header for programs.
    assert browser.get("/api/v1/auth/me").json()["name"] == "li.na"
    bearer = TestClient(svc.app, headers={"Authorization": f"Bearer {session['token']}"})
    assert bearer.get("/api/v1/devices").status_code == 200
    # A change with the cookie from another site's page is refused.
    foreign = browser.post("/api/v1/alarms/ack", json={"ids": [1]}, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert browser.post("/api/v1/auth/logout").status_code == 204
    assert bearer.get("/api/v1/devices").status_code == 401
    clock.advance(hours=12)
    again = TestClient(svc.app).post("/api/v1/auth/login", json={"username": "li.na", "password": PASSWORD})
    token = again.json()["token"]
    clock.advance(hours=12, seconds=1)
    assert TestClient(svc.app, headers={"Authorization": f"Bearer {token}"}).get("/api/v1/devices").status_code == 401


def test_repeated_failures_lock_the_user_out_for_a_while(service) -> None:
    svc, clock, _admin = service
    svc.accounts.add_user("zhang.wei", PASSWORD, Role.ENGINEER, at=clock.now())
    browser = TestClient(svc.app)
    for _ in range(4):
        assert (
            browser.post("/api/v1/auth/login", json={"username": "zhang.wei", "password": "guess"}).status_code == 401
        )
    locked = browser.post("/api/v1/auth/login", json={"username": "zhang.wei", "password": "guess"})
    assert locked.status_code == 429 and locked.headers["retry-after"] == "900"
    # Even the right password waits out the lockout.
    assert browser.post("/api/v1/auth/login", json={"username": "zhang.wei", "password": PASSWORD}).status_code == 429
    clock.advance(minutes=15)
    assert browser.post("/api/v1/auth/login", json={"username": "zhang.wei", "password": PASSWORD}).status_code == 200
    # Unknown users get the same answer as a wrong password.
    unknown = browser.post("/api/v1/auth/login", json={"username": "nobody", "password": PASSWORD})
    assert unknown.status_code == 401 and unknown.json()["detail"] == "wrong username or password"


def test_machine_tokens_are_made_and_revoked_by_admins(service) -> None:
    svc, _clock, admin = service
    made = admin.post("/api/v1/tokens", json={"name": "prometheus", "role": "viewer", "expires_in": "365d"})
    assert made.status_code == 201
    token = made.json()["token"]
    assert token.startswith("fmn_") and token not in str(admin.get("/api/v1/tokens").json())
    scraper = TestClient(svc.app, headers={"Authorization": f"Bearer {token}"})
    assert scraper.get("/metrics").status_code == 200
    assert scraper.get("/api/v1/auth/me").json()["name"] == "token:prometheus"
    assert scraper.post("/api/v1/tokens", json={"name": "more", "role": "admin"}).status_code == 403
    assert admin.delete(f"/api/v1/tokens/{made.json()['id']}").status_code == 204
    assert scraper.get("/metrics").status_code == 401
    # Sessions are not revoked by id: they end by signing out, or by changing their user.
    session = next(t for t in svc.state.list_tokens(kind="session") if t.name == "li.na")
    assert admin.delete(f"/api/v1/tokens/{session.id}").status_code == 404
    assert admin.get("/api/v1/auth/me").status_code == 200
    assert signed_in(svc, "op", Role.OPERATOR).get("/api/v1/users").status_code == 403


def test_a_new_role_a_new_password_or_disabling_ends_the_user_s_sessions(service) -> None:
    svc, clock, _admin = service
    svc.accounts.add_user("wang", PASSWORD, Role.ENGINEER, at=clock.now())

    def session() -> TestClient:
        login = TestClient(svc.app).post("/api/v1/auth/login", json={"username": "wang", "password": PASSWORD})
        assert login.status_code == 200, login.text
        return TestClient(svc.app, headers={"Authorization": f"Bearer {login.json()['token']}"})

    engineer = session()
    svc.accounts.set_role("wang", Role.VIEWER, clock.now())
    assert engineer.get("/api/v1/auth/me").status_code == 401  # signed out by the change
    assert session().get("/api/v1/auth/me").json()["role"] == "viewer"
    viewer = session()
    svc.accounts.set_disabled("wang", True, clock.now())
    assert viewer.get("/api/v1/devices").status_code == 401
    refused = TestClient(svc.app).post("/api/v1/auth/login", json={"username": "wang", "password": PASSWORD})
    assert refused.status_code == 401
    svc.accounts.set_disabled("wang", False, clock.now())
    again = session()
    svc.accounts.set_password("wang", "another long password", clock.now())
    assert again.get("/api/v1/devices").status_code == 401


@pytest.mark.parametrize("secret", ["change-me", "CHANGEME", "secret", "${LINK_SECRET}", "your-secret-here"])
def test_placeholder_secrets_are_found(secret: str) -> None:
    from facmon.config.checks import placeholder_secrets
    from facmon.config.loader import parse_config

    text = (
        "sites: [{id: s, buildings: [{id: b, devices: [{id: p1, type: pump, name: P}]}]}]\n"
        f"mqtt: {{password: '{secret}'}}\n"
    )
    assert placeholder_secrets(parse_config(text, env={})) == ["mqtt.password"]
    assert placeholder_secrets(parse_config(text.replace(secret, "k8Jq2-xP0v-Lm3r"), env={})) == []


def test_bad_token_ids_expiries_and_usernames_are_422_not_server_errors(service) -> None:
    # A token id over 64 bits overflowed SQLite (over 32, PostgreSQL's INTEGER); an expiry beyond 999999999 days
    # overflowed a timedelta, and one past the year 9999 a datetime; a NUL in a username failed in PostgreSQL.
    svc, _clock, admin = service
    assert admin.delete(f"/api/v1/tokens/{2**63}").status_code == 422
    assert admin.delete(f"/api/v1/tokens/{2**31}").status_code == 422
    for expires_in, says in [("1000000000d", "is out of range"), ("3000000d", "after the year 9999")]:
        made = admin.post("/api/v1/tokens", json={"name": "grafana", "role": "viewer", "expires_in": expires_in})
        assert made.status_code == 422 and says in made.json()["detail"]
    assert admin.get("/api/v1/tokens").json()["total"] == 0
    sign_in = TestClient(svc.app).post("/api/v1/auth/login", json={"username": "li.na\x00", "password": PASSWORD})
    assert sign_in.status_code == 422 and sign_in.json()["errors"][0]["loc"] == "body.username"
