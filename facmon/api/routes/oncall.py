"""Who is on call now, and the one-click acknowledge links that pages carry."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from facmon.alerts.errors import AckLinkError, AcknowledgeError
from facmon.alerts.paging.oncall import Roster
from facmon.api.deps import ServicesDep
from facmon.api.schemas import Page, ShiftPublic, local_time
from facmon.facility.errors import NotFoundError
from facmon.facility.model import WorkOrder

router = APIRouter(tags=["on-call"])
# The acknowledge links: open, since each carries its own signature; outside the API's schema.
links = APIRouter(include_in_schema=False)


@router.get("/api/v1/oncall/now", response_model=Page[ShiftPublic], summary="Who is on call now, per schedule")
def on_call_now(services: ServicesDep) -> Page[ShiftPublic]:
    oncall, tz = services.config.oncall, services.config.tz
    roster = services.escalator.roster if services.escalator else Roster(oncall, tz)
    items = []
    for shift in roster.now(services.clock.now()):
        schedule = oncall.schedule(shift.schedule)
        person = oncall.person(shift.person) if shift.person else None
        items.append(
            ShiftPublic(
                schedule=shift.schedule,
                name=schedule.name if schedule else None,
                person=shift.person,
                person_name=person.name if person else None,
                layer=shift.layer,
                until=local_time(shift.until, tz),
            )
        )
    return Page(items=items, total=len(items))


# The link in a page opens a page that asks, and only the button acknowledges: mail scanners and chat previews
# fetch links, and must not acknowledge for the person paged.


@links.get("/ack/{token}", response_class=HTMLResponse)
def ack_link(services: ServicesDep, token: str) -> HTMLResponse:
    try:
        _, person, order = _resolve(services, token)
    except (AckLinkError, NotFoundError) as exc:
        return _html("facmon", str(exc), status=403)
    text = f"{order.number} [{order.priority}] {order.title}"
    form = f'<form method="post"><button type="submit">Acknowledge as {escape(person)} / 确认接单</button></form>'
    return _html(f"Acknowledge {order.number}?", f"{escape(text)}</p>{form}<p>", raw=True)


@links.post("/ack/{token}", response_class=HTMLResponse)
def ack_link_confirm(services: ServicesDep, token: str) -> HTMLResponse:
    try:
        escalation_id, person, order = _resolve(services, token)
        assert services.escalator is not None  # _resolve checked
        done = services.escalator.acknowledge_escalation(escalation_id, by=person, at=services.clock.now(), via="link")
    except (AckLinkError, NotFoundError) as exc:
        return _html("facmon", str(exc), status=403)
    except AcknowledgeError as exc:
        return _html(order.number, str(exc), status=409)
    return _html(f"{order.number} acknowledged / 已确认", f"Acknowledged by {done.acked_by}.")


def _resolve(services: ServicesDep, token: str) -> tuple[int, str, WorkOrder]:
    links = services.escalator.links if services.escalator else None
    if links is None:
        raise AckLinkError("acknowledge links are not enabled on this facmon")
    escalation_id, person = links.verify(token)
    escalation = services.state.get_escalation(escalation_id)
    return escalation_id, person, services.state.get_work_order(escalation.work_order_id)


def _html(title: str, message: str, *, status: int = 200, raw: bool = False) -> HTMLResponse:
    body = message if raw else escape(message)
    page = (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        # A file, not an inline style: the content security policy allows facmon's own files only.
        '<link rel="stylesheet" href="/static/ack.css"></head>'
        f"<body><h1>{escape(title)}</h1><p>{body}</p></body></html>"
    )
    return HTMLResponse(page, status_code=status)
