"""Errors of the rules package.

RulesError
└── LifecycleError    an operator action the alarm's state does not allow (acknowledge a cleared alarm, reset one
                      whose condition is present, …), or returning a device that is in service (API: 409)
"""


class RulesError(Exception):
    """Base of the rules package's errors."""


class LifecycleError(RulesError):
    """An operator action that the alarm's state does not allow."""
