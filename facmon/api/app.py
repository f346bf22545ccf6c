"""`create_app(services)`: the FastAPI application, its routers and its error handling."""

from __future__ import annotations

from importlib.resources import files

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from facmon import __version__
from facmon.api import problems
from facmon.api.auth import requires
from facmon.api.deps import Services
from facmon.api.routes import (
    alarm_kpis,
    alarms,
    auth,
    dashboard,
    devices,
    gateways,
    health,
    ingest,
    notifications,
    oncall,
    reports,
    rules,
    stream,
    telemetry,
    work_orders,
)
from facmon.facility.model import Role


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="facmon",
        version=__version__,
        summary="Facility monitoring and alerting: devices, alarms, work orders, notifications",
    )
    app.state.services = services
    problems.install(app)
    # Open: liveness and readiness, sign-in, the dashboard's page (it asks to sign in) and the signed
    # acknowledge links. Each route of the others needs a token of at least `viewer`, and more where it acts.
    for module in (health, auth, dashboard):
        app.include_router(module.router)
    signed_in = [Depends(requires(Role.VIEWER))]
    for module in (
        devices,
        telemetry,
        gateways,
        alarm_kpis,
        alarms,
        rules,
        work_orders,
        notifications,
        oncall,
        reports,
        ingest,
        stream,
    ):
        app.include_router(module.router, dependencies=signed_in)
    app.include_router(oncall.links)
    # The dashboard's scripts, styles and vendored libraries: no data, so open like the page itself.
    app.mount("/static", StaticFiles(directory=str(files("facmon.api") / "static")), name="static")
    return app
