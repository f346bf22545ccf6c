"""Who is asking: the bearer token of a request (header, or the dashboard's session cookie), and what they may do.

Every route but health, sign-in, the dashboard's page and the signed acknowledge links needs a token; each route
declares the least role it needs (`requires`). The dashboard keeps its session in an HttpOnly cookie, which
scripts cannot read; a cookie-borne request that changes something must come from facmon's own page (the
Origin header, and SameSite=Strict), so another site cannot act with an operator's session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from facmon.api.deps import ServicesDep
from facmon.facility.accounts import Principal
from facmon.facility.model import Role

SESSION_COOKIE = "facmon_session"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="facmon"'})


def authenticate(request: Request, services: ServicesDep) -> Principal:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("use Authorization: Bearer TOKEN")
    else:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            raise _unauthorized("sign in, or send Authorization: Bearer TOKEN")
        if request.method not in _SAFE and not _same_origin(request):
            raise HTTPException(403, "a change with the session cookie must come from facmon's own page")
    principal = services.accounts.authenticate(token.strip(), services.clock.now())
    if principal is None:
        raise _unauthorized("the token is unknown, expired or revoked: sign in again")
    request.state.principal = principal
    request.state.token = token.strip()  # for a long request (the event stream) to check again later
    return principal


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a cross-site browser request: browsers send Origin on cross-site POSTs
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


Authenticated = Annotated[Principal, Depends(authenticate)]


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
