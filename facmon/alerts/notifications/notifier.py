"""Notifiers: the channels that carry messages to people. Each says whether a failure is worth retrying."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, TextIO

from facmon.alerts.notifications.redaction import redact


@dataclass(frozen=True, slots=True)
class Notification:
    """A message ready for a channel: already rendered in the channel's language."""

    subject: str
    body: str
    # Stable across retries of the same message, so a receiver can drop a repeat (webhooks: Idempotency-Key).
    key: str | None = None
    # For a page to one person: their address on this channel (an e-mail address, a mobile number to @-mention,
    # a pager id for the MQTT topic's {to}); None for a message to the channel's usual audience.
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    retryable: bool = False
    detail: str = ""


class Notifier(Protocol):
    name: str
    language: str

    @property
    def timeout(self) -> timedelta:
        """The channel's configured timeout: the outbox holds each attempt's claim for longer than this."""

    def send(self, notification: Notification) -> Delivery:
        """Deliver, or say why not and whether trying again could help.

        The detail of a failure is shown to viewers and logged: it must not carry the channel's secrets
        (see `facmon.alerts.notifications.redaction`).
        """


class ConsoleNotifier:
    """Writes to a stream (standard output by default): for demos, and for logs collected from stdout."""

    # A write to a stream does not wait on anyone worth a timeout; the outbox's margin covers a slow pipe.
    timeout = timedelta(0)

    def __init__(self, name: str, language: str = "en", stream: TextIO | None = None) -> None:
        self.name = name
        self.language = language
        self._stream = stream

    def send(self, notification: Notification) -> Delivery:
        stream = self._stream or sys.stdout
        try:
            to = f" → {notification.to}" if notification.to else ""
            stream.write(f"[{self.name}{to}] {notification.subject}\n    {notification.body}\n")
            stream.flush()
        except (OSError, ValueError) as exc:
            return Delivery(False, retryable=False, detail=redact(str(exc)))
        return Delivery(True)
