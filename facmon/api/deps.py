"""What the API's routes read, declared once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from facmon.alerts.notifications.notifier import Notifier
from facmon.alerts.paging.escalation import Escalator
from facmon.cluster.keeper import LeaseKeeper
from facmon.config.facility import FacilityConfig
from facmon.config.registry import DeviceRegistry
from facmon.facility.accounts import Accounts
from facmon.facility.clock import Clock
from facmon.facility.state import StateStore
from facmon.ingest.presence import DevicePresence, GatewayPresence
from facmon.ingest.storage import TelemetryStore
from facmon.rules.processor import RuleProcessor


@dataclass(frozen=True)
class Services:
    config: FacilityConfig
    registry: DeviceRegistry
    state: StateStore
    telemetry: TelemetryStore
    presence: DevicePresence
    clock: Clock
    broker_connected: Callable[[], bool]
    alarms: RuleProcessor
    reload_rules: Callable[[], list[str]]
    # Users, sign-in and tokens.
    accounts: Accounts
    gateways: GatewayPresence = field(default_factory=lambda: GatewayPresence(()))
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    seq_gaps: Callable[[str], int] = lambda _device_id: 0
    # How long the batch in hand has waited for a store to take it (0 while ingest flows).
    ingest_stalled_for: Callable[[], float] = lambda: 0.0
    ingest_error: Callable[[], str | None] = lambda: None
    # The channels a new work order is announced on (its messages are queued, the outbox sends them).
    notifiers: Sequence[Notifier] = ()
    # Pages the on-call for new work orders and takes acknowledgements; None when nobody is paged.
    escalator: Escalator | None = None
    # In a cluster: who holds what; None for one process alone.
    cluster: LeaseKeeper | None = None


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
