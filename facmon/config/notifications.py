"""The `notifications` section: the channels (console, webhook, e-mail, MQTT) and their delivery."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from facmon.config.durations import parse_duration
from facmon.config.types import SECTION, Duration, Identifier, as_list, clock_time


class _Model(BaseModel):
    model_config = SECTION


def _channel_timeout_bounds(value: timedelta) -> timedelta:
    if not timedelta(milliseconds=100) <= value <= timedelta(minutes=5):
        raise ValueError("between 100ms and 5m")
    return value


# How long a notification channel may take to deliver one message.
ChannelTimeout = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_channel_timeout_bounds)]


Language = Literal["en", "zh"]


# Deliberately loose: the mail server is the judge of an address; this catches a name or a typo in the wrong field.
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")


def _check_address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not an e-mail address such as duty@example.com")
    return value


Address = Annotated[str, AfterValidator(_check_address)]


class ConsoleChannel(_Model):
    type: Literal["console"]
    language: Language = "en"


WebhookFormat = Literal["generic", "wecom", "dingtalk", "feishu", "slack", "teams"]


# Formats whose platform defines its own signature over the secret; for the others the URL is the secret.
SIGNED_FORMATS = ("generic", "dingtalk", "feishu")


class WebhookChannel(_Model):
    type: Literal["webhook"]
    url: str
    format: WebhookFormat = "generic"
    secret: SecretStr | None = None
    timeout: ChannelTimeout = timedelta(seconds=10)
    language: Language = "en"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r}: write http://host/path or https://host/path")
        parts.port  # noqa: B018 - raises ValueError on a bad port
        return value

    @field_validator("secret")
    @classmethod
    def _secret_has_a_use(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        fmt = info.data.get("format", "generic")
        if value is not None and fmt not in SIGNED_FORMATS:
            raise ValueError(f"a {fmt} webhook has no signing secret: its URL is the secret")
        return value


class EmailChannel(_Model):
    type: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    # `ssl` is TLS from the first byte (port 465); `starttls` upgrades a plain connection (port 587). With `ssl`
    # the connection is already encrypted and `starttls` is not used.
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: Address
    to: Annotated[list[Address], BeforeValidator(as_list)]
    timeout: ChannelTimeout = timedelta(seconds=30)
    language: Language = "en"

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not value or any(c in value for c in "/: "):
            raise ValueError(f"{value!r}: a host name or address, without scheme or port")
        return value

    @field_validator("to")
    @classmethod
    def _someone(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one address to send to")
        return value

    @field_validator("password")
    @classmethod
    def _password_needs_user(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not info.data.get("username"):
            raise ValueError("a password needs a username")
        return value


# What an MQTT channel's `{to}` becomes for a message to everyone rather than to one person.
BROADCAST_TO = "all"


def check_topic_level(value: str) -> str:
    if not value or any(c in value for c in "/+#") or not value.isprintable() or value != value.strip():
        raise ValueError(f"{value!r} is not one level of a topic (no '/', '+', '#', control characters or spaces)")
    return value


# One level of a topic: what `{to}` is replaced by.
TopicLevel = Annotated[str, AfterValidator(check_topic_level)]


class MqttReceiver(_Model):
    """A device that reads an MQTT channel (a pager, a siren): its own broker account, which may read only the
    channel's topics for its `to` addresses (the channel's one topic when it has no `{to}`)."""

    id: Identifier
    name: str | None = None
    password: SecretStr | None = None
    to: Annotated[list[TopicLevel], BeforeValidator(as_list)] = []


class MqttChannel(_Model):
    """Publishes to a topic on facmon's own broker (the `mqtt` section): for sirens, beacons and pagers."""

    type: Literal["mqtt"]
    topic: str
    qos: Literal[0, 1, 2] = 1
    retain: bool = False
    timeout: ChannelTimeout = timedelta(seconds=10)
    language: Language = "en"
    receivers: list[MqttReceiver] = []

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, value: str) -> str:
        if not value or any(c in value for c in "+#\0"):
            raise ValueError(f"{value!r}: a topic to publish to has no wildcards")
        # A control character would also end the line of the broker's ACL that grants the topic.
        if not value.isprintable() or value != value.strip():
            raise ValueError(f"{value!r}: a topic has no control characters and no spaces around it")
        others = sorted(set(re.findall(r"\{[^{}]*\}", value)) - {"{to}"})
        if others:
            raise ValueError(f"{value!r}: {{to}} is the only placeholder of a topic, not {', '.join(others)}")
        return value

    @property
    def addressed(self) -> bool:
        """Whether the topic has `{to}`: one topic per person paged."""
        return "{to}" in self.topic

    def topic_for(self, to: str | None) -> str:
        """The topic of a message to one address (`{to}` replaced), or to everyone when `to` is None or empty."""
        return self.topic.replace("{to}", to or BROADCAST_TO)


Channel = Annotated[ConsoleChannel | WebhookChannel | EmailChannel | MqttChannel, Field(discriminator="type")]


CHANNEL_TYPES = ("console", "webhook", "email", "mqtt")


class DeliveryConfig(_Model):
    """How the outbox retries a notification a channel did not take: base * 2^(attempt - 1), capped."""

    max_attempts: int = Field(8, ge=1, le=100)
    base_delay: Duration = timedelta(seconds=10)
    max_delay: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _delays(self) -> DeliveryConfig:
        if self.base_delay < timedelta(seconds=1):
            raise ValueError("base_delay must be at least 1s")
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must not be below base_delay")
        return self


class NotificationsConfig(_Model):
    channels: dict[str, Channel] = {}
    delivery: DeliveryConfig = DeliveryConfig()
    # Local time of the daily summary to every channel (yesterday's alarms, open work orders, breaches, dead
    # notifications); null for none.
    daily_summary: Annotated[time | None, BeforeValidator(clock_time)] = time(8, 0)
