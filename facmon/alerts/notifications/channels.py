"""Notification channels that leave the process: webhooks, e-mail over SMTP, MQTT publish.

Each is a `Notifier`: it never raises for a failed delivery, it returns a `Delivery` saying whether trying
again could help. Retryable: the other side was unreachable, slow, busy or rate-limiting. Not retryable: the
other side understood and refused (bad URL or token, unknown recipient, failed authentication), where the same
message sent again would be refused again. The detail of every delivery is redacted (`redaction.redact`) with
the channel's own URL and secrets: viewers see it in the notification log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import paho.mqtt.client as paho
import urllib3
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from facmon.alerts.notifications.notifier import ConsoleNotifier, Delivery, Notification, Notifier
from facmon.alerts.notifications.redaction import redact, redact_url
from facmon.config.mqtt import MqttConfig
from facmon.config.notifications import ConsoleChannel, EmailChannel, MqttChannel, NotificationsConfig, WebhookChannel
from facmon.facility.clock import Clock, SystemClock

log = logging.getLogger(__name__)


def build_channel(name: str, channel: WebhookChannel | EmailChannel | MqttChannel, mqtt: MqttConfig) -> Notifier:
    """The notifier for one configured channel (console channels are built by `notify.build_notifiers`)."""
    if isinstance(channel, WebhookChannel):
        return WebhookNotifier(name, channel)
    if isinstance(channel, EmailChannel):
        return EmailNotifier(name, channel)
    return MqttNotifier(name, channel, mqtt)


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _redacted(
    delivery: Delivery, *, urls: Iterable[str] = (), secrets: Iterable[SecretStr | str | None] = ()
) -> Delivery:
    """The delivery with its detail redacted, then cut short: a secret cut in two would no longer be found."""
    if not delivery.detail:
        return delivery
    plain = (secret.get_secret_value() if isinstance(secret, SecretStr) else secret for secret in secrets)
    known = [secret for secret in plain if secret]
    return replace(delivery, detail=_excerpt(redact(delivery.detail, urls=urls, secrets=known)))


class _RedactingFilter(logging.Filter):
    """Redacts what urllib3 logs: at debug level (`facmon --debug`) it logs each request's path, robot token
    and all."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep neither as they are
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        return True


# A logger's filters see only what is logged on that very logger, not on its children.
for _module in ("connectionpool", "poolmanager", "connection", "response", "util.retry"):
    logging.getLogger(f"urllib3.{_module}").addFilter(_RedactingFilter())


# ---------------------------------------------------------------------------------------------------------------
# Webhooks

# Platform error codes in a 200 answer that mean "too fast, try later"; any other non-zero code is a refusal.
_RATE_LIMIT_CODES = {
    "wecom": {45009},  # api freq out of limit
    "dingtalk": {130101},  # send too fast
    "feishu": {11232},  # frequency limited
}


def sign_generic(secret: str, timestamp: str, raw_body: bytes) -> str:
    """The `X-Facmon-Signature` value: HMAC-SHA256 over `{timestamp}.{body}`, as a receiver recomputes it."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def sign_dingtalk(secret: str, timestamp_ms: str) -> str:
    """DingTalk's `sign` query parameter before URL encoding: base64 HMAC-SHA256 of `{timestamp}\\n{secret}`."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign_feishu(secret: str, timestamp_s: str) -> str:
    """Feishu's `sign` body field: base64 HMAC-SHA256 keyed with `{timestamp}\\n{secret}` over nothing."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats these three as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(fmt: str, notification: Notification, language: str, sent_at: datetime) -> dict[str, Any]:
    """The JSON document for one webhook format, before any signature fields."""
    subject, body = notification.subject, notification.body
    to = notification.to
    if fmt == "wecom":
        if to:  # markdown messages cannot @-mention: a page to a person is a text message mentioning them
            return {"msgtype": "text", "text": {"content": f"{subject}\n{body}", "mentioned_mobile_list": [to]}}
        return {"msgtype": "markdown", "markdown": {"content": f"**{subject}**\n{body}"}}
    if fmt == "dingtalk":
        text = f"#### {subject}\n\n{body}" + (f"\n\n@{to}" if to else "")
        document: dict[str, Any] = {"msgtype": "markdown", "markdown": {"title": subject, "text": text}}
        if to:
            document["at"] = {"atMobiles": [to], "isAtAll": False}
        return document
    if fmt == "feishu":
        locale = "zh_cn" if language == "zh" else "en_us"
        post = {locale: {"title": subject, "content": [[{"tag": "text", "text": body}]]}}
        return {"msg_type": "post", "content": {"post": post}}
    if fmt == "slack":
        mention = f"<@{to}> " if to else ""
        return {"text": f"{mention}*{_slack_escape(subject)}*\n{_slack_escape(body)}"}
    if fmt == "teams":
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": subject, "weight": "Bolder", "size": "Medium", "wrap": True},
                {"type": "TextBlock", "text": body, "wrap": True},
            ],
        }
        attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        return {"type": "message", "attachments": [attachment]}
    generic: dict[str, Any] = {"subject": subject, "body": body, "sent_at": sent_at.isoformat()}
    if to:
        generic["to"] = to
    return generic


class WebhookNotifier:
    """POSTs JSON to a URL, in facmon's own signed format or in a chat platform's robot format."""

    def __init__(
        self,
        name: str,
        channel: WebhookChannel,
        clock: Clock | None = None,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        self.name = name
        self.language: str = channel.language
        self._channel = channel
        self._clock = clock or SystemClock()
        # No retries here: the outbox owns retrying, and needs to hear about each failure.
        self._pool = pool or urllib3.PoolManager(retries=False)

    @property
    def timeout(self) -> timedelta:
        return self._channel.timeout

    def send(self, notification: Notification) -> Delivery:
        channel = self._channel
        now = self._clock.now()
        secret = channel.secret.get_secret_value() if channel.secret else None
        url = channel.url
        payload = webhook_payload(channel.format, notification, self.language, now)
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "facmon"}
        if notification.key:
            headers["Idempotency-Key"] = notification.key
        if channel.format == "dingtalk" and secret:
            timestamp_ms = str(int(now.timestamp() * 1000))
            url = _with_query(url, {"timestamp": timestamp_ms, "sign": sign_dingtalk(secret, timestamp_ms)})
        elif channel.format == "feishu" and secret:
            timestamp_s = str(int(now.timestamp()))
            payload = {"timestamp": timestamp_s, "sign": sign_feishu(secret, timestamp_s), **payload}
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        if channel.format == "generic":
            timestamp_s = str(int(now.timestamp()))
            headers["X-Facmon-Timestamp"] = timestamp_s
            if secret:
                headers["X-Facmon-Signature"] = sign_generic(secret, timestamp_s, raw)

        delivery = self._post(url, raw, headers)
        # The signed URL too: DingTalk's signature is in its query.
        return _redacted(delivery, urls=(channel.url, url), secrets=[secret])

    def _post(self, url: str, raw: bytes, headers: dict[str, str]) -> Delivery:
        timeout = self._channel.timeout.total_seconds()
        try:
            response = self._pool.request(
                "POST", url, body=raw, headers=headers, timeout=urllib3.Timeout(connect=timeout, read=timeout)
            )
        except urllib3.exceptions.HTTPError as exc:
            # Refused connections, resets, timeouts, TLS handshakes that failed midway: all worth another go.
            return Delivery(False, retryable=True, detail=f"{redact_url(url)}: {exc}")
        # A receiver's error page may quote the request's path: redacted with the rest of the detail.
        text = response.data.decode("utf-8", errors="replace")
        status = response.status
        if status == 429 or status >= 500:
            return Delivery(False, retryable=True, detail=f"HTTP {status}: {text}")
        if status >= 300:
            return Delivery(False, retryable=False, detail=f"HTTP {status}: {text}")
        return self._platform_verdict(text)

    def _platform_verdict(self, text: str) -> Delivery:
        """Chat platforms answer 200 with an error code in the body when they refuse a message."""
        fmt = self._channel.format
        if fmt not in _RATE_LIMIT_CODES:
            return Delivery(True)
        try:
            answer = json.loads(text)
        except ValueError:
            return Delivery(False, retryable=False, detail=f"not the JSON answer {fmt} gives: {text}")
        if not isinstance(answer, dict):
            return Delivery(False, retryable=False, detail=f"not the JSON answer {fmt} gives: {text}")
        if fmt == "feishu":
            code = answer.get("code", answer.get("StatusCode", 0))
            message = answer.get("msg", answer.get("StatusMessage", ""))
        else:
            code, message = answer.get("errcode", 0), answer.get("errmsg", "")
        if code in (0, None):
            return Delivery(True)
        retryable = code in _RATE_LIMIT_CODES[fmt]
        return Delivery(False, retryable=retryable, detail=f"{fmt} error {code}: {message}")


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(extra)}" if parts.query else urlencode(extra)
    return urlunsplit(parts._replace(query=query))


# ---------------------------------------------------------------------------------------------------------------
# E-mail


class EmailNotifier:
    """Sends a plain-text UTF-8 e-mail over SMTP: STARTTLS on 587 by default, or TLS from the start (`ssl`)."""

    def __init__(self, name: str, channel: EmailChannel, clock: Clock | None = None) -> None:
        self.name = name
        self.language: str = channel.language
        self._channel = channel
        self._clock = clock or SystemClock()

    @property
    def timeout(self) -> timedelta:
        return self._channel.timeout

    def message(self, notification: Notification) -> EmailMessage:
        channel = self._channel
        msg = EmailMessage()
        msg["Subject"] = notification.subject
        msg["From"] = channel.sender
        msg["To"] = notification.to if notification.to else ", ".join(channel.to)
        msg["Date"] = format_datetime(self._clock.now())
        domain = channel.sender.rsplit("@", 1)[1]
        msg["Message-ID"] = f"<{notification.key}@{domain}>" if notification.key else make_msgid(domain=domain)
        msg.set_content(notification.body, charset="utf-8")
        return msg

    def send(self, notification: Notification) -> Delivery:
        return _redacted(self._send(notification), secrets=[self._channel.password])

    def _send(self, notification: Notification) -> Delivery:
        channel = self._channel
        msg = self.message(notification)
        timeout = channel.timeout.total_seconds()
        context = ssl.create_default_context()
        try:
            smtp = (
                smtplib.SMTP_SSL(channel.host, channel.port, timeout=timeout, context=context)
                if channel.ssl
                else smtplib.SMTP(channel.host, channel.port, timeout=timeout)
            )
            with smtp:
                if channel.starttls and not channel.ssl:
                    smtp.starttls(context=context)
                if channel.username:
                    password = channel.password.get_secret_value() if channel.password else ""
                    smtp.login(channel.username, password)
                refused = smtp.send_message(msg)
        except smtplib.SMTPAuthenticationError as exc:
            return Delivery(False, retryable=False, detail=f"authentication failed: {_smtp_reply(exc)}")
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            replies = "; ".join(f"{rcpt}: {code} {_decode(text)}" for rcpt, (code, text) in exc.recipients.items())
            return Delivery(False, retryable=all(400 <= c < 500 for c in codes), detail=replies)
        except smtplib.SMTPResponseException as exc:
            return Delivery(False, retryable=400 <= exc.smtp_code < 500, detail=_smtp_reply(exc))
        except smtplib.SMTPNotSupportedError as exc:
            return Delivery(False, retryable=False, detail=f"{channel.host}:{channel.port}: {exc}")
        except ssl.SSLCertVerificationError as exc:
            return Delivery(False, retryable=False, detail=f"{channel.host}:{channel.port}: {exc.verify_message}")
        except (smtplib.SMTPException, OSError) as exc:
            # Refused, reset, timed out, or the server hung up: worth another go.
            return Delivery(False, retryable=True, detail=f"{channel.host}:{channel.port}: {exc}")
        if refused:
            # Delivered to the others; sending again would repeat it to them, so it counts as sent.
            return Delivery(True, detail="refused: " + ", ".join(refused))
        return Delivery(True)


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text


def _smtp_reply(exc: smtplib.SMTPResponseException) -> str:
    return f"SMTP {exc.smtp_code} {_decode(exc.smtp_error)}"


# ---------------------------------------------------------------------------------------------------------------
# MQTT

MQTT5_UNSUPPORTED = 0x84  # CONNACK "Unsupported protocol version" (paho maps MQTT 3.1.1's code 1 to it too)
NO_MATCHING_SUBSCRIBERS = 0x10

# Reason codes (of a CONNACK, a PUBACK or a DISCONNECT) that say the broker understood and refuses for good: the
# same login or the same message would be refused again, until someone changes the broker's accounts or ACL.
# Any other code of 0x80 and up (unspecified error, server busy, quota exceeded, message rate too high, …) may
# pass: worth another try.
_REFUSED_FOR_GOOD = {
    0x81,  # Malformed packet
    0x82,  # Protocol error
    0x84,  # Unsupported protocol version
    0x85,  # Client identifier not valid
    0x86,  # Bad user name or password
    0x87,  # Not authorized
    0x8A,  # Banned
    0x8C,  # Bad authentication method
    0x90,  # Topic name invalid
    0x95,  # Packet too large
    0x99,  # Payload format invalid
    0x9A,  # Retain not supported
    0x9B,  # QoS not supported
}


def retry_may_help(reason: ReasonCode) -> bool:
    """Whether a broker's refusal (a reason code of 0x80 or more) might not be repeated on another attempt."""
    return reason.value not in _REFUSED_FOR_GOOD


def describe(reason: ReasonCode) -> str:
    """A reason code as its name and its number: `Not authorized (0x87)`."""
    return f"{reason} (0x{reason.value:02x})"


def publish_outcome(reason: ReasonCode, *, where: str, topic: str) -> Delivery:
    """The delivery that an MQTT 5 PUBACK's reason code stands for: below 0x80 the broker took the message."""
    if not reason.is_failure:
        return Delivery(True)
    detail = f"{where}: the broker refused the message to {topic}: {describe(reason)}"
    return Delivery(False, retryable=retry_may_help(reason), detail=detail)


class _Mqtt5UnsupportedError(Exception):
    """The broker answered the MQTT 5 CONNECT with "Unsupported protocol version"."""


class MqttNotifier:
    """Publishes `{"subject", "body", "sent_at"[, "to"]}` as JSON to a topic on facmon's broker, waits for the PUBACK.

    Speaks MQTT 5 whatever `mqtt.protocol` says (that one is ingest's), because only an MQTT 5 PUBACK carries
    the broker's verdict: Mosquitto acknowledges a publish its ACL denies, and under MQTT 3.1.1 the
    acknowledgement looks like any other. A reason code of 0x80 or more is a failed delivery. A broker that
    does not speak MQTT 5 gets MQTT 3.1.1 from then on, with a warning: its refusals cannot be seen.

    Connects for each message rather than holding a connection: notifications are rare, a connect costs a
    round trip on the local network, and a connection made for the message tells the truth about the broker
    now, where a held one may have died unnoticed since the last message.
    """

    def __init__(self, name: str, channel: MqttChannel, mqtt: MqttConfig, clock: Clock | None = None) -> None:
        self.name = name
        self.language: str = channel.language
        self._channel = channel
        self._mqtt = mqtt
        self._clock = clock or SystemClock()
        self._protocol = paho.MQTTv5
        if channel.qos == 0:
            log.warning(
                "notification channel %s publishes with qos 0: the broker acknowledges nothing, so a message it "
                "refuses or loses still counts as sent; use qos 1",
                name,
            )
        elif channel.qos == 2:
            # paho-mqtt passes on the reason code of the PUBCOMP, not that of the PUBREC, where a refusal is.
            log.warning(
                "notification channel %s publishes with qos 2: a message the broker refuses cannot be told from "
                "one it took, and still counts as sent; use qos 1",
                name,
            )

    @property
    def timeout(self) -> timedelta:
        return self._channel.timeout

    def send(self, notification: Notification) -> Delivery:
        return _redacted(self._send(notification), urls=[self._mqtt.url], secrets=[self._mqtt.password])

    def _send(self, notification: Notification) -> Delivery:
        channel = self._channel
        document = {
            "subject": notification.subject,
            "body": notification.body,
            "sent_at": self._clock.now().isoformat(),
        }
        if notification.to:
            document["to"] = notification.to
        if notification.key:
            # The same on every retry: a pager that got the message but whose acknowledgement was lost drops
            # the repeat.
            document["id"] = notification.key
        payload = json.dumps(document, ensure_ascii=False).encode()
        # `{to}` in the topic addresses one pager: facility/pagers/{to} → facility/pagers/zhang.wei
        topic = channel.topic_for(notification.to)
        if any(c in topic for c in "+#\0"):
            return Delivery(False, retryable=False, detail=f"{topic!r}: the address makes the topic a wildcard")
        try:
            return self._publish(topic, payload, self._protocol)
        except _Mqtt5UnsupportedError:
            # The sends of one channel come one after the other (the outbox's worker for it): no lock needed.
            self._protocol = paho.MQTTv311
            log.warning(
                "notification channel %s: the broker at %s does not speak MQTT 5; publishing with MQTT 3.1.1, "
                "under which a message the broker refuses (its ACL denies facmon's user the topic) cannot be told "
                "from one it took, and counts as sent",
                self.name,
                redact_url(self._mqtt.url),
            )
            return self._publish(topic, payload, self._protocol)

    def _publish(self, topic: str, payload: bytes, protocol: MQTTProtocolVersion) -> Delivery:
        channel, mqtt = self._channel, self._mqtt
        timeout = channel.timeout.total_seconds()
        client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{mqtt.client_id}-notify-{uuid.uuid4().hex[:8]}", protocol=protocol
        )
        client.connect_timeout = timeout
        if mqtt.username:
            client.username_pw_set(mqtt.username, mqtt.password.get_secret_value() if mqtt.password else None)
        if mqtt.tls:
            client.tls_set()
        connected, answered = threading.Event(), threading.Event()
        connack: list[ReasonCode] = []
        pubacks: dict[int, ReasonCode] = {}
        dropped: list[ReasonCode] = []

        def on_connect(_c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
            connack.append(reason)
            connected.set()

        def on_publish(_c: paho.Client, _u: object, mid: int, reason: ReasonCode, _p: object) -> None:
            pubacks[mid] = reason  # before `answered`: paho calls this before it counts the message published
            answered.set()

        def on_disconnect(_c: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
            dropped.append(reason)
            answered.set()

        client.on_connect = on_connect
        client.on_publish = on_publish
        client.on_disconnect = on_disconnect
        where = f"{mqtt.host}:{mqtt.port}"
        try:
            client.connect(mqtt.host, mqtt.port, keepalive=max(int(mqtt.keepalive.total_seconds()), 5))
        except (OSError, ValueError) as exc:
            return Delivery(False, retryable=True, detail=f"{where}: {exc}")
        client.loop_start()
        try:
            if not connected.wait(timeout):
                return Delivery(False, retryable=True, detail=f"{where}: no CONNACK within {timeout:g}s")
            reason = connack[0]
            if reason.is_failure:
                if reason.value == MQTT5_UNSUPPORTED and protocol == paho.MQTTv5:
                    raise _Mqtt5UnsupportedError
                return Delivery(False, retryable=retry_may_help(reason), detail=f"{where}: {describe(reason)}")
            info = client.publish(topic, payload, qos=channel.qos, retain=channel.retain)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                return Delivery(False, retryable=True, detail=f"{where}: {paho.error_string(info.rc)}")
            answered.wait(timeout)
            acknowledged = pubacks.get(info.mid)
            if acknowledged is None:
                if dropped:
                    # The broker hung up before it acknowledged: under MQTT 5, with its reason.
                    cause = dropped[0]
                    retryable = not cause.is_failure or retry_may_help(cause)
                    return Delivery(False, retryable=retryable, detail=f"{where}: disconnected: {describe(cause)}")
                return Delivery(False, retryable=True, detail=f"{where}: no acknowledgement within {timeout:g}s")
            if acknowledged.value == NO_MATCHING_SUBSCRIBERS:
                # The broker took it, so it counts as sent; but no device, online or with a session kept for it,
                # subscribes to the topic: someone should hear of a pager that is not there.
                log.warning(
                    "notification channel %s: no device subscribes to %s: the broker took the message, nobody got it",
                    self.name,
                    topic,
                )
            return publish_outcome(acknowledged, where=where, topic=topic)
        finally:
            client.disconnect()
            client.loop_stop()


def build_notifiers(config: NotificationsConfig, mqtt: MqttConfig | None = None) -> list[Notifier]:
    """One notifier per configured channel; `mqtt` is the service's broker, which MQTT channels publish to."""
    notifiers: list[Notifier] = []
    for name, channel in config.channels.items():
        if isinstance(channel, ConsoleChannel):
            notifiers.append(ConsoleNotifier(name, channel.language))
        else:
            notifiers.append(build_channel(name, channel, mqtt or MqttConfig()))
    return notifiers
