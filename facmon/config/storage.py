"""The `storage` section: the telemetry store, the state store and the spool."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator

from facmon.config.types import SECTION, ConfigPath, Duration, base_dir


class _Model(BaseModel):
    model_config = SECTION


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
            return prefix + str((base_dir(info) / path).resolve())
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
