"""Load mode: a synthetic facility of N sites of M devices each, for load tests of facmon and its broker.

Each site has 2 booster pumps and 2 power panels, then lifts and smoke detectors in the example facility's
proportion (one lift to five detectors). Ids are unique and stable: the same N and M give the same facility,
so a config written once (`write_config`) matches every later run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from facmon.config.facility import FacilityConfig
from facmon.config.loader import parse_config
from facmon.facility.model import DeviceType

DEFAULT_URL = "mqtt://127.0.0.1:1883"
_FIRST = (DeviceType.PUMP, DeviceType.PUMP, DeviceType.POWER, DeviceType.POWER)


def site_mix(devices: int) -> list[DeviceType]:
    """The types of one site's `devices` devices, in order."""
    if devices < 1:
        raise ValueError("a site has 1 device or more")
    rest = max(0, devices - len(_FIRST))
    lifts = (rest + 5) // 6
    return [*_FIRST[:devices], *[DeviceType.ELEVATOR] * lifts, *[DeviceType.SMOKE] * (rest - lifts)]


def synthetic_facility(sites: int, devices: int, url: str = DEFAULT_URL) -> dict[str, Any]:
    """The config data (as YAML would load it) of `sites` sites of `devices` devices each, without rules."""
    if sites < 1:
        raise ValueError("a facility has 1 site or more")
    out_sites = []
    for s in range(1, sites + 1):
        site = f"site-{s:03d}"
        counts: dict[DeviceType, int] = {}
        entries = []
        for device_type in site_mix(devices):
            n = counts[device_type] = counts.get(device_type, 0) + 1
            entries.append(_device(site, device_type, n))
        out_sites.append(
            {"id": site, "name": f"Load site {s}", "buildings": [{"id": "A", "name": "Block A", "devices": entries}]}
        )
    return {"timezone": "UTC", "mqtt": {"url": url}, "sites": out_sites}


def _device(site: str, device_type: DeviceType, n: int) -> dict[str, Any]:
    if device_type is DeviceType.PUMP:
        return {"id": f"{site}-pump-{n}", "type": "pump", "name": f"Booster pump {n}", "nominal": {"pressure_bar": 4.0}}
    if device_type is DeviceType.POWER:
        return {"id": f"{site}-panel-{n}", "type": "power", "name": f"LV panel {n}", "nominal": {"voltage_v": 230}}
    if device_type is DeviceType.ELEVATOR:
        return {"id": f"{site}-lift-{n}", "type": "elevator", "name": f"Lift {n}"}
    return {"id": f"{site}-smoke-{n:03d}", "type": "smoke", "name": f"Smoke detector {n}"}


def facility_config(data: dict[str, Any], env: Mapping[str, str] | None = None) -> FacilityConfig:
    """The synthetic facility as a validated config; `FACMON_MQTT__…` in `env` (default: os.environ) apply."""
    return parse_config(
        yaml.safe_dump(data, sort_keys=False), source="<synthetic facility>", env=os.environ if env is None else env
    )


def write_config(data: dict[str, Any], path: Path, command: str = "") -> None:
    """Write the synthetic facility as a facmon config file that `facmon serve` accepts."""
    header = "# A synthetic facility for load tests, written by facmon simulate --load"
    text = f"{header}{': ' + command if command else ''}\n" + yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
