"""A cluster worker's partitions: for each one it holds, its MQTT session, its rules and its flood detector.

Every reading of a device is judged by the worker holding its site's partition, in order, with that partition's
rule memory (delays, windows, `no_data`, duplicates) and its sites' flood counts; every write it makes on the
way is fenced by the partition's lease. A partition gained is restored from what its last holder saved; one lost
stops at once: its session is closed, its queued messages are given up unacknowledged, and its rules dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from facmon.alerts.work_orders.from_alarms import WorkOrderPolicy
from facmon.cluster.keeper import LeaseKeeper
from facmon.config.facility import FacilityConfig
from facmon.config.registry import DeviceRegistry
from facmon.config.rules import RuleConfig
from facmon.facility.errors import FencedError, StateStoreError
from facmon.facility.model import Reading
from facmon.facility.state import Fence, SharedPresence, StateStore, fenced
from facmon.ingest.errors import SinkBehindError
from facmon.ingest.pipeline import IngestPipeline
from facmon.ingest.presence import DevicePresence, DeviceSnapshot
from facmon.ingest.subscriber import Message, MqttSubscriber
from facmon.rules.conditions import RuleSet
from facmon.rules.flood import FloodDetector
from facmon.rules.processor import RuleProcessor, StoredAlarms

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Partition:
    """A partition this worker holds, and what judges its readings."""

    number: int
    sites: tuple[str, ...]
    rules: RuleProcessor
    floods: FloodDetector
    fence: Fence


class Partitions:
    """The partitions this worker holds, as a sink of the ingest pipeline: each batch (all of one partition, as
    the pipeline hands them over) goes to that partition's rules."""

    def __init__(
        self,
        config: FacilityConfig,
        registry: DeviceRegistry,
        state: StateStore,
        keeper: LeaseKeeper,
        pipeline: IngestPipeline,
        *,
        work_orders: WorkOrderPolicy,
        presence: DevicePresence,
    ) -> None:
        self._config = config
        self._registry = registry
        self._state = state
        self._keeper = keeper
        self._pipeline = pipeline
        self._work_orders = work_orders
        self._presence = presence
        self._shared_seen: dict[str, int] = {}  # per device: the last_seen_ms last shared
        cluster = config.cluster
        self.sites = cluster.sites_by_partition(site.id for site in config.sites)
        self._partition_of_device = {d.id: cluster.partition_of(d.site) for d in registry}
        self._rules = config.rules
        # One session per partition for the life of the process: a packet id means something only on the
        # connection that delivered it, and the subscriber numbers its connections.
        self._subscribers: dict[int, MqttSubscriber] = {}
        self._held: dict[int, Partition] = {}  # replaced, never changed in place: read from other threads

    @property
    def held(self) -> dict[int, Partition]:
        return self._held

    def gain(self, partition: int, now: datetime) -> None:
        """Take a partition up: its rules and floods as its last holder saved them, then its session."""
        sites = self.sites[partition]
        fence = self._keeper.partition_fence(partition)
        registry = self._registry.of_sites(sites)
        rules = RuleProcessor(RuleSet.compile(self._rules, registry), registry, self._state, shared=True)
        floods = FloodDetector(self._state, sites=sites)
        rules.listeners += [self._work_orders, floods]
        with fenced(fence):
            # What the last holder committed but did not follow up (it died in between) comes first, so that
            # its work orders exist before the changes that this holder's readings make to them.
            self._work_orders.catch_up(now, min_age=timedelta(0), sites=sites)
            rules.restore(now)
            floods.restore(now)
        self._pipeline.resume(partition)
        self._held = {**self._held, partition: Partition(partition, sites, rules, floods, fence)}
        if sites:
            self._subscriber(partition).start()
        log.info(
            "cluster: partition %d (%s) is judged here: %d devices, %d rules",
            partition,
            ", ".join(sites) or "no sites",
            len(registry),
            len(rules.rules.all()),
        )

    def lose(self, partition: int) -> None:
        """Stop acting for a partition at once: no more messages from its session, none of its queued ones."""
        if partition not in self._held:
            return
        self._held = {p: held for p, held in self._held.items() if p != partition}
        subscriber = self._subscribers.get(partition)
        if subscriber is not None:
            subscriber.stop()
        self._pipeline.abandon(partition)
        log.warning("cluster: partition %d is no longer judged here", partition)

    def _subscriber(self, partition: int) -> MqttSubscriber:
        subscriber = self._subscribers.get(partition)
        if subscriber is None:
            # The gateways' status comes through the worker's own status listener, for every site.
            subscriber = MqttSubscriber(
                self._config.mqtt, self._pipeline.submit, partition=partition, sites=self.sites[partition]
            )
            self._subscribers[partition] = subscriber
        return subscriber

    def subscriber(self, partition: int) -> MqttSubscriber | None:
        """The partition's session, once this worker has held the partition."""
        return self._subscribers.get(partition)

    def ack(self, message: Message) -> None:
        subscriber = self._subscribers.get(message.partition) if message.partition is not None else None
        if subscriber is not None:
            subscriber.ack(message)

    def not_connected(self) -> list[int]:
        """The partitions held here whose sessions are not (yet) subscribed."""
        return sorted(p for p, held in self._held.items() if held.sites and not self._subscribers[p].connected)

    def on_readings(self, readings: Sequence[Reading], now: datetime) -> None:
        if not readings:
            return
        partition = self._partition_of_device[readings[0].device_id]
        held = self._held.get(partition)
        if held is None:
            raise SinkBehindError(0, f"partition {partition} is not held by {self._keeper.worker}")
        held.rules.on_readings(readings, now)

    def tick(self, now: datetime) -> None:
        """Each partition's time passing (delays, silence, shelves, floods), under its own lease."""
        held_now = list(self._held.values())
        if not held_now:
            return
        try:
            stored = StoredAlarms.read(self._state)  # once for all of them, not two queries a partition
        except StateStoreError as exc:
            log.error("cluster: rules' tick skipped: %s", exc)
            return
        for held in held_now:
            try:
                with fenced(held.fence):
                    held.rules.tick(now, stored)
                    held.floods.tick(now)
            except FencedError as exc:
                log.warning("cluster: partition %d: %s", held.number, exc)
            except StateStoreError as exc:
                log.error("cluster: partition %d: rules' tick failed: %s", held.number, exc)

    def share_presence(self, _now: datetime | None = None) -> None:
        """Share what this worker heard from its partitions' devices; take the rest from what the others shared.

        The API and the live stream of every worker then show every device's presence and latest values, at
        most one round of this old for the devices judged elsewhere.
        """
        mine = {d for d, p in self._partition_of_device.items() if p in self._held}
        rows = [
            SharedPresence(device_id, snap.last_seen_ms, snap.latest_ts_ms, snap.latest)
            for device_id, snap in self._presence.snapshots()
            if device_id in mine and self._shared_seen.get(device_id) != snap.last_seen_ms
        ]
        try:
            if rows:
                with self._state.begin() as tx:
                    tx.share_presence(rows)
                self._shared_seen.update((r.device_id, r.last_seen_ms) for r in rows)
            for row in self._state.shared_presence():
                if row.device_id not in mine and row.device_id in self._partition_of_device:
                    self._presence.merge(row.device_id, DeviceSnapshot(row.last_seen_ms, row.latest_ts_ms, row.latest))
        except StateStoreError as exc:
            log.warning("cluster: devices' presence not shared this round: %s", exc)

    def replace_rules(self, rules: list[RuleConfig], now: datetime) -> None:
        self._rules = rules
        for held in self._held.values():
            registry = self._registry.of_sites(held.sites)
            with fenced(held.fence):
                held.rules.replace_rules(RuleSet.compile(rules, registry), now)

    def flush(self, now: datetime) -> None:
        """Save every held partition's rule memory (an orderly stop, before its leases are given up)."""
        for held in self._held.values():
            try:
                with fenced(held.fence):
                    held.rules.flush(now)
            except StateStoreError as exc:
                log.warning("cluster: partition %d: rule memory not saved: %s", held.number, exc)

    def stop(self) -> None:
        for subscriber in self._subscribers.values():
            subscriber.stop()
