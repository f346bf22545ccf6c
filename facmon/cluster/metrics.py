"""The cluster's Prometheus figures: whether this worker leads, what it holds, how often leases changed hands."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from facmon.cluster.keeper import LeaseKeeper


class ClusterCollector(Collector):
    def __init__(self, keeper: LeaseKeeper) -> None:
        self._keeper = keeper

    def collect(self) -> Iterator[Metric]:
        keeper = self._keeper
        labels = ["worker"]
        leader = GaugeMetricFamily("facmon_cluster_leader", "1 while this worker is the leader.", labels=labels)
        leader.add_metric([keeper.worker], 1.0 if keeper.is_leader else 0.0)
        yield leader
        held = GaugeMetricFamily(
            "facmon_cluster_partitions_held", "Partitions whose lease this worker holds.", labels=labels
        )
        held.add_metric([keeper.worker], float(len(keeper.partitions())))
        yield held
        claims = CounterMetricFamily(
            "facmon_cluster_lease_claims", "Leases this worker claimed: at start, and taken over.", labels=labels
        )
        claims.add_metric([keeper.worker], float(keeper.claims))
        yield claims
        handovers = CounterMetricFamily(
            "facmon_cluster_lease_handovers", "Leases this worker gave up for another's share.", labels=labels
        )
        handovers.add_metric([keeper.worker], float(keeper.handovers))
        yield handovers


def register_cluster_metrics(registry: CollectorRegistry, keeper: LeaseKeeper) -> None:
    registry.register(ClusterCollector(keeper))
