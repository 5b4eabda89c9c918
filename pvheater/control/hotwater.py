"""Hot water guaranteed: tank limit, modes, boost, the daily goal with grid top-up, legionella. Pure: no I/O, no clock.

One call per control tick, :func:`step`, takes the state, the settings, what
was observed (:class:`HotWaterInputs`: tank reading, tank-full event, measured
heater energy, PV so far, SoC, forecast), monotonic `now_s` and the local wall
time `local_dt` (a naive local datetime; None while the clock is not trusted)
and returns the new state and a :class:`HotWaterAdvice`. Commands from the
local channel are the pure functions :func:`set_mode`, :func:`start_boost` and
:func:`cancel_boost`. Every decision carries a reason; one-time events (a goal
met, a top-up decided / started / ended, a boost ended, a legionella cycle)
come back in ``advice.events`` for the service to log, one line each.

**How the advice combines with the surplus controller and the relay guard**
(the control loop calls :func:`combine` on the controller's request; the rule
is here so it is written once):

1. The guard's safety checks always win: fault, stale or implausible GX data,
   the switch limit, min on/off times. Nothing here can close the relay
   against them.
2. ``allow_heat`` False (mode off, tank at ``max_temp_c``, after a stale
   reading that was above it): relay open, knob at zero, whatever the
   controller wants.
3. ``force_power_w`` set (only in a boost, a top-up or a forced legionella
   cycle -- ``forced`` says which): heat is wanted at
   max(force_power_w, the controller's surplus power), capped at
   ``max_power_w``; the grid is allowed, so for this tick the guard's
   *policy* gates (min SoC, sun rule, time window) do not apply -- its safety
   checks do.
4. Otherwise the controller's request goes through as today, its power capped
   at ``max_power_w``: solar surplus is always allowed unless 2. applies.

With top-up and legionella off, no sensor and mode auto, the advice is always
(allow, no force, full power): behaviour is exactly what it was without this
module.

**Tank limit.** With a fresh valid reading at or above ``max_temp_c`` heating
stops; it resumes below ``max_temp_c - hysteresis_k``. A stale or invalid
reading counts as no sensor, except while stopped at the limit: then it stays
stopped until a fresh valid reading is below the resume temperature. It never
heats on a stale temperature above the limit.

**The goal cycle.** Each goal has a deadline: ``goal_time`` ("hot by HH:MM"),
else the end of the top-up window. A cycle runs from one deadline to the next;
in it come, in this order, the decision time, the top-up window's start and
its end (config checks the order). The goal is met, and stays met for the
cycle, by a tank-full event (the heater's thermostat opened; issue 12's heater
state; a tank already full when the cycle began counts only once its thermostat
closed and opened again, and a tank full at the deadline is no missed goal),
by ``goal_temp_c`` on a fresh valid reading, or by ``daily_kwh`` of
measured heater energy in the cycle (counted from the deltas of the day's
energy counter passed in, so midnight resets are harmless; after a restart
the cycle counts from the restart on unless the state is seeded).

**The decision** (at ``decision_time``, and again when the window opens, the
later one counting): the gap is ``daily_kwh`` minus the cycle's energy, or --
with ``goal_temp_c``, a fresh reading and ``tank_volume_l`` -- the water's
heat still missing (1.163 Wh per litre and kelvin); otherwise unknown. PV the
heater can still expect before sunset is estimated simply:
``safety x PV still to come - house base load until sunset - what the battery
still needs``, where PV still to come is the forecast's remaining energy when
a forecast is given, else the day's PV so far scaled by the clear-sky sun
still to come (the integral of sin(elevation) after now over the integral
before now, from :mod:`pvheater.control.sun`: "the afternoon will be like the
morning"). Without a forecast and without a site location it counts as zero.
If the expected PV is less than the gap, a top-up is planned: gap minus the
expected PV, at most the window's length at the top-up power (an unknown gap:
the window at that power, until the goal or tank full). The reason names the
gap, the PV estimate and the kWh planned.

**The top-up** runs in the window only when planned, ``topup_enabled``, mode
auto and a grid present, and stops at the goal met, a tank-full event, the tank
limit or the window's end; it does not restart in the same cycle.

**Legionella** (``legionella_every_days``): a fresh valid reading at or above
``legionella_temp_c``, or a tank-full event when the thermostat is set to 60
or more, records today as "last at 60 degC", whatever heated it (solar
counts). When the window opens on a date ``every_days`` or more after that
date (or after the first day seen, when there was none yet), a cycle is forced
at full power in the window until one of those happens or the window ends.

**Boost** (any mode but off): full power, grid allowed, for N minutes or to a
temperature (never longer than ``boost_max_s``); it ends by itself at its time,
its temperature, a tank-full event or the tank limit. It runs on monotonic
time, so it does not survive a restart (the mode does).
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass, replace

from pvheater.config import Config
from pvheater.control.messages import HeatRequest
from pvheater.control.reserve import Forecast
from pvheater.control.sun import sun_elevation_deg
from pvheater.control.timeofday import DAY_S, parse_hhmm, parse_window

MODES = ("auto", "solar_only", "off")
#: Heat of water, kWh per litre and kelvin (4.186 kJ/(kg K), 1 kg/l).
WATER_KWH_PER_L_K = 4.186 / 3600.0
#: Step of the sun integral, seconds.
SUN_STEP_S = 600.0


@dataclass(frozen=True)
class TankReading:
    """One tank temperature reading: valid or not, with the problem when not, at monotonic time_s."""

    temp_c: float | None
    time_s: float
    valid: bool
    problem: str | None = None


@dataclass(frozen=True)
class HotWaterSettings:
    """What the hot-water logic needs from the config (heater, tank_sensor, hot_water, site, forecast)."""

    element_power_w: float = 2000.0
    default_mode: str = "auto"
    sensor_enabled: bool = False
    max_temp_c: float = 60.0
    hysteresis_k: float = 5.0
    sensor_stale_after_s: float = 30.0
    goal_time: datetime.time | None = None
    daily_kwh: float | None = None
    goal_temp_c: float | None = None
    tank_volume_l: float | None = None
    decision_time: datetime.time = datetime.time(15, 0)
    topup_enabled: bool = False
    topup_start: datetime.time = datetime.time(22, 0)
    topup_end: datetime.time = datetime.time(6, 0)
    topup_power_w: float | None = None
    legionella_every_days: int | None = None
    legionella_temp_c: float = 60.0
    thermostat_at_least_60: bool = False
    boost_max_s: float = 3 * 3600.0
    latitude_deg: float | None = None
    longitude_deg: float | None = None
    house_base_w: float = 250.0
    battery_capacity_wh: float = 4800.0
    pv_safety_factor: float = 0.7

    @classmethod
    def from_config(cls, config: Config) -> HotWaterSettings:
        """Settings from the config; the PV estimate shares house load, battery and safety with the forecast."""
        hw, tank, fc = config.hot_water, config.tank_sensor, config.forecast
        start, end = parse_window(hw.topup.window)
        return cls(
            element_power_w=config.heater.max_power_w,
            default_mode=hw.mode,
            sensor_enabled=tank.enabled,
            max_temp_c=tank.max_temp_c,
            hysteresis_k=tank.hysteresis_k,
            sensor_stale_after_s=tank.stale_after_s,
            goal_time=None if hw.goal_time is None else parse_hhmm(hw.goal_time),
            daily_kwh=hw.daily_kwh,
            goal_temp_c=hw.goal_temp_c,
            tank_volume_l=hw.tank_volume_l,
            decision_time=parse_hhmm(hw.decision_time),
            topup_enabled=hw.topup.enabled,
            topup_start=start,
            topup_end=end,
            topup_power_w=hw.topup.power_w,
            legionella_every_days=hw.legionella.every_days or None,
            legionella_temp_c=hw.legionella.temp_c,
            thermostat_at_least_60=hw.legionella.thermostat_at_least_60,
            boost_max_s=hw.boost_max_min * 60.0,
            latitude_deg=config.site.latitude_deg,
            longitude_deg=config.site.longitude_deg,
            house_base_w=fc.house_base_w,
            battery_capacity_wh=fc.battery_capacity_wh,
            pv_safety_factor=fc.safety_factor,
        )

    @property
    def goal_configured(self) -> bool:
        """True when a daily goal is tracked: a goal time, daily_kwh, goal_temp_c or the top-up on."""
        return self.topup_enabled or any(
            v is not None for v in (self.goal_time, self.daily_kwh, self.goal_temp_c))

    @property
    def topup_w(self) -> float:
        """Power of a top-up: the configured one, at most the element's."""
        return min(self.topup_power_w or self.element_power_w, self.element_power_w)


@dataclass(frozen=True)
class HotWaterInputs:
    """What the service observed this tick (each optional part may be missing)."""

    #: The newest tank reading (None: no sensor configured or none read yet).
    tank: TankReading | None = None
    #: The heater state says the thermostat opened: the tank is full (issue 12's heater state).
    tank_full: bool = False
    #: Measured heater energy today (a counter; a drop counts as a reset), kWh.
    heater_energy_today_kwh: float = 0.0
    #: PV energy today so far, kWh (None: unknown).
    pv_energy_today_kwh: float | None = None
    soc_pct: float | None = None
    #: False on an off-grid system or while the grid is down: no automatic forced heating then.
    grid_available: bool = True
    forecast: Forecast | None = None


@dataclass(frozen=True)
class Boost:
    """A running boost: full power until monotonic until_s, or earlier at until_temp_c."""

    until_s: float
    until_temp_c: float | None = None


@dataclass(frozen=True)
class TopupPlan:
    """One top-up decision of a cycle."""

    topup: bool
    kwh: float
    reason: str


@dataclass(frozen=True)
class HotWaterState:
    """Everything the hot-water logic remembers between ticks."""

    mode: str = "auto"
    boost: Boost | None = None
    #: Stopped at max_temp_c; cleared by a fresh valid reading below max - hysteresis.
    temp_stop: bool = False
    #: The current goal cycle (naive local datetimes); None before the first trusted tick.
    cycle: Cycle | None = None
    cycle_kwh: float = 0.0
    last_energy_today_kwh: float | None = None
    #: How the goal was met in this cycle (None: not yet).
    goal_met: str | None = None
    #: The tank was already full when the cycle began: that level is not this cycle's tank-full event (cleared
    #: when the thermostat closes again).
    full_at_start: bool = False
    plan: TopupPlan | None = None
    decided: bool = False
    window_decided: bool = False
    #: The forced heating running now: "topup" or "legionella"; with the cycle energy when it started.
    forced: str | None = None
    forced_start_kwh: float = 0.0
    topup_done: bool = False
    legionella_done: bool = False
    #: Local date the tank last reached the legionella temperature (or was full with a >= 60 thermostat).
    last_60c: datetime.date | None = None
    #: First local date seen with legionella on: counts as "last" until a first cycle.
    legionella_since: datetime.date | None = None

    @classmethod
    def start(cls, mode: str, last_60c: datetime.date | None = None,
              legionella_since: datetime.date | None = None) -> HotWaterState:
        """The state at service start from what was saved (mode, last 60 degC date)."""
        return cls(mode=mode if mode in MODES else "auto", last_60c=last_60c, legionella_since=legionella_since)


@dataclass(frozen=True)
class HotWaterAdvice:
    """What the control loop combines with the surplus controller and the guard (see the module docstring)."""

    allow_heat: bool
    force_power_w: float | None
    max_power_w: float
    reason: str
    mode: str
    #: "boost", "topup", "legionella" while force_power_w is set.
    forced: str | None = None
    #: Fresh valid tank temperature, else None.
    tank_temp_c: float | None = None
    #: One-time lines to log (decisions with kWh, starts and ends).
    events: tuple[str, ...] = ()


def combine(request: HeatRequest, advice: HotWaterAdvice) -> tuple[HeatRequest, bool]:
    """The controller's request after the advice (rules 2-4 of the module docstring), and whether it is forced.

    The second value is True when the grid is allowed this tick (boost, top-up,
    legionella): the guard then skips its policy gates (min SoC, sun, time
    window) but never its safety checks.
    """
    if not advice.allow_heat:
        return HeatRequest(False, 0.0, f"hot water: {advice.reason}"), False
    if advice.force_power_w is not None:
        power = min(max(advice.force_power_w, request.power_w if request.want_heat else 0.0), advice.max_power_w)
        return HeatRequest(True, power, f"hot water: {advice.reason}"), True
    if request.want_heat and request.power_w > advice.max_power_w:
        capped = f"{request.reason}; hot water cap {advice.max_power_w:.0f} W"
        return HeatRequest(True, advice.max_power_w, capped), False
    return request, False


# --- commands from the channel ----------------------------------------------------------------


def set_mode(state: HotWaterState, mode: str) -> tuple[HotWaterState, str]:
    """Set auto / solar_only / off; mode off also ends a boost. ValueError for an unknown mode."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    boost = None if mode == "off" else state.boost
    ended = " (boost cancelled)" if state.boost is not None and boost is None else ""
    return replace(state, mode=mode, boost=boost), f"mode {mode}{ended}"


def start_boost(state: HotWaterState, settings: HotWaterSettings, now_s: float, minutes: float | None = None,
                until_temp_c: float | None = None) -> tuple[HotWaterState, str]:
    """Start a boost for `minutes` and/or to `until_temp_c`; ValueError (a one-line reason) when refused."""
    if state.mode == "off":
        raise ValueError("mode is off: set the mode to auto or solar_only first")
    if minutes is None and until_temp_c is None:
        raise ValueError("a boost needs minutes or a temperature")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"boost minutes must be positive, got {minutes}")
    if until_temp_c is not None:
        if not settings.sensor_enabled:
            raise ValueError("a boost to a temperature needs tank_sensor.enabled")
        if until_temp_c > settings.max_temp_c:
            raise ValueError(f"{until_temp_c:g} degC is above tank_sensor.max_temp_c ({settings.max_temp_c:g})")
    length_s = settings.boost_max_s if minutes is None else min(minutes * 60.0, settings.boost_max_s)
    boost = Boost(until_s=now_s + length_s, until_temp_c=until_temp_c)
    to = "" if until_temp_c is None else f" or to {until_temp_c:g} degC"
    return replace(state, boost=boost), f"boost at full power for {length_s / 60:.0f} min{to}"


_BOOST_TIME = re.compile(r"(?:(\d+)h)?(?:(\d+)m(?:in)?)?")
_BOOST_TEMP = re.compile(r"(\d+(?:\.\d+)?)\s*(?:c|degc)")


def parse_boost(text: str) -> tuple[float | None, float | None]:
    """'45m', '90min', '1h', '1h30m' -> (minutes, None); '55C', '55degC' -> (None, 55.0); ValueError otherwise."""
    flat = text.strip().lower().replace(" ", "")
    temp = _BOOST_TEMP.fullmatch(flat)
    if temp is not None:
        return None, float(temp.group(1))
    match = _BOOST_TIME.fullmatch(flat)
    if match is None or not flat or (match.group(1) is None and match.group(2) is None):
        raise ValueError(f"expected a boost such as 45m, 1h30m or 55C, got {text!r}")
    minutes = 60.0 * int(match.group(1) or 0) + int(match.group(2) or 0)
    if minutes <= 0:
        raise ValueError(f"a boost must last at least a minute, got {text!r}")
    return minutes, None


def cancel_boost(state: HotWaterState) -> tuple[HotWaterState, str]:
    """End a running boost."""
    if state.boost is None:
        return state, "no boost running"
    return replace(state, boost=None), "boost cancelled"


# --- the goal cycle ------------------------------------------------------------------------


@dataclass(frozen=True)
class Cycle:
    """The moments of one goal cycle, naive local datetimes."""

    start: datetime.datetime
    deadline: datetime.datetime
    decision: datetime.datetime
    window_start: datetime.datetime
    window_end: datetime.datetime
    #: The settings it was computed from (goal, decision, window): a reload with others recomputes it.
    made_from: tuple[datetime.time | None, ...] = ()


def _seconds(t: datetime.time) -> float:
    return float(t.hour * 3600 + t.minute * 60 + t.second)


def cycle_at(settings: HotWaterSettings, local_dt: datetime.datetime) -> Cycle:
    """The goal cycle local_dt lies in: it ends at the first deadline after local_dt."""
    deadline_t = settings.goal_time if settings.goal_time is not None else settings.topup_end
    deadline = datetime.datetime.combine(local_dt.date(), deadline_t)
    if deadline <= local_dt:
        deadline += datetime.timedelta(days=1)
    start = deadline - datetime.timedelta(days=1)
    origin = _seconds(deadline_t)

    def at(t: datetime.time, end_side: bool = False) -> datetime.datetime:
        offset = (_seconds(t) - origin) % DAY_S
        if end_side and offset == 0.0:
            offset = DAY_S
        return start + datetime.timedelta(seconds=offset)

    return Cycle(start, deadline, at(settings.decision_time), at(settings.topup_start),
                 at(settings.topup_end, end_side=True), _cycle_key(settings))


def _cycle_key(settings: HotWaterSettings) -> tuple[datetime.time | None, ...]:
    return (settings.goal_time, settings.decision_time, settings.topup_start, settings.topup_end)


def sun_still_to_come(utc_s: float, latitude_deg: float, longitude_deg: float) -> tuple[float, float] | None:
    """(share of today's clear-sky sun after utc_s, hours of sun left); None at night. Sun = integral of sin(elev)."""

    def weight(t: float) -> float:
        return max(0.0, math.sin(math.radians(sun_elevation_deg(t, latitude_deg, longitude_deg))))

    def integral(direction: int) -> tuple[float, float]:
        total, hours, t = 0.0, 0.0, utc_s
        for _ in range(int(18 * 3600 / SUN_STEP_S)):
            t += direction * SUN_STEP_S
            w = weight(t)
            if w <= 0.0:
                break
            total += w
            hours += SUN_STEP_S / 3600.0
        return total, hours

    if weight(utc_s) <= 0.0:
        return None
    before, _ = integral(-1)
    after, hours_left = integral(+1)
    return after / (before + after) if before + after > 0 else 0.0, hours_left


def estimate_pv_for_heater(settings: HotWaterSettings, inputs: HotWaterInputs,
                           utc_s: float | None) -> tuple[float, str]:
    """(kWh the heater can still expect from PV today, how that was estimated); utc_s None: clock not set."""
    if utc_s is None:
        return 0.0, "PV still to come: unknown (clock not set), counted 0"
    if inputs.forecast is not None and inputs.forecast.power_w(utc_s) is not None:
        end = inputs.forecast.solar_day_end_s(utc_s)
        if end is None:
            return 0.0, "PV still to come: none (forecast: sun down)"
        pv_kwh = inputs.forecast.energy_wh(utc_s, end) / 1000.0
        hours_left = (end - utc_s) / 3600.0
        how = f"forecast {pv_kwh:.1f} kWh"
    elif settings.latitude_deg is not None and settings.longitude_deg is not None:
        sun = sun_still_to_come(utc_s, settings.latitude_deg, settings.longitude_deg)
        if sun is None:
            return 0.0, "PV still to come: none (sun down)"
        share, hours_left = sun
        if inputs.pv_energy_today_kwh is None:
            return 0.0, "PV still to come: unknown (no PV energy today), counted 0"
        so_far = inputs.pv_energy_today_kwh
        pv_kwh = so_far * share / (1.0 - share) if share < 1.0 else 0.0
        how = f"{pv_kwh:.1f} kWh ({so_far:.1f} kWh so far, {share:.0%} of the day's sun still to come)"
    else:
        return 0.0, "PV still to come: unknown (no forecast, no site location), counted 0"
    house_kwh = settings.house_base_w * hours_left / 1000.0
    battery_kwh = 0.0
    if inputs.soc_pct is not None:
        battery_kwh = max(0.0, 100.0 - inputs.soc_pct) / 100.0 * settings.battery_capacity_wh / 1000.0
    heater_kwh = max(0.0, settings.pv_safety_factor * pv_kwh - house_kwh - battery_kwh)
    return heater_kwh, (f"PV still to come {how}; x {settings.pv_safety_factor:g} - house {house_kwh:.1f} kWh "
                        f"- battery {battery_kwh:.1f} kWh -> heater {heater_kwh:.1f} kWh")


def gap_kwh(settings: HotWaterSettings, state: HotWaterState, temp_c: float | None) -> tuple[float | None, str]:
    """(energy still missing to the goal, how it was found); None when it cannot be told."""
    if settings.daily_kwh is not None:
        gap = max(0.0, settings.daily_kwh - state.cycle_kwh)
        return gap, f"gap {gap:.1f} kWh (daily_kwh {settings.daily_kwh:g}, delivered {state.cycle_kwh:.1f})"
    if settings.goal_temp_c is not None and settings.tank_volume_l is not None and temp_c is not None:
        gap = max(0.0, settings.goal_temp_c - temp_c) * settings.tank_volume_l * WATER_KWH_PER_L_K
        return gap, (f"gap {gap:.1f} kWh ({settings.tank_volume_l:g} l from {temp_c:.1f} "
                     f"to {settings.goal_temp_c:g} degC)")
    return None, "gap unknown (no daily_kwh; no temperature goal with a reading and tank_volume_l)"


def decide_topup(settings: HotWaterSettings, state: HotWaterState, inputs: HotWaterInputs, temp_c: float | None,
                 cycle: Cycle, local_dt: datetime.datetime, utc_s: float | None) -> TopupPlan:
    """Will PV close the gap before the window? If not, plan a top-up (kWh) -- whether enabled or not."""
    when = local_dt.strftime("%H:%M")
    window = f"{cycle.window_start:%H:%M}-{cycle.window_end:%H:%M}"
    if state.goal_met is not None:
        return TopupPlan(False, 0.0, f"{when}: goal met ({state.goal_met}): no top-up")
    gap, gap_how = gap_kwh(settings, state, temp_c)
    pv_kwh, pv_how = estimate_pv_for_heater(settings, inputs, utc_s)
    start = max(cycle.window_start, local_dt)
    window_kwh = settings.topup_w * max(0.0, (cycle.window_end - start).total_seconds()) / 3.6e6
    if gap is not None and pv_kwh >= gap:
        return TopupPlan(False, 0.0, f"{when}: {gap_how}; {pv_how}: PV should make it, no top-up")
    planned = window_kwh if gap is None else min(gap - pv_kwh, window_kwh)
    enabled = settings.topup_enabled and state.mode == "auto"
    off = "" if enabled else (
        "; top-up off, so nothing is done" if not settings.topup_enabled else f"; mode {state.mode}, so no top-up")
    until = "the goal or tank full" if gap is not None else "tank full"
    return TopupPlan(
        enabled, planned,
        f"{when}: {gap_how}; {pv_how}: top-up {planned:.1f} kWh at {settings.topup_w:.0f} W in {window} "
        f"(until {until}){off}",
    )


# --- the tick --------------------------------------------------------------------------------


def _fresh_temp(settings: HotWaterSettings, reading: TankReading | None, now_s: float) -> float | None:
    """The reading's temperature when the sensor is on and the reading valid and fresh, else None."""
    if not settings.sensor_enabled or reading is None or not reading.valid or reading.temp_c is None:
        return None
    if not 0.0 <= now_s - reading.time_s <= settings.sensor_stale_after_s:
        return None
    return reading.temp_c


def _temp_limit(settings: HotWaterSettings, state: HotWaterState, temp_c: float | None,
                events: list[str]) -> HotWaterState:
    """Latch the stop at max_temp_c; release it only on a fresh reading below the resume temperature."""
    if temp_c is None:
        return state
    resume_c = settings.max_temp_c - settings.hysteresis_k
    if not state.temp_stop and temp_c >= settings.max_temp_c:
        events.append(f"tank {temp_c:.1f} degC >= max_temp_c {settings.max_temp_c:g}: heating stopped "
                      f"(again below {resume_c:g} degC)")
        return replace(state, temp_stop=True)
    if state.temp_stop and temp_c < resume_c:
        events.append(f"tank {temp_c:.1f} degC < {resume_c:g} degC: heating allowed again")
        return replace(state, temp_stop=False)
    return state


def _count_energy(state: HotWaterState, energy_today_kwh: float) -> HotWaterState:
    """Add the counter's delta to the cycle's energy (a drop is a reset at midnight: the new value is the delta)."""
    last = state.last_energy_today_kwh
    if last is None:
        delta = 0.0
    elif energy_today_kwh >= last:
        delta = energy_today_kwh - last
    else:
        delta = energy_today_kwh
    return replace(state, cycle_kwh=state.cycle_kwh + delta, last_energy_today_kwh=energy_today_kwh)


#: A tank-full event meets the day's goal only when it comes at most this long before the decision time.
FULL_COUNTS_S = 12 * 3600.0


def _goal_check(settings: HotWaterSettings, state: HotWaterState, inputs: HotWaterInputs, temp_c: float | None,
                local_dt: datetime.datetime, events: list[str]) -> HotWaterState:
    if state.goal_met is not None:
        return state
    at = local_dt.strftime("%H:%M")
    how = None
    # A tank full long before the decision (last evening, before the night's and the morning's showers) says
    # nothing about the goal time: only one within FULL_COUNTS_S before the decision counts.
    recent = state.cycle is None or local_dt >= state.cycle.decision - datetime.timedelta(seconds=FULL_COUNTS_S)
    if inputs.tank_full and not state.full_at_start and recent:
        how = f"tank full at {at}"
    elif settings.goal_temp_c is not None and temp_c is not None and temp_c >= settings.goal_temp_c:
        how = f"tank at {temp_c:.1f} degC at {at}"
    elif settings.daily_kwh is not None and state.cycle_kwh >= settings.daily_kwh:
        how = f"{state.cycle_kwh:.1f} kWh delivered by {at}"
    if how is None:
        return state
    events.append(f"hot-water goal met: {how}")
    return replace(state, goal_met=how)


def _legionella_check(settings: HotWaterSettings, state: HotWaterState, inputs: HotWaterInputs,
                      temp_c: float | None, today: datetime.date, events: list[str]) -> HotWaterState:
    if settings.legionella_every_days is None:
        return state
    if state.legionella_since is None:
        state = replace(state, legionella_since=today)
    hot = temp_c is not None and temp_c >= settings.legionella_temp_c
    full = inputs.tank_full and settings.thermostat_at_least_60
    if (hot or full) and state.last_60c != today:
        how = f"{temp_c:.1f} degC" if hot else "tank full with the thermostat at >= 60 degC"
        events.append(f"legionella: tank hot ({how}); last at {settings.legionella_temp_c:g} degC: {today}")
        state = replace(state, last_60c=today)
    return state


def legionella_due(settings: HotWaterSettings, state: HotWaterState, on: datetime.date) -> bool:
    """True when the last hot cycle (or the first day seen) is every_days or more before `on`."""
    if settings.legionella_every_days is None:
        return False
    last = state.last_60c or state.legionella_since
    return last is not None and (on - last).days >= settings.legionella_every_days


def step(state: HotWaterState, settings: HotWaterSettings, inputs: HotWaterInputs, now_s: float,
         local_dt: datetime.datetime | None, utc_s: float | None = None) -> tuple[HotWaterState, HotWaterAdvice]:
    """One tick: the new state and the advice (see the module docstring); local_dt/utc_s None: clock untrusted."""
    events: list[str] = []
    temp_c = _fresh_temp(settings, inputs.tank, now_s)
    state = _temp_limit(settings, state, temp_c, events)
    if local_dt is not None and (settings.goal_configured or settings.legionella_every_days is not None):
        state = _cycle_tick(settings, state, inputs, temp_c, local_dt, utc_s, events)
    elif local_dt is None and state.forced is not None:  # no trusted clock: the window cannot be checked
        events.append(_forced_end(state, "the clock is not trusted"))
        state = replace(state, forced=None)
    state, boost_reason = _boost_tick(settings, state, inputs, temp_c, now_s, events)
    full = settings.element_power_w
    temp_text = "" if temp_c is None else f" (tank {temp_c:.1f} degC)"

    def advice(allow: bool, force: float | None, reason: str, forced: str | None = None) -> HotWaterAdvice:
        return HotWaterAdvice(allow, force, full if allow else 0.0, reason + temp_text, state.mode, forced,
                              temp_c, tuple(events))

    if state.mode == "off":
        return state, advice(False, None, "mode off")
    if state.temp_stop:
        why = "at max_temp_c" if temp_c is not None else "last reading above max_temp_c, no fresh one since"
        return state, advice(False, None, f"tank {why}: no heating")
    if state.boost is not None:
        return state, advice(True, full, boost_reason, "boost")
    if state.forced is not None:
        power = full if state.forced == "legionella" else settings.topup_w
        what = "legionella cycle" if state.forced == "legionella" else "top-up"
        plan = f": {state.plan.reason}" if state.forced == "topup" and state.plan is not None else ""
        return state, advice(True, power, f"{what} from the grid{plan}", state.forced)
    reason = "solar surplus" if state.mode == "auto" else "solar only"
    if state.goal_met is not None:
        reason += f"; goal met ({state.goal_met})"
    return state, advice(True, None, reason)


def _boost_tick(settings: HotWaterSettings, state: HotWaterState, inputs: HotWaterInputs, temp_c: float | None,
                now_s: float, events: list[str]) -> tuple[HotWaterState, str]:
    boost = state.boost
    if boost is None:
        return state, ""
    end = None
    if state.mode == "off":
        end = "mode off"
    elif now_s >= boost.until_s:
        end = "time up"
    elif boost.until_temp_c is not None and temp_c is not None and temp_c >= boost.until_temp_c:
        end = f"tank at {temp_c:.1f} degC"
    elif inputs.tank_full:
        end = "tank full"
    elif state.temp_stop:
        end = "tank at max_temp_c"
    if end is not None:
        events.append(f"boost ended: {end}")
        return replace(state, boost=None), ""
    to = "" if boost.until_temp_c is None else f" or to {boost.until_temp_c:g} degC"
    return state, f"boost: full power from the grid, {max(0.0, boost.until_s - now_s) / 60:.0f} min left{to}"


def _cycle_tick(settings: HotWaterSettings, state: HotWaterState, inputs: HotWaterInputs, temp_c: float | None,
                local_dt: datetime.datetime, utc_s: float | None, events: list[str]) -> HotWaterState:
    """Goal cycle, decisions, top-up and legionella on local time."""
    cycle = state.cycle
    if cycle is None or not cycle.start <= local_dt < cycle.deadline or cycle.made_from != _cycle_key(settings):
        cycle = cycle_at(settings, local_dt)
    if state.cycle is None or state.cycle.deadline != cycle.deadline:
        if state.cycle is not None:
            if state.forced is not None:
                events.append(_forced_end(state, "the cycle ended"))
            if state.goal_met is None and settings.goal_configured and not inputs.tank_full:
                events.append(f"hot-water goal missed by {state.cycle.deadline:%Y-%m-%d %H:%M} "
                              f"({state.cycle_kwh:.1f} kWh delivered)")
        state = replace(state, cycle=cycle, cycle_kwh=0.0, goal_met=None, plan=None,
                        decided=False, window_decided=False, forced=None, topup_done=False, legionella_done=False,
                        full_at_start=inputs.tank_full)
    elif state.full_at_start and not inputs.tank_full:
        state = replace(state, full_at_start=False)
    state = _count_energy(state, inputs.heater_energy_today_kwh)
    if settings.goal_configured:
        state = _goal_check(settings, state, inputs, temp_c, local_dt, events)
    state = _legionella_check(settings, state, inputs, temp_c, local_dt.date(), events)
    if state.mode == "off":
        if state.forced is not None:
            events.append(_forced_end(state, "mode off"))
        return replace(state, forced=None)
    in_window = cycle.window_start <= local_dt < cycle.window_end
    # The decisions: at decision_time, and again when the window opens.
    if settings.goal_configured:
        if not state.decided and cycle.decision <= local_dt < cycle.window_start:
            plan = decide_topup(settings, state, inputs, temp_c, cycle, local_dt, utc_s)
            events.append(f"hot-water decision {plan.reason}")
            state = replace(state, plan=plan, decided=True)
        if not state.window_decided and in_window:
            plan = decide_topup(settings, state, inputs, temp_c, cycle, local_dt, utc_s)
            if plan.kwh > 0 or state.plan is None or state.plan.kwh > 0:  # a second "nothing to do" is not logged
                events.append(f"hot-water decision at the window's start {plan.reason}")
            state = replace(state, plan=plan, decided=True, window_decided=True)
    return _forced_tick(settings, state, inputs, temp_c, cycle, local_dt, in_window, events)


def _forced_end(state: HotWaterState, why: str) -> str:
    what = "legionella cycle" if state.forced == "legionella" else "top-up"
    return f"{what} ended: {why}, {state.cycle_kwh - state.forced_start_kwh:.1f} kWh delivered"


def _forced_tick(settings: HotWaterSettings, state: HotWaterState, inputs: HotWaterInputs, temp_c: float | None,
                 cycle: Cycle, local_dt: datetime.datetime, in_window: bool, events: list[str]) -> HotWaterState:
    """Start, keep or stop the top-up or the legionella cycle (auto mode only, in the window, with a grid)."""
    want: str | None = None
    why_not = "the window ended" if not in_window else None
    legionella_wanted = (settings.legionella_every_days is not None and not state.legionella_done
                         and state.last_60c != local_dt.date()
                         and legionella_due(settings, state, cycle.window_start.date()))
    topup_wanted = (settings.topup_enabled and state.plan is not None and state.plan.topup
                    and not state.topup_done and state.goal_met is None)
    if state.forced == "legionella" and state.last_60c == local_dt.date():
        why_not = "tank reached the legionella temperature"
    if in_window and state.mode == "auto":
        if legionella_wanted:
            want = "legionella"
        elif topup_wanted:
            want = "topup"
    if want is not None and inputs.tank_full:
        want, why_not = None, "tank full"
    if want is not None and state.temp_stop:
        want, why_not = None, "tank at max_temp_c"
    if want is not None and not inputs.grid_available:
        want, why_not = None, "no grid (it would drain the battery)"
    if state.forced is not None and want != state.forced:
        if why_not is None:
            why_not = "goal met" if state.goal_met is not None else "not wanted any more"
        if why_not == "tank full" and state.forced == "legionella" and temp_c is not None:
            why_not += f" at {temp_c:.1f} degC (is the thermostat set below {settings.legionella_temp_c:g}?)"
        events.append(_forced_end(state, why_not))
        done = {"topup_done": True} if state.forced == "topup" else {"legionella_done": True}
        state = replace(state, forced=None, **done)
        if want == "topup" and state.topup_done:
            want = None
    if want is not None and state.forced is None:
        if want == "legionella":
            last = state.last_60c or state.legionella_since
            events.append(f"legionella cycle forced in {cycle.window_start:%H:%M}-{cycle.window_end:%H:%M} at "
                          f"{settings.element_power_w:.0f} W: last at {settings.legionella_temp_c:g} degC {last} "
                          f"(every {settings.legionella_every_days} days)")
        else:
            planned = 0.0 if state.plan is None else state.plan.kwh
            events.append(f"top-up started at {local_dt:%H:%M}: {planned:.1f} kWh planned at "
                          f"{settings.topup_w:.0f} W")
        state = replace(state, forced=want, forced_start_kwh=state.cycle_kwh)
    return state
