"""One frozen snapshot of what the GX reported, with the time it was read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: Charger states in which the MPPT has finished bulk (the battery is nearly full).
MPPT_FULL_STATES = frozenset({4, 5, 6})  # absorption, float, storage
#: /MppOperationMode value meaning "voltage/current limited" (holding PV back).
MPPT_MODE_LIMITED = 1
MPPT_MODE_TRACKING = 2


def _sum_phases(values: Mapping[str, float | None], prefix: str, suffix: str) -> float | None:
    """Sum L1-L3 of a quantity; None when no phase is valid."""
    phases = [values.get(f"{prefix}_l{n}_{suffix}") for n in (1, 2, 3)]
    valid = [v for v in phases if v is not None]
    return sum(valid) if valid else None


@dataclass(frozen=True)
class Measurements:
    """Decoded GX values by register name, at `time_s` (monotonic or simulated seconds).

    A value is None when it was not read (device absent) or failed its
    plausibility check. The properties give the quantities the controller uses,
    with signs: grid_w > 0 imports, battery_w > 0 charges.
    """

    time_s: float
    values: Mapping[str, float | None] = field(default_factory=dict)
    absent_roles: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))

    def get(self, name: str) -> float | None:
        """A value by register name, None when invalid or not read."""
        return self.values.get(name)

    @property
    def soc_pct(self) -> float | None:
        """Battery state of charge: the BMS's (0.1 %), else the system's (whole percent)."""
        soc = self.values.get("bms_soc_pct")
        return soc if soc is not None else self.values.get("battery_soc_pct")

    @property
    def battery_w(self) -> float | None:
        """Battery power, positive while charging: the BMS's 32-bit register, else the system's 16-bit one."""
        power = self.values.get("bms_power_w")
        return power if power is not None else self.values.get("battery_power_w")

    @property
    def grid_w(self) -> float | None:
        """Grid power summed over phases, positive while importing."""
        grid = _sum_phases(self.values, "grid", "w")
        return grid if grid is not None else _sum_phases(self.values, "meter", "w")

    @property
    def consumption_w(self) -> float | None:
        """AC consumption (house + heater) summed over phases."""
        return _sum_phases(self.values, "ac_consumption", "w")

    @property
    def pv_w(self) -> float | None:
        """PV power on DC: the system's total, else the MPPT's yield."""
        pv = self.values.get("pv_dc_w")
        return pv if pv is not None else self.values.get("mppt_yield_w")

    @property
    def mppt_state(self) -> int | None:
        """Solar charger state (3 bulk, 4 absorption, 5 float ...)."""
        state = self.values.get("mppt_state")
        return None if state is None else int(state)

    @property
    def mppt_mode(self) -> int | None:
        """MppOperationMode: 0 off, 1 voltage/current limited, 2 tracking."""
        mode = self.values.get("mppt_operation_mode")
        return None if mode is None else int(mode)

    @property
    def pv_curtailed(self) -> bool:
        """True when the MPPT holds PV back because the battery is full (hidden surplus)."""
        return self.mppt_mode == MPPT_MODE_LIMITED and self.mppt_state in MPPT_FULL_STATES
