"""The `api` section: where the HTTP API listens and what it trusts."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from facmon.config.types import SECTION, Duration


class _Model(BaseModel):
    model_config = SECTION


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
