"""Sign-in and sign-out, who am I, and the admin's users and machine tokens."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from facmon.api.auth import SESSION_COOKIE, Admin, Authenticated, requires
from facmon.api.deps import ServicesDep
from facmon.api.limits import AddressThrottle, client_address
from facmon.api.problems import too_many_requests
from facmon.api.routes.params import Id, ends_after
from facmon.api.schemas import Page, RequestBody, local_time
from facmon.facility.accounts import Principal
from facmon.facility.errors import LockedOutError, SignInError
from facmon.facility.model import ApiToken, Role, TokenKind, User

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["access"])


class SignIn(RequestBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"username": "li.na", "password": "…"}]})

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    name: str = Field(description="What the history records for this user or token")
    display_name: str | None
    role: Role
    kind: TokenKind = Field(description="`session` from signing in, or `machine`")
    expires_at: datetime | None


class Session(Me):
    token: str = Field(description="A bearer token; the dashboard gets it as an HttpOnly cookie as well")


class UserPublic(BaseModel):
    username: str
    name: str
    role: Role
    disabled: bool
    created_at: datetime
    locked_until: datetime | None


class NewUser(RequestBody):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    name: str | None = Field(None, max_length=128)
    role: Role
    password: str = Field(min_length=10, max_length=1024)


class TokenPublic(BaseModel):
    id: int
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewToken(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "grafana", "role": "viewer", "expires_in": "365d"}]}
    )

    name: str = Field(min_length=1, max_length=64)
    role: Role
    expires_in: str | None = Field(None, description="A duration such as `90d`; never expires when absent")


class TokenCreated(TokenPublic):
    token: str = Field(description="Shown only now: facmon keeps only its hash")


def _me(principal: Principal, services: ServicesDep) -> Me:
    return Me(
        name=principal.name,
        display_name=principal.display_name,
        role=principal.role,
        kind=principal.kind,
        expires_at=local_time(principal.expires_at, services.config.tz),
    )


@router.post(
    "/auth/login",
    response_model=Session,
    summary="Sign in: a session token (and cookie) for the shift",
    responses={
        401: {"description": "Wrong username or password"},
        429: {"description": "Too many sign-ins from this address, or locked out for a while"},
    },
)
def login(services: ServicesDep, request: Request, body: SignIn) -> Response:
    now = services.clock.now()
    address = client_address(request)
    throttle: AddressThrottle = request.app.state.sign_in_throttle
    per_minute = services.config.api.sign_ins_per_minute
    # Before the password is hashed: each hash costs 64 MiB and tens of milliseconds.
    if wait := throttle.take(address, now, per_minute):
        log.warning("sign-in from %s refused: more than %d a minute", address, per_minute)
        return too_many_requests("too many sign-ins from this address: try again later", wait)
    # The errors are answered in problems.py; only here are the username and the address known, for the log.
    try:
        token, principal = services.accounts.sign_in(body.username, body.password, now, address=address)
    except LockedOutError as exc:
        log.warning("sign-in of %r from %s refused: locked out until %s", body.username, address, exc.until)
        raise
    except SignInError:
        log.warning("failed sign-in of %r from %s", body.username, address)
        raise
    session = Session(token=token, **_me(principal, services).model_dump())
    response = JSONResponse(session.model_dump(mode="json"))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(services.accounts.session_ttl.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    log.info("%s signed in (%s)", principal.name, principal.role)
    return response


@router.post("/auth/logout", status_code=204, summary="Sign out: the session token stops working")
def logout(services: ServicesDep, principal: Authenticated) -> Response:
    if principal.kind is TokenKind.SESSION:
        services.accounts.sign_out(principal, services.clock.now())
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/auth/me", response_model=Me, summary="Who the token belongs to, and its role")
def me(services: ServicesDep, principal: Annotated[Principal, Depends(requires(Role.VIEWER))]) -> Me:
    return _me(principal, services)


@router.get("/users", response_model=Page[UserPublic], summary="Users (admin)")
def list_users(services: ServicesDep, _admin: Admin) -> Page[UserPublic]:
    items = [_public_user(u, services) for u in services.state.list_users()]
    return Page(items=items, total=len(items))


@router.post("/users", response_model=UserPublic, status_code=201, summary="Add a user (admin)")
def add_user(services: ServicesDep, admin: Admin, body: NewUser) -> UserPublic:
    user = services.accounts.add_user(body.username, body.password, body.role, name=body.name, at=services.clock.now())
    log.info("user %s (%s) added by %s", user.username, user.role, admin.name)
    return _public_user(user, services)


@router.get("/tokens", response_model=Page[TokenPublic], summary="Machine tokens (admin)")
def list_tokens(services: ServicesDep, _admin: Admin) -> Page[TokenPublic]:
    items = [_public_token(t, services) for t in services.state.list_tokens(kind=TokenKind.MACHINE)]
    return Page(items=items, total=len(items))


@router.post("/tokens", response_model=TokenCreated, status_code=201, summary="Make a machine token (admin)")
def add_token(services: ServicesDep, admin: Admin, body: NewToken) -> TokenCreated:
    now = services.clock.now()
    expires = ends_after(now, body.expires_in, "expires_in")
    token, row = services.accounts.add_token(body.name, body.role, at=now, expires_at=expires)
    log.info("machine token %s (%s) made by %s", body.name, body.role, admin.name)
    return TokenCreated(token=token, **_public_token(row, services).model_dump())


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a machine token (admin)")
def revoke_token(services: ServicesDep, admin: Admin, token_id: Id) -> Response:
    if not services.accounts.revoke(token_id, services.clock.now()):
        raise HTTPException(404, f"no machine token {token_id} that is not already revoked")
    log.info("token %s revoked by %s", token_id, admin.name)
    return Response(status_code=204)


def _public_user(user: User, services: ServicesDep) -> UserPublic:
    tz = services.config.tz
    return UserPublic(
        username=user.username,
        name=user.name,
        role=user.role,
        disabled=user.disabled,
        created_at=user.created_at.astimezone(tz),
        locked_until=local_time(user.locked_until, tz),
    )


def _public_token(row: ApiToken, services: ServicesDep) -> TokenPublic:
    tz = services.config.tz
    return TokenPublic(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=row.created_at.astimezone(tz),
        expires_at=local_time(row.expires_at, tz),
        last_used_at=local_time(row.last_used_at, tz),
        revoked_at=local_time(row.revoked_at, tz),
    )
