"""What a simulated run produces: its per-step series, its result, and its metrics against the heater-off day."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pvheater.sim.plant import EnergyTotals


@dataclass(frozen=True)
class RunSeries:
    """Per-step averages of a run, W (soc_pct in %); step k covers [start_s + k dt_s, start_s + (k+1) dt_s).

    The runner fills compact ``array('d')`` sequences (8 bytes a value).
    """

    start_s: float
    dt_s: float
    pv_avail_w: Sequence[float]
    pv_used_w: Sequence[float]
    house_w: Sequence[float]
    heater_w: Sequence[float]
    battery_w: Sequence[float]
    grid_w: Sequence[float]
    soc_pct: Sequence[float]
    surplus_w: Sequence[float]

    def __len__(self) -> int:
        return len(self.pv_used_w)

    def times_s(self) -> list[float]:
        """Start time of each step, seconds since midnight."""
        return [self.start_s + k * self.dt_s for k in range(len(self))]


@dataclass(frozen=True)
class RunResult:
    """Everything one run produced."""

    scenario: str
    strategy: str | None  # None: the heater-off baseline
    seed: int
    start_s: float
    end_s: float
    dt_s: float
    series: RunSeries
    energy: EnergyTotals
    relay_toggles: int
    servo_travel_deg: float
    servo_moves: int
    start_soc_pct: float
    end_soc_pct: float
    decisions: int
    publishes: int
    wall_s: float
    outages_s: tuple[tuple[float, float], ...] = ()
    heater_max_w: float = 0.0
    #: The actuator's own wear figures when it is not the servo (pvheater/sim/regulators.py).
    actuator_wear: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RunMetrics:
    """The numbers of one run against its heater-off baseline."""

    scenario: str
    strategy: str
    heater_kwh: float
    oracle_surplus_kwh: float
    capture: float | None
    draw_kwh: float
    draw_battery_kwh: float
    draw_grid_kwh: float
    relay_toggles: int
    servo_travel_deg: float
    servo_moves: int
    worst_overshoot_w: float
    outage_heater_kwh: float | None
    end_soc_pct: float
    baseline_end_soc_pct: float
    balance_error_pct: float
    wall_s: float
