"""Who is asking: the bearer token of a request (header, or the dashboard's session cookie), and what they may do.

Every path but those in `OPEN_PATHS` and under `OPEN_PREFIXES` (health, sign-in, the dashboard's page and files,
the signed acknowledge links, the API's description) needs a token. `Credentials`, pure ASGI middleware, checks
it before anything reads the request's body: FastAPI reads and parses a body before it resolves a route's
dependencies, so a dependency alone would take in a large body from anyone before refusing them. Each route then
declares the least role it needs (`requires`), judged on the principal the middleware found.

The dashboard keeps its session in an HttpOnly cookie, which scripts cannot read; a cookie-borne request that
changes something must come from facmon's own page (the Origin header, and SameSite=Strict), so another site
cannot act with an operator's session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from facmon.api import problems
from facmon.api.deps import Services, ServicesDep
from facmon.facility.accounts import Principal
from facmon.facility.errors import StateStoreError
from facmon.facility.model import Role

SESSION_COOKIE = "facmon_session"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
# Open on purpose (docs/api.md, Access). Anything not named here needs a token, a path that does not exist too.
OPEN_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/api/v1/auth/login", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
OPEN_PREFIXES = ("/static/", "/ack/")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="facmon"'})


def identify(connection: HTTPConnection, services: Services) -> Principal:
    """The principal of the request's token, kept in its state; HTTPException 401 (or 403) otherwise."""
    header = connection.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("use Authorization: Bearer TOKEN")
    else:
        token = connection.cookies.get(SESSION_COOKIE, "")
        if not token:
            raise _unauthorized("sign in, or send Authorization: Bearer TOKEN")
        if connection.scope["method"] not in _SAFE and not _same_origin(connection):
            raise HTTPException(403, "a change with the session cookie must come from facmon's own page")
    principal = services.accounts.authenticate(token.strip(), services.clock.now())
    if principal is None:
        raise _unauthorized("the token is unknown, expired or revoked: sign in again")
    connection.state.principal = principal
    connection.state.token = token.strip()  # for a long request (the event stream) to check again later
    return principal


def authenticate(request: Request, services: ServicesDep) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal if principal is not None else identify(request, services)


def principal_if_any(request: Request, services: ServicesDep) -> Principal | None:
    """The principal of the request's token, or None without a valid one, or when the state store cannot say."""
    try:
        return identify(request, services)
    except (HTTPException, StateStoreError):
        return None


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class Credentials:
    """Answer 401 (or 403, or 503 when the state store cannot check the token) to a request for a path that is not
    open, before its body is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(_route_path(scope)):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        refusal: Response
        try:
            await run_in_threadpool(identify, connection, connection.app.state.services)
        except HTTPException as exc:
            refusal = problems.http_problem(exc)
        except StateStoreError as exc:
            refusal = problems.store_unavailable(exc, signed_in=False)
        else:
            await self.app(scope, receive, send)
            return
        if connection.headers.get("content-length", "0") != "0" or "transfer-encoding" in connection.headers:
            refusal.headers["Connection"] = "close"  # the body is left unread: no request can follow it
        await refusal(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path within the app, without the prefix a proxy serves it under (`root_path`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


def _same_origin(connection: HTTPConnection) -> bool:
    origin = connection.headers.get("origin")
    if origin is None:
        return True  # not a cross-site browser request: browsers send Origin on cross-site POSTs
    host = connection.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


Authenticated = Annotated[Principal, Depends(authenticate)]
MaybeAuthenticated = Annotated[Principal | None, Depends(principal_if_any)]


def requires(role: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets through principals of at least `role`, and answers 403 to the others."""

    def check(principal: Authenticated) -> Principal:
        if not principal.role.allows(role):
            raise HTTPException(403, f"{principal.name} is {principal.role}; this needs {role} or above")
        return principal

    check.__name__ = f"requires_{role}"
    return check


Viewer = Annotated[Principal, Depends(requires(Role.VIEWER))]
Operator = Annotated[Principal, Depends(requires(Role.OPERATOR))]
Engineer = Annotated[Principal, Depends(requires(Role.ENGINEER))]
Admin = Annotated[Principal, Depends(requires(Role.ADMIN))]
