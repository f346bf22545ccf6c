"""Liveness, readiness and metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from facmon.api.auth import MaybeAuthenticated, requires
from facmon.api.deps import ServicesDep
from facmon.api.schemas import Health, Readiness
from facmon.facility.errors import StateStoreError
from facmon.facility.model import Role
from facmon.ingest.errors import TelemetryStoreError

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

# A batch waiting this long for a store (state store down, spool full) makes the worker not ready: nothing it
# receives is acknowledged, and its broker session fills up.
INGEST_STALLED_AFTER_S = 30.0


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: broker connected (in a cluster: its partitions' sessions), stores reachable, ingest flowing",
    description="Open, saying `ok` or `unavailable` per part; with a token of any role, why a part is not ok.",
    responses={503: {"description": "Not ready; `checks` says what is not"}},
)
def readyz(services: ServicesDep, principal: MaybeAuthenticated) -> Readiness | JSONResponse:
    keeper = services.cluster
    # In a cluster: the session of every partition this worker holds (none held: ready to serve, and take over).
    checks = {"broker": "ok" if services.broker_connected() else "not connected"}
    if keeper is not None:
        checks["cluster"] = "ok" if keeper.in_touch() else "lost touch with the other workers: holds no lease"
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
    stalled = services.ingest_stalled_for()
    checks["ingest"] = (
        "ok" if stalled < INGEST_STALLED_AFTER_S else f"stalled for {stalled:.0f} s: {services.ingest_error()}"
    )
    if all(v == "ok" for v in checks.values()):
        return Readiness(status="ready", checks=checks)
    log.warning("not ready: %s", "; ".join(f"{part}: {why}" for part, why in checks.items() if why != "ok"))
    if principal is None:
        # The errors name hosts, ports and files: only for those with a token. Health checks need only this.
        checks = {part: "ok" if why == "ok" else "unavailable" for part, why in checks.items()}
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
