"""The `work_orders` section: which alarms open a work order, and the response and resolve targets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, ValidationInfo, field_validator

from facmon.config.types import SECTION, Duration, PriorityKeys, as_list
from facmon.facility.model import Category, DeviceType, Priority, Severity


class _Model(BaseModel):
    model_config = SECTION


class AutoOpen(_Model):
    """Alarms of these severities (and device types, when given) open a work order of this priority."""

    severities: Annotated[list[Severity], BeforeValidator(as_list), Field(min_length=1)]
    device_types: Annotated[list[DeviceType], BeforeValidator(as_list)] = []
    priority: Priority
    team: str | None = None


DEFAULT_RESPONSE_TARGETS = {
    # Fire alarm or burst pipe: someone on site within 5 minutes; elevator entrapment: within 30 minutes.
    Priority.P1: timedelta(minutes=5),
    Priority.P2: timedelta(minutes=30),
    Priority.P3: timedelta(hours=4),
    Priority.P4: timedelta(hours=24),
}


DEFAULT_RESOLVE_TARGETS = {
    Priority.P1: timedelta(hours=4),
    Priority.P2: timedelta(hours=24),
    Priority.P3: timedelta(hours=72),
    Priority.P4: timedelta(hours=168),
}


@dataclass(frozen=True, slots=True)
class SlaTargets:
    """How long a work order may take, from its opening: to be acknowledged, to be answered (someone on site,
    or taking it up), to be resolved. None: no target."""

    acknowledge: timedelta | None
    respond: timedelta | None
    resolve: timedelta | None


class SlaOverride(_Model):
    """Targets for one category (and priority, or all of them) instead of the priority's defaults."""

    category: Category
    priority: Priority | None = None
    acknowledge: Duration | None = None
    respond: Duration | None = None
    resolve: Duration | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class WorkOrdersConfig(_Model):
    auto_open: list[AutoOpen] = []
    response_targets: Annotated[dict[Priority, Duration], PriorityKeys] = DEFAULT_RESPONSE_TARGETS
    # From opening to resolution, per priority; a work order still unresolved after it has breached its SLA.
    resolve_targets: Annotated[dict[Priority, Duration], PriorityKeys] = DEFAULT_RESOLVE_TARGETS
    # From opening to an acknowledgement of its page (or someone taking it up), per priority; none by default.
    acknowledge_targets: Annotated[dict[Priority, Duration], PriorityKeys] = {}
    # Targets by category (and priority) where they differ from the priority's: entries later in the list win.
    sla: list[SlaOverride] = []
    # An alarm raised again by the same rule on the same device within this time of a work order that is
    # not yet resolved joins that work order instead of opening another; 0s opens one per alarm.
    attach_within: Duration = timedelta(hours=1)

    def targets(self, category: Category, priority: Priority) -> SlaTargets:
        """The SLA of a work order of this category and priority."""
        acknowledge = self.acknowledge_targets.get(priority)
        respond = self.response_targets.get(priority)
        resolve = self.resolve_targets.get(priority)
        for override in self.sla:
            if override.category == category and override.priority in (None, priority):
                acknowledge = override.acknowledge if override.acknowledge is not None else acknowledge
                respond = override.respond if override.respond is not None else respond
                resolve = override.resolve if override.resolve is not None else resolve
        return SlaTargets(acknowledge, respond, resolve)

    @field_validator("response_targets", "resolve_targets")
    @classmethod
    def _fill_defaults(cls, value: dict[Priority, timedelta], info: ValidationInfo) -> dict[Priority, timedelta]:
        defaults = DEFAULT_RESPONSE_TARGETS if info.field_name == "response_targets" else DEFAULT_RESOLVE_TARGETS
        return {**defaults, **value}
