"""The device registry: every device of the facility, looked up by id."""

from __future__ import annotations

from collections.abc import Collection, Iterator

from facmon.config.facility import FacilityConfig
from facmon.config.rules import Selector
from facmon.facility.model import Device


class DeviceRegistry:
    def __init__(self, devices: list[Device]) -> None:
        self._devices = {d.id: d for d in devices}

    @classmethod
    def from_config(cls, config: FacilityConfig) -> DeviceRegistry:
        return cls(
            [
                Device(
                    id=d.id,
                    type=d.type,
                    site=site.id,
                    building=building.id,
                    name=d.name,
                    location=d.location,
                    model=d.model,
                    nominal=dict(d.nominal),
                    labels=dict(d.labels),
                )
                for site in config.sites
                for building in site.buildings
                for d in building.devices
            ]
        )

    def of_sites(self, sites: Collection[str]) -> DeviceRegistry:
        """The devices of these sites only (a cluster's partition)."""
        return DeviceRegistry([d for d in self if d.site in sites])

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def __iter__(self) -> Iterator[Device]:
        return iter(self._devices.values())

    def __len__(self) -> int:
        return len(self._devices)

    def select(self, selector: Selector) -> list[Device]:
        """The devices a rule's selector picks."""
        return [d for d in self if selector.matches(d)]
