"""`create_app(services)`: the FastAPI application, its routers and its error handling."""

from __future__ import annotations

from fastapi import FastAPI

from facmon import __version__
from facmon.api import problems
from facmon.api.deps import Services
from facmon.api.routes import (
    alarm_kpis,
    alarms,
    dashboard,
    devices,
    gateways,
    health,
    ingest,
    notifications,
    oncall,
    reports,
    rules,
    telemetry,
    work_orders,
)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="facmon",
        version=__version__,
        summary="Facility monitoring and alerting: devices, alarms, work orders, notifications",
    )
    app.state.services = services
    problems.install(app)
    for module in (
        health,
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
        dashboard,
    ):
        app.include_router(module.router)
    return app
