"""Errors of the simulators package.

SimulatorError
├── ScenarioError           a scenario file that cannot be used; the message names the file and the entry
└── GatewayConnectionError  a simulated gateway cannot connect to the broker, or the broker refuses it
"""


class SimulatorError(Exception):
    """Base of the simulators package's errors."""


# A ValueError too: the command line reports a bad scenario as it reports any other bad value.
class ScenarioError(SimulatorError, ValueError):
    """A scenario file that cannot be used; the message names the file and the entry."""


# A ConnectionError too: the command line reports a broker that cannot be reached as any other OSError.
class GatewayConnectionError(SimulatorError, ConnectionError):
    """A simulated gateway cannot connect to the broker, or the broker refuses it."""
