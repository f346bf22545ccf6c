"""Notifications really travel: the outbox over real channels to a real HTTP receiver and a real SMTP server.

A receiver that is down is retried with backoff until it is up, and one that stays down is dead-lettered.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from facmon.alerts.channels import EmailNotifier, WebhookNotifier
from facmon.alerts.outbox import Outbox
from facmon.cmd.broker import free_port
from facmon.facility.config import EmailChannel, WebhookChannel
from facmon.facility.model import NotificationState
from facmon.facility.state import StateStore
from tests.alerts.test_channels import Mailbox
from tests.conftest import FakeClock

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def queue(store: StateStore, channel: str, ref: str) -> int:
    with store.begin() as tx:
        row = tx.queue_notification(
            channel=channel,
            kind="work_order_opened",
            ref=ref,
            language="zh",
            subject=f"{ref} 爆管",
            body="设备 pump-1，响应期限 5 分钟",
            at=T0,
        )
    assert row is not None
    return row


def test_a_webhook_receiver_that_is_down_is_retried_until_it_is_up(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    url = f"http://127.0.0.1:{port}/hook"
    clock = FakeClock(T0)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    hook = WebhookNotifier(
        "ops", WebhookChannel(type="webhook", url=url, secret="s3cret", timeout="2s"), clock=clock.now
    )
    outbox = Outbox(store, {"ops": hook}, clock, max_attempts=5, jitter=0.0, rng=random.Random(1))
    row = queue(store, "ops", "WO-20261122-0001")

    assert outbox.deliver_due(clock.now()) == 0  # refused: nobody listens
    first = store.get_notification(row)
    assert (first.state, first.attempts) == (NotificationState.PENDING, 1)
    assert first.next_attempt_at == T0 + timedelta(seconds=10)
    assert first.last_error

    clock.advance(seconds=5)
    assert outbox.deliver_due(clock.now()) == 0  # not due yet: nothing tried
    assert store.get_notification(row).attempts == 1
    clock.advance(seconds=5)
    assert outbox.deliver_due(clock.now()) == 0  # second attempt, still down; the wait doubles
    assert store.get_notification(row).next_attempt_at == clock.now() + timedelta(seconds=20)

    # The receiver comes up on that port.
    received: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers.items()), raw))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        clock.advance(seconds=20)
        assert outbox.deliver_due(clock.now()) == 1
        sent = store.get_notification(row)
        assert (sent.state, sent.attempts, sent.sent_at) == (NotificationState.SENT, 3, clock.now())
        [(headers, raw)] = received
        assert headers["Idempotency-Key"] == str(row)
        signed = f"{headers['X-Facmon-Timestamp']}.".encode() + raw
        expected = hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
        assert headers["X-Facmon-Signature"] == f"sha256={expected}"
        assert "爆管" in raw.decode()
        clock.advance(minutes=10)
        assert outbox.deliver_due(clock.now()) == 0  # sent once, never again
        assert len(received) == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        store.close()


def test_a_receiver_that_stays_down_is_dead_lettered(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    url = f"http://127.0.0.1:{free_port()}/hook"
    hook = WebhookNotifier("ops", WebhookChannel(type="webhook", url=url, timeout="2s"), clock=clock.now)
    outbox = Outbox(store, {"ops": hook}, clock, max_attempts=3, jitter=0.0)
    row = queue(store, "ops", "WO-20261122-0002")
    for _ in range(10):
        outbox.deliver_due(clock.now())
        clock.advance(hours=1)
    dead = store.get_notification(row)
    assert (dead.state, dead.attempts) == (NotificationState.DEAD, 3)
    assert store.list_notifications(states=[NotificationState.DEAD]).total == 1
    store.close()


def test_email_through_the_outbox_reaches_a_real_smtp_server(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    clock = FakeClock(T0)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        channel = EmailChannel.model_validate(
            {
                "type": "email",
                "host": "127.0.0.1",
                "port": controller.port,
                "starttls": False,  # the test server offers no TLS
                "sender": "facmon@example.com",
                "to": ["duty@example.com"],
                "timeout": "5s",
            }
        )
        outbox = Outbox(store, {"mail": EmailNotifier("mail", channel, clock=clock.now)}, clock)
        row = queue(store, "mail", "WO-20261122-0003")
        assert outbox.deliver_due(clock.now()) == 1
        [message] = mailbox.messages
        assert message["Subject"] == "WO-20261122-0003 爆管"
        assert "响应期限" in message.get_content()
        assert store.get_notification(row).state is NotificationState.SENT
    finally:
        controller.stop()
        store.close()
