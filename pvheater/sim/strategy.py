"""Strategies that drive the simulated heater, and their registry.

A strategy is called every ``interval_s`` seconds of simulated time with the
latest GX snapshot and returns an :class:`Actuation` (relay and commanded servo
angle), which the plant holds until the next call.

``m`` is the last snapshot the GX published (``None`` before the first one).
During a GX outage the runner keeps passing that last snapshot with its old
``time_s``: a strategy must judge staleness itself from ``now_s - m.time_s``.
``truth`` is the plant's true state and the scenario for look-ahead; only the
oracles may use it (the runner passes it to every strategy).

Built in:

- ``original``: the original project's algorithm (see :class:`OriginalStrategy`).
- ``oracle``: perfect knowledge of PV and house load, inverts the true regulator
  curve, acts every second; ``oracle_late_1s`` / ``oracle_late_2s`` do the same
  acting 1 s / 2 s late.

- ``pvheater``, ``pvheater_forecast``, ``pvheater_heater_first``: the real control
  loop (:mod:`pvheater.sim.controller_strategy`).

:data:`STRATEGIES` names them all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pvheater.control.measurements import Measurements
from pvheater.sim.controller_strategy import CONTROLLER_STRATEGIES
from pvheater.sim.params import Actuation, HeaterPlantParams
from pvheater.sim.plant import PlantTruth, angle_for_power_w
from pvheater.sim.scenarios import ScenarioDay


class Strategy(Protocol):
    """Decides the actuation from the latest GX snapshot (and, for oracles, the truth)."""

    name: str
    #: How often decide() is called, seconds of simulated time.
    interval_s: float

    def decide(self, now_s: float, m: Measurements | None, truth: PlantTruth | None) -> Actuation:
        """The actuation to hold until the next call."""
        ...


#: Builds a strategy for one simulated day (it may use the day's forecast and plant geometry).
StrategyFactory = Callable[[ScenarioDay], Strategy]

#: The strategy `pvheater simulate` runs by default.
DEFAULT_STRATEGY = "pvheater"


def strategy_names() -> list[str]:
    """Names of every strategy, the reference strategies first."""
    return list(STRATEGIES)


def make_strategy(name: str, day: ScenarioDay) -> Strategy:
    """A fresh strategy by name for a day; ValueError listing the names when unknown."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r} (expected one of: {', '.join(STRATEGIES)})")
    return STRATEGIES[name](day)


# --- the original algorithm ---------------------------------------------------------


@dataclass(frozen=True)
class OriginalParams:
    """The original project's published defaults (a 3 s loop)."""

    interval_s: float = 3.0
    day_start_h: float = 9.0
    day_end_h: float = 18.0
    #: Heat only while SoC is above this.
    min_soc_pct: float = 95.0
    #: Relay off above this grid import.
    max_grid_import_w: float = 80.0
    #: While off: relay on when forecast - PV charger power exceeds this.
    switch_on_diff_w: float = 700.0
    #: While on: +step when forecast - PV charger power exceeds this.
    raise_diff_w: float = 100.0
    #: While on: -step when |battery power| exceeds this.
    battery_tolerance_w: float = 100.0
    step_pct: float = 10.0
    start_pct: float = 50.0
    #: "VRM data missing": the snapshot is older than this.
    stale_after_s: float = 10.0
    #: 0-100 % maps linearly onto 0..servo_full_deg (the knob's real travel is ignored).
    servo_full_deg: float = 180.0


class OriginalStrategy:
    """The original algorithm as its flowchart and published defaults describe it.

    Every 3 s: relay off and power reset to 50 % when outside 09:00-18:00, SoC <= 95 %,
    data missing (older than 10 s) or grid import > 80 W. While off: relay on at
    50 % when the hour's forecast minus PV-charger power > 700 W. While on: -10 %
    when |battery power| > 100 W (the original took the absolute value, so a
    charging battery also backs it off) or the battery is discharging; else +10 %
    when forecast minus PV > 100 W; else hold. 0-100 % maps linearly onto
    0-180 degrees. On relay off the servo stays where it is; the 50 % is applied
    when the relay closes again.
    """

    name = "original"

    def __init__(self, forecast_w: Callable[[float], float], params: OriginalParams | None = None) -> None:
        self.params = p = params if params is not None else OriginalParams()
        self.interval_s = p.interval_s
        self._forecast = forecast_w
        self.relay_on = False
        self.power_pct = p.start_pct
        self._angle_deg = 0.0

    def _angle(self) -> float:
        return self.power_pct * self.params.servo_full_deg / 100.0

    def decide(self, now_s: float, m: Measurements | None, truth: PlantTruth | None) -> Actuation:
        """One pass of the original loop."""
        p = self.params
        hour = (now_s % 86_400.0) / 3600.0
        fresh = m is not None and now_s - m.time_s <= p.stale_after_s
        soc, grid, pv, battery = (m.soc_pct, m.grid_w, m.pv_w, m.battery_w) if fresh and m else (None,) * 4
        if (
            m is None
            or soc is None
            or grid is None
            or pv is None
            or battery is None  # data missing
            or not p.day_start_h <= hour < p.day_end_h
            or soc <= p.min_soc_pct
            or grid > p.max_grid_import_w
        ):
            self.relay_on = False
            self.power_pct = p.start_pct
            return Actuation(False, self._angle_deg)
        headroom_w = self._forecast(now_s) - pv
        if not self.relay_on:
            if headroom_w > p.switch_on_diff_w:
                self.relay_on = True
                self.power_pct = p.start_pct
                self._angle_deg = self._angle()
            return Actuation(self.relay_on, self._angle_deg)
        state = m.get("battery_state")
        discharging = battery < 0 if state is None else int(state) == 2
        if abs(battery) > p.battery_tolerance_w or discharging:
            self.power_pct = max(0.0, self.power_pct - p.step_pct)
        elif headroom_w > p.raise_diff_w:
            self.power_pct = min(100.0, self.power_pct + p.step_pct)
        self._angle_deg = self._angle()
        return Actuation(True, self._angle_deg)


# --- the oracle ---------------------------------------------------------------------


class OracleStrategy:
    """Perfect knowledge: sets the heater to the true surplus (capped at its maximum), every second.

    It reads ``truth.surplus_w`` (what PV can give beyond the house and the
    battery's acceptance, within the inverter's limit) and inverts the true
    regulator curve and knob geometry. The relay closes at ``on_w`` and opens
    below ``off_w``. With ``late_s`` it applies each decision that many seconds
    late, like a controller that sees the world ``late_s`` behind.
    """

    def __init__(
        self,
        heater: HeaterPlantParams,
        *,
        late_s: float = 0.0,
        name: str = "oracle",
        on_w: float = 40.0,
        off_w: float = 10.0,
        interval_s: float = 1.0,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self._heater = heater
        self._delay = round(late_s / interval_s)
        self._queue: deque[Actuation] = deque()
        self._on_w, self._off_w = on_w, off_w
        self._relay = False
        self._angle_deg = heater.knob_zero_deg
        self._target_w = -1.0
        self._idle = Actuation(False, heater.knob_zero_deg)

    def decide(self, now_s: float, m: Measurements | None, truth: PlantTruth | None) -> Actuation:
        """Follow the true surplus, optionally late."""
        if truth is None:
            raise ValueError("the oracle needs the plant's truth")
        target = min(truth.surplus_w, self._heater.max_power_w) if truth.tank_accepts else 0.0
        self._relay = target >= (self._off_w if self._relay else self._on_w)
        if self._relay and target != self._target_w:
            self._target_w = target
            self._angle_deg = angle_for_power_w(target, self._heater)
        act = Actuation(self._relay, self._angle_deg)
        if not self._delay:
            return act
        self._queue.append(act)
        if len(self._queue) > self._delay:
            return self._queue.popleft()
        return self._idle


#: Every strategy by name: the references (original, oracles), then the real loop.
STRATEGIES: dict[str, StrategyFactory] = {
    "original": lambda day: OriginalStrategy(day.forecast_at),
    "oracle": lambda day: OracleStrategy(day.params.heater),
    "oracle_late_1s": lambda day: OracleStrategy(day.params.heater, late_s=1.0, name="oracle_late_1s"),
    "oracle_late_2s": lambda day: OracleStrategy(day.params.heater, late_s=2.0, name="oracle_late_2s"),
    **CONTROLLER_STRATEGIES,
}
#: The strategies that read the day's forecast (the *_forecast_* scenarios differ from their day in the forecast).
FORECAST_STRATEGIES: tuple[str, ...] = ("original", "pvheater_forecast")


def forecast_strategy_names() -> list[str]:
    """Names of the strategies that read the day's forecast."""
    return [name for name in STRATEGIES if name in FORECAST_STRATEGIES]
