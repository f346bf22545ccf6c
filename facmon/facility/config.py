"""The facility config: one YAML file, validated into frozen pydantic models.

Unknown keys are errors. Every scalar may be overridden from the environment as `FACMON_<KEY>__<SUBKEY>…`.
Relative paths are relative to the config file's folder. `load_config` reports every problem at once, each
with its file, key path and line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from facmon.facility.config_types import (
    SECTION,
    Duration,
    Identifier,
    PriorityKeys,
    TimeZoneName,
    as_list,
    clock_time,
)
from facmon.facility.durations import parse_duration
from facmon.facility.errors import ConfigError, ConfigProblem
from facmon.facility.maintenance_config import MaintenanceConfig, check_maintenance
from facmon.facility.model import Category, Device, DeviceType, Priority, Severity
from facmon.facility.oncall_config import OncallConfig, check_oncall
from facmon.facility.rule_config import RuleConfig, check_rule


def _channel_timeout_bounds(value: timedelta) -> timedelta:
    if not timedelta(milliseconds=100) <= value <= timedelta(minutes=5):
        raise ValueError("between 100ms and 5m")
    return value


# How long a notification channel may take to deliver one message.
ChannelTimeout = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_channel_timeout_bounds)]

ENV_PREFIX = "FACMON_"


_as_list = as_list


class _Model(BaseModel):
    model_config = SECTION


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir", "."))


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    return value if value.is_absolute() else (_base_dir(info) / value).resolve()


# A path in the config: relative ones are relative to the config file's folder.
ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]


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


class TelemetryStorageConfig(_Model):
    backend: Literal["sqlite", "influxdb"] = "sqlite"
    # sqlite
    path: ConfigPath = Field(Path("data/telemetry.db"), validate_default=True)
    # How long readings are kept in the embedded store; InfluxDB keeps them as its bucket or policy says.
    retention: Duration = timedelta(days=400)
    # influxdb
    url: str | None = None
    dialect: Literal["v2", "v1"] = "v2"
    org: str | None = None
    bucket: str | None = None
    token: SecretStr | None = None
    database: str | None = None
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout: Duration = timedelta(seconds=10)

    @field_validator("retention")
    @classmethod
    def _retention_bounds(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1):
            raise ValueError("at least 1d")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r}: write http://host:8086 or https://host:8086")
        parts.port  # noqa: B018 - raises ValueError on a bad port
        return value.rstrip("/")

    @model_validator(mode="after")
    def _influx_settings(self) -> TelemetryStorageConfig:
        if self.backend != "influxdb":
            return self
        missing = ["url"] if self.url is None else []
        if self.dialect == "v2":
            missing += [name for name in ("org", "bucket", "token") if getattr(self, name) is None]
        elif self.database is None:
            missing.append("database")
        if missing:
            raise ValueError(f"the influxdb {self.dialect} backend needs {', '.join(missing)}")
        return self


class SpoolConfig(_Model):
    """Store-and-forward: where accepted readings wait while the telemetry store is down or slow."""

    path: ConfigPath = Field(Path("data/spool.db"), validate_default=True)
    max_readings: int = Field(5_000_000, ge=1000)


class StorageConfig(_Model):
    telemetry: TelemetryStorageConfig = TelemetryStorageConfig()
    spool: SpoolConfig = SpoolConfig()
    state_url: str = Field("sqlite:///data/state.db", validate_default=True)

    @field_validator("state_url")
    @classmethod
    def _check_state_url(cls, value: str, info: ValidationInfo) -> str:
        scheme = value.split(":", 1)[0]
        if scheme == "sqlite":
            prefix = "sqlite:///"
            if not value.startswith(prefix):
                raise ValueError(f"{value!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db")
            path = value[len(prefix) :]
            if path in ("", ":memory:") or path.startswith("/"):
                return value
            return prefix + str((_base_dir(info) / path).resolve())
        if scheme.split("+")[0] in ("postgresql", "postgres"):
            return value
        raise ValueError(f"{value!r}: the state store is sqlite:///… or postgresql://…")

    @model_validator(mode="before")
    @classmethod
    def _telemetry_always_validated(cls, data: Any) -> Any:
        # Its default path is relative to the config's folder: validate the section even when absent.
        if isinstance(data, dict):
            data = {"telemetry": {}, "spool": {}, **data}
        return data


class ApiConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Where people reach facmon, e.g. https://facmon.example.com: the links in pages point there.
    public_url: str | None = None
    # How long a sign-in lasts: a shift, by default.
    session_ttl: Duration = timedelta(hours=12)
    # Failed sign-ins in a row from one address that lock a user out from there, and for how long; ten times as
    # many from all addresses together lock the user out everywhere.
    max_failed_logins: int = Field(5, ge=1, le=100)
    lockout: Duration = timedelta(minutes=15)
    # Sign-ins one client address may try per minute, in bursts of as many: each costs a password hash.
    sign_ins_per_minute: int = Field(10, ge=1, le=10_000)
    # The largest request body taken, in bytes: refused before it is read.
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024 * 1024 * 1024)

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL such as https://facmon.example.com")
        return value.rstrip("/")


# The most of a reject's payload ever kept; facmon.ingest.decode cuts there before anything else.
MAX_REJECT_PAYLOAD_BYTES = 64 * 1024
_BYTE_SIZE: TypeAdapter[ByteSize] = TypeAdapter(ByteSize)


def _byte_size(value: object) -> ByteSize:
    if isinstance(value, bool):
        raise ValueError("expected a size such as 4096, 4KiB or 100MB")
    try:
        return _BYTE_SIZE.validate_python(value)
    except ValidationError:
        raise ValueError(f"{value!r} is not a size such as 4096, 4KiB or 100MB") from None


# A number of bytes, or with a unit: 4KiB, 100MB (10^6), 1GiB (2^30).
Size = Annotated[ByteSize, BeforeValidator(_byte_size)]


class RejectsConfig(_Model):
    """How much of what ingest refuses is kept: bad input is stored with its reason, within these bounds, and
    what is not stored is counted. A faulty gateway must not fill the disk the alarms depend on."""

    # Rejects stored per minute from each source (a gateway, or a topic's site and device), and how many more
    # a source may send at once after a quiet time.
    rate: float = Field(60.0, gt=0, le=1_000_000)
    burst: int = Field(300, ge=1, le=1_000_000)
    # Sources tracked one by one; beyond them, the least recently seen ones share one allowance.
    max_sources: int = Field(1000, ge=10, le=100_000)
    # Of each reject, this much of the payload is stored (in UTF-8 bytes).
    max_payload_bytes: Size = ByteSize(4096)
    # Of all rejects together; the oldest are deleted beyond it.
    max_total_bytes: Size = ByteSize(100_000_000)
    retention: Duration = timedelta(days=30)

    @field_validator("max_payload_bytes")
    @classmethod
    def _payload_bounds(cls, value: ByteSize) -> ByteSize:
        if not 256 <= value <= MAX_REJECT_PAYLOAD_BYTES:
            raise ValueError(f"between 256 and {MAX_REJECT_PAYLOAD_BYTES} (64KiB), got {int(value)}")
        return value

    @field_validator("max_total_bytes")
    @classmethod
    def _total_bounds(cls, value: ByteSize) -> ByteSize:
        # Room for 16 rejects of the largest payload at least; a tebibyte is a typo, not a plan.
        if not 1024**2 <= value <= 1024**4:
            raise ValueError(f"between 1MiB and 1TiB, got {int(value)}")
        return value

    @field_validator("retention")
    @classmethod
    def _retention_bounds(cls, value: timedelta) -> timedelta:
        if value < timedelta(hours=1):
            raise ValueError("at least 1h")
        return value


class IngestConfig(_Model):
    max_payload_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)
    max_future_skew: Duration = timedelta(minutes=5)
    stale_after: Duration = timedelta(minutes=5)
    offline_after: Duration = timedelta(minutes=30)
    batch_size: int = Field(1000, ge=1, le=100_000)
    rejects: RejectsConfig = RejectsConfig()


class AlarmsConfig(_Model):
    # ISA-18.2: shelving is for a known nuisance, for a bounded time; the alarm comes back by itself after.
    max_shelve: Duration = timedelta(hours=8)
    tick: Duration = timedelta(seconds=1)

    @field_validator("max_shelve")
    @classmethod
    def _shelf_bounds(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=7):
            raise ValueError("between 1m and 7d")
        return value

    @field_validator("tick")
    @classmethod
    def _tick_bounds(cls, value: timedelta) -> timedelta:
        # Below 50 ms the ticker would take a core; above a minute, delays and silence would be judged late.
        if not timedelta(milliseconds=50) <= value <= timedelta(minutes=1):
            raise ValueError("between 50ms and 1m")
        return value


class DeviceConfig(_Model):
    id: Identifier
    type: DeviceType
    name: str
    location: str | None = None
    model: str | None = None
    installed: date | None = None
    nominal: dict[str, float] = {}
    labels: dict[str, str] = {}


class BuildingConfig(_Model):
    id: Identifier
    name: str | None = None
    devices: list[DeviceConfig] = []


class GatewayConfig(_Model):
    """A gateway's broker account: it may publish under its own site's topics and read nothing."""

    id: Identifier
    name: str | None = None
    password: SecretStr | None = None
    # Which of its site's devices it serves, by type; a site's gateway without types serves the rest.
    device_types: Annotated[list[DeviceType], BeforeValidator(_as_list)] = []


class SiteConfig(_Model):
    id: Identifier
    name: str | None = None
    gateways: list[GatewayConfig] = []
    buildings: list[BuildingConfig] = []

    def types_served_by(self, gateway: GatewayConfig) -> list[DeviceType]:
        """The device types whose telemetry a gateway of this site may publish, in `DeviceType` order.

        Its own `device_types`; without them, the types of the site's devices that no other gateway names, so
        that a gateway without types cannot speak for the devices its neighbours serve.
        """
        if gateway.device_types:
            wanted = set(gateway.device_types)
        else:
            named = {t for other in self.gateways for t in other.device_types}
            wanted = {d.type for b in self.buildings for d in b.devices} - named
        return [t for t in DeviceType if t in wanted]


class AutoOpen(_Model):
    """Alarms of these severities (and device types, when given) open a work order of this priority."""

    severities: Annotated[list[Severity], BeforeValidator(_as_list), Field(min_length=1)]
    device_types: Annotated[list[DeviceType], BeforeValidator(_as_list)] = []
    priority: Priority
    team: str | None = None


DEFAULT_RESPONSE_TARGETS = {
    # Fire alarm or burst pipe: someone on site within 5 minutes; elevator entrapment: within 30 minutes.
    Priority.P1: timedelta(minutes=5),
    Priority.P2: timedelta(minutes=30),
    Priority.P3: timedelta(hours=4),
    Priority.P4: timedelta(hours=24),
}

DEFAULT_RESOLVE_TARGETS = {
    Priority.P1: timedelta(hours=4),
    Priority.P2: timedelta(hours=24),
    Priority.P3: timedelta(hours=72),
    Priority.P4: timedelta(hours=168),
}


@dataclass(frozen=True, slots=True)
class SlaTargets:
    """How long a work order may take, from its opening: to be acknowledged, to be answered (someone on site,
    or taking it up), to be resolved. None: no target."""

    acknowledge: timedelta | None
    respond: timedelta | None
    resolve: timedelta | None


class SlaOverride(_Model):
    """Targets for one category (and priority, or all of them) instead of the priority's defaults."""

    category: Category
    priority: Priority | None = None
    acknowledge: Duration | None = None
    respond: Duration | None = None
    resolve: Duration | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class WorkOrdersConfig(_Model):
    auto_open: list[AutoOpen] = []
    response_targets: Annotated[dict[Priority, Duration], PriorityKeys] = DEFAULT_RESPONSE_TARGETS
    # From opening to resolution, per priority; a work order still unresolved after it has breached its SLA.
    resolve_targets: Annotated[dict[Priority, Duration], PriorityKeys] = DEFAULT_RESOLVE_TARGETS
    # From opening to an acknowledgement of its page (or someone taking it up), per priority; none by default.
    acknowledge_targets: Annotated[dict[Priority, Duration], PriorityKeys] = {}
    # Targets by category (and priority) where they differ from the priority's: entries later in the list win.
    sla: list[SlaOverride] = []
    # An alarm raised again by the same rule on the same device within this time of a work order that is
    # not yet resolved joins that work order instead of opening another; 0s opens one per alarm.
    attach_within: Duration = timedelta(hours=1)

    def targets(self, category: Category, priority: Priority) -> SlaTargets:
        """The SLA of a work order of this category and priority."""
        acknowledge = self.acknowledge_targets.get(priority)
        respond = self.response_targets.get(priority)
        resolve = self.resolve_targets.get(priority)
        for override in self.sla:
            if override.category == category and override.priority in (None, priority):
                acknowledge = override.acknowledge if override.acknowledge is not None else acknowledge
                respond = override.respond if override.respond is not None else respond
                resolve = override.resolve if override.resolve is not None else resolve
        return SlaTargets(acknowledge, respond, resolve)

    @field_validator("response_targets", "resolve_targets")
    @classmethod
    def _fill_defaults(cls, value: dict[Priority, timedelta], info: ValidationInfo) -> dict[Priority, timedelta]:
        defaults = DEFAULT_RESPONSE_TARGETS if info.field_name == "response_targets" else DEFAULT_RESOLVE_TARGETS
        return {**defaults, **value}


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
    to: Annotated[list[Address], BeforeValidator(_as_list)]
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


def _check_topic_level(value: str) -> str:
    if not value or any(c in value for c in "/+#") or not value.isprintable() or value != value.strip():
        raise ValueError(f"{value!r} is not one level of a topic (no '/', '+', '#', control characters or spaces)")
    return value


# One level of a topic: what `{to}` is replaced by.
TopicLevel = Annotated[str, AfterValidator(_check_topic_level)]


class MqttReceiver(_Model):
    """A device that reads an MQTT channel (a pager, a siren): its own broker account, which may read only the
    channel's topics for its `to` addresses (the channel's one topic when it has no `{to}`)."""

    id: Identifier
    name: str | None = None
    password: SecretStr | None = None
    to: Annotated[list[TopicLevel], BeforeValidator(_as_list)] = []


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


class FacilityConfig(_Model):
    timezone: TimeZoneName = "UTC"
    mqtt: MqttConfig = MqttConfig()
    storage: StorageConfig = StorageConfig()
    api: ApiConfig = ApiConfig()
    ingest: IngestConfig = IngestConfig()
    sites: list[SiteConfig] = Field(min_length=1)
    rules: list[RuleConfig] = []
    alarms: AlarmsConfig = AlarmsConfig()
    work_orders: WorkOrdersConfig = WorkOrdersConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    oncall: OncallConfig = OncallConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()

    @model_validator(mode="before")
    @classmethod
    def _storage_always_validated(cls, data: Any) -> Any:
        # The storage section's defaults hold relative paths: validate it even when absent so they get resolved.
        if isinstance(data, dict) and "storage" not in data:
            data = {**data, "storage": {}}
        return data

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# ---------------------------------------------------------------------------------------------------------------
# Loading


Path_ = tuple[str | int, ...]


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> FacilityConfig:
    """Read, override from the environment, and validate a config file; raise ConfigError with every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([ConfigProblem(source, "", f"cannot read the config: {reason}")]) from None
    return parse_config(text, source=source, base_dir=path.resolve().parent, env=os.environ if env is None else env)


def parse_config(
    text: str, *, source: str = "<config>", base_dir: Path = Path(), env: Mapping[str, str] | None = None
) -> FacilityConfig:
    """Validate config text; `base_dir` anchors relative paths."""
    data, lines, problems = _parse_yaml(text, source)
    if problems:
        raise ConfigError(problems)
    included = _include_rules(data, lines, source, base_dir, problems)
    if problems:
        raise ConfigError(problems)
    env_sources = _apply_env(data, env or {}, problems)
    if problems:
        raise ConfigError(problems)

    def locate(loc: Path_) -> tuple[str, int | None]:
        # A problem at, above or below a key that a variable set is that variable's.
        for set_path, variable in env_sources.items():
            n = min(len(loc), len(set_path))
            if loc[:n] == set_path[:n]:
                return f"environment {variable}", None
        where, where_lines = source, lines
        if len(loc) >= 2 and loc[0] == "rules" and loc[1] in included:
            where, where_lines, index = included[loc[1]]
            loc = (index, *loc[2:])
        for i in range(len(loc), -1, -1):
            if loc[:i] in where_lines:
                return where, where_lines[loc[:i]]
        return where, None

    try:
        config = FacilityConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = _key_path(err)
            where, line = locate(loc)
            problems.append(ConfigProblem(where, _dotted(loc), _describe(err), line))
        raise ConfigError(_sorted(problems)) from None

    for loc, message in check_references(config):
        where, line = locate(loc)
        problems.append(ConfigProblem(where, _dotted(loc), message, line))
    if problems:
        raise ConfigError(_sorted(problems))
    return config


def check_references(config: FacilityConfig) -> list[tuple[Path_, str]]:
    """Checks across sections that single models cannot make: unique ids, rule fields that exist, …"""
    found: list[tuple[Path_, str]] = []
    seen_sites: set[str] = set()
    seen_devices: dict[str, Path_] = {}
    devices: list[Device] = []
    # Gateway ids are broker user names: unique across sites and apart from facmon's own account.
    seen_gateways: dict[str, str] = {config.mqtt.username: "facmon's own MQTT user"} if config.mqtt.username else {}
    for s, site in enumerate(config.sites):
        if site.id in seen_sites:
            found.append((("sites", s, "id"), f"site id {site.id!r} is used twice"))
        seen_sites.add(site.id)
        for g, gateway in enumerate(site.gateways):
            if gateway.id in seen_gateways:
                found.append(
                    (
                        ("sites", s, "gateways", g, "id"),
                        f"gateway id {gateway.id!r} is already {seen_gateways[gateway.id]}",
                    )
                )
            else:
                seen_gateways[gateway.id] = f"used at sites.{s}.gateways.{g}"
        seen_buildings: set[str] = set()
        for b, building in enumerate(site.buildings):
            if building.id in seen_buildings:
                found.append((("sites", s, "buildings", b, "id"), f"building id {building.id!r} is used twice"))
            seen_buildings.add(building.id)
            for d, device in enumerate(building.devices):
                here: Path_ = ("sites", s, "buildings", b, "devices", d, "id")
                if device.id in seen_devices:
                    first = _dotted(seen_devices[device.id])
                    found.append((here, f"device id {device.id!r} is already used at {first}"))
                else:
                    seen_devices[device.id] = here
                devices.append(_as_device(device, site.id, building.id))

    rule_ids = {rule.id for rule in config.rules}
    seen_rules: set[str] = set()
    for r, rule in enumerate(config.rules):
        if rule.id in seen_rules:
            found.append((("rules", r, "id"), f"rule id {rule.id!r} is used twice"))
        seen_rules.add(rule.id)
        for i, device_id in enumerate(rule.select.ids):
            if device_id not in seen_devices:
                found.append((("rules", r, "select", "ids", i), f"no device has the id {device_id!r}"))
        selected = [d for d in devices if rule.select.matches(d)]
        if not selected:
            found.append((("rules", r, "select"), "selects no device"))
            continue
        found += check_rule(rule, ("rules", r), selected, rule_ids)
    found += check_oncall(config.oncall, set(config.notifications.channels))
    found += _check_mqtt_addresses(config, seen_gateways)
    found += check_maintenance(config.maintenance, devices)
    return found


def _check_mqtt_addresses(config: FacilityConfig, accounts: dict[str, str]) -> list[tuple[Path_, str]]:
    """MQTT channels' receivers and the addresses put into their topics: each address is one topic level, each
    receiver a broker account of its own, reading addresses that someone is paged at."""
    found: list[tuple[Path_, str]] = []
    for name, channel in config.notifications.channels.items():
        if not isinstance(channel, MqttChannel):
            continue
        here: Path_ = ("notifications", "channels", name)
        addresses = {BROADCAST_TO}
        for p, person in enumerate(config.oncall.people):
            address = person.contacts.get(name)
            if not address or not channel.addressed:
                continue
            where: Path_ = ("oncall", "people", p, "contacts", name)
            try:
                _check_topic_level(address)
            except ValueError:
                found.append(
                    (
                        where,
                        f"{address!r} takes the place of {{to}} in {channel.topic}: one topic level, "
                        "without '/', '+', '#', control characters or spaces",
                    )
                )
                continue
            if address == BROADCAST_TO:
                found.append((where, f"{address!r} is the address of messages to everyone on {name}"))
            addresses.add(address)
        for r, receiver in enumerate(channel.receivers):
            at: Path_ = (*here, "receivers", r)
            if receiver.id in accounts:
                found.append(((*at, "id"), f"receiver id {receiver.id!r} is already {accounts[receiver.id]}"))
            else:
                accounts[receiver.id] = f"used at {_dotted(at)}"
            if not channel.addressed:
                if receiver.to:
                    found.append(((*at, "to"), f"the topic {channel.topic} has no {{to}}: the receiver reads it all"))
                continue
            if not receiver.to:
                found.append(
                    (at, f"name in `to` whose messages it reads on {channel.topic} ({BROADCAST_TO!r}: to everyone)")
                )
            for t, address in enumerate(receiver.to):
                if address not in addresses:
                    found.append(
                        ((*at, "to", t), f"nobody in oncall.people has the address {address!r} on channel {name}")
                    )
    return found


# Values that docs, examples and habit put where a secret goes: a config carrying one is not ready for a site.
_PLACEHOLDERS = re.compile(
    r"^(change[-_ ]?me.*|changeit|secret|password|passw0rd|example|placeholder|todo|tbd|xxx+|default|admin|test|"
    r"123456.*|your[-_ ].*|<.*>|\$\{.*\}|\.\.\.)$",
    re.IGNORECASE,
)


def placeholder_secrets(config: FacilityConfig) -> list[str]:
    """The secrets in a config that are placeholders ("change-me", "secret", …), by key path.

    `facmon serve` refuses to start with any; `facmon demo` runs with them, as demos do.
    """
    found: list[tuple[str, SecretStr | None]] = [
        ("mqtt.password", config.mqtt.password),
        ("storage.telemetry.token", config.storage.telemetry.token),
        ("storage.telemetry.password", config.storage.telemetry.password),
        ("oncall.link_secret", config.oncall.link_secret),
    ]
    for s, site in enumerate(config.sites):
        found += [(f"sites.{s}.gateways.{g}.password", gw.password) for g, gw in enumerate(site.gateways)]
    for name, channel in config.notifications.channels.items():
        if isinstance(channel, WebhookChannel):
            found.append((f"notifications.channels.{name}.secret", channel.secret))
        elif isinstance(channel, EmailChannel):
            found.append((f"notifications.channels.{name}.password", channel.password))
        elif isinstance(channel, MqttChannel):
            found += [
                (f"notifications.channels.{name}.receivers.{r}.password", receiver.password)
                for r, receiver in enumerate(channel.receivers)
            ]
    return [path for path, secret in found if secret is not None and _PLACEHOLDERS.match(secret.get_secret_value())]


def _as_device(device: DeviceConfig, site: str, building: str) -> Device:
    return Device(
        device.id, device.type, site, building, device.name, nominal=dict(device.nominal), labels=dict(device.labels)
    )


def _parse_yaml(text: str, source: str) -> tuple[dict[str, Any], dict[Path_, int], list[ConfigProblem]]:
    data, lines, problems = _parse_document(text, source)
    if problems:
        return {}, {}, problems
    if not isinstance(data, dict):
        return {}, {}, [ConfigProblem(source, "", "the config must be a mapping of sections (timezone, mqtt, …)")]
    return data, lines, problems


def _parse_document(text: str, source: str) -> tuple[Any, dict[Path_, int], list[ConfigProblem]]:
    """YAML data with the line of every key path, and problems (bad YAML, keys given twice)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        return None, {}, [ConfigProblem(source, "", f"not valid YAML: {problem}", line)]
    lines: dict[Path_, int] = {}
    problems: list[ConfigProblem] = []
    if node is not None:
        _index_lines(node, (), lines, problems, source)
    return data, lines, problems


def _include_rules(
    data: dict[str, Any], lines: dict[Path_, int], source: str, base_dir: Path, problems: list[ConfigProblem]
) -> dict[int, tuple[str, dict[Path_, int], int]]:
    """Replace each `- include: PATTERN` among the rules by the rules of the files it names.

    Returns, for every rule that came from an included file, that file, its line index and the rule's position
    in it, so problems point into the right file. `lines` is re-keyed for the rules that moved.
    """
    rules = data.get("rules")
    if not isinstance(rules, list):
        return {}
    merged: list[Any] = []
    included: dict[int, tuple[str, dict[Path_, int], int]] = {}
    moved: dict[Path_, int] = {}
    for i, item in enumerate(rules):
        if not (isinstance(item, dict) and set(item) == {"include"}):
            for loc, line in lines.items():
                if loc[:2] == ("rules", i):
                    moved[("rules", len(merged), *loc[2:])] = line
            merged.append(item)
            continue
        here = lines.get(("rules", i, "include"))
        pattern = item["include"]
        if not isinstance(pattern, str) or not pattern:
            problems.append(ConfigProblem(source, f"rules.{i}.include", "expected a file name or pattern", here))
            continue
        paths = sorted(base_dir.glob(pattern)) if not Path(pattern).is_absolute() else [Path(pattern)]
        paths = [p for p in paths if p.is_file()]
        if not paths:
            problems.append(ConfigProblem(source, f"rules.{i}.include", f"no file matches {pattern!r}", here))
            continue
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(ConfigProblem(str(path), "", f"cannot read the rules: {exc}"))
                continue
            content, file_lines, file_problems = _parse_document(text, str(path))
            problems.extend(file_problems)
            if file_problems:
                continue
            if not isinstance(content, list):
                problems.append(ConfigProblem(str(path), "", "a rules file is a list of rules", 1))
                continue
            for j, rule in enumerate(content):
                if isinstance(rule, dict) and "include" in rule:
                    problems.append(ConfigProblem(str(path), str(j), "includes do not nest", file_lines.get((j,))))
                    continue
                included[len(merged)] = (str(path), file_lines, j)
                merged.append(rule)
    data["rules"] = merged
    for loc in [loc for loc in lines if loc[:1] == ("rules",) and len(loc) > 1]:
        del lines[loc]
    lines.update(moved)
    return included


def _index_lines(
    node: yaml.Node, loc: Path_, lines: dict[Path_, int], problems: list[ConfigProblem], source: str
) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(
                    ConfigProblem(source, _dotted((*loc, key)), "key given twice", key_node.start_mark.line + 1)
                )
            seen.add(key)
            child = (*loc, key)
            _index_lines(value_node, child, lines, problems, source)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*loc, i), lines, problems, source)


def _apply_env(data: dict[str, Any], env: Mapping[str, str], problems: list[ConfigProblem]) -> dict[Path_, str]:
    """Set FACMON_A__B__C=value as data[a][b][c]; return which paths came from which variable."""
    sources: dict[Path_, str] = {}
    top_level = set(FacilityConfig.model_fields)
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        if parts[0].lower() not in top_level:
            if len(parts) > 1:  # FACMON_SOMETHING_ELSE without "__" is not ours to judge
                problems.append(ConfigProblem(f"environment {name}", "", f"unknown config section {parts[0]!r}"))
            continue
        try:
            sources[_set_path(data, parts, env[name])] = name
        except LookupError as exc:
            problems.append(ConfigProblem(f"environment {name}", "", str(exc.args[0])))
    return sources


def _set_path(data: dict[str, Any], parts: list[str], value: str) -> Path_:
    """Walk `parts` from `data` and set `value` there; list entries by index, keys matched ignoring case."""
    target: Any = data
    path: list[str | int] = []
    for i, part in enumerate(parts):
        key: str | int
        if isinstance(target, list):
            if not part.isdigit() or int(part) >= len(target):
                raise LookupError(f"{_dotted(tuple(path))} has {len(target)} entries: there is no entry {part}")
            key = int(part)
        elif isinstance(target, dict):
            # Variable names are upper case: match an existing key in any case, else take the lower-case name.
            key = next((k for k in target if isinstance(k, str) and k.lower() == part.lower()), part.lower())
        else:
            raise LookupError(f"{_dotted(tuple(path))} is a single value, not a section")
        path.append(key)
        if i == len(parts) - 1:
            target[key] = value
        else:
            if isinstance(target, dict) and key not in target:
                target[key] = {}
            target = target[key]
    return tuple(path)


def _key_path(err: Mapping[str, Any]) -> Path_:
    """The error's place in the file: a tagged union's tag is not a key there, the tag's own key is."""
    loc = tuple(err["loc"])
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*loc, "type")
    if len(loc) > 3 and loc[:2] == ("notifications", "channels") and loc[3] in CHANNEL_TYPES:
        return (*loc[:3], *loc[4:])
    return loc


def _dotted(loc: Path_) -> str:
    return ".".join(str(part) for part in loc)


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "union_tag_not_found": "required key is missing",
}


def _describe(err: Mapping[str, Any]) -> str:
    message = _MESSAGES.get(err["type"])
    if message:
        return message
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        return f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    text = str(err["msg"])
    text = re.sub(r"^Value error, ", "", text)
    value = err.get("input")
    if err["type"] == "string_type" and isinstance(value, bool):
        return f"{text} (got {str(value).lower()}: YAML reads yes, no, on and off as booleans; quote the text)"
    if err["type"] != "value_error" and isinstance(value, str | int | float | bool) and value is not None:
        shown = repr(value)
        text += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    return text


def _sorted(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    return sorted(problems, key=lambda p: (p.source, p.line if p.line is not None else 1 << 30, p.path))
