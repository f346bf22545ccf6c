"""Notifications really travel: the outbox over real channels to a real HTTP receiver and a real SMTP server.

A receiver that is down is retried with backoff until it is up, and one that stays down is dead-lettered. A
receiver that hangs holds up its own channel only. What a failed channel leaves in the notification log and in
facmon's log names the hook without its secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facmon.alerts.notifications.channels import EmailNotifier, WebhookNotifier
from facmon.alerts.notifications.outbox import Outbox
from facmon.cmd.broker import free_port
from facmon.config.notifications import EmailChannel, WebhookChannel
from facmon.facility.model import NotificationState
from facmon.facility.state import StateStore
from tests.alerts.notifications.test_channels import Mailbox
from tests.conftest import FakeClock
from tests.waiting import eventually

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
    hook = WebhookNotifier("ops", WebhookChannel(type="webhook", url=url, secret="s3cret", timeout="2s"), clock=clock)
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
    hook = WebhookNotifier("ops", WebhookChannel(type="webhook", url=url, timeout="2s"), clock=clock)
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
        outbox = Outbox(store, {"mail": EmailNotifier("mail", channel, clock=clock)}, clock)
        row = queue(store, "mail", "WO-20261122-0003")
        assert outbox.deliver_due(clock.now()) == 1
        [message] = mailbox.messages
        assert message["Subject"] == "WO-20261122-0003 爆管"
        assert "响应期限" in message.get_content()
        assert store.get_notification(row).state is NotificationState.SENT
    finally:
        controller.stop()
        store.close()


class Receiver:
    """An HTTP server on a free loopback port that keeps what is POSTed and answers `status`, quoting the path
    in its error pages as many servers do."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[tuple[str, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((self.path, raw))
                answer = b"ok" if receiver.status < 300 else f"no hook at {self.path}".encode()
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def black_hole() -> Iterator[socket.socket]:
    """A mail server that takes the connection and never says a word: not even its greeting."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener


def test_a_black_holed_mail_server_holds_up_no_other_channel(
    tmp_path: Path, receiver: Receiver, black_hole: socket.socket
) -> None:
    clock = FakeClock(T0)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    mail = EmailNotifier(
        "mail",
        EmailChannel.model_validate(
            {
                "type": "email",
                "host": "127.0.0.1",
                "port": black_hole.getsockname()[1],
                "starttls": False,
                "sender": "facmon@example.com",
                "to": ["duty@example.com"],
                "timeout": "5m",  # the longest allowed: longer than the outbox's old fixed claim of 2 minutes
            }
        ),
        clock=clock,
    )
    hook = WebhookNotifier("ops", WebhookChannel(type="webhook", url=f"{receiver.base}/hook"), clock=clock)
    outbox = Outbox(store, {"mail": mail, "ops": hook}, clock, wait=timedelta(milliseconds=200))
    stuck = queue(store, "mail", "WO-20261122-0001")  # the older one: first in line
    page = queue(store, "ops", "WO-20261122-0001")
    connection: socket.socket | None = None
    try:
        outbox.deliver_due(clock.now())
        black_hole.settimeout(10)
        connection, _ = black_hole.accept()  # the mail attempt is under way, waiting for a greeting

        eventually(lambda: store.get_notification(page).state is NotificationState.SENT, what="the webhook page")
        assert [path for path, _ in receiver.received] == ["/hook"]
        # Meanwhile the mail attempt still hangs: claimed for its channel's timeout and a margin, no outcome yet.
        waiting = store.get_notification(stuck)
        assert (waiting.state, waiting.attempts, waiting.last_error) == (NotificationState.PENDING, 1, None)
        assert waiting.next_attempt_at == T0 + timedelta(minutes=5) + outbox.lease_margin
        assert outbox.lease("mail") > mail.timeout

        # The next round serves the webhook again; the mail channel, still busy, is handed nothing new.
        clock.advance(seconds=1)
        later_mail, later_page = queue(store, "mail", "WO-20261122-0002"), queue(store, "ops", "WO-20261122-0002")
        outbox.deliver_due(clock.now())
        eventually(lambda: store.get_notification(later_page).state is NotificationState.SENT, what="the next page")
        assert store.get_notification(later_mail).attempts == 0
        connection.setblocking(False)
        with pytest.raises(BlockingIOError):  # the mail client is still connected, still waiting
            connection.recv(1)

        connection.close()  # the server hangs up: the mail attempt fails, worth another try
        eventually(lambda: store.get_notification(stuck).last_error, what="the outcome of the mail attempt")
        failed = store.get_notification(stuck)
        assert (failed.state, failed.attempts) == (NotificationState.PENDING, 1)
        assert failed.last_error is not None
        assert failed.last_error.startswith(f"127.0.0.1:{black_hole.getsockname()[1]}: ")
    finally:
        if connection is not None:
            connection.close()
        outbox.close()
        store.close()


def test_each_channel_claims_for_its_own_timeout_and_a_margin(tmp_path: Path) -> None:
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    quick = WebhookNotifier("quick", WebhookChannel(type="webhook", url="http://127.0.0.1:1/hook", timeout="2s"))
    slow = EmailNotifier(
        "slow",
        EmailChannel(type="email", host="mail.example.com", sender="f@example.com", to=["d@example.com"], timeout="4m"),
    )
    outbox = Outbox(store, {"quick": quick, "slow": slow}, FakeClock(T0), lease_margin=timedelta(seconds=30))
    assert outbox.lease("quick") == timedelta(seconds=32)
    assert outbox.lease("slow") == timedelta(minutes=4, seconds=30)
    store.close()


# ---------------------------------------------------------------------------------------------------------------
# Secrets in robot URLs stay out of the notification log and facmon's log

SECRET = "Zq8rT3xVn6Wb1Lk5Yh0Pm2Jc"


def robot_urls(base: str) -> dict[str, tuple[str, str, str]]:
    """format -> (URL shaped like the platform's, with SECRET where its credential goes; what stays visible)."""
    return {
        "slack": ("slack", f"{base}/services/T024BE7LD/B01234567/{SECRET}", f"{base}/services/T0***"),
        "feishu": ("feishu", f"{base}/open-apis/bot/v2/hook/{SECRET}", f"{base}/open-apis/bot/v2/hook/Zq8r***"),
        "teams": (
            "teams",
            f"{base}/workflows/5f0c2a9e41d3/triggers/manual/paths/invoke?api-version=2016-06-01&sig={SECRET}",
            f"{base}/workflows/5f0***?api-version=***&sig=***",
        ),
        "dingtalk": (  # signed: the signature and its time stamp are added to the query
            "dingtalk",
            f"{base}/robot/send?access_token={SECRET}",
            f"{base}/robot/send?access_token=***&timestamp=***&sign=***",
        ),
        "wecom": ("wecom", f"{base}/cgi-bin/webhook/send?key={SECRET}", f"{base}/cgi-bin/webhook/send?key=***"),
        "userinfo": (
            "generic",
            base.replace("http://", f"http://facmon:{SECRET}@") + "/facmon",
            base.replace("http://", "http://facmon:***@") + "/facmon",
        ),
    }


@pytest.mark.parametrize("answer", ["500", "refused"])
@pytest.mark.parametrize("case", ["slack", "feishu", "teams", "dingtalk", "wecom", "userinfo"])
def test_a_failed_robot_shows_which_hook_it_was_and_never_its_secret(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture, case: str, answer: str
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3's own request lines included, as with `facmon --debug`
    receiver.status = 500
    base = receiver.base if answer == "500" else f"http://127.0.0.1:{free_port()}"
    fmt, url, shown = robot_urls(base)[case]
    # DingTalk's signing secret goes into the URL as a signature; Feishu's into the body.
    signing = {"secret": f"SEC{SECRET}"} if fmt in ("dingtalk", "feishu") else {}
    hook = WebhookNotifier("robot", WebhookChannel(type="webhook", url=url, format=fmt, timeout="5s", **signing))
    clock = FakeClock(T0)
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        outbox = Outbox(store, {"robot": hook}, clock, max_attempts=2, jitter=0.0)
        row = queue(store, "robot", "WO-20261122-0001")
        assert outbox.deliver_due(clock.now()) == 0
        retried = store.get_notification(row)
        assert outbox.deliver_due(clock.advance(hours=1)) == 0
        dead = store.get_notification(row)
    finally:
        store.close()

    if answer == "500":
        assert len(receiver.received) == 2  # the receiver really was asked, with the secret in its URL
        assert retried.last_error is not None and retried.last_error.startswith("HTTP 500: no hook at /")
    else:
        assert retried.last_error is not None and retried.last_error.startswith(f"{shown}: ")
    assert (retried.state, dead.state) == (NotificationState.PENDING, NotificationState.DEAD)
    for error in (retried.last_error, dead.last_error):
        assert error is not None and SECRET not in error
    assert "through robot is dead: " in caplog.text
    assert SECRET not in caplog.text
