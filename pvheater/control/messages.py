"""The two messages that flow from the controller to the pins."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeatRequest:
    """What the controller asks for: heat or not, and how many watts."""

    want_heat: bool
    power_w: float
    reason: str = ""


@dataclass(frozen=True)
class HeaterOutput:
    """What the relay guard allows: the relay state and the heater power to set."""

    relay_on: bool
    power_w: float
    reason: str = ""
    #: True when the relay is held open because the data are missing, stale or implausible (the fail-safe).
    failsafe: bool = False


#: The safe output: relay open, regulator at zero.
SAFE_OFF = HeaterOutput(relay_on=False, power_w=0.0, reason="safe off")
