"""Real servers for the tests: an MQTT broker on a free loopback port, SQLite in tmp dirs, PostgreSQL if present."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from facmon.alerts.notifications.notifier import Delivery, Notification
from facmon.cmd.broker import Broker, start_broker
from facmon.config.facility import FacilityConfig
from facmon.config.loader import load_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.state import StateStore
from facmon.ingest.storage import TelemetryStore, open_telemetry_store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "facility.yaml"
POSTGRES_ADMIN_URL = os.environ.get("FACMON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[Broker]:
    """mosquitto on a free port with a throwaway config; the embedded broker where mosquitto is not installed."""
    kind = os.environ.get("FACMON_TEST_BROKER", "auto")
    broker = start_broker(kind)  # type: ignore[arg-type]
    yield broker
    broker.stop()


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 22, 2, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


@dataclass
class Recorder:
    """A channel that keeps what it is given."""

    name: str
    language: str = "en"
    sent: list[Notification] = field(default_factory=list)

    def send(self, notification: Notification) -> Delivery:
        self.sent.append(notification)
        return Delivery(True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _postgres_database() -> Iterator[str]:
    try:
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, ImportError) as exc:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {str(exc).splitlines()[0]}")
    name = f"facmon_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each state test runs on a SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def state_store(state_url: str) -> Iterator[StateStore]:
    store = StateStore.open(state_url)
    yield store
    store.close()


def example_config(tmp_path: Path, broker: Broker, **env: str) -> FacilityConfig:
    """The example facility pointed at the test broker, with its stores in a tmp dir and its own MQTT session."""
    return load_config(
        EXAMPLE,
        env={
            "FACMON_MQTT__URL": broker.url,
            "FACMON_MQTT__CLIENT_ID": f"facmon-test-{uuid.uuid4().hex[:8]}",
            "FACMON_STORAGE__TELEMETRY__PATH": str(tmp_path / "telemetry.db"),
            "FACMON_STORAGE__SPOOL__PATH": str(tmp_path / "spool.db"),
            "FACMON_STORAGE__STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
            **env,
        },
    )


def configured_telemetry(config: FacilityConfig) -> TelemetryStore:
    """The telemetry store a config names, opened as the service opens it: for a test to wrap and hand over."""
    return open_telemetry_store(config.storage.telemetry, DeviceRegistry.from_config(config))


@pytest.fixture
def facility_config(tmp_path: Path, mqtt_broker: Broker) -> FacilityConfig:
    return example_config(tmp_path, mqtt_broker)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[StateStore]:
    """A state store in a SQLite file, for tests that need one database, not each kind."""
    store = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()
