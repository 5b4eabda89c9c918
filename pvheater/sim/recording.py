"""Per-step recording of a plant into a run's series, and the run's result: one recorder for every runner."""

from __future__ import annotations

from array import array

from pvheater.sim.plant import Plant
from pvheater.sim.results import RunResult, RunSeries
from pvheater.sim.scenarios import ScenarioDay


class RunRecorder:
    """Records a plant's step averages after each step (compact ``array('d')``, 8 bytes a value)."""

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self.start_soc_pct = plant.soc_pct
        self.pv_avail_w, self.pv_used_w, self.house_w, self.heater_w = (array("d") for _ in range(4))
        self.battery_w, self.grid_w, self.soc_pct, self.surplus_w = (array("d") for _ in range(4))
        self._appends = (
            self.pv_avail_w.append, self.pv_used_w.append, self.house_w.append, self.heater_w.append,
            self.battery_w.append, self.grid_w.append, self.soc_pct.append, self.surplus_w.append,
        )

    def __len__(self) -> int:
        return len(self.pv_used_w)

    def record(self) -> None:
        """Append the plant's last step."""
        p = self.plant
        pv_avail, pv_used, house, heater, battery, grid, soc, surplus = self._appends  # bound: once a step is hot
        pv_avail(p.pv_avail_w)
        pv_used(p.pv_used_w)
        house(p.house_w)
        heater(p.heater_w)
        battery(p.battery_w)
        grid(p.grid_w)
        soc(p.soc_pct)
        surplus(p.surplus_w)

    def series(self, start_s: float, dt_s: float) -> RunSeries:
        """The recorded steps as a RunSeries starting at start_s."""
        return RunSeries(
            start_s, dt_s, self.pv_avail_w, self.pv_used_w, self.house_w, self.heater_w,
            self.battery_w, self.grid_w, self.soc_pct, self.surplus_w,
        )

    def result(
        self,
        day: ScenarioDay,
        strategy: str | None,
        *,
        start_s: float,
        end_s: float,
        dt_s: float,
        start_soc_pct: float | None = None,
        decisions: int = 0,
        publishes: int = 0,
        wall_s: float = 0.0,
        outages_s: tuple[tuple[float, float], ...] = (),
    ) -> RunResult:
        """The run so far: the series, the plant's energy and counters (start SoC: the plant's when recording began)."""
        plant = self.plant
        return RunResult(
            scenario=day.name,
            strategy=strategy,
            seed=day.seed,
            start_s=start_s,
            end_s=end_s,
            dt_s=dt_s,
            series=self.series(start_s, dt_s),
            energy=plant.energy(),
            relay_toggles=plant.relay_toggles,
            servo_travel_deg=plant.servo_travel_deg,
            servo_moves=plant.servo_moves,
            start_soc_pct=self.start_soc_pct if start_soc_pct is None else start_soc_pct,
            end_soc_pct=plant.soc_pct,
            decisions=decisions,
            publishes=publishes,
            wall_s=wall_s,
            outages_s=outages_s,
            heater_max_w=day.params.heater.max_power_w,
            actuator_wear=plant.actuator_wear(),
        )
