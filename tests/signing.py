"""Signed-in clients for the tests: sessions made in the state store directly."""

from __future__ import annotations

from fastapi.testclient import TestClient

from facmon.api.deps import Services
from facmon.cmd.service import Service
from facmon.facility.accounts import TOKEN_PREFIX, token_hash
from facmon.facility.model import ApiToken, Role, TokenKind, User


def session_token(services: Services, username: str, role: Role = Role.ADMIN) -> str:
    """A session (without expiry: tests move the clock) of a user `username` of `role`, made in the state store:
    the password hash (argon2, deliberately slow) is the sign-in tests' business, not every API test's."""
    user = services.state.user(username)
    now = services.clock.now()
    token = f"{TOKEN_PREFIX}test-{username}-{role}"
    with services.state.begin() as tx:
        if user is None:
            user = tx.insert_user(User(0, username, username, role, "not-a-hash", now))
        if services.state.token(token_hash(token)) is None:
            tx.insert_token(ApiToken(0, token_hash(token), TokenKind.SESSION, username, role, now, user.id))
    return token


def signed_in(service: Service | TestClient, username: str, role: Role = Role.ADMIN, **client: object) -> TestClient:
    """A client of the service's app (or of another client's) with a session of `username` of `role`."""
    token = session_token(service.app.state.services, username, role)
    return TestClient(service.app, headers={"Authorization": f"Bearer {token}"}, **client)  # type: ignore[arg-type]
