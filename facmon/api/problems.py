"""Every error the API returns is application/problem+json (RFC 9457), made here and nowhere else.

The middlewares that answer before the app's error handlers run (body limit, credentials) make theirs with the
functions here too, so that a refusal looks the same wherever it is made.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from facmon.alerts.errors import AckLinkError, AcknowledgeError, TransitionInputError, TransitionNotAllowedError
from facmon.api.headers import SECURITY_HEADERS
from facmon.config.errors import ConfigError
from facmon.facility.errors import (
    AccountError,
    LockedOutError,
    NotFoundError,
    SignInError,
    StateStoreError,
    UserExistsError,
)
from facmon.ingest.errors import TelemetryStoreError
from facmon.rules.errors import LifecycleError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
# When to ask again after a 503 of the state store: a locked database or a restarting server is back in seconds.
RETRY_AFTER_S = 5


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def http_problem(exc: HTTPException) -> JSONResponse:
    response = problem(exc.status_code, _title(exc.status_code), str(exc.detail) if exc.detail else None)
    for name, value in (exc.headers or {}).items():  # WWW-Authenticate on a 401, Allow on a 405
        response.headers[name] = value
    return response


def store_unavailable(exc: StateStoreError, *, signed_in: bool) -> JSONResponse:
    """503 for a state store that cannot be reached or is locked. Why is said only to a signed-in caller: the
    database's own message names hosts, ports and files."""
    log.error("state store: %s", exc)
    detail = str(exc) if signed_in else "the state store does not answer: try again shortly"
    response = problem(503, "State store unavailable", detail)
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def too_many_requests(detail: str, retry_after: int) -> JSONResponse:
    """429, with the seconds to wait before trying again."""
    response = problem(429, "Too Many Requests", detail)
    response.headers["Retry-After"] = str(retry_after)
    return response


def install(app: FastAPI) -> None:
    # Starlette's HTTPException: FastAPI's own is a subclass, and unknown routes raise the base class.
    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        return http_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": ".".join(str(p) for p in err.get("loc", ())), "msg": err.get("msg", "")} for err in exc.errors()
        ]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)

    @app.exception_handler(NotFoundError)
    async def _not_found(_request: Request, exc: NotFoundError) -> JSONResponse:
        return problem(404, _title(404), str(exc))

    @app.exception_handler(LifecycleError)
    async def _conflict(_request: Request, exc: LifecycleError) -> JSONResponse:
        return problem(409, _title(409), str(exc))

    @app.exception_handler(TransitionNotAllowedError)
    async def _transition(_request: Request, exc: TransitionNotAllowedError) -> JSONResponse:
        return problem(409, _title(409), str(exc), current_status=exc.current, allowed=list(exc.allowed))

    @app.exception_handler(AcknowledgeError)
    async def _acknowledge(_request: Request, exc: AcknowledgeError) -> JSONResponse:
        return problem(409, _title(409), str(exc))

    @app.exception_handler(AckLinkError)
    async def _ack_link(_request: Request, exc: AckLinkError) -> JSONResponse:
        return problem(403, _title(403), str(exc))

    @app.exception_handler(TransitionInputError)
    async def _transition_input(_request: Request, exc: TransitionInputError) -> JSONResponse:
        loc = f"body.{exc.field}"
        return problem(422, "Invalid request", f"{loc}: {exc.message}", errors=[{"loc": loc, "msg": exc.message}])

    @app.exception_handler(ConfigError)
    async def _config(_request: Request, exc: ConfigError) -> JSONResponse:
        errors = [{"loc": p.path, "msg": p.message, "source": p.source, "line": p.line} for p in exc.problems]
        return problem(422, "Invalid configuration", "; ".join(str(p) for p in exc.problems), errors=errors)

    # NotFoundError, a StateStoreError too, has its own handler above: the nearest class's handler answers.
    @app.exception_handler(StateStoreError)
    async def _store(request: Request, exc: StateStoreError) -> JSONResponse:
        return store_unavailable(exc, signed_in=getattr(request.state, "principal", None) is not None)

    @app.exception_handler(TelemetryStoreError)
    async def _telemetry(_request: Request, exc: TelemetryStoreError) -> JSONResponse:
        log.error("telemetry store: %s", exc)
        return problem(503, "Telemetry store unavailable", str(exc))

    # A lockout is a SignInError too, and a taken username an AccountError: the nearest class's handler answers.
    @app.exception_handler(LockedOutError)
    async def _locked_out(_request: Request, exc: LockedOutError) -> JSONResponse:
        return too_many_requests(str(exc), max(1, int((exc.until - exc.at).total_seconds())))

    @app.exception_handler(SignInError)
    async def _sign_in(_request: Request, exc: SignInError) -> JSONResponse:
        return problem(401, _title(401), str(exc))

    @app.exception_handler(UserExistsError)
    async def _user_exists(_request: Request, exc: UserExistsError) -> JSONResponse:
        return problem(409, _title(409), str(exc))

    @app.exception_handler(AccountError)
    async def _account(_request: Request, exc: AccountError) -> JSONResponse:
        return problem(422, _title(422), str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        response = problem(500, "Internal server error", "the error was logged")
        # Sent from outside the middlewares, which add these to every other answer.
        response.headers.update(SECURITY_HEADERS)
        return response


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
