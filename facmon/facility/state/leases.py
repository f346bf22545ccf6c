"""Leases of a cluster's partitions and of its leader, with the epochs that fence a worker that lost one out.

Times are the workers' own (their injected clocks): safety does not depend on them, since a claim always raises
the epoch and every write on behalf of a lease is checked against it in its own transaction; clocks that
disagree by more than a fraction of the lease only make leases change hands more often than they need to.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update

from facmon.facility.errors import FencedError
from facmon.facility.model import ClusterWorker, Lease
from facmon.facility.state.rows import Reads, Writes, from_row
from facmon.facility.state.schema import cluster_workers, leases


class LeaseReads(Reads):
    """Reads of leases and of the workers of a cluster."""

    def leases(self) -> list[Lease]:
        with self.engine.connect() as conn:
            return [from_row(Lease, row) for row in conn.execute(select(leases).order_by(leases.c.name)).mappings()]

    def cluster_workers(self, *, seen_since: datetime | None = None) -> list[ClusterWorker]:
        """The workers, by name; with `seen_since`, only those heard of since then."""
        query = select(cluster_workers).order_by(cluster_workers.c.name)
        if seen_since is not None:
            query = query.where(cluster_workers.c.seen_at >= seen_since)
        with self.engine.connect() as conn:
            return [from_row(ClusterWorker, row) for row in conn.execute(query).mappings()]


class LeaseWrites(Writes):
    """Claims, renewals and releases of leases, the fence of a write, and the workers' heartbeats."""

    def claim_lease(self, name: str, owner: str, now: datetime, ttl: timedelta) -> Lease | None:
        """Take a lease that nobody holds or whose holder let it lapse, at the next epoch; None if it is held."""
        self.conn.execute(
            self._upsert(leases).values(name=name, owner=None, epoch=0).on_conflict_do_nothing(index_elements=["name"])
        )
        free = or_(leases.c.owner.is_(None), leases.c.expires_at.is_(None), leases.c.expires_at <= now)
        row = (
            self.conn.execute(
                update(leases)
                .where(leases.c.name == name, free)
                .values(owner=owner, epoch=leases.c.epoch + 1, acquired_at=now, renewed_at=now, expires_at=now + ttl)
                .returning(*leases.c)
            )
            .mappings()
            .first()
        )
        return None if row is None else from_row(Lease, row)

    def renew_lease(self, lease: Lease, now: datetime, ttl: timedelta) -> Lease | None:
        """Extend a lease still held at its epoch and not lapsed; None when it is lost (then claim it anew)."""
        row = (
            self.conn.execute(
                update(leases)
                .where(self._held(lease), leases.c.expires_at > now)
                .values(renewed_at=now, expires_at=now + ttl)
                .returning(*leases.c)
            )
            .mappings()
            .first()
        )
        return None if row is None else from_row(Lease, row)

    def release_lease(self, lease: Lease) -> bool:
        """Give a lease up, for another worker to claim at once; False if it was not held at that epoch."""
        result = self.conn.execute(update(leases).where(self._held(lease)).values(owner=None, expires_at=None))
        return result.rowcount == 1

    def fence(self, name: str, owner: str, epoch: int) -> None:
        """Refuse, with FencedError, the rest of this transaction unless `owner` still holds `name` at `epoch`.

        The row is read with a share lock (PostgreSQL): a claim by another worker waits until this transaction
        ends, so nothing written here can land after the lease changed hands.
        """
        row = self.conn.execute(
            select(leases.c.owner, leases.c.epoch).where(leases.c.name == name).with_for_update(read=True)
        ).first()
        if row is None or row.owner != owner or row.epoch != epoch:
            raise FencedError(name, epoch, None if row is None or row.owner is None else int(row.epoch))

    def heartbeat(self, worker: str, now: datetime) -> None:
        """Say that `worker` is alive; the first beat also records when it started."""
        self.conn.execute(
            self._upsert(cluster_workers)
            .values(name=worker, started_at=now, seen_at=now)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        self.conn.execute(update(cluster_workers).where(cluster_workers.c.name == worker).values(seen_at=now))

    def leave(self, worker: str) -> None:
        """Remove a worker that stops in order: the others share its partitions at once."""
        self.conn.execute(cluster_workers.delete().where(cluster_workers.c.name == worker))

    def forget_workers(self, seen_before: datetime) -> int:
        """Remove workers not heard of since `seen_before`: they are gone, and no longer share the partitions."""
        result = self.conn.execute(cluster_workers.delete().where(cluster_workers.c.seen_at < seen_before))
        return result.rowcount

    def _held(self, lease: Lease) -> ColumnElement[bool]:
        return and_(leases.c.name == lease.name, leases.c.owner == lease.owner, leases.c.epoch == lease.epoch)
