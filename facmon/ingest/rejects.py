"""Which rejects are stored: a rate per source, a payload size per reject, and a size cap and retention for all.

Bad input is never dropped in silence: what is not stored is counted by reason, by site in the metrics and by
source here (`RejectGate.status`), and the first drop from a source in a period is logged. A flood of bad input
from a faulty gateway then costs a bounded share of the state store, which the alarms of every device need.

A reject's source is the gateway that may publish its topic, when the topic names a device of the config in its
site and the site's `gateways` give its type to one gateway; otherwise the topic's site and device; `other` for a
topic that is not a telemetry topic.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from facmon.config.durations import format_duration
from facmon.config.ingest import RejectsConfig
from facmon.config.registry import DeviceRegistry
from facmon.config.sites import SiteConfig
from facmon.facility.clock import epoch_ms
from facmon.facility.errors import StateStoreError
from facmon.facility.model import DeviceType, Reject
from facmon.facility.state import RejectsPruned, StateStore, reject_size
from facmon.facility.topics import parse_telemetry_topic
from facmon.ingest.metrics import RejectMetrics

log = logging.getLogger(__name__)

# The source of topics that are not telemetry topics, and the metrics' site for sites not in the config.
OTHER = "other"
RATE_LIMITED = "rate_limited"
# When the rejects let through since the last prune reach this share of the cap, ingest prunes before they are
# stored: a flood between two scheduled runs overshoots the cap by less than this share.
PRUNE_AT_SHARE = 0.1
# One drop warning per source in this time at most; the next one says how many were dropped in between.
WARN_EVERY_MS = 10 * 60_000
# After a prune failed, ingest tries again no sooner than this: the state store is likely down, and the
# batch's own write says so.
PRUNE_RETRY_MS = 10_000
# Source names are kept in memory and logged: a topic segment longer than any id is cut.
MAX_SEGMENT = 64


@dataclass(frozen=True, slots=True)
class Source:
    """Where rejects come from, for their rate: `riverside/gateway/gw-riverside-1`, `riverside/pump-42`, `other`."""

    name: str
    site: str  # a site of the config, else `other`: the only label the metrics take from a topic


class RejectSources:
    """Tells the source of a reject from its topic and the config's gateways."""

    def __init__(self, prefix: str, sites: Iterable[SiteConfig], registry: DeviceRegistry) -> None:
        self._prefix = prefix
        self._registry = registry
        self._sites: set[str] = set()
        self._other = Source(OTHER, OTHER)
        # (site, device type) -> the source of the one gateway that may publish that type's telemetry there
        self._gateway_of: dict[tuple[str, str], Source] = {}
        for site in sites:
            self._sites.add(site.id)
            served = {gw.id: site.types_served_by(gw) for gw in site.gateways}  # as the broker's ACL has it
            for device_type in DeviceType:
                serving = [gw_id for gw_id, types in served.items() if device_type in types]
                if len(serving) == 1:  # with two, the config does not say which of them sent it
                    self._gateway_of[(site.id, device_type)] = Source(f"{site.id}/gateway/{serving[0]}", site.id)

    def source_of(self, topic: str) -> Source:
        parts = parse_telemetry_topic(topic, self._prefix)
        if parts is None:
            return self._other
        device = self._registry.get(parts.device_id)
        if device is not None and device.site == parts.site:
            gateway = self._gateway_of.get((parts.site, parts.device_type))
            if gateway is not None:
                return gateway
        site = parts.site if parts.site in self._sites else OTHER
        return Source(f"{parts.site[:MAX_SEGMENT]}/{parts.device_id[:MAX_SEGMENT]}", site)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """What was not kept in full from one source since facmon started."""

    source: str
    site: str
    rate_limited: int  # rejects not stored
    truncated: int  # rejects stored with their payload cut
    last_at: datetime


@dataclass(frozen=True, slots=True)
class RejectGateStatus:
    """The gate's counts since facmon started, for a status view; the metrics have the same by site."""

    rate_limited: int
    truncated: int
    deleted_over_cap: int
    deleted_expired: int
    stored_bytes: int  # exact after each prune, estimated in between
    max_total_bytes: int
    last_prune_at: datetime | None
    sources: list[SourceStatus]  # the sources that lost most recently first, at most max_sources of them


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_ms: int
    warned_ms: int | None = None
    dropped_since_warned: int = 0

    def refill(self, now_ms: int, per_ms: float, burst: float) -> None:
        if now_ms > self.at_ms:  # a clock stepping back refills nothing, rather than taking tokens away
            self.tokens = min(burst, self.tokens + (now_ms - self.at_ms) * per_ms)
            self.at_ms = now_ms


@dataclass(slots=True)
class _Counts:
    site: str
    rate_limited: int = 0
    truncated: int = 0
    last_ms: int = 0


class RejectGate:
    """Lets through the rejects to store, a token bucket per source, and keeps the rejects' table within its cap.

    Memory is bounded: at most `max_sources` buckets, least recently used first out. A bucket is forgotten only
    once it is full again (its source idle), which loses nothing; while every tracked source is busy, new sources
    share one more bucket, so a gateway inventing device ids cannot get a fresh allowance for each.
    """

    def __init__(
        self, config: RejectsConfig, sources: RejectSources, state: StateStore, metrics: RejectMetrics
    ) -> None:
        self._config = config
        self._sources = sources
        self._state = state
        self._metrics = metrics
        self._per_ms = config.rate / 60_000
        self._burst = float(config.burst)
        self._max_payload = int(config.max_payload_bytes)
        self._max_total = int(config.max_total_bytes)
        self._prune_at = int(self._max_total * PRUNE_AT_SHARE)
        self._lock = threading.Lock()  # buckets and counts: ingest admits, the API reads the status
        self._pruning = threading.Lock()  # one prune at a time: the scheduler's, or ingest's during a flood
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._overflow = _Bucket(self._burst, 0)
        self._counts: OrderedDict[str, _Counts] = OrderedDict()
        self._totals: Counter[str] = Counter()
        self._written = 0  # bytes let through since the last prune began
        self._stored = 0  # what the table held after the last prune
        self._retry_prune_ms = 0
        self._last_prune_ms: int | None = None
        self._unlogged: Counter[str] = Counter()  # deleted by prunes during a flood, logged by the next scheduled one
        metrics.watch_stored_bytes(lambda: self._stored + self._written)

    def admit(self, rejects: list[Reject], now_ms: int) -> list[Reject]:
        """The rejects to store, with payloads cut to `max_payload_bytes`; the others are counted, not stored.

        When the rejects let through since the last prune reach a share of the cap, prunes on the caller's thread
        before returning, leaving room for the rejects returned: once they are stored, the table is within the cap.
        """
        kept: list[Reject] = []
        pending = 0
        dropped: Counter[str] = Counter()  # by site
        truncated: Counter[str] = Counter()
        with self._lock:
            for reject in rejects:
                source = self._sources.source_of(reject.topic)
                bucket = self._bucket_for(source.name, now_ms)
                bucket.refill(now_ms, self._per_ms, self._burst)
                if bucket.tokens < 1:
                    dropped[source.site] += 1
                    self._count(source, now_ms).rate_limited += 1
                    self._warn(source, bucket, now_ms)
                    continue
                bucket.tokens -= 1
                payload = _cut(reject.payload, self._max_payload)
                if payload is not reject.payload:
                    reject = replace(reject, payload=payload)
                    truncated[source.site] += 1
                    self._count(source, now_ms).truncated += 1
                pending += reject_size(reject)
                kept.append(reject)
            self._written += pending
            self._totals[RATE_LIMITED] += dropped.total()
            self._totals["truncated"] += truncated.total()
            due = self._written >= self._prune_at and now_ms >= self._retry_prune_ms
        for site, n in dropped.items():
            self._metrics.dropped.labels(RATE_LIMITED, site).inc(n)
        for site, n in truncated.items():
            self._metrics.truncated.labels(site).inc(n)
        if due:
            try:
                self._prune(now_ms, "written", pending=pending)
            except StateStoreError as exc:
                log.error("ingest: rejects not pruned: %s; trying again in %d s", exc, PRUNE_RETRY_MS // 1000)
        return kept

    def prune(self, now: datetime) -> RejectsPruned | None:
        """Apply the retention and the size cap now: the scheduler's job. None when a prune is already running."""
        result = self._prune(epoch_ms(now), "schedule")
        with self._lock:
            unlogged, self._unlogged = self._unlogged, Counter()
        if unlogged:
            log.info(
                "ingest: deleted %d rejects over the size cap of %d bytes and %d older than %s; the rest take %d bytes",
                unlogged["size_cap"],
                self._max_total,
                unlogged["retention"],
                format_duration(self._config.retention),
                self._stored,
            )
        return result

    def status(self) -> RejectGateStatus:
        with self._lock:
            sources = [
                SourceStatus(name, c.site, c.rate_limited, c.truncated, _time(c.last_ms))
                for name, c in reversed(self._counts.items())
            ]
            return RejectGateStatus(
                rate_limited=self._totals[RATE_LIMITED],
                truncated=self._totals["truncated"],
                deleted_over_cap=self._totals["size_cap"],
                deleted_expired=self._totals["retention"],
                stored_bytes=self._stored + self._written,
                max_total_bytes=self._max_total,
                last_prune_at=None if self._last_prune_ms is None else _time(self._last_prune_ms),
                sources=sources,
            )

    def _prune(self, now_ms: int, trigger: str, *, pending: int = 0) -> RejectsPruned | None:
        """Prune to the cap less `pending`: the bytes of rejects let through and about to be stored."""
        if not self._pruning.acquire(blocking=False):
            return None
        try:
            with self._lock:
                # What was written before is in the table, and is counted by the prune; `pending` is not yet.
                written = self._written - pending
                self._written = pending
            older_than = _time(now_ms) - self._config.retention
            try:
                result = self._state.prune_rejects(max_bytes=max(self._max_total - pending, 0), older_than=older_than)
            except StateStoreError:
                with self._lock:
                    self._written += written
                    self._retry_prune_ms = now_ms + PRUNE_RETRY_MS
                raise
            with self._lock:
                self._stored = result.remaining_bytes
                self._last_prune_ms = now_ms
                for reason, n in (("size_cap", result.over_cap), ("retention", result.expired)):
                    self._totals[reason] += n
                    self._unlogged[reason] += n
            self._metrics.prunes.labels(trigger).inc()
            if result.over_cap:
                self._metrics.deleted.labels("size_cap").inc(result.over_cap)
            if result.expired:
                self._metrics.deleted.labels("retention").inc(result.expired)
            return result
        finally:
            self._pruning.release()

    def _bucket_for(self, name: str, now_ms: int) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is not None:
            self._buckets.move_to_end(name)
            return bucket
        if len(self._buckets) >= self._config.max_sources:
            oldest_name, oldest = next(iter(self._buckets.items()))
            oldest.refill(now_ms, self._per_ms, self._burst)
            if oldest.tokens < self._burst:
                return self._overflow
            del self._buckets[oldest_name]
        bucket = self._buckets[name] = _Bucket(self._burst, now_ms)
        return bucket

    def _count(self, source: Source, now_ms: int) -> _Counts:
        counts = self._counts.get(source.name)
        if counts is None:
            if len(self._counts) >= self._config.max_sources:
                self._counts.popitem(last=False)
            counts = self._counts[source.name] = _Counts(source.site)
        else:
            self._counts.move_to_end(source.name)
        counts.last_ms = now_ms
        return counts

    def _warn(self, source: Source, bucket: _Bucket, now_ms: int) -> None:
        if bucket.warned_ms is not None and now_ms - bucket.warned_ms < WARN_EVERY_MS:
            bucket.dropped_since_warned += 1
            return
        since = bucket.dropped_since_warned
        bucket.warned_ms, bucket.dropped_since_warned = now_ms, 0
        who = source.name
        if bucket is self._overflow:
            who += f" (with the other sources beyond the {self._config.max_sources} tracked)"
        log.warning(
            "ingest: %s sends more rejects than the %g a minute (burst %d) kept from one source: not storing the"
            " rest, counted in facmon_ingest_rejects_dropped_total%s",
            who,
            self._config.rate,
            self._config.burst,
            f"; {since} dropped since the last such line" if since else "",
        )


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` bytes of UTF-8, cut at a character's boundary; `text` itself when it fits."""
    if len(text) * 4 <= limit:  # fits, whatever its characters
        return text
    head = text[:limit]  # when `text` is longer, at least `limit` bytes: the cut is within it
    raw = head.encode(errors="replace")
    if len(raw) <= limit:
        return head if len(head) < len(text) else text
    return raw[:limit].decode(errors="ignore")  # a character cut in two is left out


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
