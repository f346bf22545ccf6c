"""Errors of the alerts package.

AlertsError
└── WorkOrderError                 a change to a work order that cannot be made; nothing is changed
    ├── TransitionNotAllowedError  its status does not lead to the one asked for (API: 409)
    └── TransitionInputError       the transition lacks what it needs, or got what it does not take (API: 422)
AcknowledgeError                   nothing to acknowledge: no paging, or it is over (API: 409)
AckLinkError                       a one-click acknowledge link that is forged, garbled or expired (API: 403)
"""

from __future__ import annotations

from collections.abc import Sequence

from facmon.facility.model import WorkOrderStatus


class AlertsError(Exception):
    """Base of the alerts package's errors."""


class WorkOrderError(AlertsError):
    pass


class TransitionNotAllowedError(WorkOrderError):
    def __init__(
        self, number: str, current: WorkOrderStatus, to: WorkOrderStatus, allowed: Sequence[WorkOrderStatus]
    ) -> None:
        self.current = current
        self.to = to
        self.allowed = tuple(allowed)
        then = f"it can move to {', '.join(allowed)}" if allowed else "it is final"
        super().__init__(f"work order {number} is {current}, not allowed to move to {to}: {then}")


class TransitionInputError(WorkOrderError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class AcknowledgeError(AlertsError):
    """Nothing to acknowledge: the work order pages nobody, or its paging is over."""


class AckLinkError(AlertsError):
    """A one-click acknowledge link that is forged, garbled or expired."""
