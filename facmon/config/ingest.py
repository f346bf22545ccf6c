"""The `ingest` section: payload limits, when a silent device is stale or offline, batching, and the rejects kept."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ByteSize, Field, field_validator

from facmon.config.types import SECTION, Duration, Size


class _Model(BaseModel):
    model_config = SECTION


# The most of a reject's payload ever kept; facmon.ingest.decode cuts there before anything else.
MAX_REJECT_PAYLOAD_BYTES = 64 * 1024


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
