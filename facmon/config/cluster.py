"""The `cluster` section: facmon on several machines over one PostgreSQL, its devices split into partitions.

A partition is a set of sites; every reading of a device is judged by the one worker holding its partition's
lease. Sites go to partitions by a stable hash of the site id, unless `sites` names the partition of a site
(a large site can be a partition of its own).
"""

from __future__ import annotations

import os
import socket
import zlib
from collections.abc import Iterable
from datetime import timedelta

from pydantic import BaseModel, Field, field_validator, model_validator

from facmon.config.types import SECTION, Duration, Identifier

LEADER = "leader"


class _Model(BaseModel):
    model_config = SECTION


def default_worker_name() -> str:
    """This process's name among the workers when the config gives none: its host and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ClusterConfig(_Model):
    enabled: bool = False
    partitions: int = Field(8, ge=1, le=1024)
    # A worker renews its leases three times within this; one silent for longer loses them to the others.
    lease: Duration = timedelta(seconds=15)
    # This worker's name; each worker of a cluster needs its own. Defaults to host and process id.
    worker: Identifier | None = None
    sites: dict[str, int] = {}

    @field_validator("lease")
    @classmethod
    def _lease_bounds(cls, value: timedelta) -> timedelta:
        # Under 3 s a busy database or a GC pause loses leases; over 5 minutes a dead worker's sites wait long.
        if not timedelta(seconds=3) <= value <= timedelta(minutes=5):
            raise ValueError("between 3s and 5m")
        return value

    @model_validator(mode="after")
    def _sites_within_partitions(self) -> ClusterConfig:
        for site, partition in self.sites.items():
            if not 0 <= partition < self.partitions:
                raise ValueError(
                    f"site {site!r} is given partition {partition}: partitions are 0 to {self.partitions - 1}"
                )
        return self

    def partition_of(self, site: str) -> int:
        """The partition of a site: as `sites` names it, else a hash of its id that every worker computes alike."""
        explicit = self.sites.get(site)
        return explicit if explicit is not None else zlib.crc32(site.encode()) % self.partitions

    def sites_by_partition(self, sites: Iterable[str]) -> dict[int, tuple[str, ...]]:
        """Each partition's sites, in the order given; a partition of no site has none."""
        found: dict[int, tuple[str, ...]] = {p: () for p in range(self.partitions)}
        for site in sites:
            partition = self.partition_of(site)
            found[partition] = (*found[partition], site)
        return found

    @property
    def worker_name(self) -> str:
        return self.worker or default_worker_name()


def partition_lease(partition: int) -> str:
    """The name of a partition's lease in the state store."""
    return f"partition-{partition}"


def lease_partition(name: str) -> int:
    """The partition of a partition's lease name (`partition-3` → 3)."""
    return int(name.removeprefix("partition-"))
