"""Traces: what a facility's gateways would publish, generated without a broker.

`trace()` is the library API behind `facmon simulate`, the demo, the scenario tests and the benchmarks: an
iterator of publishes and gateway connection changes in time order, the same byte for byte for the same
config, scenario and seed. Device models (facmon.simulators.devices) give each reading; gateways add what
real ones do: reporting intervals with jitter, a status topic with a will, outages after which they flush
their backlog as array payloads, clocks that drift, resends and, on request, malformed messages.
"""

from __future__ import annotations

import heapq
import random
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from facmon.config.facility import FacilityConfig
from facmon.config.registry import DeviceRegistry
from facmon.facility.model import Device
from facmon.facility.topics import gateway_status_topic, telemetry_topic
from facmon.simulators.devices import INTERVALS, DeviceModel, model_for
from facmon.simulators.scenario import Event, Scenario

BACKLOG_CHUNK = 50  # readings per array payload when a gateway flushes its backlog
MALFORMED = (
    b'{"pressure_bar": 3.9',  # truncated
    b'{"pressure_bar": NaN}',
    b"\xc3\x28 not utf-8",
    b'{"state": 42}',
    b"[]",
)


@dataclass(frozen=True, slots=True)
class Publish:
    at_ms: int  # when the gateway sends it
    gateway: str
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Link:
    """A gateway's connection comes up (`online`) or is lost (the broker then publishes its will)."""

    at_ms: int
    gateway: str
    online: bool


TraceItem = Publish | Link


@dataclass(frozen=True, slots=True)
class SimGateway:
    id: str
    site: str
    devices: tuple[Device, ...]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What every gateway does all the time; scenario events add outages, skew, resends and bad messages."""

    jitter: float = 0.1  # each interval is its device's interval ± this share
    duplicates: float = 0.0  # share of messages sent twice
    malformed: float = 0.0  # share of messages replaced by a malformed one


def gateways_of(config: FacilityConfig) -> list[SimGateway]:
    """Each site's configured gateways with the devices they serve (by `device_types`; a gateway without
    types takes the rest of its site); a site without gateways gets one called `sim-{site}`."""
    registry = DeviceRegistry.from_config(config)
    out: list[SimGateway] = []
    for site in config.sites:
        devices = [d for d in registry if d.site == site.id]
        if not site.gateways:
            out.append(SimGateway(f"sim-{site.id}", site.id, tuple(devices)))
            continue
        typed = {t for gw in site.gateways for t in gw.device_types}
        catch_all = next((gw.id for gw in site.gateways if not gw.device_types), site.gateways[0].id)
        for gw in site.gateways:
            served = [
                d
                for d in devices
                if d.type in gw.device_types or (gw.id == catch_all and not gw.device_types and d.type not in typed)
            ]
            out.append(SimGateway(gw.id, site.id, tuple(served)))
    return out


@dataclass
class _GatewayState:
    gateway: SimGateway
    rng: random.Random
    online: bool = True
    backlog: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def trace(
    config: FacilityConfig,
    scenario: Scenario | None = None,
    *,
    start_ms: int,
    seed: int = 1,
    duration_s: float | None = None,
    speed: float = 1.0,
    behaviour: Behaviour = Behaviour(),
    devices: Sequence[str] | None = None,
) -> Iterator[TraceItem]:
    """Everything the gateways send from `start_ms` for `duration_s` simulated seconds (the scenario's own
    duration by default, else until the caller stops iterating).

    Models run in simulated time; time stamps and `at_ms` are `start_ms` plus simulated time divided by
    `speed`, so that `speed=60` puts an hour of the facility into a minute of time stamps. `devices` limits
    the trace to those device ids.
    """
    if speed <= 0:
        raise ValueError("speed must be above 0")
    prefix = config.mqtt.topic_prefix
    start_hour = scenario.start_hour if scenario is not None else 0.0
    end_s = duration_s if duration_s is not None else scenario.duration_s if scenario is not None else None
    events = scenario.events if scenario is not None else ()
    wanted = set(devices) if devices is not None else None

    def at(t: float) -> int:
        return start_ms + round(t * 1000 / speed)

    gateways = [g for g in gateways_of(config) if g.devices]
    states = {g.id: _GatewayState(g, random.Random(seed * 7919 + zlib.crc32(g.id.encode()))) for g in gateways}
    models: list[tuple[DeviceModel, _GatewayState, random.Random]] = []
    for g in gateways:
        for device in g.devices:
            if wanted is None or device.id in wanted:
                jitter_rng = random.Random(seed * 104_729 + zlib.crc32(device.id.encode()))
                models.append((model_for(device, seed, start_hour=start_hour), states[g.id], jitter_rng))
    seqs = [0] * len(models)

    # Births first: each gateway says it is online, retained.
    for g in gateways:
        yield Link(at(0), g.id, True)
        yield Publish(at(0), g.id, gateway_status_topic(prefix, g.site, g.id), b"online", retain=True)

    # The heap holds (simulated time, order, kind, index): kind 0 = a gateway's outage begins or ends, 1 = a
    # device's next reading. The order number makes ties come out the same way every time.
    heap: list[tuple[float, int, int, int]] = []
    order = 0
    outages = [e for e in events if e.fault == "outage" and e.gateway in states]
    for i, e in enumerate(outages):
        heap.append((e.at_s, order, 0, 2 * i))
        heap.append((e.end_s, order + 1, 0, 2 * i + 1))
        order += 2
    for i, (model, _, jitter_rng) in enumerate(models):
        interval = INTERVALS[model.device.type]
        heap.append((jitter_rng.uniform(0, interval), order, 1, i))
        order += 1
    heapq.heapify(heap)

    while heap:
        t, _, kind, index = heapq.heappop(heap)
        if end_s is not None and t > end_s:
            break
        if kind == 0:
            outage = outages[index // 2]
            state = states[outage.gateway]  # type: ignore[index]
            if index % 2 == 0 and state.online:
                state.online = False
                yield Link(at(t), state.gateway.id, False)
            elif index % 2 == 1 and not state.online:
                state.online = True
                yield Link(at(t), state.gateway.id, True)
                status = gateway_status_topic(prefix, state.gateway.site, state.gateway.id)
                yield Publish(at(t), state.gateway.id, status, b"online", retain=True)
                yield from _flush(state, prefix, at(t))
            continue

        model, state, jitter_rng = models[index]
        device = model.device
        model.faults = {e.fault: e.params for e in events if e.device == device.id and e.at_s <= t < e.end_s}
        sample = model.sample(t)
        interval = INTERVALS[device.type]
        order += 1
        heapq.heappush(
            heap, (t + interval * (1 + jitter_rng.uniform(-behaviour.jitter, behaviour.jitter)), order, 1, index)
        )
        if sample is None:
            continue  # the sensor gave nothing: no reading, no seq
        gw_faults = _gateway_faults(events, state.gateway.id, t)
        skew_ms = round(float(gw_faults.get("clock_skew", {}).get("seconds", 0.0)) * 1000)
        reading = {**sample, "ts": at(t) + skew_ms, "seq": seqs[index]}
        seqs[index] += 1
        if not state.online:
            state.backlog.setdefault(device.id, []).append(reading)
            continue
        topic = telemetry_topic(prefix, device.site, device.type, device.id)
        payload = orjson.dumps(reading)
        rng = state.rng
        malformed = (
            float(gw_faults["malformed"].get("share", 0.05)) if "malformed" in gw_faults else behaviour.malformed
        )
        if malformed and rng.random() < malformed:
            payload = MALFORMED[rng.randrange(len(MALFORMED))]
        yield Publish(at(t), state.gateway.id, topic, payload)
        duplicates = (
            float(gw_faults["duplicates"].get("share", 0.1)) if "duplicates" in gw_faults else behaviour.duplicates
        )
        if duplicates and rng.random() < duplicates:
            yield Publish(at(t), state.gateway.id, topic, payload)


def _gateway_faults(events: Sequence[Event], gateway: str, t: float) -> dict[str, dict[str, Any]]:
    return {e.fault: e.params for e in events if e.gateway == gateway and e.at_s <= t < e.end_s}


def _flush(state: _GatewayState, prefix: str, at_ms: int) -> Iterator[Publish]:
    """A gateway back online sends what it buffered, oldest first, a device at a time, in arrays."""
    by_id = {d.id: d for d in state.gateway.devices}
    for device_id, readings in state.backlog.items():
        device = by_id[device_id]
        topic = telemetry_topic(prefix, device.site, device.type, device.id)
        for i in range(0, len(readings), BACKLOG_CHUNK):
            yield Publish(at_ms, state.gateway.id, topic, orjson.dumps(readings[i : i + BACKLOG_CHUNK]))
    state.backlog.clear()
