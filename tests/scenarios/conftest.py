from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from facmon.cmd.broker import Broker
from facmon.cmd.service import Service
from facmon.config.facility import FacilityConfig
from tests.publishing import Gateway
from tests.signing import signed_in
from tests.waiting import eventually

Live = tuple[Service, TestClient, Gateway]


@contextmanager
def running(config: FacilityConfig, broker: Broker) -> Iterator[Live]:
    """The whole service started against the real broker, ready, with a gateway to publish through."""
    service = Service(config, notifiers=[])
    service.start()
    gateway = Gateway(broker)
    api = signed_in(service, "operator")
    try:
        eventually(lambda: api.get("/readyz").status_code == 200, what="ready")
        yield service, api, gateway
    finally:
        gateway.close()
        service.stop()


@pytest.fixture
def live(facility_config: FacilityConfig, mqtt_broker: Broker) -> Iterator[Live]:
    with running(facility_config, mqtt_broker) as started:
        yield started
