from __future__ import annotations

from fastapi import APIRouter

from facmon.api.deps import ServicesDep
from facmon.api.routes.params import Limit, Offset
from facmon.api.schemas import Page, RejectPublic

router = APIRouter(prefix="/api/v1/ingest", tags=["ingest"])


@router.get("/rejects", response_model=Page[RejectPublic], summary="Messages ingest refused, newest first, with why")
def list_rejects(services: ServicesDep, limit: Limit = 100, offset: Offset = 0) -> Page[RejectPublic]:
    page = services.state.list_rejects(limit=limit, offset=offset)
    tz = services.config.tz
    return Page(
        items=[
            RejectPublic(
                id=i, topic=r.topic, reason=r.reason, received_at=r.received_at.astimezone(tz), payload=r.payload
            )
            for i, r in page.items
        ],
        total=page.total,
    )
