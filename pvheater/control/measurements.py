"""One frozen snapshot of what the GX reported, with the time it was read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

#: Charger states in which the MPPT has finished bulk (the battery is nearly full).
MPPT_FULL_STATES = frozenset({4, 5, 6})  # absorption, float, storage
#: /MppOperationMode value meaning "voltage/current limited" (holding PV back).
MPPT_MODE_LIMITED = 1
MPPT_MODE_TRACKING = 2
#: SoC from which AC-coupled PV on the inverter output counts as throttled (frequency shift) when it produces.
AC_PV_FULL_SOC_PCT = 98.0
#: AC-coupled PV below this (W) is standby, not a throttled inverter.
AC_PV_MIN_W = 50.0
#: The Multi's output this far above its nominal frequency is shifting (throttling AC-coupled PV), Hz: PV
#: inverters begin to derate at 50.2 Hz on a 50 Hz system (60.2 on 60 Hz); at the nominal frequency they are not.
AC_PV_SHIFT_HZ = 0.2
#: Separator of an extra solar charger's values: "mppt_state#2" is the state of the charger at unit ID 2.
CHARGER_SEPARATOR = "#"


def _sum_phases(
    values: Mapping[str, float | None], prefix: str, suffix: str, refused: frozenset[str] = frozenset()
) -> float | None:
    """Sum L1-L3 of a quantity; None when no phase is valid or a phase was refused (the sum would hide it)."""
    names = [f"{prefix}_l{n}_{suffix}" for n in (1, 2, 3)]
    if refused.intersection(names):
        return None
    valid = [v for v in (values.get(name) for name in names) if v is not None]
    return sum(valid) if valid else None


@dataclass(frozen=True)
class Measurements:
    """Decoded GX values by register name, at `time_s` (monotonic or simulated seconds).

    A value is None when it was not read (device absent) or failed its
    plausibility check. The properties give the quantities the controller uses,
    with signs: grid_w > 0 imports, battery_w > 0 charges; the derived ones are
    computed once per snapshot (the values cannot change after construction).
    """

    time_s: float
    values: Mapping[str, float | None] = field(default_factory=dict)
    absent_roles: frozenset[str] = frozenset()
    #: Register names whose reading the energy balance refuted (now None): a phase sum never skips them.
    refused: frozenset[str] = frozenset()

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

    @cached_property
    def grid_w(self) -> float | None:
        """Grid power summed over phases, positive while importing."""
        grid = _sum_phases(self.values, "grid", "w", self.refused)
        return grid if grid is not None else _sum_phases(self.values, "meter", "w", self.refused)

    def phase_w(self, prefix: str, phase: int) -> float | None:
        """One phase of a quantity by register prefix ("grid", "ac_consumption", "vebus_ac_out"), None unknown."""
        return self.values.get(f"{prefix}_l{phase}_w")

    @cached_property
    def consumption_w(self) -> float | None:
        """AC consumption (house + heater) summed over phases."""
        return _sum_phases(self.values, "ac_consumption", "w", self.refused)

    @cached_property
    def pv_ac_w(self) -> float | None:
        """AC-coupled PV on the inverter output (/Ac/PvOnOutput), summed over phases; None without one."""
        return _sum_phases(self.values, "pv_ac_out", "w", self.refused)

    @property
    def pv_dc_w(self) -> float | None:
        """PV power on DC: the system's total of all solar chargers, else the chargers' summed yield."""
        pv = self.values.get("pv_dc_w")
        return pv if pv is not None else self.values.get("mppt_yield_w")

    @cached_property
    def pv_w(self) -> float | None:
        """All PV: DC (all solar chargers) plus AC-coupled PV on the inverter output; None when neither is known."""
        if self.refused.intersection(f"pv_ac_out_l{n}_w" for n in (1, 2, 3)):
            return None  # AC PV is there but unknown: a sum without it would read low
        parts = [p for p in (self.pv_dc_w, self.pv_ac_w) if p is not None]
        return sum(parts) if parts else None

    @property
    def inverter_rating_w(self) -> float | None:
        """The VE.Bus system's nominal (continuous) inverter power, all phases; None when not published."""
        return self.values.get("vebus_nominal_power_w")

    def chargers(self) -> list[tuple[int | None, int | None]]:
        """(state, MppOperationMode) of every solar charger read: the first (unit_ids.mppt), then the extra ones."""
        return list(self._chargers)

    @cached_property
    def _chargers(self) -> tuple[tuple[int | None, int | None], ...]:
        found = [(self.mppt_state, self.mppt_mode)]
        for name, value in self.values.items():
            if CHARGER_SEPARATOR not in name:
                continue
            base, _, unit = name.partition(CHARGER_SEPARATOR)
            if base == "mppt_state":
                mode = self.values.get(f"mppt_operation_mode{CHARGER_SEPARATOR}{unit}")
                found.append((None if value is None else int(value), None if mode is None else int(mode)))
        return tuple(found)

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

    @cached_property
    def pv_curtailed(self) -> bool:
        """True when PV is held back because the battery is full (hidden surplus).

        Any solar charger voltage/current limited in absorption, float or storage;
        or AC-coupled PV producing on the inverter output with the battery full and
        not discharging (its inverter is throttled by frequency shift: it has no
        MppOperationMode, so the battery tells), and -- when the Multi's output
        frequency is read -- that frequency shifted above nominal (at the nominal
        frequency the PV inverter is not held back: no hidden surplus).
        """
        if any(mode == MPPT_MODE_LIMITED and state in MPPT_FULL_STATES for state, mode in self._chargers):
            return True
        ac_pv, soc, battery = self.pv_ac_w, self.soc_pct, self.battery_w
        hz = self.values.get("vebus_ac_out_l1_hz")
        if hz is not None:  # the frequency tells whether the Multi is throttling the PV inverter at all
            nominal_hz = 60.0 if hz > 55.0 else 50.0
            if hz < nominal_hz + AC_PV_SHIFT_HZ - 1e-9:
                return False
        return (
            ac_pv is not None and ac_pv >= AC_PV_MIN_W and soc is not None and soc >= AC_PV_FULL_SOC_PCT
            and battery is not None and battery >= 0.0
        )
