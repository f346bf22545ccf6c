from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from facmon.cmd.service import Service
from facmon.config.facility import FacilityConfig
from tests.conftest import FakeClock
from tests.signing import session_token, signed_in

__all__ = ["NIGHT", "session_token", "signed_in"]

NIGHT = datetime(2026, 11, 21, 18, 0, tzinfo=UTC)  # 02:00 in Shanghai


@pytest.fixture
def service(facility_config: FacilityConfig) -> Iterator[tuple[Service, FakeClock, TestClient]]:
    """The service in-process at 02:00, not started: readings are fed to its pipeline, the API read in-process by
    an admin, li.na."""
    clock = FakeClock(NIGHT)
    service = Service(facility_config, clock=clock, notifiers=[])
    yield service, clock, signed_in(service, "li.na")
    service.stop()
