"""Named, seeded, reproducible simulated days: PV available, house load per phase, forecast, GX outages.

A :class:`Scenario` is the recipe; :func:`build_day` turns it into a
:class:`ScenarioDay` with one value per second from 00:00 to 24:00 (seconds since
local midnight). The same name and seed always give the same day.

PV available is the DC power at the array's maximum power point: a clear-sky
shape ``peak * sin(pi * (t - sunrise) / (sunset - sunrise)) ** 1.5``, times a
cloud factor (steps and ramps) in the cloudy scenario. The house load is a base
load with a fridge cycling and a little noise, plus appliance programs (kettle,
washing machine, dishwasher, oven ...) at seeded times; on a three-phase system
they are spread over L1-L3. The forecast (for the original algorithm and the
forecast reserve) is the hourly mean of PV available times a seeded error: a
day bias and an hourly error, plus an optional fixed bias; with
`forecast_clear_sky` it is made from the clear-sky PV, so it misses the clouds.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field, replace

from pvheater.control.timeofday import hhmm_seconds as hhmm
from pvheater.sim.params import BatteryParams, HeaterPlantParams, InverterParams, PlantParams
from pvheater.sim.tank import FAMILY_DRAWS, TankParams, shower, tap

DAY_S = 86_400
HOUR_S = 3600


@dataclass(frozen=True)
class Scenario:
    """The recipe of a simulated day."""

    name: str
    description: str
    seed: int
    #: Battery SoC at 00:00; the night's house load discharges it until the sun is up.
    initial_soc_pct: float = 100.0
    #: PV available at solar noon on a clear day (DC, at the maximum power point; 2.5 kWp).
    pv_peak_w: float = 2300.0
    sunrise_s: float = hhmm("05:30")
    sunset_s: float = hhmm("20:30")
    clouds: bool = False
    #: "normal" (base load, a few appliances) or "steps" (many appliance steps in the sunny hours).
    house: str = "normal"
    dc_feed_in: bool = False
    three_phase: bool = False
    #: Windows [start, end) in seconds since midnight during which the GX publishes nothing.
    gx_outages_s: tuple[tuple[float, float], ...] = ()
    #: Forecast error: standard deviation of the day's bias and of each hour's error (fractions).
    forecast_bias_sd: float = 0.08
    forecast_hour_sd: float = 0.12
    #: A fixed forecast error added to the seeded day bias (0.3: the forecast is 30 % too high).
    forecast_bias: float = 0.0
    #: The forecast is made from the clear-sky PV: clouds of the day are not in it.
    forecast_clear_sky: bool = False
    #: When the clouds (with `clouds`) begin.
    clouds_from: str = "07:30"
    heater: HeaterPlantParams = field(default_factory=HeaterPlantParams)
    battery: BatteryParams = field(default_factory=BatteryParams)
    #: A hot-water tank with a thermostat behind the element (None: no tank, the element always draws).
    tank: TankParams | None = None
    #: Installation type (see PlantParams): no grid, AC-coupled PV, three Multis, the heater's phase,
    #: the inverters' total continuous rating, the number of solar chargers.
    off_grid: bool = False
    ac_pv: bool = False
    multis: int = 1
    heater_phase: int = 1
    inverter_max_w: float = 2400.0
    chargers: int = 1

    def plant_params(self) -> PlantParams:
        """The plant this scenario runs on."""
        return PlantParams(
            heater=self.heater,
            battery=self.battery,
            inverter=InverterParams(dc_feed_in=self.dc_feed_in, max_power_w=self.inverter_max_w),
            three_phase=self.three_phase,
            tank=self.tank,
            off_grid=self.off_grid,
            ac_pv=self.ac_pv,
            multis=self.multis,
            heater_phase=self.heater_phase,
            chargers=self.chargers,
            mppt_max_w=max(2400.0 * self.chargers, self.pv_peak_w),
        )


@dataclass(frozen=True)
class ScenarioDay:
    """A realised scenario: per-second inputs (index = second since midnight) and the hourly forecast."""

    scenario: Scenario
    seed: int
    params: PlantParams
    pv_avail_w: tuple[float, ...]
    house_l1_w: tuple[float, ...]
    house_l2_w: tuple[float, ...]
    house_l3_w: tuple[float, ...]
    #: Forecast PV power for each hour of the day (24 values), W.
    forecast_w: tuple[float, ...]

    @property
    def name(self) -> str:
        """The scenario's name."""
        return self.scenario.name

    @property
    def seconds(self) -> int:
        """Length of the day in seconds (one input value per second)."""
        return len(self.pv_avail_w)

    def house_w(self, time_s: float) -> float:
        """Total house load at a time."""
        i = int(time_s) % self.seconds
        return self.house_l1_w[i] + self.house_l2_w[i] + self.house_l3_w[i]

    def forecast_at(self, time_s: float) -> float:
        """The forecast for the hour containing time_s."""
        hour = int(time_s // HOUR_S) % len(self.forecast_w)
        return self.forecast_w[hour]


# --- house load ---------------------------------------------------------------------

#: An appliance program: (offset s, duration s, power W) pieces.
Program = list[tuple[float, float, float]]


def _kettle() -> Program:
    return [(0, 180, 2000)]


def _microwave() -> Program:
    return [(0, 240, 1100)]


def _vacuum() -> Program:
    return [(0, 600, 1200)]


def _hob() -> Program:
    return [(k * 60, 40, 1800) for k in range(20)]


def _washing_machine() -> Program:
    spins = [(900 + k * 480, 60, 450) for k in range(5)]
    return [(0, 900, 2000), (900, 2400, 180), *spins, (3300, 360, 550)]


def _dishwasher() -> Program:
    return [(0, 1080, 2000), (1080, 1800, 90), (2880, 720, 2000), (3600, 1200, 60)]


def _oven() -> Program:
    return [(0, 600, 2400)] + [(600 + k * 150, 60, 2400) for k in range(16)]


def _tv_lights() -> Program:
    return [(0, 3.5 * HOUR_S, 150)]


#: (program, nominal start, jitter s, phase index 0..2 on a three-phase system)
_NORMAL_EVENTS = [
    (_kettle, "07:05", 600, 1),
    (_microwave, "12:30", 900, 0),
    (_kettle, "16:00", 1200, 1),
    (_hob, "18:30", 900, 2),
    (_tv_lights, "19:30", 600, 0),
]
_STEP_EVENTS = [
    (_kettle, "10:15", 600, 1),
    (_washing_machine, "10:40", 600, 2),
    (_vacuum, "11:50", 600, 0),
    (_dishwasher, "13:00", 600, 1),
    (_kettle, "13:40", 600, 1),
    (_oven, "14:30", 600, 2),
    (_kettle, "15:20", 600, 1),
]


def _house(scenario: Scenario, seed: int, n: int) -> tuple[list[float], list[float], list[float]]:
    """House load per phase, W, one value per second."""
    rng = random.Random(f"{seed}-house")
    three = scenario.three_phase
    phases = [[0.0] * n for _ in range(3)]
    base_share = (1 / 3, 1 / 3, 1 / 3) if three else (1.0, 0.0, 0.0)
    night_end, evening = hhmm("06:30"), hhmm("18:00")
    noise = 0.0
    fridge_phase = rng.uniform(0, 3000)
    fridge_to = 1 if three else 0
    for i in range(n):
        t = float(i)
        base = 130.0 if t < night_end else 300.0 if t >= evening else 220.0
        if i % 5 == 0:
            noise = rng.gauss(0.0, 12.0)
        total = max(60.0, base + noise)
        for k in range(3):
            if base_share[k]:
                phases[k][i] += total * base_share[k]
        if (t + fridge_phase) % 3000 < 900:
            phases[fridge_to][i] += 90.0
    events = list(_NORMAL_EVENTS)
    if scenario.house == "steps":
        events += _STEP_EVENTS
    elif scenario.house != "normal":
        raise ValueError(f"unknown house profile {scenario.house!r} (expected normal or steps)")
    for program, start, jitter, phase in events:
        t0 = hhmm(start) + rng.uniform(-jitter, jitter)
        target = phases[phase if three else 0]
        for offset, duration, power_w in program():
            first = max(0, int(t0 + offset))
            last = min(n, int(t0 + offset + duration))
            for i in range(first, last):
                target[i] += power_w
    return phases[0], phases[1], phases[2]


# --- PV -------------------------------------------------------------------------------


def _clear_sky(scenario: Scenario, n: int) -> list[float]:
    """Clear-sky PV available, W."""
    rise, set_ = scenario.sunrise_s, scenario.sunset_s
    span = set_ - rise
    peak = scenario.pv_peak_w
    out = [0.0] * n
    for i in range(max(0, int(rise)), min(n, int(set_) + 1)):
        s = math.sin(math.pi * (i - rise) / span)
        out[i] = peak * s**1.5 if s > 0 else 0.0
    return out


def _cloud_factor(seed: int, n: int, start: str = "07:30") -> list[float]:
    """Broken cumulus: clouds as steps and ramps between `start` and 19:30, and a thin veil 15:00-16:30."""
    rng = random.Random(f"{seed}-clouds")
    factor = [1.0] * n
    t = hhmm(start)
    end = hhmm("19:30")
    while t < end:
        t += max(30.0, rng.expovariate(1 / 300))
        duration = rng.uniform(30, 600)
        depth = rng.uniform(0.2, 0.6)
        ramp = min(rng.uniform(2, 45), duration / 2)
        first, last = int(t), min(n, int(t + duration))
        for i in range(first, last):
            into, left = i - t, t + duration - i
            edge = min(into, left, ramp) / ramp if ramp > 0 else 1.0
            factor[i] *= 1.0 - (1.0 - depth) * edge
        if rng.random() < 0.3:  # cloud enhancement at the edge
            for i in range(last, min(n, last + int(rng.uniform(20, 60)))):
                factor[i] *= 1.1
        t += duration
    veil_start, veil_end, veil_ramp = hhmm("15:00"), hhmm("16:30"), 1200.0
    for i in range(int(veil_start), int(veil_end)):
        edge = min(i - veil_start, veil_end - i, veil_ramp) / veil_ramp
        factor[i] *= 1.0 - 0.3 * edge
    return factor


def _forecast(pv: list[float], scenario: Scenario, seed: int) -> tuple[float, ...]:
    """Hourly forecast: the hour's mean PV available times (1 + day bias + hourly error), never negative."""
    rng = random.Random(f"{seed}-forecast")
    bias = rng.gauss(0.0, scenario.forecast_bias_sd) + scenario.forecast_bias
    out = []
    for hour in range(len(pv) // HOUR_S):
        chunk = pv[hour * HOUR_S : (hour + 1) * HOUR_S]
        mean = sum(chunk) / len(chunk)
        out.append(max(0.0, mean * (1.0 + bias + rng.gauss(0.0, scenario.forecast_hour_sd))))
    return tuple(out)


# --- the named scenarios --------------------------------------------------------------

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("clear", "clear summer day, battery full at midnight (~76 % at sunrise)", seed=1),
        Scenario("clouds", "broken clouds: steps and ramps of PV, a thin veil mid-afternoon", seed=2, clouds=True),
        Scenario(
            "morning60",
            "clear day, battery ~60 % at sunrise (84 % at midnight): it must charge first",
            seed=3,
            initial_soc_pct=84.0,
        ),
        Scenario("house_steps", "clear day, kettle/washing machine/oven/dishwasher steps", seed=4, house="steps"),
        Scenario("dc_feedin", "clear day, ESS feeds excess DC PV into the grid: surplus shows as export",
                 seed=5, dc_feed_in=True),
        Scenario(
            "three_phase",
            "single-phase Multi on L1 behind a three-phase meter, loads on L1-L3, heater on L1",
            seed=6,
            three_phase=True,
            house="steps",
        ),
        Scenario("gx_outage", "clear day, the GX publishes nothing 12:00-12:20", seed=7,
                 gx_outages_s=((hhmm("12:00"), hhmm("12:20")),)),
        Scenario(
            "morning60_forecast_good",
            "as morning60, with an accurate forecast (errors: day 3 %, hour 5 %)",
            seed=3, initial_soc_pct=84.0, forecast_bias_sd=0.03, forecast_hour_sd=0.05,
        ),
        Scenario(
            "morning60_forecast_over",
            "as morning60 until 11:00, then broken clouds the forecast (for a clear day) does not show",
            seed=3, initial_soc_pct=84.0, forecast_bias_sd=0.03, forecast_hour_sd=0.05,
            clouds=True, clouds_from="11:00", forecast_clear_sky=True,
        ),
        # --- installation types (issue 17): each with the config its owner would write (sim.params) ---
        Scenario(
            "multi_mppt",
            "two solar chargers (VE.Direct + VE.Can, 4 kWp): the second holds PV back in float, the first tracks",
            seed=11, pv_peak_w=3600.0, chargers=2, house="steps",
        ),
        Scenario(
            "ac_coupled",
            "AC-coupled PV inverter on the Multi's output, grid, feed-in allowed: surplus shows as export",
            seed=12, ac_pv=True, dc_feed_in=True,
        ),
        Scenario(
            "ac_coupled_offgrid",
            "off-grid, AC-coupled PV throttled by frequency shift when the battery is full (no MppOperationMode)",
            seed=13, ac_pv=True, off_grid=True, house="steps",
        ),
        Scenario(
            "offgrid",
            "off-grid (no grid meter), DC MPPT, kettle/oven steps: heater + house capped at the 2400 W inverter",
            seed=14, off_grid=True, house="steps", pv_peak_w=3000.0, battery=BatteryParams(max_charge_w=1500.0),
        ),
        Scenario(
            "three_multis",
            "three Multis (one per phase, 3 x 2400 W, each carries its phase), loads on L1-L3, heater on L2",
            seed=15, three_phase=True, multis=3, heater_phase=2, inverter_max_w=7200.0, house="steps",
            pv_peak_w=4500.0,
        ),
    )
}


#: Days with a hot-water tank whose thermostat opens and closes (kept apart: the main matrix stays as it was).
TANK_SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("tank_clear", "clear day, 150 l tank from 45 degC: the thermostat opens early afternoon", seed=11,
                 tank=TankParams(start_c=45.0)),
        Scenario(
            "tank_shower_cloud",
            "150 l tank full by early afternoon, then clouds and a shower at 15:00 close the thermostat again",
            seed=12, clouds=True, clouds_from="14:30",
            tank=TankParams(start_c=48.0, draws=(*FAMILY_DRAWS, shower("15:00", 10.0))),
        ),
        Scenario(
            "tank_small", "30 l tank and a tap every hour: the thermostat cycles several times a day", seed=13,
            tank=TankParams(volume_l=30.0, start_c=50.0, loss_w_at_40k=25.0,
                            draws=tuple(tap(f"{h:02d}:20", 1.0) for h in range(7, 20))),
        ),
        Scenario("tank_hot_start", "clear day, the tank starts hot (59 degC): full within minutes of heating",
                 seed=14, tank=TankParams(start_c=59.0, draws=())),
    )
}


def scenario_names() -> list[str]:
    """Names of the built-in scenarios, in benchmark order."""
    return list(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    """A built-in scenario by name; ValueError listing the names when unknown."""
    try:
        return SCENARIOS[name] if name in SCENARIOS else TANK_SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r} (expected one of: {', '.join(SCENARIOS)})") from None


def with_actuator(day: ScenarioDay, actuator: str) -> ScenarioDay:
    """The same day with the heater driven by another actuator (servo, pwm_0_10v, ssr_burst)."""
    hp = day.params.heater
    heater = replace(hp, regulator=replace(hp.regulator, actuator=actuator))
    return replace(day, params=replace(day.params, heater=heater))


def build_day(scenario: Scenario | str, seed: int | None = None, seconds: int = DAY_S) -> ScenarioDay:
    """Realise a scenario (by name or recipe) with its seed, or another seed; cached for named ones."""
    if isinstance(scenario, str):
        return _build_named(scenario, seed, seconds)
    return _build(scenario, scenario.seed if seed is None else seed, seconds)


@functools.lru_cache(maxsize=16)
def _build_named(name: str, seed: int | None, seconds: int) -> ScenarioDay:
    scenario = get_scenario(name)
    return _build(scenario, scenario.seed if seed is None else seed, seconds)


def _build(scenario: Scenario, seed: int, seconds: int) -> ScenarioDay:
    clear = pv = _clear_sky(scenario, seconds)
    if scenario.clouds:
        pv = [p * f for p, f in zip(pv, _cloud_factor(seed, seconds, scenario.clouds_from), strict=True)]
    l1, l2, l3 = _house(scenario, seed, seconds)
    return ScenarioDay(
        scenario=scenario,
        seed=seed,
        params=scenario.plant_params(),
        pv_avail_w=tuple(pv),
        house_l1_w=tuple(l1),
        house_l2_w=tuple(l2),
        house_l3_w=tuple(l3),
        forecast_w=_forecast(clear if scenario.forecast_clear_sky else pv, scenario, seed),
    )


def constant_day(
    pv_avail_w: float,
    house_w: float,
    *,
    seconds: int = HOUR_S,
    initial_soc_pct: float = 100.0,
    dc_feed_in: bool = False,
    name: str = "constant",
    params: PlantParams | None = None,
) -> ScenarioDay:
    """A day with constant PV and house load (all on L1): for tests and fixtures; params, when given, win."""
    scenario = Scenario(name, f"constant PV {pv_avail_w:.0f} W, house {house_w:.0f} W", seed=0,
                        initial_soc_pct=initial_soc_pct, dc_feed_in=dc_feed_in)
    plant = params if params is not None else scenario.plant_params()
    return ScenarioDay(
        scenario=scenario,
        seed=0,
        params=plant,
        pv_avail_w=(float(pv_avail_w),) * seconds,
        house_l1_w=(float(house_w),) * seconds,
        house_l2_w=(0.0,) * seconds,
        house_l3_w=(0.0,) * seconds,
        forecast_w=(float(pv_avail_w),) * max(1, seconds // HOUR_S),
    )
