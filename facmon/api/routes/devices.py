from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from facmon.api.auth import Engineer
from facmon.api.deps import Services, ServicesDep
from facmon.api.routes.params import ends_after
from facmon.api.schemas import (
    DevicePublic,
    DeviceStatus,
    Limit,
    OperatorNote,
    Page,
    ServiceRequest,
    from_epoch_ms,
)
from facmon.facility.model import Device, DeviceType

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.get("", response_model=Page[DevicePublic], summary="The device registry with latest values and status")
def list_devices(
    services: ServicesDep,
    site: str | None = None,
    building: str | None = None,
    type: Annotated[DeviceType | None, Query(description="Device type")] = None,
    status: DeviceStatus | None = None,
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
    device = _device(services, device_id)
    return _public_one(services, device)


@router.post(
    "/{device_id}/out-of-service",
    response_model=DevicePublic,
    summary="Take a device out of service for maintenance: its alarms are recorded but not annunciated",
    responses={404: {"description": "No such device"}, 422: {"description": "Bad duration or no reason"}},
)
def take_out_of_service(services: ServicesDep, user: Engineer, device_id: str, body: ServiceRequest) -> DevicePublic:
    device = _device(services, device_id)
    now = services.clock.now()
    until = ends_after(now, body.duration, "duration")
    services.alarms.take_out_of_service(device.id, user.name, now, body.reason, until)
    return _public_one(services, device)


@router.post(
    "/{device_id}/return-to-service",
    response_model=DevicePublic,
    summary="Return a device to service: its active alarms are annunciated again",
    responses={404: {"description": "No such device"}, 409: {"description": "It is not out of service"}},
)
def return_to_service(services: ServicesDep, user: Engineer, device_id: str, body: OperatorNote) -> DevicePublic:
    device = _device(services, device_id)
    services.alarms.return_to_service(device.id, user.name, services.clock.now(), body.note)
    return _public_one(services, device)


def _device(services: Services, device_id: str) -> Device:
    device = services.registry.get(device_id)
    if device is None:
        raise HTTPException(404, f"device {device_id!r} not found")
    return device


def _public_one(services: Services, device: Device) -> DevicePublic:
    public = _public(services, device, services.state.count_open_alarms_by_device().get(device.id, 0))
    limits = [
        Limit(rule=rule.id, field=field, severity=level.severity, kind=level.test.kind, value=value)
        for rule in services.alarms.rules.for_device(device.id)
        for level in rule.levels
        if level.test.kind in ("above", "below")
        for field, value in level.test.limits.items()
    ]
    return public.model_copy(update={"limits": limits})


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
        status=DeviceStatus.OUT_OF_SERVICE
        if services.alarms.is_out_of_service(device.id)
        else DeviceStatus(services.presence.status(device.id, services.clock.now())),
        last_seen=from_epoch_ms(snapshot.last_seen_ms, tz) if snapshot else None,
        latest_at=from_epoch_ms(snapshot.latest_ts_ms, tz) if snapshot else None,
        latest=dict(snapshot.latest) if snapshot else {},
        active_alarms=active_alarms,
        seq_gaps=services.seq_gaps(device.id),
        nominal=dict(device.nominal),
    )
