"""The lease keeper: claims, renews, balances and hands over this worker's partitions, and the leader's lease.

Each step (three within a lease) says this worker is alive, renews what it holds, gives up what is more than its
share now that more workers run (the highest partitions first, so workers that start together agree), and
claims free or lapsed partitions up to its share. Its share is the partitions divided by the workers heard of
within a lease, rounded up. A lease that could not be renewed is lost at once: the keeper tells its listeners
before anything else, and every write made on the lost epoch is refused by the state store's fence.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from facmon.config.cluster import LEADER, ClusterConfig, lease_partition, partition_lease
from facmon.facility.clock import Clock
from facmon.facility.errors import FencedError, StateStoreError
from facmon.facility.model import Lease
from facmon.facility.state import Fence, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseChanges:
    """What one step changed: leases gained and leases lost or given up, by name."""

    gained: list[Lease] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


class LeaseKeeper:
    def __init__(
        self,
        store: StateStore,
        config: ClusterConfig,
        clock: Clock,
        *,
        worker: str | None = None,
        on_change: Callable[[LeaseChanges], None] | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self.worker = worker or config.worker_name
        self._on_change = on_change
        self._held: dict[str, Lease] = {}
        self.claims = 0
        self._stepped_at: datetime | None = None
        self.handovers = 0

    @property
    def held(self) -> Mapping[str, Lease]:
        return dict(self._held)

    def partitions(self) -> set[int]:
        """The partitions this worker holds now."""
        return {lease_partition(name) for name in self._held if name != LEADER}

    @property
    def is_leader(self) -> bool:
        return LEADER in self._held

    def epoch(self, name: str) -> int | None:
        lease = self._held.get(name)
        return None if lease is None else lease.epoch

    def fence_for(self, name: str) -> Fence:
        """The fence of writes acting for lease `name` (see `facmon.facility.state.fenced`): the lease as this
        worker holds it now, or FencedError once it lost it."""

        def fence() -> tuple[str, str, int]:
            lease = self._held.get(name)
            if lease is None:
                raise FencedError(name, 0, None)
            return name, self.worker, lease.epoch

        return fence

    def partition_fence(self, partition: int) -> Fence:
        """The fence of writes acting for a partition (`fence_for` its lease)."""
        return self.fence_for(partition_lease(partition))

    def share(self) -> int:
        """How many partitions this worker should hold: its even share among the workers heard of lately."""
        now = self._clock.now()
        live = self._store.cluster_workers(seen_since=now - self._config.lease)
        workers = max(1, len({w.name for w in live} | {self.worker}))
        return math.ceil(self._config.partitions / workers)

    def step(self) -> LeaseChanges:
        """One round of heartbeat, renewals, hand-overs and claims; a state-store outage loses every lease."""
        try:
            changes = self._step()
        except StateStoreError as exc:
            log.warning("cluster: state store unavailable, giving up %d leases: %s", len(self._held), exc)
            changes = LeaseChanges(lost=sorted(self._held))
            self._held.clear()
        else:
            self._stepped_at = self._clock.now()
        if (changes.gained or changes.lost) and self._on_change is not None:
            self._on_change(changes)
        return changes

    def in_touch(self) -> bool:
        """Whether the last round with the state store went through within a lease: else this worker holds no
        lease it can trust, and the others treat it as gone."""
        at = self._stepped_at
        return at is not None and self._clock.now() - at <= self._config.lease

    def _step(self) -> LeaseChanges:
        now, ttl = self._clock.now(), self._config.lease
        gained: list[Lease] = []
        lost: list[str] = []
        with self._store.begin() as tx:
            tx.heartbeat(self.worker, now)
            tx.forget_workers(now - 10 * ttl)
        for name, lease in sorted(self._held.items()):
            with self._store.begin() as tx:
                renewed = tx.renew_lease(lease, now, ttl)
            if renewed is None:
                log.warning("cluster: %s lost lease %s (epoch %d)", self.worker, name, lease.epoch)
                del self._held[name]
                lost.append(name)
            else:
                self._held[name] = renewed
        share = self.share()
        mine = sorted(self.partitions())
        for partition in reversed(mine[share:]) if len(mine) > share else ():
            name = partition_lease(partition)
            with self._store.begin() as tx:
                tx.release_lease(self._held.pop(name))
            self.handovers += 1
            lost.append(name)
            log.info("cluster: %s hands partition %d over (its share is %d)", self.worker, partition, share)
        wanted = [*self._candidates(), LEADER]
        for name in wanted:
            if name in self._held or (name != LEADER and len(self.partitions()) >= share):
                continue
            with self._store.begin() as tx:
                claimed = tx.claim_lease(name, self.worker, now, ttl)
            if claimed is not None:
                self.claims += 1
                self._held[name] = claimed
                gained.append(claimed)
                log.info("cluster: %s holds %s (epoch %d)", self.worker, name, claimed.epoch)
        return LeaseChanges(gained, lost)

    def _candidates(self) -> list[str]:
        # Each worker starts looking at a place of its own, so that workers starting together try different
        # partitions first instead of all racing for partition 0.
        count = self._config.partitions
        start = zlib.crc32(self.worker.encode()) % count
        return [partition_lease((start + i) % count) for i in range(count)]

    def give_up(self, name: str) -> None:
        """Release one lease, for another worker or a later round of this one to claim at once: a partition that
        failed to start here, or each lease at an orderly stop."""
        lease = self._held.pop(name, None)
        if lease is None:
            return
        try:
            with self._store.begin() as tx:
                tx.release_lease(lease)
        except StateStoreError as exc:
            log.warning("cluster: could not release %s; it lapses instead: %s", name, exc)

    def release_all(self) -> None:
        """Give every lease up at an orderly stop and leave, so that the others take over at once, not after a lease."""
        held = sorted(self._held)
        for name in held:
            self.give_up(name)
        try:
            with self._store.begin() as tx:
                tx.leave(self.worker)
        except StateStoreError as exc:
            log.warning("cluster: could not say that %s leaves: %s", self.worker, exc)
        if held and self._on_change is not None:
            self._on_change(LeaseChanges(lost=held))
