"""Ingest metrics in the Prometheus text format, served at /metrics.

Each service has its own registry (not prometheus-client's global one), so several services can live in one
process, as in the tests. Counters move once per batch, not per message: the hot path stays lean.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages = Counter(
            "facmon_ingest_messages", "MQTT telemetry messages received and handled", registry=registry
        )
        self.accepted = Counter("facmon_ingest_readings_accepted", "Readings accepted and stored", registry=registry)
        self.rejected = Counter(
            "facmon_ingest_rejected", "Messages or array elements refused, by reason", ["reason"], registry=registry
        )
        self.duplicates = Counter(
            "facmon_ingest_duplicates",
            "Readings received again (same device, ts and seq), handled once",
            registry=registry,
        )
        self.seq_gaps = Counter(
            "facmon_ingest_seq_gaps", "Readings missing by the devices' seq numbers", registry=registry
        )
        self.write_seconds = Histogram(
            "facmon_ingest_write_seconds",
            "Time to write one batch to the telemetry store",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.batch_size = Histogram(
            "facmon_ingest_batch_messages",
            "Messages per ingest batch",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
            registry=registry,
        )
        self.store_failures = Counter(
            "facmon_ingest_store_failures", "Batches the telemetry store did not take", registry=registry
        )
        self.spool_depth = Gauge(
            "facmon_ingest_spool_readings", "Readings waiting in the spool for the telemetry store", registry=registry
        )
        self.spool_oldest_age = Gauge(
            "facmon_ingest_spool_oldest_age_seconds",
            "Age of the oldest reading waiting in the spool; 0 when it is empty",
            registry=registry,
        )

        self.bisections = Counter(
            "facmon_ingest_bisections",
            "Batches halved to find the readings the telemetry store refused",
            registry=registry,
        )
        self.stalled = Gauge(
            "facmon_ingest_stalled_seconds",
            "How long the batch in hand has waited for a store (state, spool or rules) to take it; 0 when flowing",
            registry=registry,
        )

    def watch_stall(self, stalled_for: Callable[[], float]) -> None:
        self.stalled.set_function(stalled_for)

    def watch_spool(self, depth: Callable[[], float], oldest_age: Callable[[], float]) -> None:
        self.spool_depth.set_function(depth)
        self.spool_oldest_age.set_function(oldest_age)


class RejectMetrics:
    """What ingest refused and did not keep in full. Labels are the reason and a configured site (or `other`),
    never a device or a topic: a faulty gateway must not grow the metrics as it would grow the table."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.dropped = Counter(
            "facmon_ingest_rejects_dropped",
            "Rejects not stored because their source sent more than its rate, by site",
            ["reason", "site"],
            registry=registry,
        )
        self.truncated = Counter(
            "facmon_ingest_rejects_truncated",
            "Rejects stored with their payload cut at ingest.rejects.max_payload_bytes, by site",
            ["site"],
            registry=registry,
        )
        self.deleted = Counter(
            "facmon_ingest_rejects_deleted",
            "Stored rejects deleted, by reason: size_cap (the oldest, over max_total_bytes) or retention",
            ["reason"],
            registry=registry,
        )
        self.stored_bytes = Gauge(
            "facmon_ingest_rejects_stored_bytes",
            "What the stored rejects take as the size cap counts it: exact after each prune, estimated between",
            registry=registry,
        )
        self.prunes = Counter(
            "facmon_ingest_rejects_prunes",
            "Passes of the rejects' size cap and retention, by trigger: schedule or written (bytes since the last)",
            ["trigger"],
            registry=registry,
        )

    def watch_stored_bytes(self, stored: Callable[[], float]) -> None:
        self.stored_bytes.set_function(stored)
