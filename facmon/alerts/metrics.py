"""Prometheus metrics of notifications and paging, read from the state store when scraped.

Read at scrape time rather than counted in process: the outbox and the escalations live in the state store, which
several service instances may share, and the figures must survive restarts.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from facmon.facility.errors import StateStoreError
from facmon.facility.model import EscalationState
from facmon.facility.state import StateStore


class AlertsCollector(Collector):
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self._store.notification_counts()
            escalations = self._store.escalation_counts()
        except StateStoreError:
            return  # /readyz says the store is down; a scrape should not fail with it
        notifications = GaugeMetricFamily(
            "facmon_notifications", "Notifications in the outbox by state (pending, sent, dead).", labels=["state"]
        )
        for notification_state, count in counts.items():
            notifications.add_metric([notification_state.value], count)
        yield notifications
        paging = GaugeMetricFamily(
            "facmon_escalations", "Work orders' paging by state (active, acknowledged, ended).", labels=["state"]
        )
        for escalation_state in EscalationState:
            paging.add_metric([escalation_state.value], escalations.get(escalation_state, 0))
        yield paging


def register_alerts_metrics(registry: CollectorRegistry, store: StateStore) -> None:
    registry.register(AlertsCollector(store))
