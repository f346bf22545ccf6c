from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import APIRouter

from facmon.api.auth import Admin
from facmon.api.deps import ServicesDep
from facmon.api.schemas import Page, RulePublic
from facmon.config.durations import format_duration
from facmon.rules.conditions import format_value

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/rules", tags=["rules"])


@router.get("", response_model=Page[RulePublic], summary="The rules in force")
def list_rules(services: ServicesDep) -> Page[RulePublic]:
    in_force = services.alarms.rules
    items = []
    for config in in_force.configs:
        compiled = in_force.by_id(config.id)
        levels = [
            f"{lv.severity}: {_condition(lv.model_dump(by_alias=True, exclude_none=True))}" for lv in config.levels
        ]
        items.append(
            RulePublic(id=config.id, name=config.name, enabled=config.enabled, devices=len(compiled), levels=levels)
        )
    return Page(items=items, total=len(items))


@router.post(
    "/reload",
    response_model=Page[RulePublic],
    summary="Read the rules from the config file again",
    responses={422: {"description": "The file is invalid: its errors are listed and the old rules stay in force"}},
)
def reload_rules(services: ServicesDep, user: Admin) -> Page[RulePublic]:
    services.reload_rules()
    log.info("rules reloaded by %s", user.name)
    return list_rules(services)


def _condition(level: dict[str, object]) -> str:
    parts = [f"{k} {_show(v)}" for k, v in level.items() if k not in ("severity", "message")]
    return ", ".join(parts)


def _show(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {_show(v)}" for k, v in value.items()) + "}"
    return format_value(value) if isinstance(value, float | int | bool | str) else str(value)
