"""Escalation: a P1 from a smoke alarm pages the on-call, escalates after the wait, stops on acknowledgement;
reminders for acknowledged but unresolved P1s; SLA breaches; and restarts that neither lose nor repeat a page.

Real SQLite state store and outbox; the clock is injected; channels are recorders of what they were given.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from facmon.alerts.errors import AckLinkError, AcknowledgeError
from facmon.alerts.notifications.notifier import Notification
from facmon.alerts.notifications.outbox import Outbox
from facmon.alerts.paging.ack_links import AckLinks
from facmon.alerts.paging.escalation import Escalator
from facmon.alerts.work_orders.from_alarms import WorkOrderPolicy
from facmon.alerts.work_orders.records import announce_work_order, open_work_order, transition_work_order
from facmon.alerts.work_orders.sla import SlaWatch
from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import (
    Category,
    EscalationState,
    Priority,
    Reading,
    WorkOrder,
    WorkOrderSource,
    WorkOrderStatus,
)
from facmon.facility.state import StateStore
from facmon.rules.conditions import RuleSet
from facmon.rules.processor import RuleProcessor
from tests.conftest import EXAMPLE, FakeClock, Recorder

# Wednesday 25 November 2026, 02:00 in Shanghai: zhang.wei has the week on the example's duty schedule.
NIGHT = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


# How each kind of page's subject ends, in Chinese and English.
LEADS = {
    "page": ("请处理", "Please respond"),
    "reminder": ("已确认但仍未解决", "Acknowledged, still unresolved"),
    "breach": ("已超出服务时限", "SLA breached"),
}


class Facility:
    """The parts of the service that page: rules → work orders → escalation → outbox, on one state database."""

    def __init__(self, config: FacilityConfig, db: Path, clock: FakeClock, channels: list[Recorder]) -> None:
        self.config, self.clock, self.channels = config, clock, channels
        self.registry = DeviceRegistry.from_config(config)
        self.store = StateStore.open(f"sqlite:///{db}")
        links = AckLinks("x" * 32, "https://facmon.example.com", timedelta(hours=1), clock=clock)
        self.escalator = Escalator(config.oncall, self.store, config.tz, channels, links=links)
        self.rules = RuleProcessor(RuleSet.compile(config.rules, self.registry), self.registry, self.store)
        self.rules.listeners.append(
            WorkOrderPolicy(config.work_orders, self.registry, self.store, config.tz, channels, self.escalator)
        )
        self.outbox = Outbox(self.store, {c.name: c for c in channels}, clock)
        self.sla = SlaWatch(self.store, config.work_orders, clock, on_breach=self.escalator.on_breach)

    def smoke_alarm(self, device: str = "smoke-A-03") -> WorkOrder:
        now = self.clock.now()
        self.rules.on_readings([Reading(device, int(now.timestamp() * 1000), {"state": "alarm"})], now)
        [order] = self.store.list_work_orders().items
        return order

    def tick(self, **delta: float) -> None:
        """Let time pass, then do what the scheduler would: page what is due, check SLAs, deliver."""
        now = self.clock.advance(**delta)
        self.escalator.run_due(now)
        self.sla.check(now)
        self.outbox.deliver_due(now)

    def pages(self) -> list[Notification]:
        """What reached the pagers channel addressed to someone (its broadcast of new work orders aside)."""
        return [n for n in self.channels[1].sent if n.to is not None]

    def pagers(self, reason: str = "page") -> list[str | None]:
        """Whom the pages for `reason` (page, reminder, breach) reached, in order."""
        return [n.to for n in self.pages() if n.subject.endswith(LEADS[reason])]

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def config() -> FacilityConfig:
    return load_config(EXAMPLE, env={})


@pytest.fixture
def facility(config: FacilityConfig, tmp_path: Path) -> Iterator[Facility]:
    f = Facility(config, tmp_path / "state.db", FakeClock(NIGHT), [Recorder("duty-log"), Recorder("pagers")])
    yield f
    f.close()


def kinds(f: Facility, order: WorkOrder) -> list[str]:
    return [e.kind for e in f.store.work_order_events(order.id)]


def test_p1_smoke_alarm_pages_the_on_call_escalates_after_the_wait_and_stops_on_ack(facility: Facility) -> None:
    f = facility
    order = f.smoke_alarm()
    assert order.priority == "P1"
    f.tick()
    # Step 1: the on-call of the duty schedule, on each of their contacts; in their language, with a link.
    assert f.pagers() == ["zhang.wei"]
    [page] = f.pages()
    assert page.subject == f"{order.number} [P1 紧急] 请处理"
    assert "确认接单：https://facmon.example.com/ack/" in page.body
    # The console log has no addresses: it shows the work order's news and the page.
    assert [n.subject.endswith("请处理") for n in f.channels[0].sent] == [False, True]

    f.tick(minutes=4, seconds=59)
    assert f.pagers() == ["zhang.wei"]  # still waiting on step 1
    f.tick(seconds=1)
    # Step 2: the whole duty team.
    assert f.pagers() == ["zhang.wei", "zhang.wei", "li.na", "wang.jun"]
    assert [k for k in kinds(f, order) if k != "sla_ack_breached"][-2:] == ["paged", "paged"]

    escalation = f.escalator.acknowledge(order.id, by="li.na", at=f.clock.now(), via="api")
    assert escalation.state is EscalationState.ACKNOWLEDGED and escalation.acked_by == "li.na"
    f.tick(minutes=10)
    f.tick(minutes=10)
    assert f.pagers() == ["zhang.wei", "zhang.wei", "li.na", "wang.jun"]  # step 3 never comes
    assert "acknowledged" in kinds(f, order)
    # Acknowledging again changes nothing.
    again = f.escalator.acknowledge(order.id, by="wang.jun", at=f.clock.now())
    assert again.acked_by == "li.na"


def test_an_acknowledged_p1_still_unresolved_reminds_the_acknowledger(facility: Facility) -> None:
    f = facility
    order = f.smoke_alarm()
    f.tick()
    f.escalator.acknowledge(order.id, by="zhang.wei", at=f.clock.now())
    f.tick(minutes=29)
    assert f.pagers("reminder") == []
    f.tick(minutes=1)  # renotify_unresolved P1: 30m
    assert f.pagers("reminder") == ["zhang.wei"]
    f.tick(minutes=30)
    assert f.pagers("reminder") == ["zhang.wei"] * 2
    transition_work_order(f.store, order.id, WorkOrderStatus.IN_PROGRESS, by="zhang.wei", at=f.clock.now())
    f.tick(minutes=30)
    assert f.pagers("reminder") == ["zhang.wei"] * 3  # in progress is not resolved
    transition_work_order(
        f.store, order.id, WorkOrderStatus.RESOLVED, by="zhang.wei", at=f.clock.now(), note="detector replaced"
    )
    f.tick(minutes=30)
    assert f.pagers("reminder") == ["zhang.wei"] * 3
    assert f.pagers() == ["zhang.wei"]  # and no step after the first
    escalation = f.escalator.escalation(order.id)
    assert escalation is not None and escalation.state is EscalationState.ENDED


def test_nobody_acknowledging_runs_the_policy_its_rounds_then_stops(facility: Facility) -> None:
    f = facility
    order = f.smoke_alarm()
    for _ in range(12):
        f.tick(minutes=10)
    # 3 steps (1 + 3 + 1 people) x (1 + repeat 2) rounds
    assert len(f.pagers()) == 15
    assert f.pagers("breach") == ["chen.jie", "chen.jie"]  # acknowledge (3m) and response (5m) targets passed
    escalation = f.escalator.escalation(order.id)
    assert escalation is not None and escalation.state is EscalationState.ENDED
    assert escalation.end_reason == "exhausted: nobody acknowledged"
    assert kinds(f, order).count("escalation_exhausted") == 1
    with pytest.raises(AcknowledgeError, match="is over"):
        f.escalator.acknowledge(order.id, by="li.na", at=f.clock.now())


def test_taking_the_work_order_up_stops_paging(facility: Facility) -> None:
    f = facility
    order = f.smoke_alarm()
    f.tick()
    transition_work_order(f.store, order.id, WorkOrderStatus.IN_PROGRESS, by="zhang.wei", at=f.clock.now())
    f.tick(minutes=5)
    f.tick(minutes=5)
    assert f.pagers() == ["zhang.wei"]


def test_a_restart_mid_escalation_neither_loses_nor_repeats_a_page(
    config: FacilityConfig, tmp_path: Path, facility: Facility
) -> None:
    f = facility
    order = f.smoke_alarm()
    f.tick()
    f.clock.advance(minutes=5)
    # The service stops after step 2 was committed but before the outbox sent it...
    f.escalator.run_due(f.clock.now())
    f.close()
    # ...and a new one starts on the same database, with fresh channels.
    g = Facility(config, tmp_path / "state.db", f.clock, [Recorder("duty-log"), Recorder("pagers")])
    try:
        g.tick()
        g.tick()
        assert g.pagers() == ["zhang.wei", "li.na", "wang.jun"]  # step 2, once; step 1 not again
        g.tick(minutes=5)
        assert g.pagers() == ["zhang.wei", "li.na", "wang.jun", "chen.jie"]  # step 3 on time
        pages = g.store.pages_of(order.number)
        assert [(p.recipient, p.state) for p in pages if p.channel == "pagers" and p.kind == "page"] == [
            ("zhang.wei", "sent"),
            ("zhang.wei", "sent"),
            ("li.na", "sent"),
            ("wang.jun", "sent"),
            ("chen.jie", "sent"),
        ]
    finally:
        g.close()


def test_two_instances_running_the_same_escalation_page_once(
    config: FacilityConfig, tmp_path: Path, facility: Facility
) -> None:
    f = facility
    f.smoke_alarm()
    other = Facility(config, tmp_path / "state.db", f.clock, [Recorder("duty-log"), Recorder("pagers")])
    try:
        f.clock.advance(minutes=5)
        assert f.escalator.run_due(f.clock.now()) == 1
        assert other.escalator.run_due(f.clock.now()) == 0
    finally:
        other.close()


def test_an_sla_breach_pages_the_policy_breach_targets_once(facility: Facility) -> None:
    f = facility
    order = f.smoke_alarm()
    f.tick()
    f.escalator.acknowledge(order.id, by="zhang.wei", at=f.clock.now())
    f.tick(minutes=5, seconds=1)  # the P1 response target is 5 minutes
    assert "sla_response_breached" in kinds(f, order)
    # the policy's last step: chen.jie
    assert f.pagers("breach") == ["chen.jie"]  # the policy's last step
    f.tick(minutes=1)
    assert f.pagers("breach") == ["chen.jie"]


def test_a_step_that_reaches_nobody_goes_on_at_once(config: FacilityConfig, tmp_path: Path) -> None:
    # Before the duty schedule's first turn nobody is on call: step 1 reaches nobody, step 2 follows at once.
    early = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
    f = Facility(config, tmp_path / "state.db", FakeClock(early), [Recorder("duty-log"), Recorder("pagers")])
    try:
        order = f.smoke_alarm()
        f.tick()
        assert f.pagers() == ["zhang.wei", "li.na", "wang.jun"]
        assert kinds(f, order)[:3] == ["opened", "page_missed", "paged"]
    finally:
        f.close()


def test_ack_links_acknowledge_as_the_person_paged(facility: Facility) -> None:
    f = facility
    order = f.smoke_alarm()
    f.tick()
    links = AckLinks("x" * 32, "https://facmon.example.com", timedelta(hours=1), clock=f.clock)
    [page] = f.pages()
    token = page.body.rsplit("/ack/", 1)[1]
    escalation_id, person = links.verify(token)
    assert person == "zhang.wei"
    done = f.escalator.acknowledge_escalation(escalation_id, by=person, at=f.clock.now(), via="link")
    assert done.acked_by == "zhang.wei"
    assert f.store.work_order_events(order.id)[-1].note == "via link"

    with pytest.raises(AckLinkError, match="not a valid"):
        links.verify(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    with pytest.raises(AckLinkError, match="not a valid"):
        AckLinks("y" * 32, "https://facmon.example.com", timedelta(hours=1), clock=f.clock).verify(token)


def test_ack_links_expire(clock: FakeClock) -> None:
    links = AckLinks("x" * 32, "https://facmon.example.com", timedelta(seconds=1), clock=clock)
    token = links.token(1, "li.na")
    clock.advance(seconds=2.1)  # the signature's timestamp has a resolution of one second
    with pytest.raises(AckLinkError, match="expired"):
        links.verify(token)


def test_a_work_order_whose_priority_has_no_policy_pages_nobody(facility: Facility) -> None:
    f = facility
    with f.store.begin() as tx:
        order = open_work_order(
            tx,
            title="Lobby door closer loose",
            category=Category.GENERAL,
            priority=Priority.P3,  # `escalate` names P1 and P2 only
            source=WorkOrderSource.MANUAL,
            at=f.clock.now(),
            tz=f.config.tz,
            response_target=timedelta(hours=4),
        )
        announce_work_order(tx, order, f.channels, f.config.tz, f.escalator)
    f.tick(minutes=10)
    assert f.pagers() == []
    assert len(f.channels[1].sent) == 1  # its news on the channel, no page
    with pytest.raises(AcknowledgeError, match="pages nobody"):
        f.escalator.acknowledge(order.id, by="li.na", at=f.clock.now())
