"""Credentials are checked before a request's body is read; what is open stays open."""

from __future__ import annotations

from fastapi.testclient import TestClient

from facmon.api.auth import SESSION_COOKIE
from facmon.facility.model import Role
from tests.api.conftest import session_token
from tests.raw_asgi import call

CHUNK = 64 * 1024
JSON = {"content-type": "application/json", "transfer-encoding": "chunked"}


def test_a_request_without_valid_credentials_is_refused_before_its_body_is_read(service) -> None:
    svc, _clock, _ = service
    body = [b" " * CHUNK] * 8
    for credentials in (
        {},
        {"authorization": "Bearer fmn_made-up"},
        {"authorization": "Basic bGkubmE6cHc="},
        {"cookie": f"{SESSION_COOKIE}=fmn_made-up"},
    ):
        answer = call(svc.app, "POST", "/api/v1/alarms/ack", headers={**JSON, **credentials}, chunks=body)
        assert (answer.status, answer.read) == (401, 0), credentials
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"] == 'Bearer realm="facmon"'
        assert answer.headers["connection"] == "close"  # the unread body cannot be followed by another request
    # A cookie-borne change from another site's page: refused before its body too.
    token = session_token(svc.app.state.services, "li.na", Role.OPERATOR)
    cookie = {"cookie": f"{SESSION_COOKIE}={token}", "origin": "https://evil.example"}
    answer = call(svc.app, "POST", "/api/v1/alarms/ack", headers={**JSON, **cookie}, chunks=body)
    assert (answer.status, answer.read) == (403, 0)
    # With a valid token, the body is read and judged.
    signed_in = call(
        svc.app, "POST", "/api/v1/alarms/ack", headers={**JSON, "authorization": f"Bearer {token}"}, chunks=body
    )
    assert signed_in.status == 422 and signed_in.read == len(body) * CHUNK


def test_a_path_that_is_not_open_needs_a_token_even_if_it_does_not_exist(service) -> None:
    svc, _clock, api = service
    anonymous = TestClient(svc.app)
    assert anonymous.get("/api/v1/no-such-thing").status_code == 401
    assert anonymous.put("/api/v1/alarms/1/ack").status_code == 401
    assert api.get("/api/v1/no-such-thing").status_code == 404
    assert api.put("/api/v1/alarms/1/ack").status_code == 405


def test_the_open_paths_answer_without_a_token(service) -> None:
    svc, _clock, _ = service
    anonymous = TestClient(svc.app)
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 503  # not started: no broker; but answered
    assert anonymous.get("/").headers["content-type"].startswith("text/html")
    for path in ("/static/dashboard.js", "/static/dashboard.css", "/static/ack.css", "/openapi.json"):
        assert anonymous.get(path).status_code == 200, path
    for path in ("/docs", "/docs/oauth2-redirect", "/redoc"):
        assert anonymous.get(path).headers["content-type"].startswith("text/html"), path
    wrong = anonymous.post("/api/v1/auth/login", json={"username": "li.na", "password": "wrong"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong username or password"
    link = anonymous.get("/ack/not-a-link")
    assert link.status_code == 403 and link.headers["content-type"].startswith("text/html")
    assert anonymous.post("/ack/not-a-link").status_code == 403
