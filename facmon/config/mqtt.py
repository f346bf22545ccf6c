"""The `mqtt` section: the broker facmon subscribes to, its session and its credentials."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, SecretStr, field_validator

from facmon.config.types import SECTION, Duration, Identifier


class _Model(BaseModel):
    model_config = SECTION


class MqttConfig(_Model):
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: str = "facility"
    client_id: str = "facmon"
    keepalive: Duration = timedelta(seconds=30)
    # Both keep facmon's session and the messages queued for it while facmon is away: 3.1.1 until the broker's
    # own limit (mosquitto: persistent_client_expiration), 5 for `session_expiry`. 3.1.1 is the default because
    # paho decodes MQTT 5 properties on every message: it drains a backlog about a fifth faster.
    protocol: Annotated[Literal["3.1.1", "5"], BeforeValidator(str)] = "3.1.1"
    session_expiry: Duration = timedelta(days=7)
    # Shared subscription ($share/GROUP/…): ingest processes with the same group split the telemetry.
    shared_group: Identifier | None = None
    # The broker gives each topic of the group to one member, always (EMQX's `hash_topic` strategy), not round
    # robin: only then may rules run on a shared subscription.
    shared_by_topic: bool = False

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"{value!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"{value!r}: no host")
        parts.port  # noqa: B018 - raises ValueError on a bad port
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "+#") or value.startswith("/") or value.endswith("/"):
            raise ValueError(f"{value!r}: a topic prefix has no wildcards and no leading or trailing '/'")
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)
