"""The real control loop as a bench strategy: `pvheater` (battery first) and `pvheater_heater_first`.

The strategy runs the same `ControlLoop` as `pvheater run` -- controller,
relay guard, calibration -- with the GX snapshot handed in by the day runner
instead of read over Modbus, and a `SimHeater` in place of the gpiozero pins.
The config is the shipped default with the simulated hardware filled in, as a
user would: the servo angles of the knob's ends and the heater's power.

`pvheater_forecast` is the same loop with the forecast reserve fed the day's
hourly forecast (`ScenarioDay.forecast_w`, with the scenario's seeded error),
"fetched" at the default fetch times. Simulated days run at
`SIM_DAY_UTC_S` + seconds since midnight as their UTC clock (local time = UTC).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import replace

from pvheater.calibration.curve import Calibration, calibration_from_config
from pvheater.config import Config
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeaterOutput
from pvheater.control.reserve import Forecast, StaticForecast
from pvheater.control.servo import worth_moving
from pvheater.control.timeofday import parse_fetch_times, time_of_day
from pvheater.errors import GxUnavailable
from pvheater.service.loop import ControlLoop
from pvheater.sim.params import Actuation, config_for_installation, config_for_plant
from pvheater.sim.plant import PlantTruth
from pvheater.sim.scenarios import ScenarioDay

#: A whole simulated day logs nothing: the bench reports the day's numbers instead.
_QUIET = logging.getLogger("pvheater.sim.quiet")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

#: UTC epoch seconds of a simulated day's midnight (2024-06-21, a midsummer day; local time = UTC).
SIM_DAY_UTC_S = datetime.datetime(2024, 6, 21, tzinfo=datetime.UTC).timestamp()


class SimForecast(StaticForecast):
    """The day's forecast, as a fetcher would hold it: none before the first fetch time, then refreshed at each."""

    def __init__(self, forecast: Forecast, fetch_times: str) -> None:
        super().__init__(None)
        self._content = forecast
        self._fetch_s = [t.hour * 3600.0 + t.minute * 60.0 for t in parse_fetch_times(fetch_times)]

    def at(self, now_s: float) -> None:
        """Bring the held forecast up to simulated time now_s (seconds since midnight)."""
        done = [t for t in self._fetch_s if t <= now_s % 86400.0]
        fetched = SIM_DAY_UTC_S + done[-1] if done else None
        if fetched is None:
            self.forecast = None
        elif self.forecast is None or self.forecast.fetched_utc_s != fetched:
            self.forecast = replace(self._content, fetched_utc_s=fetched)


class HandedSource:
    """A measurement source fed by the caller (the day runner's last GX publish)."""

    def __init__(self) -> None:
        self.m: Measurements | None = None

    def read(self) -> Measurements:
        """The snapshot handed in; GxUnavailable before the first one."""
        if self.m is None:
            raise GxUnavailable("no GX data published yet")
        return self.m


class SimHeater:
    """The heater port without pins: relay and servo angle (or duty, fraction of cycles) through the calibration.

    As `Heater` does: the servo skips small moves; pwm_0_10v and ssr_burst
    (`actuator`) take the calibrated input as it is, and 0 for zero power.
    """

    def __init__(self, calibration: Calibration, min_move_deg: float, actuator: str = "servo") -> None:
        self.calibration = calibration
        self.min_move_deg = min_move_deg
        self.actuator = actuator
        self.relay_on = False
        self.servo_angle_deg: float | None = calibration.zero_angle_deg if actuator == "servo" else None
        #: pwm_0_10v's duty or ssr_burst's fraction of cycles.
        self.drive = 0.0

    @property
    def input_value(self) -> float | None:
        """The servo angle, or pwm_0_10v's duty / ssr_burst's fraction of cycles."""
        return self.servo_angle_deg if self.actuator == "servo" else self.drive

    def apply(self, output: HeaterOutput, now_s: float) -> None:
        """Relay and knob; small moves are skipped like the real servo's."""
        if self.actuator != "servo":
            on = output.relay_on and output.power_w > 0
            self.drive = self.calibration.angle_for(output.power_w) if on else 0.0
            self.relay_on = output.relay_on
            return
        target = self.calibration.angle_for(output.power_w) if output.relay_on else self.calibration.zero_angle_deg
        if worth_moving(self.servo_angle_deg, target, self.calibration.zero_angle_deg, self.min_move_deg):
            self.servo_angle_deg = target
        self.relay_on = output.relay_on

    def safe_off(self, now_s: float) -> None:
        """Relay open, knob (input) to zero."""
        self.relay_on = False
        self.drive = 0.0
        if self.actuator == "servo":
            self.servo_angle_deg = self.calibration.zero_angle_deg

    def tick(self, now_s: float) -> None:
        """Nothing to do between applies: a simulated servo sends no pulses to stop."""

    def close(self) -> None:
        """Relay open (there are no pins to release)."""
        self.relay_on = False


class ControllerStrategy:
    """The real loop (controller + guard + calibration) driving the simulated plant."""

    def __init__(
        self, day: ScenarioDay, config: Config | None = None, name: str = "pvheater", forecast: bool = False
    ) -> None:
        cfg = config_for_installation(day.params, config_for_plant(day.params.heater, config))
        self.name = name
        self.interval_s = cfg.poll.interval_s
        self.source = HandedSource()
        self.heater = SimHeater(calibration_from_config(cfg), cfg.servo.min_move_deg, cfg.heater.actuator)
        self._rest_deg = day.params.heater.knob_zero_deg  # where the unused knob stays for pwm_0_10v, ssr_burst
        self.forecast: SimForecast | None = None
        if forecast:
            content = Forecast.from_hourly(SIM_DAY_UTC_S, day.forecast_w, SIM_DAY_UTC_S)
            self.forecast = SimForecast(content, cfg.forecast.fetch_times)
        self.loop = ControlLoop(self.source, self.heater, cfg, logger=_QUIET, forecast=self.forecast)
        if self.loop.hot_water is not None:  # simulated local time is UTC (SIM_DAY_UTC_S)
            self.loop.hot_water.local_tz = datetime.UTC

    def decide(self, now_s: float, m: Measurements | None, truth: PlantTruth | None) -> Actuation:
        """One tick of the real loop on the last published snapshot."""
        self.source.m = m
        local_time = time_of_day(now_s)
        if self.forecast is not None:
            self.forecast.at(now_s)
        self.loop.tick(now_s, local_time, SIM_DAY_UTC_S + now_s)
        angle = self.heater.servo_angle_deg
        if self.heater.actuator != "servo":
            return Actuation(self.heater.relay_on, self._rest_deg, self.heater.drive)
        return Actuation(self.heater.relay_on, self.heater.calibration.zero_angle_deg if angle is None else angle)


def _heater_first(day: ScenarioDay) -> ControllerStrategy:
    """`pvheater_heater_first`: the loop with control.policy heater_first."""
    cfg = Config()
    cfg = replace(cfg, control=replace(cfg.control, policy="heater_first"))
    return ControllerStrategy(day, cfg, name="pvheater_heater_first")


def _with_forecast(day: ScenarioDay) -> ControllerStrategy:
    """`pvheater_forecast`: the loop with the forecast reserve fed the day's forecast."""
    cfg = Config()
    cfg = replace(cfg, forecast=replace(cfg.forecast, battery_capacity_wh=day.params.battery.capacity_wh))
    return ControllerStrategy(day, cfg, name="pvheater_forecast", forecast=True)



#: The real loop's strategies by name (pvheater.sim.strategy lists them after the reference strategies).
CONTROLLER_STRATEGIES: dict[str, Callable[[ScenarioDay], ControllerStrategy]] = {
    "pvheater": ControllerStrategy,
    "pvheater_forecast": _with_forecast,
    "pvheater_heater_first": _heater_first,
}
