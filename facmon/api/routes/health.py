from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from facmon.api.auth import requires
from facmon.api.deps import ServicesDep
from facmon.api.schemas import Health, Readiness
from facmon.facility.errors import StateStoreError
from facmon.facility.model import Role
from facmon.ingest.errors import TelemetryStoreError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: broker connected, state and telemetry stores reachable",
    responses={503: {"description": "Not ready; `checks` says what is not"}},
)
def readyz(services: ServicesDep) -> Readiness | JSONResponse:
    checks = {"broker": "ok" if services.broker_connected() else "not connected"}
    try:
        services.state.ping()
        checks["state_store"] = "ok"
    except StateStoreError as exc:
        checks["state_store"] = str(exc)
    try:
        services.telemetry.ping()
        checks["telemetry_store"] = "ok"
    except TelemetryStoreError as exc:
        checks["telemetry_store"] = str(exc)
    if all(v == "ok" for v in checks.values()):
        return Readiness(status="ready", checks=checks)
    return JSONResponse(
        {"type": "about:blank", "title": "Not ready", "status": 503, "checks": checks},
        status_code=503,
        media_type="application/problem+json",
    )


@router.get(
    "/metrics",
    summary="Metrics in the Prometheus text format: ingest counts, rejects by reason, write latency, spool",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    # Not open like liveness: the figures say much about the site. Prometheus sends a token
    # (`authorization: {credentials: …}` in its scrape config).
    dependencies=[Depends(requires(Role.VIEWER))],
)
def metrics(services: ServicesDep) -> Response:
    return Response(generate_latest(services.metrics), media_type=CONTENT_TYPE_LATEST)
