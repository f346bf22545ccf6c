"""The reject gate: a rate per source, payloads cut to size, counts of what is not kept, and the size cap kept."""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from facmon.cmd.broker import Broker
from facmon.cmd.service import Service
from facmon.config.facility import FacilityConfig
from facmon.config.ingest import MAX_REJECT_PAYLOAD_BYTES, RejectsConfig
from facmon.config.loader import parse_config
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import Reject
from facmon.facility.state import StateStore, reject_size
from facmon.ingest.decode import MAX_REJECT_PAYLOAD
from facmon.ingest.metrics import RejectMetrics
from facmon.ingest.rejects import PRUNE_AT_SHARE, WARN_EVERY_MS, RejectGate, RejectSources, Source
from tests.conftest import example_config
from tests.publishing import Gateway
from tests.waiting import eventually

T0_MS = 1_795_000_000_000
T0 = datetime.fromtimestamp(T0_MS / 1000, UTC)
FACILITY = """
sites:
  - id: riverside
    gateways:
      - {id: gw-1, device_types: [pump, power]}
      - {id: gw-2}
    buildings:
      - id: A
        devices:
          - {id: pump-1, type: pump, name: Pump 1}
          - {id: panel-1, type: power, name: Panel 1}
          - {id: lift-1, type: elevator, name: Lift 1}
  - id: hilltop
    buildings: [{id: H, devices: [{id: pump-9, type: pump, name: Pump 9}]}]
"""


@pytest.fixture
def facility() -> FacilityConfig:
    return parse_config(FACILITY, env={})


def sources_of(config: FacilityConfig) -> RejectSources:
    return RejectSources(config.mqtt.topic_prefix, config.sites, DeviceRegistry.from_config(config))


def make_gate(config: FacilityConfig, state: StateStore, **limits: Any) -> tuple[RejectGate, CollectorRegistry]:
    registry = CollectorRegistry()
    gate = RejectGate(RejectsConfig(**limits), sources_of(config), state, RejectMetrics(registry))
    return gate, registry


def rejects(
    device: str, count: int, *, site: str = "riverside", kind: str = "pump", payload: str = "{"
) -> list[Reject]:
    topic = f"facility/{site}/{kind}/{device}/telemetry"
    return [Reject(topic, "payload is not valid JSON", T0, payload) for _ in range(count)]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_reject_comes_from_the_gateway_that_may_publish_its_topic_else_from_its_device(
    facility: FacilityConfig,
) -> None:
    source = sources_of(facility).source_of
    assert source("facility/riverside/pump/pump-1/telemetry") == Source("riverside/gateway/gw-1", "riverside")
    assert source("facility/riverside/power/panel-1/telemetry") == Source("riverside/gateway/gw-1", "riverside")
    # gw-2 names no types: it serves the rest of its site.
    assert source("facility/riverside/elevator/lift-1/telemetry") == Source("riverside/gateway/gw-2", "riverside")
    # The broker lets only gw-2 publish elevator topics there, whatever the device's own type; and no gateway
    # smoke topics, as the site has no smoke detectors.
    assert source("facility/riverside/elevator/pump-1/telemetry") == Source("riverside/gateway/gw-2", "riverside")
    assert source("facility/riverside/smoke/pump-1/telemetry") == Source("riverside/pump-1", "riverside")
    assert source("facility/riverside/pump/pump-42/telemetry") == Source("riverside/pump-42", "riverside")
    assert source("facility/riverside/pump/pump-9/telemetry") == Source("riverside/pump-9", "riverside")
    # hilltop has no gateways in the config; the site of a topic is a metrics label only when configured.
    assert source("facility/hilltop/pump/pump-9/telemetry") == Source("hilltop/pump-9", "hilltop")
    assert source("facility/atlantis/pump/p/telemetry") == Source("atlantis/p", "other")
    assert source("facility//pump/pump-1/telemetry") == Source("other", "other")
    assert source("somewhere/else") == Source("other", "other")
    long = source(f"facility/riverside/pump/{'p' * 5000}/telemetry")
    assert long.name == f"riverside/{'p' * 64}"


def test_a_type_two_gateways_serve_is_charged_to_the_device_not_to_either() -> None:
    config = parse_config(
        "sites: [{id: s, gateways: [{id: east, device_types: smoke}, {id: west, device_types: smoke}],"
        " buildings: [{id: b, devices: [{id: sd-1, type: smoke, name: SD}]}]}]\n",
        env={},
    )
    assert sources_of(config).source_of("facility/s/smoke/sd-1/telemetry") == Source("s/sd-1", "s")


def test_each_source_keeps_its_burst_then_its_rate(facility: FacilityConfig, sqlite_store: StateStore) -> None:
    gate, _ = make_gate(facility, sqlite_store, rate=60, burst=5)
    assert len(gate.admit(rejects("pump-1", 8), T0_MS)) == 5
    assert gate.admit(rejects("pump-1", 3), T0_MS + 500) == []
    assert len(gate.admit(rejects("pump-1", 3), T0_MS + 1000)) == 1  # 60 a minute: one a second
    # panel-1 shares pump-1's gateway, and with it the allowance; the lift's gateway and an unknown device do not.
    assert gate.admit(rejects("panel-1", 1, kind="power"), T0_MS + 1000) == []
    assert len(gate.admit(rejects("lift-1", 8, kind="elevator"), T0_MS + 1000)) == 5
    assert len(gate.admit(rejects("pump-42", 8), T0_MS + 1000)) == 5
    # A quiet minute refills the burst, not more.
    assert len(gate.admit(rejects("pump-1", 100), T0_MS + 120_000)) == 5


def test_a_clock_stepping_back_gives_no_tokens_and_takes_none(
    facility: FacilityConfig, sqlite_store: StateStore
) -> None:
    gate, _ = make_gate(facility, sqlite_store, rate=60, burst=2)
    assert len(gate.admit(rejects("pump-1", 2), T0_MS)) == 2
    assert gate.admit(rejects("pump-1", 1), T0_MS - 3_600_000) == []
    assert len(gate.admit(rejects("pump-1", 5), T0_MS + 1000)) == 1


def test_sources_beyond_the_tracked_ones_share_one_allowance_while_those_are_busy(
    facility: FacilityConfig, sqlite_store: StateStore
) -> None:
    gate, _ = make_gate(facility, sqlite_store, rate=60, burst=3, max_sources=10)
    for i in range(10):
        assert len(gate.admit(rejects(f"ghost-{i}", 3), T0_MS)) == 3  # ten sources tracked, each bucket empty
    # A gateway inventing device ids gets no fresh allowance for each: the newcomers share one bucket.
    invented = [r for i in range(10, 50) for r in rejects(f"ghost-{i}", 1)]
    assert len(gate.admit(invented, T0_MS)) == 3
    # Once the tracked sources are idle (their buckets full again), they make room for new ones.
    later = T0_MS + 3 * 60_000
    assert len(gate.admit(rejects("ghost-77", 5), later)) == 3
    assert len(gate.admit(rejects("ghost-78", 5), later)) == 3


def test_stored_payloads_are_cut_at_the_configured_size_on_a_character_boundary(
    facility: FacilityConfig, sqlite_store: StateStore
) -> None:
    gate, registry = make_gate(facility, sqlite_store, max_payload_bytes=4096)
    small = rejects("pump-1", 1, payload='{"pressure_bar": "高"}')
    assert gate.admit(small, T0_MS)[0] is small[0]
    (ascii_,) = gate.admit(rejects("pump-1", 1, payload="x" * 60_000), T0_MS)
    assert ascii_.payload == "x" * 4096
    (chinese,) = gate.admit(rejects("pump-1", 1, payload="压力" * 5000), T0_MS)  # 3 bytes a character
    assert chinese.payload == "压力" * 682 + "压"
    assert len(chinese.payload.encode()) == 4095
    (exact,) = gate.admit(rejects("pump-1", 1, payload="é" * 2048), T0_MS)  # 2 bytes a character: 4096 exactly
    assert exact.payload == "é" * 2048
    assert sample(registry, "facmon_ingest_rejects_truncated_total", site="riverside") == 2
    assert gate.status().sources[0].truncated == 2


def test_the_configured_ceiling_of_a_stored_payload_is_the_decoders() -> None:
    assert MAX_REJECT_PAYLOAD_BYTES == MAX_REJECT_PAYLOAD


def test_what_is_not_kept_is_counted_by_site_never_by_device(
    facility: FacilityConfig, sqlite_store: StateStore
) -> None:
    gate, registry = make_gate(facility, sqlite_store, rate=60, burst=1)
    batch = (
        rejects("pump-1", 5)
        + [r for i in range(20) for r in rejects(f"ghost-{i}", 2)]
        + rejects("x", 3, site="atlantis")
        + [Reject("not/a/telemetry/topic", "not a telemetry topic", T0, "{")] * 4
    )
    kept = gate.admit(batch, T0_MS)
    assert len(kept) == 1 + 20 + 1 + 1
    dropped = "facmon_ingest_rejects_dropped_total"
    assert sample(registry, dropped, reason="rate_limited", site="riverside") == 4 + 20
    assert sample(registry, dropped, reason="rate_limited", site="other") == 2 + 3
    labels = {
        (name, value)
        for family in registry.collect()
        if family.name.startswith("facmon_ingest_rejects")
        for s in family.samples
        for name, value in s.labels.items()
    }
    assert {value for name, value in labels if name == "site"} == {"riverside", "other"}
    status = gate.status()
    assert status.rate_limited == 29
    by_source = {s.source: s.rate_limited for s in status.sources}
    assert by_source["riverside/gateway/gw-1"] == 4
    assert by_source["riverside/ghost-7"] == 1
    assert by_source["atlantis/x"] == 2
    assert by_source["other"] == 3
    assert status.sources[0].source == "other"  # the latest to lose first


def test_a_source_over_its_rate_is_logged_once_a_period_not_once_a_reject(
    facility: FacilityConfig, sqlite_store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    gate, _ = make_gate(facility, sqlite_store, rate=60, burst=1)
    with caplog.at_level(logging.WARNING, logger="facmon.ingest.rejects"):
        for second in range(100):
            gate.admit(rejects("pump-1", 10), T0_MS + second * 1000)
        gate.admit(rejects("lift-1", 10, kind="elevator"), T0_MS)
        first = [r.getMessage() for r in caplog.records]
        assert len(first) == 2
        assert first[0].startswith("ingest: riverside/gateway/gw-1 sends more rejects than the 60 a minute")
        assert "riverside/gateway/gw-2" in first[1]
        gate.admit(rejects("pump-1", 10), T0_MS + WARN_EVERY_MS)
    assert len(caplog.records) == 3
    assert caplog.records[2].getMessage().endswith(f"; {100 * 9 - 1} dropped since the last such line")


def test_a_flood_prunes_the_oldest_before_the_cap_is_passed_by_much(
    facility: FacilityConfig, state_store: StateStore
) -> None:
    """Between two scheduled runs, ingest itself prunes each time a tenth of the cap has been let through, and
    leaves room for what it lets through: the table never holds more than the cap and that tenth."""
    cap = 1024 * 1024
    gate, registry = make_gate(facility, state_store, rate=1_000_000, burst=1_000_000, max_total_bytes=cap)
    batches = 0
    for batch in range(100):
        kept = gate.admit(rejects("pump-1", 20, payload="x" * 60_000), T0_MS + batch * 1000)
        with state_store.begin() as tx:
            tx.add_rejects(kept)
        size = state_store.rejects_size()
        batch_bytes = sum(reject_size(r) for r in kept)
        assert size <= cap * (1 + PRUNE_AT_SHARE), f"{size} bytes stored after batch {batch}"
        batches += 1
    written = batches * batch_bytes
    assert written > 6 * cap
    pruned = sample(registry, "facmon_ingest_rejects_deleted_total", reason="size_cap")
    assert pruned == batches * 20 - state_store.list_rejects().total
    assert sample(registry, "facmon_ingest_rejects_prunes_total", trigger="written") >= 5
    assert gate.status().stored_bytes == state_store.rejects_size()


def test_the_scheduled_prune_applies_the_retention(facility: FacilityConfig, state_store: StateStore) -> None:
    gate, registry = make_gate(facility, state_store, retention="7d")
    with state_store.begin() as tx:
        tx.add_rejects([Reject("t", "old", T0 - timedelta(days=8), "{")] * 3 + [Reject("t", "new", T0, "{")])
    pruned = gate.prune(T0)
    assert pruned is not None and (pruned.expired, pruned.over_cap) == (3, 0)
    assert [r.reason for _, r in state_store.list_rejects().items] == ["new"]
    assert sample(registry, "facmon_ingest_rejects_deleted_total", reason="retention") == 3
    assert sample(registry, "facmon_ingest_rejects_stored_bytes") == state_store.rejects_size()
    assert gate.status().last_prune_at == T0


FLOOD = 100_000
FLOOD_CAP = 2_000_000


def test_a_gateway_flooding_bad_input_keeps_the_rejects_in_their_cap_and_the_alarms_working(
    tmp_path: Path, mqtt_broker: Broker
) -> None:
    """02:00, the pump-room gateway goes wrong and sends 100,000 malformed 60 KiB messages as fast as the broker
    takes them (6 GB; about 6,000 a second on a 2-CPU test machine) → the lifts-and-fire gateway's readings
    meanwhile are stored, and its fire alarm is raised → the rejects stay within their 2 MB cap, the state file
    within a small multiple of it, and every reject not kept is counted.

    The burst of 20,000 alone lets through 20,000 rejects of 4 KiB, about 85 MB, forty times the cap, however
    fast the machine; the other 80,000 are held by the rate limit.
    """
    config = example_config(
        tmp_path,
        mqtt_broker,
        FACMON_INGEST__REJECTS__MAX_TOTAL_BYTES=str(FLOOD_CAP),
        FACMON_INGEST__REJECTS__RATE="600",
        FACMON_INGEST__REJECTS__BURST="20000",
    )
    service = Service(config, notifiers=[])
    service.start()
    fire_panel = Gateway(mqtt_broker)
    flooder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-flood-{uuid.uuid4().hex[:8]}")
    payload = b'{"pressure_bar": 4.0, "note": "' + b"x" * 60_000 + b'"'  # no closing brace: not JSON
    try:
        assert service.subscriber.wait_connected(10)
        flooder.connect(mqtt_broker.host, mqtt_broker.port)
        flooder.loop_start()

        def flood() -> None:
            window: list[mqtt.MQTTMessageInfo] = []
            for _ in range(FLOOD):
                window.append(flooder.publish("facility/riverside/pump/pump-1/telemetry", payload, qos=1))
                if len(window) >= 500:  # the client's own queue stays bounded
                    window.pop(0).wait_for_publish(60)
            for info in window:
                info.wait_for_publish(60)

        flooding = threading.Thread(target=flood, name="test-flood")
        flooding.start()
        eventually(lambda: service.pipeline.received >= 1000, timeout=30, what="the flood under way")
        for i in range(1, 6):
            fire_panel.publish("smoke", f"smoke-A-0{i}", {"state": "normal", "battery_pct": 90})
        fire_panel.publish("smoke", "smoke-A-03", {"state": "alarm", "obscuration_pct_per_m": 12.5})
        assert flooding.is_alive(), "the valid readings came after the flood, not during it"
        alarm = eventually(
            lambda: [a for a in service.state.open_alarms() if a.device_id == "smoke-A-03"],
            timeout=60,
            what="the fire alarm raised",
        )
        assert alarm[0].rule == "smoke-alarm"
        flooding.join(120)
        assert not flooding.is_alive()
        eventually(lambda: service.pipeline.received == FLOOD + 6, timeout=60, what="every message handled")

        for i in (1, 2, 4, 5):
            latest = service.telemetry.latest(f"smoke-A-0{i}")
            assert latest is not None and latest[1]["state"] == "normal"
        latest = service.telemetry.latest("smoke-A-03")
        assert latest is not None and latest[1]["state"] == "alarm"

        status = service.reject_gate.status()
        stored = service.state.rejects_size()
        assert stored <= FLOOD_CAP * (1 + PRUNE_AT_SHARE)
        kept = FLOOD - status.rate_limited
        assert kept >= 20_000 and status.rate_limited > 0
        assert status.truncated == kept
        assert status.deleted_over_cap == kept - service.state.list_rejects().total
        written = kept * reject_size(Reject("facility/riverside/pump/pump-1/telemetry", "", T0, "x" * 4096))
        assert written > 40 * FLOOD_CAP
        assert [(s.source, s.rate_limited) for s in status.sources] == [
            ("riverside/gateway/gw-riverside-1", status.rate_limited)
        ]
        files = {f.name: f.stat().st_size for f in tmp_path.glob("state.db*")}
        # Measured about 1.5 times the cap for the file and 5 MiB for its write-ahead log, which is checkpointed
        # every 1000 pages; without the cap, 6 GB.
        assert sum(files.values()) < 8 * FLOOD_CAP, files
    finally:
        flooder.disconnect()
        flooder.loop_stop()
        fire_panel.close()
        service.stop()
