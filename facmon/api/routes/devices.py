from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from facmon.api.deps import Services, ServicesDep
from facmon.api.schemas import DevicePublic, Page, from_epoch_ms
from facmon.facility.model import Device, DeviceType
from facmon.ingest.presence import Presence

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.get("", response_model=Page[DevicePublic], summary="The device registry with latest values and status")
def list_devices(
    services: ServicesDep,
    site: str | None = None,
    building: str | None = None,
    type: Annotated[DeviceType | None, Query(description="Device type")] = None,
    status: Presence | None = None,
) -> Page[DevicePublic]:
    alarm_counts = services.state.count_open_alarms_by_device()
    items = [
        _public(services, device, alarm_counts.get(device.id, 0))
        for device in services.registry
        if (site is None or device.site == site)
        and (building is None or device.building == building)
        and (type is None or device.type == type)
    ]
    if status is not None:
        items = [d for d in items if d.status == status]
    return Page(items=items, total=len(items))


@router.get("/{device_id}", response_model=DevicePublic, responses={404: {"description": "No such device"}})
def get_device(services: ServicesDep, device_id: str) -> DevicePublic:
    device = services.registry.get(device_id)
    if device is None:
        raise HTTPException(404, f"device {device_id!r} not found")
    return _public(services, device, services.state.count_open_alarms_by_device().get(device.id, 0))


def _public(services: Services, device: Device, active_alarms: int) -> DevicePublic:
    tz = services.config.tz
    snapshot = services.presence.get(device.id)
    return DevicePublic(
        id=device.id,
        type=device.type,
        site=device.site,
        building=device.building,
        name=device.name,
        location=device.location,
        model=device.model,
        status=services.presence.status(device.id, services.clock.now()),
        last_seen=from_epoch_ms(snapshot.last_seen_ms, tz) if snapshot else None,
        latest_at=from_epoch_ms(snapshot.latest_ts_ms, tz) if snapshot else None,
        latest=dict(snapshot.latest) if snapshot else {},
        active_alarms=active_alarms,
    )
