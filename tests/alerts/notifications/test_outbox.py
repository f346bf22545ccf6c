"""The notification outbox on real state stores (SQLite and PostgreSQL), with an injected clock.

The channels are hand-written doubles of our `Notifier` interface: they keep what they were given and answer
as told, or hang until the test lets them go on. The database is real.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from facmon.alerts.notifications.notifier import Delivery, Notification
from facmon.alerts.notifications.outbox import Outbox
from facmon.alerts.work_orders.from_alarms import WorkOrderPolicy
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import NotificationState, Reading
from facmon.facility.state import StateStore
from facmon.facility.state.schema import notifications
from facmon.rules.conditions import RuleSet
from facmon.rules.processor import RuleProcessor
from tests.conftest import EXAMPLE, FakeClock
from tests.waiting import eventually

SHANGHAI = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2026, 11, 21, 18, 0, tzinfo=UTC)  # 02:00 on the 22nd in Shanghai


class Channel:
    """A channel that keeps what it is sent and answers each send with the next of `answers` (the last repeats)."""

    timeout = timedelta(0)

    def __init__(self, name: str, language: str = "en", *answers: Delivery) -> None:
        self.name = name
        self.language = language
        self.answers = list(answers) or [Delivery(True)]
        self.sent: list[Notification] = []

    def send(self, notification: Notification) -> Delivery:
        self.sent.append(notification)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Crash(BaseException):
    """The process dies mid-send: nothing after the send runs."""


class CrashingChannel(Channel):
    def send(self, notification: Notification) -> Delivery:
        self.sent.append(notification)
        raise Crash


class BrokenLanguage:
    """A channel whose message cannot be rendered."""

    name = "pager"
    timeout = timedelta(0)

    @property
    def language(self) -> str:
        raise RuntimeError("no template for this channel")

    def send(self, notification: Notification) -> Delivery:
        raise AssertionError("never sent")


class FixedJitter(random.Random):
    """Jitter that always comes out at `fraction` of the delay."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return self.fraction


def queue(store: StateStore, ref: str = "WO-20261122-0001", channel: str = "duty", at: datetime = NIGHT) -> int:
    with store.begin() as tx:
        new_id = tx.queue_notification(
            channel=channel,
            kind="work_order_opened",
            ref=ref,
            language="en",
            subject=f"{ref} [P1] Booster pump 1",
            body="device pump-1",
            at=at,
        )
    assert new_id is not None
    return new_id


def alarm_processor(store: StateStore, channels: list[Any]) -> RuleProcessor:
    config = load_config(EXAMPLE, env={})
    registry = DeviceRegistry.from_config(config)
    processor = RuleProcessor(RuleSet.compile(config.rules, registry), registry, store)
    processor.listeners.append(WorkOrderPolicy(config.work_orders, registry, store, SHANGHAI, list(channels)))
    return processor


def pipe_burst(processor: RuleProcessor) -> None:
    processor.on_readings([Reading("pump-1", int(NIGHT.timestamp() * 1000), {"pressure_bar": 1.1})], NIGHT)


def test_pipe_burst_queues_one_message_per_channel_with_its_work_order(state_store: StateStore) -> None:
    duty, zh = Channel("duty", "en"), Channel("值班", "zh")
    pipe_burst(alarm_processor(state_store, [duty, zh]))

    [order] = state_store.list_work_orders().items
    rows = sorted(state_store.list_notifications().items, key=lambda n: n.channel)
    assert [(n.channel, n.language, n.kind, n.ref, n.state, n.attempts) for n in rows] == [
        ("duty", "en", "work_order_opened", order.number, NotificationState.PENDING, 0),
        ("值班", "zh", "work_order_opened", order.number, NotificationState.PENDING, 0),
    ]
    assert all(n.created_at == n.next_attempt_at == order.created_at for n in rows)
    assert rows[0].subject.startswith(f"{order.number} [P1] Booster pump 1")
    assert "P1 紧急" in rows[1].subject and "响应期限 2026-11-22 02:05" in rows[1].body
    assert duty.sent == zh.sent == []  # queued, not sent: that is the outbox's job


def test_a_message_that_cannot_be_queued_takes_its_work_order_with_it(state_store: StateStore) -> None:
    # Rendering and queueing happen in the work order's transaction: one fails, neither is committed.
    pipe_burst(alarm_processor(state_store, [Channel("duty"), BrokenLanguage()]))
    assert state_store.list_alarms().total == 1
    assert state_store.list_work_orders().total == 0
    assert state_store.list_notifications().total == 0


def test_delivery_marks_sent_and_passes_the_row_id_as_idempotency_key(state_store: StateStore) -> None:
    clock = FakeClock(NIGHT)
    duty = Channel("duty")
    row_id = queue(state_store)
    clock.advance(seconds=1)
    assert Outbox(state_store, {"duty": duty}, clock).deliver_due(clock.now()) == 1

    row = state_store.get_notification(row_id)
    assert (row.state, row.attempts, row.sent_at, row.last_error) == (NotificationState.SENT, 1, clock.now(), None)
    assert duty.sent == [Notification("WO-20261122-0001 [P1] Booster pump 1", "device pump-1", key=str(row_id))]
    assert Outbox(state_store, {"duty": duty}, clock).deliver_due(clock.advance(hours=1)) == 0
    assert len(duty.sent) == 1


def test_retryable_failures_back_off_exponentially_then_go_dead(state_store: StateStore) -> None:
    clock = FakeClock(NIGHT)
    down = Channel("duty", "en", Delivery(False, retryable=True, detail="connection refused " + "x" * 2000))
    outbox = Outbox(
        state_store,
        {"duty": down},
        clock,
        max_attempts=5,
        base_delay=timedelta(seconds=10),
        max_delay=timedelta(seconds=60),
        rng=FixedJitter(0.1),
    )
    row_id = queue(state_store)

    # 10 s, 20 s, 40 s, then capped at 60 s; each +10 % jitter, counted from when the attempt ended.
    for attempt, wait in enumerate([11, 22, 44, 66], start=1):
        assert outbox.deliver_due(clock.now()) == 0
        row = state_store.get_notification(row_id)
        assert (row.state, row.attempts) == (NotificationState.PENDING, attempt)
        assert row.next_attempt_at == clock.now() + timedelta(seconds=wait)
        assert row.last_error is not None and len(row.last_error) == 1000
        clock.advance(seconds=wait - 1)
        outbox.deliver_due(clock.now())  # not due yet: no attempt
        assert len(down.sent) == attempt
        clock.advance(seconds=1)

    outbox.deliver_due(clock.now())
    row = state_store.get_notification(row_id)
    assert (row.state, row.attempts, len(down.sent)) == (NotificationState.DEAD, 5, 5)
    assert row.last_error is not None and row.last_error.startswith("connection refused")
    clock.advance(days=1)
    outbox.deliver_due(clock.now())
    assert len(down.sent) == 5


def test_backoff_jitter_stays_within_ten_percent(sqlite_store: StateStore) -> None:
    outbox = Outbox(sqlite_store, {}, FakeClock(NIGHT), rng=random.Random(7))
    for attempts, nominal in [(1, 10), (2, 20), (3, 40), (10, 3600), (60, 3600)]:
        for _ in range(50):
            assert 0.9 * nominal <= outbox.backoff(attempts).total_seconds() <= 1.1 * nominal


def test_a_permanent_failure_is_dead_at_once(state_store: StateStore) -> None:
    clock = FakeClock(NIGHT)
    refused = Channel("duty", "en", Delivery(False, retryable=False, detail="550 mailbox unknown"))
    row_id = queue(state_store)
    Outbox(state_store, {"duty": refused}, clock).deliver_due(clock.now())
    row = state_store.get_notification(row_id)
    assert (row.state, row.attempts, row.last_error) == (NotificationState.DEAD, 1, "550 mailbox unknown")


def test_a_channel_no_longer_configured_is_dead_with_that_reason(state_store: StateStore) -> None:
    clock = FakeClock(NIGHT)
    row_id = queue(state_store, channel="old-pager")
    Outbox(state_store, {"duty": Channel("duty")}, clock).deliver_due(clock.now())
    row = state_store.get_notification(row_id)
    assert row.state is NotificationState.DEAD
    assert row.last_error == "channel 'old-pager' is no longer configured"


def test_a_restart_neither_loses_nor_repeats_a_page(state_url: str) -> None:
    clock = FakeClock(NIGHT)
    store = StateStore.open(state_url)
    sent_id = queue(store, "WO-20261122-0001")
    before = Channel("duty")
    Outbox(store, {"duty": before}, clock).deliver_due(clock.now())
    waiting_id = queue(store, "WO-20261122-0002")  # queued, then facmon stops before the next tick
    store.close()

    clock.advance(minutes=10)
    store = StateStore.open(state_url)
    after = Channel("duty")
    assert Outbox(store, {"duty": after}, clock).deliver_due(clock.now()) == 1
    assert [n.key for n in before.sent] == [str(sent_id)]
    assert [n.key for n in after.sent] == [str(waiting_id)]
    assert {n.state for n in store.list_notifications().items} == {NotificationState.SENT}
    store.close()


def test_a_row_claimed_when_facmon_died_is_retried_only_after_its_lease(state_url: str) -> None:
    clock = FakeClock(NIGHT)
    store = StateStore.open(state_url)
    row_id = queue(store)
    with pytest.raises(Crash):
        Outbox(store, {"duty": CrashingChannel("duty")}, clock, lease_margin=timedelta(minutes=2)).deliver_due(
            clock.now()
        )
    store.close()

    store = StateStore.open(state_url)
    duty = Channel("duty")
    outbox = Outbox(store, {"duty": duty}, clock, lease_margin=timedelta(minutes=2))
    assert outbox.deliver_due(clock.advance(seconds=5)) == 0  # the claim still holds it
    assert outbox.deliver_due(clock.advance(seconds=114)) == 0
    assert outbox.deliver_due(clock.advance(seconds=1)) == 1  # lease over: at most this one repeat
    row = store.get_notification(row_id)
    assert (row.state, row.attempts) == (NotificationState.SENT, 2)
    assert [n.key for n in duty.sent] == [str(row_id)]
    store.close()


def test_the_same_page_is_never_queued_twice(state_store: StateStore) -> None:
    first = queue(state_store, "WO-20261122-0001", channel="duty")
    with state_store.begin() as tx:
        again = tx.queue_notification(
            channel="duty",
            kind="work_order_opened",
            ref="WO-20261122-0001",
            language="en",
            subject="s",
            body="b",
            at=NIGHT,
        )
    assert again is None
    assert queue(state_store, "WO-20261122-0001", channel="pager") != first  # another channel is another page
    with pytest.raises(IntegrityError), state_store.begin() as tx:
        tx.conn.execute(
            insert(notifications).values(
                channel="duty",
                kind="work_order_opened",
                ref="WO-20261122-0001",
                language="en",
                subject="s",
                body="b",
                state="pending",
                attempts=0,
                next_attempt_at=NIGHT,
                created_at=NIGHT,
            )
        )
    assert state_store.list_notifications().total == 2


def test_due_rows_go_oldest_first_in_bounded_batches(state_store: StateStore) -> None:
    clock = FakeClock(NIGHT + timedelta(minutes=5))
    ids = [queue(state_store, f"WO-20261122-000{i}", at=NIGHT + timedelta(seconds=10 - i)) for i in range(1, 4)]
    duty = Channel("duty")
    outbox = Outbox(state_store, {"duty": duty}, clock, batch=2)
    assert outbox.deliver_due(clock.now()) == 2
    assert [n.key for n in duty.sent] == [str(ids[2]), str(ids[1])]
    assert outbox.deliver_due(clock.now()) == 1
    assert state_store.list_notifications(states=[NotificationState.PENDING]).total == 0


class GatedChannel(Channel):
    """A channel whose sends hang until the test opens the gate, as a receiver that has stopped answering."""

    def __init__(self, name: str, timeout: timedelta = timedelta(0)) -> None:
        super().__init__(name)
        self.timeout = timeout
        self.gate = threading.Event()
        self.sending: list[str | None] = []

    def send(self, notification: Notification) -> Delivery:
        self.sending.append(notification.key)
        assert self.gate.wait(30), "the test never opened the gate"
        return super().send(notification)


def test_a_hanging_channel_holds_up_neither_the_others_nor_the_batch(sqlite_store: StateStore) -> None:
    clock = FakeClock(NIGHT)
    mail, duty = GatedChannel("mail"), Channel("duty")
    # The hanging channel's backlog is older and would fill the whole batch.
    backlog = [queue(sqlite_store, f"WO-20261122-000{i}", channel="mail", at=NIGHT) for i in range(1, 4)]
    page = queue(sqlite_store, "WO-20261122-0009", channel="duty", at=NIGHT)
    outbox = Outbox(sqlite_store, {"mail": mail, "duty": duty}, clock, batch=2, wait=timedelta(milliseconds=50))
    try:
        outbox.deliver_due(clock.now())  # the batch is mail's first two; the first of them hangs
        eventually(lambda: mail.sending == [str(backlog[0])], what="the first mail attempt")

        outbox.deliver_due(clock.now())  # mail is busy: the batch reaches past its rows to the page
        eventually(lambda: sqlite_store.get_notification(page).state is NotificationState.SENT, what="the page")
        assert mail.sending == [str(backlog[0])]  # one channel, one attempt at a time, oldest first
        assert [sqlite_store.get_notification(i).attempts for i in backlog] == [1, 0, 0]

        mail.gate.set()
        eventually(lambda: len(mail.sent) == 2, what="mail's first two, in order")
        # Its third goes out in a round after mail is free again.
        eventually(lambda: outbox.deliver_due(clock.now()) >= 0 and len(mail.sent) == 3, what="mail's third")
        assert [n.key for n in mail.sent] == [str(i) for i in backlog]
        assert [n.key for n in duty.sent] == [str(page)]
    finally:
        mail.gate.set()
        outbox.close()


class LeakyChannel(Channel):
    """A channel that raises with its robot URL in the message."""

    def send(self, notification: Notification) -> Delivery:
        raise RuntimeError(f"cannot POST to https://hooks.slack.com/services/T024BE7LD/B01234567/{TOKEN}")


TOKEN = "Zq8rT3xVn6Wb1Lk5Yh0Pm2Jc"


def test_a_channel_that_raises_leaves_its_secret_neither_in_the_notification_log_nor_in_the_log(
    sqlite_store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(NIGHT)
    row_id = queue(sqlite_store, channel="hook")
    assert Outbox(sqlite_store, {"hook": LeakyChannel("hook")}, clock).deliver_due(clock.now()) == 0
    row = sqlite_store.get_notification(row_id)
    assert row.state is NotificationState.PENDING
    assert row.last_error == "RuntimeError: cannot POST to https://hooks.slack.com/services/T0***"
    assert "channel hook raised on notification" in caplog.text
    assert "Traceback" in caplog.text and TOKEN not in caplog.text


def test_an_attempt_is_claimed_for_its_channel_s_timeout_and_a_margin(sqlite_store: StateStore) -> None:
    clock = FakeClock(NIGHT)
    slow = GatedChannel("slow", timeout=timedelta(minutes=5))
    row_id = queue(sqlite_store, channel="slow")
    outbox = Outbox(sqlite_store, {"slow": slow}, clock, lease_margin=timedelta(seconds=30), wait=timedelta(0))
    try:
        outbox.deliver_due(clock.now())
        eventually(lambda: slow.sending, what="the attempt")
        claimed = sqlite_store.get_notification(row_id)
        assert (claimed.attempts, claimed.next_attempt_at) == (1, NIGHT + timedelta(minutes=5, seconds=30))
    finally:
        slow.gate.set()
        outbox.close()
    assert sqlite_store.get_notification(row_id).state is NotificationState.SENT
