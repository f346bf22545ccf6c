"""The running service: ingest, rules, alerts and the API wired together from one config."""

from __future__ import annotations

import gc
import logging
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

import uvicorn
from prometheus_client import CollectorRegistry

from facmon.alerts.maintenance import MaintenancePlanner
from facmon.alerts.metrics import register_alerts_metrics
from facmon.alerts.notifications.channels import build_notifiers
from facmon.alerts.notifications.notifier import Notifier
from facmon.alerts.notifications.outbox import Outbox
from facmon.alerts.paging.ack_links import AckLinks
from facmon.alerts.paging.escalation import Escalator
from facmon.alerts.summary import DailySummary
from facmon.alerts.work_orders.from_alarms import WorkOrderPolicy
from facmon.alerts.work_orders.sla import SlaWatch
from facmon.api.app import create_app
from facmon.api.deps import Services
from facmon.cluster.keeper import LeaseChanges, LeaseKeeper
from facmon.cluster.metrics import register_cluster_metrics
from facmon.cmd.partitions import Partitions
from facmon.cmd.scheduler import Job, Scheduler
from facmon.config.cluster import LEADER, lease_partition
from facmon.config.errors import ConfigError, ConfigProblem
from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.accounts import Accounts
from facmon.facility.clock import Clock, SystemClock, epoch_ms
from facmon.facility.errors import FencedError, StateStoreError
from facmon.facility.state import StateStore, fenced
from facmon.facility.topics import parse_gateway_status_topic
from facmon.ingest.decode import Decoder
from facmon.ingest.metrics import IngestMetrics, RejectMetrics
from facmon.ingest.pipeline import RETRY_DELAY_S, IngestPipeline
from facmon.ingest.presence import DevicePresence, GatewayPresence
from facmon.ingest.rejects import RejectGate, RejectSources
from facmon.ingest.spool import Spool
from facmon.ingest.storage import TelemetryStore, open_telemetry_store
from facmon.ingest.subscriber import Message, MqttSubscriber
from facmon.rules.conditions import RuleSet
from facmon.rules.flood import FloodDetector
from facmon.rules.processor import RuleProcessor

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 3600.0
# How often the rejects' retention and size cap are applied; during a flood of bad input, ingest also prunes
# each time a tenth of the cap has been written, so the cap holds between two runs too.
REJECTS_PRUNE_EVERY_S = 300.0
# How often the outbox looks for notifications that are due: a page waits at most this long to be sent.
OUTBOX_EVERY_S = 1.0
# How often escalations and SLA timers are looked at: a step or a breach is at most this late.
PAGING_EVERY_S = 1.0
# In a cluster, how often each worker shares the presence of its partitions' devices and takes the others':
# another worker's API shows a device's latest values at most this late.
PRESENCE_EVERY_S = 5.0


class Service:
    """Everything but the HTTP server's loop: build with a config, `start()`, `stop()`.

    A `telemetry` store given is used instead of opening the configured one, and closed by `stop()` all the same.
    """

    def __init__(
        self,
        config: FacilityConfig,
        *,
        clock: Clock | None = None,
        notifiers: list[Notifier] | None = None,
        config_path: Path | None = None,
        telemetry: TelemetryStore | None = None,
        ingest_retry_delay: float = RETRY_DELAY_S,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.registry = DeviceRegistry.from_config(config)
        self.state = StateStore.open(config.storage.state_url)
        self.telemetry = (
            telemetry if telemetry is not None else open_telemetry_store(config.storage.telemetry, self.registry)
        )
        self.presence = DevicePresence(config.ingest.stale_after, config.ingest.offline_after)
        self.gateways = GatewayPresence((site.id, gw.id) for site in config.sites for gw in site.gateways)
        self.metrics = CollectorRegistry()
        self.spool = Spool(config.storage.spool.path, config.storage.spool.max_readings)
        for device in self.registry:
            latest = self.telemetry.latest(device.id)
            if latest is not None:
                self.presence.restore(device.id, *latest)

        cluster = config.cluster
        # In a cluster, each partition's readings are ingested and judged by the worker holding its lease, and
        # the timed jobs run on the worker holding the leader's; every worker serves the API. What a worker writes
        # for a partition or as the leader is fenced by that lease.
        self.keeper = (
            LeaseKeeper(self.state, cluster, self.clock, on_change=self._on_leases) if cluster.enabled else None
        )
        self._leader_fence = self.keeper.fence_for(LEADER) if self.keeper is not None else None
        keeper = self.keeper

        self.reject_gate = RejectGate(
            config.ingest.rejects,
            RejectSources(config.mqtt.topic_prefix, config.sites, self.registry),
            self.state,
            RejectMetrics(self.metrics),
        )
        self.pipeline = IngestPipeline(
            Decoder(
                self.registry,
                topic_prefix=config.mqtt.topic_prefix,
                max_payload_bytes=config.ingest.max_payload_bytes,
                max_future_skew_ms=int(config.ingest.max_future_skew.total_seconds() * 1000),
            ),
            self.telemetry,
            self.state,
            self.presence,
            self.clock,
            spool=self.spool,
            metrics=IngestMetrics(self.metrics),
            acknowledge=self._acknowledge,
            batch_size=config.ingest.batch_size,
            retry_delay=ingest_retry_delay,
            reject_gate=self.reject_gate,
            fences=None if keeper is None else keeper.partition_fence,
        )
        # Alone, one session for every device, and these rules judge every reading. In a cluster, each partition
        # held has its own (`self.partitions`), and these rules serve the API's operator actions only.
        self.subscriber = (
            MqttSubscriber(config.mqtt, self.pipeline.submit, on_status=self._on_gateway_status)
            if keeper is None
            else None
        )
        # In a cluster, every worker hears every gateway's status (retained by the broker) on a clean session.
        self.status_listener = (
            MqttSubscriber(
                config.mqtt,
                self.pipeline.submit,
                on_status=self._on_gateway_status,
                client_id=f"{config.mqtt.client_id}-status-{keeper.worker}",
                status_only=True,
            )
            if keeper is not None
            else None
        )
        self.rules = RuleProcessor(
            RuleSet.compile(config.rules, self.registry), self.registry, self.state, shared=keeper is not None
        )
        self.rules.restore(self.clock.now())
        if notifiers is None:
            # Channels stamp on the wall clock, whatever the service's: chat platforms refuse a signature whose
            # time stamp is far from theirs.
            notifiers = build_notifiers(config.notifications, config.mqtt)
        oncall = config.oncall
        links = (
            AckLinks(
                oncall.link_secret.get_secret_value(), config.api.public_url, oncall.link_valid_for, clock=self.clock
            )
            if oncall.link_secret is not None and config.api.public_url
            else None
        )
        self.escalator = Escalator(oncall, self.state, config.tz, notifiers, links=links)
        self.work_orders = WorkOrderPolicy(
            config.work_orders, self.registry, self.state, config.tz, notifiers, self.escalator
        )
        delivery = config.notifications.delivery
        self.outbox = Outbox(
            self.state,
            {n.name: n for n in notifiers},
            self.clock,
            max_attempts=delivery.max_attempts,
            base_delay=delivery.base_delay,
            max_delay=delivery.max_delay,
            # A channel still sending after one cycle goes on by itself: the next cycle serves the others.
            wait=timedelta(seconds=OUTBOX_EVERY_S),
        )
        self.rules.listeners.append(self.work_orders)
        if keeper is None:
            # Alarms committed before a crash or a state-store outage whose work orders and pages were not. (In a
            # cluster, the leader's paging job catches up, once the alarms are old enough not to be in flight.)
            self.work_orders.catch_up(self.clock.now(), min_age=timedelta(0))
        self.floods = FloodDetector(self.state)
        self.partitions = (
            Partitions(
                config,
                self.registry,
                self.state,
                keeper,
                self.pipeline,
                work_orders=self.work_orders,
                presence=self.presence,
            )
            if keeper is not None
            else None
        )
        if self.partitions is None:
            self.floods.restore(self.clock.now())
            self.rules.listeners.append(self.floods)
            self.pipeline.sinks.append(self.rules)
        else:
            self.pipeline.sinks.append(self.partitions)
        self.sla = SlaWatch(self.state, config.work_orders, self.clock, on_breach=self.escalator.on_breach)
        self.maintenance = MaintenancePlanner(
            config.maintenance, self.registry, self.state, self.telemetry, config.tz, notifiers
        )
        self.summary = DailySummary(self.state, notifiers, config.tz)
        register_alerts_metrics(self.metrics, self.state)
        if self.keeper is not None:
            register_cluster_metrics(self.metrics, self.keeper)
        api = config.api
        self.accounts = Accounts(
            self.state, session_ttl=api.session_ttl, max_failures=api.max_failed_logins, lockout=api.lockout
        )

        # Every timed job, each on its own worker: a channel can block for its whole timeout (SMTP, a webhook
        # that is down), which must not hold up the rules' ticks (off-delays, shelving expiry) or paging.
        self.scheduler = Scheduler(self.clock, config.tz)
        lead = self._as_leader
        tick = config.alarms.tick.total_seconds()
        if self.partitions is None:
            self.scheduler.every("rules", tick, self.rules.tick, self.floods.tick)
        else:
            partitions = self.partitions
            self.scheduler.every("rules", tick, partitions.tick, lambda _now: self.rules.sync())
            self.scheduler.every("presence", PRESENCE_EVERY_S, partitions.share_presence)
        self.scheduler.every(
            "paging",
            PAGING_EVERY_S,
            lead(self.work_orders.catch_up),
            lead(self.escalator.run_due),
            lead(self.sla.check),
        )
        self.scheduler.every("outbox", OUTBOX_EVERY_S, lead(self.outbox.deliver_due), at_start=True)
        self.scheduler.every("retention", RETENTION_EVERY_S, lead(self._apply_retention), at_start=True)
        self.scheduler.every("rejects", REJECTS_PRUNE_EVERY_S, lead(self.reject_gate.prune), at_start=True)
        if config.maintenance.plans:
            every = config.maintenance.check_every.total_seconds()
            self.scheduler.every("maintenance", every, lead(self.maintenance.check), at_start=True)
        if config.notifications.daily_summary is not None and notifiers:
            at = config.notifications.daily_summary
            self.scheduler.cron("daily-summary", lead(self.summary.send), hour=at.hour, minute=at.minute)

        if keeper is not None:
            self.scheduler.every("cluster", cluster.lease.total_seconds() / 3, lambda _now: keeper.step())

        self.app = create_app(
            Services(
                config=config,
                registry=self.registry,
                state=self.state,
                telemetry=self.telemetry,
                presence=self.presence,
                clock=self.clock,
                broker_connected=self._broker_connected,
                alarms=self.rules,
                reload_rules=self.reload_rules,
                accounts=self.accounts,
                gateways=self.gateways,
                metrics=self.metrics,
                seq_gaps=self.pipeline.duplicates.gaps,
                ingest_stalled_for=self.pipeline.stalled_for,
                ingest_error=lambda: self.pipeline.last_error,
                notifiers=notifiers,
                escalator=self.escalator,
                cluster=self.keeper,
            )
        )

    def _acknowledge(self, message: Message) -> None:
        if self.partitions is not None:
            self.partitions.ack(message)
        elif self.subscriber is not None:
            self.subscriber.ack(message)

    def _broker_connected(self) -> bool:
        """Alone: its session is subscribed. In a cluster: the session of every partition it holds is."""
        if self.partitions is not None:
            return not self.partitions.not_connected()
        return self.subscriber is not None and self.subscriber.connected

    def _apply_retention(self, now: datetime) -> None:
        deleted = self.telemetry.apply_retention(epoch_ms(now))
        if deleted:
            log.info(
                "telemetry retention: deleted %d readings older than %s",
                deleted,
                self.config.storage.telemetry.retention,
            )

    def _on_gateway_status(self, topic: str, payload: bytes) -> None:
        parts = parse_gateway_status_topic(topic, self.config.mqtt.topic_prefix)
        if parts is None:
            return
        before = self.gateways.get(*parts)
        snapshot = self.gateways.observe(*parts, payload, epoch_ms(self.clock.now()))
        if snapshot is None:
            log.warning("gateway status on %s is not 'online' or 'offline': ignored", topic)
        elif snapshot is not before:
            log.info("gateway %s of site %s is %s", snapshot.gateway_id, snapshot.site, snapshot.status)

    def wait_connected(self, timeout: float) -> bool:
        """Wait until ingest is subscribed (in a cluster: every partition held here); False after `timeout` s."""
        if self.subscriber is not None:
            return self.subscriber.wait_connected(timeout)
        deadline = time.monotonic() + timeout
        while not self._broker_connected():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def start(self) -> None:
        self.pipeline.start()
        if self.subscriber is not None:
            self.subscriber.start()
        if self.status_listener is not None:
            self.status_listener.start()
        if self.keeper is not None:
            self.keeper.step()  # at once: free partitions and a missing leader are taken before the first interval
        self.scheduler.start()

    def _as_leader(self, job: Job) -> Job:
        """`job` as the scheduler runs it: alone without a cluster; in a cluster, on the leader only, fenced."""
        if self.keeper is None or self._leader_fence is None:
            return job
        keeper, fence = self.keeper, self._leader_fence

        def run(now: datetime) -> object:
            if not keeper.is_leader:
                return None
            try:
                with fenced(fence):
                    return job(now)
            except FencedError as exc:
                log.warning("cluster: %s: no longer the leader: %s", getattr(job, "__qualname__", job), exc)
                return None

        run.__qualname__ = getattr(job, "__qualname__", "job")
        return run

    def _on_leases(self, changes: LeaseChanges) -> None:
        """Take partitions and the leader's work up, or give them up at once: before the next reading or job."""
        worker = self.keeper.worker if self.keeper is not None else ""
        partitions = self.partitions
        if partitions is None:
            return
        for name in changes.lost:
            if name == LEADER:
                log.warning("cluster: %s is no longer the leader: the timed jobs stop here", worker)
            else:
                partitions.lose(lease_partition(name))
        for lease in changes.gained:
            if lease.name == LEADER:
                log.info("cluster: %s is the leader: the timed jobs run here", worker)
                continue
            try:
                partitions.gain(lease_partition(lease.name), self.clock.now())
            except (StateStoreError, ConfigError) as exc:
                # Held but not acted on, its messages would wait at the broker for as long as this worker
                # renews the lease: let it go instead.
                log.error("cluster: %s cannot take %s up, and gives it up: %s", worker, lease.name, exc)
                partitions.lose(lease_partition(lease.name))
                if self.keeper is not None:
                    self.keeper.give_up(lease.name)

    def reload_rules(self) -> list[str]:
        """Read the rules from the config file again; an invalid file raises ConfigError and changes nothing."""
        if self.config_path is None:
            raise ConfigError([ConfigProblem("<config>", "", "this service was not started from a config file")])
        rules = load_config(self.config_path).rules
        compiled = RuleSet.compile(rules, self.registry)
        self.rules.replace_rules(compiled, self.clock.now())
        if self.partitions is not None:
            self.partitions.replace_rules(rules, self.clock.now())
        log.info("rules reloaded from %s: %d rules", self.config_path, len(rules))
        return [rule.id for rule in rules]

    def stop(self) -> None:
        self.scheduler.stop()
        if self.partitions is not None and self.keeper is not None:
            self.partitions.flush(self.clock.now())  # while the leases still stand
            self.keeper.release_all()  # the next holders take over now, not after a lease
            self.partitions.stop()
        # A page in flight gets a moment to record its outcome; one hanging longer is sent again after its lease.
        self.outbox.close(timedelta(seconds=5))
        if self.subscriber is not None:
            self.subscriber.stop()
        if self.status_listener is not None:
            self.status_listener.stop()
        self.pipeline.stop()
        if self.partitions is None:
            self.rules.flush(self.clock.now())
        self.spool.close()
        self.telemetry.close()
        self.state.close()


def listen(host: str, port: int) -> socket.socket:
    """Bind the API's socket up front, so that a taken port is one clear error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) on accepted connections only when the
    # listening socket says TCP. With Nagle on, each small response waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


def freeze_startup_objects() -> None:
    """Move what is built at start (config, registry, compiled rules, the app) out of the collector's sight: it
    lives as long as the process, and a full collection then takes a few milliseconds instead of ~60 in the
    middle of a request."""
    gc.collect()
    gc.freeze()


def serve_http(service: Service, sock: socket.socket) -> None:
    """Run the API until SIGINT or SIGTERM; returns after a graceful shutdown."""
    freeze_startup_objects()
    # Open event streams never end by themselves: after this long they are cut, so a stop is not held up.
    config = uvicorn.Config(
        service.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down, then re-raises the signal it caught; stopping the rest is the caller's `finally`.
    with sigterm_as_interrupt(), suppress(KeyboardInterrupt):
        server.run(sockets=[sock])


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM unwinds like Ctrl-C, so the caller's cleanup runs either way."""

    # uvicorn re-raises the signal that stopped it; SIGTERM's default action would end the process before the
    # broker, simulators and stores are stopped.
    def interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
