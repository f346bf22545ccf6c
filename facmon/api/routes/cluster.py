"""The cluster: its workers, the leases of the leader and of the partitions, who holds each and how fresh."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from facmon.api.deps import ServicesDep
from facmon.api.schemas import local_time
from facmon.config.cluster import LEADER, partition_lease

router = APIRouter(prefix="/api/v1/cluster", tags=["cluster"])


class LeasePublic(BaseModel):
    name: str
    owner: str | None
    epoch: int
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime | None
    # Seconds since its holder last renewed it; a lease whose holder is alive stays under a third of the lease.
    age_s: float | None
    held: bool
    # A partition's sites (by `cluster.sites` or the hash of their ids); none for the leader's lease.
    sites: list[str]


class WorkerPublic(BaseModel):
    name: str
    started_at: datetime
    seen_at: datetime
    leases: list[str]


class ClusterPublic(BaseModel):
    enabled: bool
    worker: str | None
    leader: str | None
    partitions: int
    lease_s: float
    workers: list[WorkerPublic]
    leases: list[LeasePublic]


@router.get("", response_model=ClusterPublic, summary="Workers, leases and their owners (one process: none)")
def cluster(services: ServicesDep) -> ClusterPublic:
    config = services.config.cluster
    keeper = services.cluster
    if keeper is None:
        return ClusterPublic(
            enabled=False,
            worker=None,
            leader=None,
            partitions=1,
            lease_s=config.lease.total_seconds(),
            workers=[],
            leases=[],
        )
    tz = services.config.tz
    now = services.clock.now()
    leases = services.state.leases()
    sites = {
        partition_lease(p): list(of)
        for p, of in config.sites_by_partition(site.id for site in services.config.sites).items()
    }
    held = [
        LeasePublic(
            name=lease.name,
            owner=lease.owner,
            epoch=lease.epoch,
            acquired_at=local_time(lease.acquired_at, tz),
            renewed_at=local_time(lease.renewed_at, tz),
            expires_at=local_time(lease.expires_at, tz),
            age_s=(now - lease.renewed_at).total_seconds() if lease.renewed_at and lease.owner else None,
            held=lease.owner is not None and lease.held_by(lease.owner, now),
            sites=sites.get(lease.name, []),
        )
        for lease in leases
    ]
    workers = [
        WorkerPublic(
            name=w.name,
            started_at=local_time(w.started_at, tz) or w.started_at,
            seen_at=local_time(w.seen_at, tz) or w.seen_at,
            leases=[le.name for le in held if le.owner == w.name and le.held],
        )
        for w in services.state.cluster_workers()
    ]
    leader = next((le.owner for le in held if le.name == LEADER and le.held), None)
    return ClusterPublic(
        enabled=True,
        worker=keeper.worker,
        leader=leader,
        partitions=config.partitions,
        lease_s=config.lease.total_seconds(),
        workers=workers,
        leases=held,
    )
