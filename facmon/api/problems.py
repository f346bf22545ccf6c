"""Every error the API returns is application/problem+json (RFC 9457), made here and nowhere else."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from facmon.alerts.errors import AckLinkError, AcknowledgeError, TransitionInputError, TransitionNotAllowedError
from facmon.facility.errors import ConfigError, NotFoundError, StateStoreError
from facmon.ingest.errors import TelemetryStoreError
from facmon.rules.lifecycle import LifecycleError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def install(app: FastAPI) -> None:
    # Starlette's HTTPException: FastAPI's own is a subclass, and unknown routes raise the base class.
    @app.exception_handler(HTTPException)
    async def _http(_request: Request, exc: HTTPException) -> JSONResponse:
        response = problem(exc.status_code, _title(exc.status_code), str(exc.detail) if exc.detail else None)
        for name, value in (exc.headers or {}).items():  # WWW-Authenticate on a 401, Allow on a 405
            response.headers[name] = value
        return response

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

    @app.exception_handler(StateStoreError)
    async def _store(_request: Request, exc: StateStoreError) -> JSONResponse:
        log.error("state store: %s", exc)
        return problem(503, "State store unavailable", str(exc))

    @app.exception_handler(TelemetryStoreError)
    async def _telemetry(_request: Request, exc: TelemetryStoreError) -> JSONResponse:
        log.error("telemetry store: %s", exc)
        return problem(503, "Telemetry store unavailable", str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal server error", "the error was logged")


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
