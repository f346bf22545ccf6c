"""Notifications really travel: to a local HTTP receiver, a local SMTP server and the test broker."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage, Message
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import paho.mqtt.client as paho
import pytest
from aiosmtpd.controller import Controller
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from facmon.alerts.notifications.channels import (
    EmailNotifier,
    MqttNotifier,
    WebhookNotifier,
    build_notifiers,
    publish_outcome,
    retry_may_help,
)
from facmon.alerts.notifications.notifier import ConsoleNotifier, Notification
from facmon.cmd.broker import Broker, free_port, start_broker
from facmon.config.mqtt import MqttConfig
from facmon.config.notifications import EmailChannel, MqttChannel, NotificationsConfig, WebhookChannel
from tests.conftest import FakeClock
from tests.waiting import eventually

NOW = datetime(2026, 11, 23, 1, 36, 12, tzinfo=UTC)
PAGE = Notification(
    subject="WO-20261123-0001 [P1 紧急] 1号加压泵: 供水压力低",
    body="设备 pump-1，位置 riverside / A / B1 pump room，响应期限 2026-11-23 01:41",
    key="notification-42",
)


# ---------------------------------------------------------------------------------------------------------------
# A webhook receiver


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass
class Receiver:
    """An HTTP server on a free loopback port that keeps every request and answers as told."""

    url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 200
    answer: bytes = b"ok"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            parts = urlsplit(self.path)
            state.requests.append(Received(parts.path, parse_qs(parts.query), dict(self.headers.items()), raw))
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def webhook(url: str, **settings: Any) -> WebhookNotifier:
    return WebhookNotifier("hook", WebhookChannel(type="webhook", url=url, **settings), clock=FakeClock(NOW))


def test_generic_webhook_is_signed_so_the_receiver_can_verify_it(receiver: Receiver) -> None:
    delivery = webhook(receiver.url, secret="s3cret").send(PAGE)

    assert delivery.ok, delivery.detail
    [request] = receiver.requests
    assert request.json == {"subject": PAGE.subject, "body": PAGE.body, "sent_at": "2026-11-23T01:36:12+00:00"}
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["Idempotency-Key"] == "notification-42"
    # What a receiver does: recompute over the timestamp header and the raw body, compare in constant time.
    timestamp = request.headers["X-Facmon-Timestamp"]
    assert timestamp == str(int(NOW.timestamp()))
    expected = hmac.new(b"s3cret", timestamp.encode() + b"." + request.raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-Facmon-Signature"], f"sha256={expected}")


def test_generic_webhook_without_a_secret_carries_no_signature(receiver: Receiver) -> None:
    assert webhook(receiver.url).send(Notification("s", "b")).ok
    [request] = receiver.requests
    assert "X-Facmon-Signature" not in request.headers
    assert "Idempotency-Key" not in request.headers
    assert "X-Facmon-Timestamp" in request.headers


def test_wecom_robot_gets_markdown(receiver: Receiver) -> None:
    receiver.answer = b'{"errcode":0,"errmsg":"ok"}'
    assert webhook(receiver.url, format="wecom").send(PAGE).ok
    assert receiver.requests[0].json == {
        "msgtype": "markdown",
        "markdown": {"content": f"**{PAGE.subject}**\n{PAGE.body}"},
    }


def test_dingtalk_robot_gets_markdown_and_a_signed_url(receiver: Receiver) -> None:
    receiver.answer = b'{"errcode":0,"errmsg":"ok"}'
    assert webhook(receiver.url + "?access_token=TOKEN", format="dingtalk", secret="SECabc").send(PAGE).ok
    [request] = receiver.requests
    assert request.json == {
        "msgtype": "markdown",
        "markdown": {"title": PAGE.subject, "text": f"#### {PAGE.subject}\n\n{PAGE.body}"},
    }
    timestamp = request.query["timestamp"][0]
    assert timestamp == str(int(NOW.timestamp() * 1000))  # milliseconds
    digest = hmac.new(b"SECabc", f"{timestamp}\nSECabc".encode(), hashlib.sha256).digest()
    assert request.query["sign"] == [base64.b64encode(digest).decode()]
    assert request.query["access_token"] == ["TOKEN"]


def test_feishu_bot_gets_a_post_signed_in_the_body(receiver: Receiver) -> None:
    receiver.answer = b'{"code":0,"msg":"success","data":{}}'
    assert webhook(receiver.url, format="feishu", secret="fs-secret", language="zh").send(PAGE).ok
    body = receiver.requests[0].json
    assert body["msg_type"] == "post"
    assert body["content"] == {
        "post": {"zh_cn": {"title": PAGE.subject, "content": [[{"tag": "text", "text": PAGE.body}]]}}
    }
    assert body["timestamp"] == str(int(NOW.timestamp()))  # seconds
    digest = hmac.new(f"{body['timestamp']}\nfs-secret".encode(), b"", hashlib.sha256).digest()
    assert body["sign"] == base64.b64encode(digest).decode()


def test_slack_gets_escaped_mrkdwn(receiver: Receiver) -> None:
    assert webhook(receiver.url, format="slack").send(Notification("P1 <pump> & co", "low")).ok
    assert receiver.requests[0].json == {"text": "*P1 &lt;pump&gt; &amp; co*\nlow"}


def test_teams_gets_an_adaptive_card(receiver: Receiver) -> None:
    receiver.status = 202  # what a Workflows webhook answers
    assert webhook(receiver.url, format="teams").send(PAGE).ok
    body = receiver.requests[0].json
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert [block["text"] for block in card["body"]] == [PAGE.subject, PAGE.body]


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False)])
def test_http_failures_say_whether_to_retry(receiver: Receiver, status: int, retryable: bool) -> None:
    receiver.status, receiver.answer = status, b"no such hook"
    delivery = webhook(receiver.url).send(PAGE)
    assert not delivery.ok
    assert delivery.retryable is retryable
    assert delivery.detail == f"HTTP {status}: no such hook"


def test_a_receiver_that_is_down_is_worth_retrying() -> None:
    delivery = webhook(f"http://127.0.0.1:{free_port()}/hook", timeout="1s").send(PAGE)
    assert not delivery.ok and delivery.retryable
    assert delivery.detail.startswith("http://127.0.0.1")


def test_a_receiver_that_never_answers_times_out_and_is_worth_retrying() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts into the backlog, never reads nor answers
        delivery = webhook(f"http://127.0.0.1:{silent.getsockname()[1]}/hook", timeout="200ms").send(PAGE)
    assert not delivery.ok and delivery.retryable
    assert "timed out" in delivery.detail


@pytest.mark.parametrize(
    ("fmt", "answer", "retryable"),
    [
        ("wecom", b'{"errcode":93000,"errmsg":"invalid webhook url"}', False),
        ("wecom", b'{"errcode":45009,"errmsg":"api freq out of limit"}', True),
        ("dingtalk", b'{"errcode":310000,"errmsg":"sign not match"}', False),
        ("dingtalk", b'{"errcode":130101,"errmsg":"send too fast"}', True),
        ("feishu", b'{"code":19021,"msg":"sign match fail"}', False),
        ("feishu", b'{"code":11232,"msg":"frequency limited"}', True),
    ],
)
def test_platform_errors_in_a_200_answer_are_failures(
    receiver: Receiver, fmt: str, answer: bytes, retryable: bool
) -> None:
    receiver.answer = answer
    delivery = webhook(receiver.url, format=fmt).send(PAGE)
    assert not delivery.ok
    assert delivery.retryable is retryable
    assert delivery.detail.startswith(f"{fmt} error ")


def test_robot_token_is_kept_out_of_the_detail() -> None:
    delivery = webhook(f"http://127.0.0.1:{free_port()}/send?key=SECRET-KEY", format="wecom", timeout="1s").send(PAGE)
    assert not delivery.ok
    assert "SECRET-KEY" not in delivery.detail


# ---------------------------------------------------------------------------------------------------------------
# A mail server


class Mailbox:
    """aiosmtpd handler that keeps what it accepts, or answers DATA with a given reply."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.reply: str | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd names it
        if self.reply:
            return self.reply
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(message_from_bytes(envelope.original_content, policy=default_policy))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield mailbox, controller.port
    controller.stop()


def mailer(port: int, **settings: Any) -> EmailNotifier:
    channel = EmailChannel.model_validate(
        {
            "type": "email",
            "host": "127.0.0.1",
            "port": port,
            "starttls": False,  # the test server offers no TLS
            "sender": "facmon@example.com",
            "to": ["duty@example.com", "值班@example.cn"],
            "timeout": "5s",
            **settings,
        }
    )
    return EmailNotifier("mail", channel, clock=FakeClock(NOW))


def test_email_arrives_with_chinese_subject_and_body_intact(smtp_server: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp_server
    delivery = mailer(port).send(PAGE)

    assert delivery.ok, delivery.detail
    [message] = mailbox.messages
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == PAGE.subject
    assert message["From"] == "facmon@example.com"
    assert message["To"] == "duty@example.com, 值班@example.cn"
    assert message["Message-ID"] == "<notification-42@example.com>"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content().rstrip("\n") == PAGE.body
    assert mailbox.envelopes == [("facmon@example.com", ["duty@example.com", "值班@example.cn"])]


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("451 4.3.0 try again later", True), ("550 5.7.1 message refused", False)],
)
def test_smtp_refusals_say_whether_to_retry(smtp_server: tuple[Mailbox, int], reply: str, retryable: bool) -> None:
    mailbox, port = smtp_server
    mailbox.reply = reply
    delivery = mailer(port).send(PAGE)
    assert not delivery.ok
    assert delivery.retryable is retryable
    assert delivery.detail.startswith(f"SMTP {reply[:3]} ")


def test_a_mail_server_that_is_down_is_worth_retrying() -> None:
    delivery = mailer(free_port()).send(PAGE)
    assert not delivery.ok and delivery.retryable


def test_starttls_against_a_server_without_it_is_not_retried(smtp_server: tuple[Mailbox, int]) -> None:
    _, port = smtp_server
    delivery = mailer(port, starttls=True).send(PAGE)
    assert not delivery.ok and not delivery.retryable
    assert "STARTTLS" in delivery.detail


# ---------------------------------------------------------------------------------------------------------------
# MQTT, through the test broker


def test_mqtt_channel_publishes_json_a_subscriber_receives(mqtt_broker: Broker) -> None:
    topic = f"facility/alerts/siren-{uuid.uuid4().hex[:6]}"
    received: list[bytes] = []
    subscribed = threading.Event()
    listener = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:8]}")
    listener.on_message = lambda _c, _u, msg: received.append(bytes(msg.payload))
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
    listener.connect(mqtt_broker.host, mqtt_broker.port)
    listener.loop_start()
    try:
        eventually(subscribed.is_set, what="subscribed")
        mqtt = MqttConfig(url=mqtt_broker.url, client_id="facmon-test")
        siren = MqttNotifier("siren", MqttChannel(type="mqtt", topic=topic), mqtt, clock=FakeClock(NOW))

        delivery = siren.send(PAGE)

        assert delivery.ok, delivery.detail
        [payload] = eventually(lambda: received, what="the siren message")
        assert json.loads(payload) == {
            "subject": PAGE.subject,
            "body": PAGE.body,
            "sent_at": NOW.isoformat(),
            "id": PAGE.key,  # for the receiver to drop a repeat
        }
    finally:
        listener.disconnect()
        listener.loop_stop()


def test_mqtt_channel_without_a_broker_is_worth_retrying() -> None:
    mqtt = MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}")
    siren = MqttNotifier("siren", MqttChannel(type="mqtt", topic="facility/alerts/siren", timeout="1s"), mqtt)
    delivery = siren.send(PAGE)
    assert not delivery.ok and delivery.retryable


# ---------------------------------------------------------------------------------------------------------------
# Building from config


def test_every_channel_type_is_built_from_config() -> None:
    config = NotificationsConfig.model_validate(
        {
            "channels": {
                "log": {"type": "console", "language": "zh"},
                "hook": {"type": "webhook", "url": "https://ops.example.com/hook", "format": "slack"},
                "mail": {"type": "email", "host": "smtp.example.com", "sender": "f@example.com", "to": "d@example.com"},
                "siren": {"type": "mqtt", "topic": "facility/alerts/siren"},
            }
        }
    )
    notifiers = build_notifiers(config, MqttConfig())
    assert [(type(n), n.name, n.language) for n in notifiers] == [
        (ConsoleNotifier, "log", "zh"),
        (WebhookNotifier, "hook", "en"),
        (EmailNotifier, "mail", "en"),
        (MqttNotifier, "siren", "en"),
    ]


@pytest.mark.parametrize(
    ("code", "ok", "retryable"),
    [
        (0x00, True, False),  # Success
        (0x10, True, False),  # No matching subscribers: taken, though nobody has it
        (0x80, False, True),  # Unspecified error
        (0x83, False, True),  # Implementation specific error
        (0x87, False, False),  # Not authorized: the ACL denies it, and will again
        (0x90, False, False),  # Topic name invalid
        (0x91, False, True),  # Packet identifier in use
        (0x97, False, True),  # Quota exceeded
        (0x99, False, False),  # Payload format invalid
    ],
)
def test_each_puback_reason_code_is_a_delivery(code: int, ok: bool, retryable: bool) -> None:
    reason = ReasonCode(PacketTypes.PUBACK, identifier=code)
    delivery = publish_outcome(reason, where="broker:1883", topic="facility/pagers/zhang.wei")
    assert (delivery.ok, delivery.retryable) == (ok, retryable)
    if not ok:
        assert delivery.detail == (
            f"broker:1883: the broker refused the message to facility/pagers/zhang.wei: {reason} (0x{code:02x})"
        )


@pytest.mark.parametrize(
    ("packet", "code", "retryable"),
    [
        (PacketTypes.DISCONNECT, 0x89, True),  # Server busy
        (PacketTypes.DISCONNECT, 0x8B, True),  # Server shutting down
        (PacketTypes.DISCONNECT, 0x96, True),  # Message rate too high
        (PacketTypes.DISCONNECT, 0x95, False),  # Packet too large: the same message is as large next time
        (PacketTypes.CONNACK, 0x86, False),  # Bad user name or password
        (PacketTypes.CONNACK, 0x88, True),  # Server unavailable
        (PacketTypes.CONNACK, 0x8A, False),  # Banned
    ],
)
def test_a_broker_that_is_busy_may_take_it_later_one_that_refuses_will_not(
    packet: int, code: int, retryable: bool
) -> None:
    reason = ReasonCode(packet, identifier=code)
    assert reason.is_failure
    assert retry_may_help(reason) is retryable


def test_mqtt_channel_with_qos_0_or_2_warns_that_refusals_cannot_be_seen(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="facmon.alerts.notifications.channels")
    for qos in (0, 1, 2):
        MqttNotifier(f"siren-{qos}", MqttChannel(type="mqtt", topic="facility/alerts/siren", qos=qos), MqttConfig())
    assert [
        r.getMessage().split(":")[0] for r in caplog.records if r.name == "facmon.alerts.notifications.channels"
    ] == [
        "notification channel siren-0 publishes with qos 0",
        "notification channel siren-2 publishes with qos 2",
    ]


def test_a_broker_without_mqtt_5_gets_mqtt_3_1_1_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="facmon.alerts.notifications.channels")
    broker = start_broker("embedded")  # amqtt: MQTT 3.1.1 only
    topic = f"facility/alerts/siren-{uuid.uuid4().hex[:6]}"
    received: list[bytes] = []
    subscribed = threading.Event()
    listener = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"listener-{uuid.uuid4().hex[:8]}")
    listener.on_message = lambda _c, _u, msg: received.append(bytes(msg.payload))
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
    listener.connect(broker.host, broker.port)
    listener.loop_start()
    try:
        eventually(subscribed.is_set, what="subscribed")
        siren = MqttNotifier("siren", MqttChannel(type="mqtt", topic=topic), MqttConfig(url=broker.url))

        first, second = siren.send(PAGE), siren.send(PAGE)

        assert first.ok and second.ok, (first.detail, second.detail)
        eventually(lambda: len(received) == 2, what="both messages")
        # Once: the second message went straight to MQTT 3.1.1.
        [warning] = [r.getMessage() for r in caplog.records if r.name == "facmon.alerts.notifications.channels"]
        assert warning.startswith(f"notification channel siren: the broker at {broker.url} does not speak MQTT 5")
        assert "cannot be told from one it took" in warning
    finally:
        listener.disconnect()
        listener.loop_stop()
        broker.stop()
