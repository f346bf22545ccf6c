"""`create_app(services)`: the FastAPI application, its routers, its middlewares and its error handling."""

from __future__ import annotations

from importlib.resources import files

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from facmon import __version__
from facmon.api import problems
from facmon.api.auth import Credentials, requires
from facmon.api.deps import Services
from facmon.api.headers import SecurityHeaders
from facmon.api.limits import AddressThrottle, BodyLimit, LockWait
from facmon.api.routes import (
    alarm_kpis,
    alarms,
    auth,
    cluster,
    dashboard,
    devices,
    docs,
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
        # Served by routes/docs.py, with the content security policy those pages need.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.sign_in_throttle = AddressThrottle()
    problems.install(app)
    # The last added runs first: security headers on every answer, then the body limit, then the lock wait, then
    # the token, each before anything reads the body. They read the services when a request needs them, not
    # here: an app without services still serves its OpenAPI document.
    app.add_middleware(Credentials)
    app.add_middleware(LockWait)
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    # Open: liveness and readiness, sign-in, the dashboard's page (it asks to sign in), the API's description and
    # the signed acknowledge links (auth.OPEN_PATHS). Each route of the others needs a token of at least
    # `viewer`, and more where it acts.
    for module in (health, auth, dashboard, docs):
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
        cluster,
        stream,
    ):
        app.include_router(module.router, dependencies=signed_in)
    app.include_router(oncall.links)
    # The dashboard's scripts, styles and vendored libraries: no data, so open like the page itself.
    app.mount("/static", StaticFiles(directory=str(files("facmon.api") / "static")), name="static")
    return app
