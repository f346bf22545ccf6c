"""Limits at the API's edge: request bodies refused before they are read, and how long a request waits for a locked
SQLite state store."""

from __future__ import annotations

from dataclasses import replace

from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from facmon.api.app import create_app
from facmon.api.limits import API_LOCK_WAIT_S, LockWait
from facmon.facility.model import Role
from facmon.facility.state import StateStore
from tests.api.conftest import session_token
from tests.raw_asgi import call

MiB = 1024 * 1024
CHUNK = 64 * 1024
ACK = "/api/v1/alarms/ack"


def test_a_body_announced_over_the_limit_is_refused_before_a_byte_of_it_is_read(service) -> None:
    svc, _clock, _ = service
    token = session_token(svc.app.state.services, "li.na", Role.OPERATOR)
    answer = call(
        svc.app,
        "POST",
        ACK,
        headers={"authorization": f"Bearer {token}", "content-type": "application/json", "content-length": "300000000"},
        chunks=[b"x" * CHUNK] * 10,
    )
    assert answer.status == 413 and answer.read == 0
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["connection"] == "close"  # the rest of the body is never read
    assert answer.json()["detail"] == f"a request body may have at most {MiB} bytes"


def test_a_streamed_body_is_refused_once_it_grows_over_the_limit(service) -> None:
    svc, _clock, _ = service
    token = session_token(svc.app.state.services, "li.na", Role.OPERATOR)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    answer = call(svc.app, "POST", ACK, headers=headers, chunks=[b" " * CHUNK] * 300)  # 18.75 MiB, no length
    assert answer.status == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.chunks_read == MiB // CHUNK + 1  # read up to the first chunk past the limit, and no further
    # Under the limit, the same body goes through to the route.
    fits = call(svc.app, "POST", ACK, headers=headers, chunks=[b'{"ids": [1]}', b" " * CHUNK])
    assert fits.status == 404, fits.body  # there is no alarm 1


def test_the_limit_is_the_api_s_max_body_bytes(service) -> None:
    svc, _clock, api = service
    services = svc.app.state.services
    config = services.config.model_copy(update={"api": services.config.api.model_copy(update={"max_body_bytes": 1024})})
    small = TestClient(create_app(replace(services, config=config)), headers=api.headers)
    note = {"text": "x" * 1500}
    assert small.post("/api/v1/alarms/1/comment", json=note).status_code == 413
    assert api.post("/api/v1/alarms/1/comment", json=note).status_code == 404  # within the default 1 MiB


def test_requests_wait_for_a_locked_state_store_for_the_api_s_time(sqlite_store: StateStore) -> None:
    """The wait is set in the request's context, and holds in the worker thread that runs a route."""

    def busy_timeout(_request: Request) -> PlainTextResponse:
        with sqlite_store.engine.connect() as conn:
            return PlainTextResponse(str(conn.execute(text("PRAGMA busy_timeout")).scalar_one()))

    app = LockWait(Starlette(routes=[Route("/", busy_timeout)]))
    assert call(app, "GET", "/").body == str(int(API_LOCK_WAIT_S * 1000)).encode()
    with sqlite_store.engine.connect() as conn:  # elsewhere (ingest, the rules), the store's own
        assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() == 10_000
