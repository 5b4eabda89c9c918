"""The hot-water part of the control tick: pvheater.control.hotwater with its inputs, commands, energy and state file.

`HotWater.advise(...)` runs once per tick between the controller and the
guard (ControlLoop._step): it applies the commands queued since the last
tick (mode, boost), gathers the inputs -- the tank sensor's newest reading
(read in its own thread, pvheater/tank_sensor.py; only ``latest()`` is taken
here), the heater-response observer's tank-full state, the heater energy and
PV energy counted today, SoC, the forecast -- steps the pure logic and
combines its advice with the controller's request (hotwater.combine). The
tick then passes ``forced`` to the guard.

Commands come from any front-end thread through the hub (`register`):
a handler validates against the current state, queues the change and answers
at once; the next tick applies it (effect within one tick). A mode set is
saved to the state file (pvheater/hot_water_store.py) when the tick applies
it, as are the legionella dates.

Energy today: the heater's power (measured by the GX's response when known,
else the calibration's) is integrated every tick; in a forced tick (boost,
top-up, legionella) the part the grid and the battery supplied -- at most
the heater's power -- counts as grid energy, the rest (and every unforced
tick) as solar. The counters start over at local midnight.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pvheater.config import Config
from pvheater.control import hotwater
from pvheater.control.hotwater import HotWaterAdvice, HotWaterInputs, HotWaterSettings, HotWaterState, TankReading
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeatRequest
from pvheater.control.reserve import ForecastProvider
from pvheater.errors import PvHeaterError
from pvheater.hot_water_store import HotWaterStore, SavedHotWater

log = logging.getLogger("pvheater")

#: A gap between ticks longer than this is not integrated (the service was stopped or hung).
MAX_INTEGRATE_S = 30.0


class TankSource(Protocol):
    """Anything with latest() -> TankReading | None (the sensor thread; a simulation's feed)."""

    def latest(self) -> TankReading | None:
        """The newest reading (None before the first)."""
        ...


@dataclass(frozen=True)
class HotWaterTick:
    """What the hot-water part did this tick (for the report, the state and the history)."""

    advice: HotWaterAdvice
    forced: str | None
    boost_left_s: float | None
    #: Heater power this tick counted as from the grid / battery (forced ticks only), W.
    grid_w: float
    energy_today_solar_kwh: float
    energy_today_grid_kwh: float
    last_60c: datetime.date | None


class HotWater:
    """State, settings and inputs of the hot-water logic inside the control loop."""

    def __init__(self, config: Config, *, tank: TankSource | None = None, store: HotWaterStore | None = None,
                 logger: logging.Logger = log, local_tz: datetime.tzinfo | None = None) -> None:
        self.log = logger
        self.tank = tank
        self.store = store
        #: Time zone of the local date (None: the system's); the simulation runs on UTC.
        self.local_tz = local_tz
        self.apply_config(config)
        saved = store.load(config.hot_water.mode) if store is not None else SavedHotWater(config.hot_water.mode)
        self.state: HotWaterState = saved.state()
        self._saved = SavedHotWater.of(self.state)
        self._lock = threading.Lock()
        self._pending: list[Callable[[HotWaterState, float], tuple[HotWaterState, str]]] = []
        self._day: datetime.date | None = None
        self._prev_s: float | None = None
        self._heater_w = 0.0
        self._grid_w = 0.0
        self.pv_today_kwh = 0.0
        self.heater_today_kwh = 0.0
        self.grid_today_kwh = 0.0
        self.last: HotWaterTick | None = None

    def apply_config(self, config: Config) -> None:
        """The settings of the hot-water sections (at start and on a reload); the state is kept."""
        self.settings = HotWaterSettings.from_config(config)
        #: Off-grid: no automatic forced heating (it would drain the battery).
        self.grid_available = not config.gx.off_grid

    # --- commands (any thread) --------------------------------------------------------

    def set_mode(self, mode: str) -> str:
        """Queue a mode change; PvHeaterError (one line) for an unknown mode. Returns the answer's message."""
        try:
            _, message = hotwater.set_mode(self._projected(), mode)
        except ValueError as exc:
            raise PvHeaterError(str(exc)) from None
        self._queue(lambda state, now_s: hotwater.set_mode(state, mode))
        return f"{message} (from the next tick)"

    def boost(self, minutes: float | None = None, temp_c: float | None = None) -> str:
        """Queue a boost for minutes and/or to temp_c; PvHeaterError when refused. Returns the answer's message."""
        try:
            _, message = hotwater.start_boost(self._projected(), self.settings, 0.0, minutes, temp_c)
        except ValueError as exc:
            raise PvHeaterError(f"boost refused: {exc}") from None
        self._queue(lambda state, now_s: hotwater.start_boost(state, self.settings, now_s, minutes, temp_c))
        return f"{message} (from the next tick)"

    def cancel_boost(self) -> str:
        """Queue the end of a running boost."""
        if self._projected().boost is None:
            return "no boost running"
        self._queue(lambda state, now_s: hotwater.cancel_boost(state))
        return "boost cancelled (from the next tick)"

    def _projected(self) -> HotWaterState:
        """The state once the queued commands are applied: what a new command is checked against.

        `pvheater mode auto` and a `pvheater boost` right after it (before the next tick) must not see the old mode.
        """
        with self._lock:
            pending = list(self._pending)
        state = self.state
        for change in pending:
            with contextlib.suppress(ValueError):  # refused at its tick too (see advise): it changes nothing
                state, _ = change(state, 0.0)
        return state

    def _queue(self, change: Callable[[HotWaterState, float], tuple[HotWaterState, str]]) -> None:
        with self._lock:
            self._pending.append(change)

    # --- the tick ---------------------------------------------------------------------

    def local_dt(self, local_time: datetime.time | None, utc_s: float | None) -> datetime.datetime | None:
        """The local date and time of this tick (None while the clock is not trusted)."""
        if local_time is None or utc_s is None:
            return None
        date = datetime.datetime.fromtimestamp(utc_s, self.local_tz).date()
        return datetime.datetime.combine(date, local_time)

    def advise(self, request: HeatRequest, m: Measurements | None, now_s: float, local_time: datetime.time | None,
               utc_s: float | None, tank_full: bool, forecast: ForecastProvider | None) -> tuple[HeatRequest, bool]:
        """Apply the queued commands, step the logic and combine its advice with the controller's request.

        Returns the request for the guard and whether it is forced (the guard skips its policy gates).
        """
        with self._lock:
            pending, self._pending = self._pending, []
        for change in pending:
            try:
                self.state, message = change(self.state, now_s)
            except ValueError as exc:  # e.g. a boost queued just before a mode off
                self.log.warning("hot water: command not applied: %s", exc)
            else:
                self.log.info("hot water: %s", message)
        local_dt = self.local_dt(local_time, utc_s if local_time is not None else None)
        inputs = HotWaterInputs(
            tank=None if self.tank is None else self.tank.latest(),
            tank_full=tank_full,
            heater_energy_today_kwh=self.heater_today_kwh,
            pv_energy_today_kwh=self.pv_today_kwh if local_dt is not None else None,
            soc_pct=None if m is None else m.soc_pct,
            grid_available=self.grid_available,
            forecast=None if forecast is None else forecast.latest(),
        )
        utc = utc_s if local_dt is not None else None
        self.state, advice = hotwater.step(self.state, self.settings, inputs, now_s, local_dt, utc)
        for line in advice.events:
            self.log.info("hot water: %s", line)
        self._save_if_changed()
        combined, forced = hotwater.combine(request, advice)
        boost = self.state.boost
        self.last = HotWaterTick(
            advice, advice.forced if forced else None,
            None if boost is None else max(0.0, boost.until_s - now_s),
            self._grid_w, self.heater_today_kwh - self.grid_today_kwh, self.grid_today_kwh, self.state.last_60c,
        )
        return combined, forced

    def account(self, now_s: float, m: Measurements | None, heater_w: float, forced: bool,
                local_time: datetime.time | None, utc_s: float | None) -> None:
        """After the tick's apply: integrate the power held since the last tick; heater_w is held from now on."""
        local_dt = self.local_dt(local_time, utc_s)
        if local_dt is not None and local_dt.date() != self._day:
            if self._day is not None:
                self.log.info("hot water: %s: heater %.2f kWh (grid %.2f kWh), PV %.1f kWh", self._day,
                              self.heater_today_kwh, self.grid_today_kwh, self.pv_today_kwh)
            self._day = local_dt.date()
            self.heater_today_kwh = self.grid_today_kwh = self.pv_today_kwh = 0.0
        if self._prev_s is not None and 0.0 < now_s - self._prev_s <= MAX_INTEGRATE_S:
            h = (now_s - self._prev_s) / 3600.0
            self.heater_today_kwh += self._heater_w * h / 1000.0
            self.grid_today_kwh += self._grid_w * h / 1000.0
            if m is not None and m.pv_w is not None:
                self.pv_today_kwh += max(0.0, m.pv_w) * h / 1000.0
        self._prev_s = now_s
        self._heater_w = max(0.0, heater_w)
        self._grid_w = 0.0
        if forced and m is not None:
            draw_w = max(0.0, m.grid_w or 0.0) + max(0.0, -(m.battery_w or 0.0))
            self._grid_w = min(self._heater_w, draw_w)

    def _save_if_changed(self) -> None:
        saved = SavedHotWater.of(self.state)
        if saved != self._saved:
            self._saved = saved
            if self.store is not None:
                self.store.save(saved)


def register(hub: Any, part: HotWater) -> None:
    """Answer {"cmd":"mode","mode":...} and {"cmd":"boost","minutes"|"temp_c"|"cancel":...} on the hub."""

    def mode(request: dict[str, Any]) -> dict[str, Any]:
        value = request.get("mode")
        if not isinstance(value, str):
            raise PvHeaterError(f"mode: expected one of {', '.join(hotwater.MODES)}")
        return {"message": part.set_mode(value)}

    def boost(request: dict[str, Any]) -> dict[str, Any]:
        if request.get("cancel") is True:
            return {"message": part.cancel_boost()}
        minutes, temp_c = request.get("minutes"), request.get("temp_c")
        for key, value in (("minutes", minutes), ("temp_c", temp_c)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise PvHeaterError(f"boost: {key} must be a number, got {value!r}")
        if minutes is None and temp_c is None:
            raise PvHeaterError('boost: expected "minutes", "temp_c" or "cancel": true')
        return {"message": part.boost(None if minutes is None else float(minutes),
                                      None if temp_c is None else float(temp_c))}

    hub.add_handler("mode", mode)
    hub.add_handler("boost", boost)
