"""Gateways: what each says on its status topic."""

from __future__ import annotations

from fastapi import APIRouter

from facmon.api.deps import ServicesDep
from facmon.api.schemas import GatewayPublic, Page, from_epoch_ms

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])


@router.get("", response_model=Page[GatewayPublic], summary="Gateways, registered or heard from, with their status")
def list_gateways(services: ServicesDep) -> Page[GatewayPublic]:
    tz = services.config.tz
    names = {(site.id, gw.id): gw.name for site in services.config.sites for gw in site.gateways}
    items = [
        GatewayPublic(
            id=g.gateway_id,
            site=g.site,
            name=names.get((g.site, g.gateway_id)),
            status=g.status,
            since=from_epoch_ms(g.since_ms, tz) if g.since_ms is not None else None,
            registered=g.registered,
        )
        for g in services.gateways.all()
    ]
    return Page(items=items, total=len(items))
