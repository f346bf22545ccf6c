"""The `sites` section: sites, their buildings, gateways and devices."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, SecretStr

from facmon.config.types import SECTION, Identifier, as_list
from facmon.facility.model import Device, DeviceType


class _Model(BaseModel):
    model_config = SECTION


class DeviceConfig(_Model):
    id: Identifier
    type: DeviceType
    name: str
    location: str | None = None
    model: str | None = None
    installed: date | None = None
    nominal: dict[str, float] = {}
    labels: dict[str, str] = {}

    def to_device(self, site: str, building: str) -> Device:
        """The device of the domain, in its site and building."""
        return Device(
            self.id, self.type, site, building, self.name, nominal=dict(self.nominal), labels=dict(self.labels)
        )


class BuildingConfig(_Model):
    id: Identifier
    name: str | None = None
    devices: list[DeviceConfig] = []


class GatewayConfig(_Model):
    """A gateway's broker account: it may publish under its own site's topics and read nothing."""

    id: Identifier
    name: str | None = None
    password: SecretStr | None = None
    # Which of its site's devices it serves, by type; a site's gateway without types serves the rest.
    device_types: Annotated[list[DeviceType], BeforeValidator(as_list)] = []


class SiteConfig(_Model):
    id: Identifier
    name: str | None = None
    gateways: list[GatewayConfig] = []
    buildings: list[BuildingConfig] = []

    def types_served_by(self, gateway: GatewayConfig) -> list[DeviceType]:
        """The device types whose telemetry a gateway of this site may publish, in `DeviceType` order.

        Its own `device_types`; without them, the types of the site's devices that no other gateway names, so
        that a gateway without types cannot speak for the devices its neighbours serve.
        """
        if gateway.device_types:
            wanted = set(gateway.device_types)
        else:
            named = {t for other in self.gateways for t in other.device_types}
            wanted = {d.type for b in self.buildings for d in b.devices} - named
        return [t for t in DeviceType if t in wanted]
