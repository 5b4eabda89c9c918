"""A family of plants: a seeded randomiser of short scenarios, and a runner for them in simulated time.

The project's controller was tuned on one plant (`pvheater.sim.plant` with its
defaults). A family plant varies what a real installation varies:

- the ESS lag (inverter `tau_s` 0.5-3 s), the inverter and MPPT size;
- the GX: publishing every 1-2 s with jitter, the controller's poll offset
  against it, GX outages of 5-30 s (nothing published: the data age) and
  single reads that fail (the loop's source raises GxUnavailable for one tick);
- the regulator: dead zone 0-15 % of the knob and the curve shape
  (``phase_angle`` -- the SCR's sine curve, ``linear`` -- power proportional to
  the knob, ``log`` -- a log-taper pot in front of the phase-angle curve); the
  heater 1-4 kW. The controller gets a calibration table measured on the true
  curve at a few angles with a few % error, as `pvheater calibrate-servo` gives;
- the battery: near full, still accepting 0-800 W, with a taper that falls
  linearly, like a square root or like a square towards 100 %;
- PV: steps between a high and a low level with 1-10 s ramps, either a few
  long clouds or broken clouds every 30-60 s, with cloud enhancement (10-25 %
  above the clear level for a few seconds after a cloud edge);
- the house: a base load and appliance steps -- a kettle, a washing machine's
  heater, an induction hob pulsing.

Plant variants are built without changing :class:`~pvheater.sim.plant.Plant`:
:class:`FamilyPlant` overrides the battery acceptance, and maps the servo angle
through the regulator shape onto an equivalent angle of the plant's own
phase-angle curve (dead zone 0 there), so the plant's power and energy
accounting stay the plant's own. Servo moves and degrees are counted here on
the commanded angles.

Every plant runs three times over the same inputs: the heater off (the
baseline for draw, see `pvheater.sim.metrics`), the late oracle (perfect
knowledge acting 2 s late: the floor), and the real `ControlLoop`.
"""

from __future__ import annotations

import datetime
import logging
import math
import random
from array import array
from dataclasses import dataclass, field, replace

from pvheater.calibration.curve import Calibration
from pvheater.config import Config
from pvheater.control.measurements import Measurements
from pvheater.errors import GxUnavailable
from pvheater.service.loop import ControlLoop
from pvheater.sim.metrics import compute_metrics
from pvheater.sim.params import Actuation, BatteryParams, HeaterPlantParams, InverterParams, PlantParams
from pvheater.sim.plant import (
    Plant,
    angle_for_knob_fraction,
    heater_power_w,
    knob_fraction_for_angle,
    regulator_knob_fraction,
    regulator_power_fraction,
)
from pvheater.sim.regulators import zero_ten_duty_range, zero_ten_power_fraction
from pvheater.sim.results import RunMetrics, RunResult, RunSeries
from pvheater.sim.scenarios import Scenario, ScenarioDay
from pvheater.sim.strategy import OracleStrategy

#: Simulated seconds of a day.
DAY_S = 86_400
#: Family scenarios start at noon (local time = UTC, midsummer: the sun is up).
START_S = 12 * 3600.0
#: Step of the family runs, s (the GX publishes and the loop polls between whole seconds).
DT_S = 0.25
#: A relay edge at more heater power than this counts as a switching under load, W.
UNDER_LOAD_W = 50.0
#: Regulator shapes of the family.
CURVES = ("phase_angle", "linear", "log")
#: Battery taper shapes: exponent of the remaining-room fraction (1 linear, 0.5 square root, 2 square).
TAPERS = {"linear": 1.0, "sqrt": 0.5, "square": 2.0}
#: Event kinds measured for response times.
EVENT_KINDS = ("relay_close", "cloud_end", "load_end", "outage_end")

_QUIET = logging.getLogger("pvheater.sim.family.quiet")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
_SIM_UTC_S = datetime.datetime(2024, 6, 21, tzinfo=datetime.UTC).timestamp()


# --- the regulator shapes ------------------------------------------------------------


def shape_power_fraction(knob_frac: float, curve: str, dead_zone_frac: float) -> float:
    """P/Pmax of a regulator shape at a knob fraction 0..1 (dead zone first, then the curve)."""
    if knob_frac <= dead_zone_frac:
        return 0.0
    if knob_frac >= 1.0:
        return 1.0
    x = (knob_frac - dead_zone_frac) / (1.0 - dead_zone_frac)
    if curve == "linear":
        return x
    if curve == "log":
        x = (10.0**x - 1.0) / 9.0  # a log-taper (audio) pot: a tenth of the travel at half the knob
    return regulator_power_fraction(x, 0.0)


@dataclass(frozen=True)
class FamilySpec:
    """One random plant and its short scenario (inputs per second from `START_S`)."""

    seed: int
    kind: str
    params: PlantParams
    curve: str
    dead_zone_frac: float
    taper: str
    accept_w: float
    initial_soc_pct: float
    gx_period_s: float
    gx_jitter_s: float
    poll_offset_s: float
    duration_s: int
    pv_w: tuple[float, ...]
    house_w: tuple[float, ...]
    outages_s: tuple[tuple[float, float], ...] = ()
    #: Poll tick numbers whose read fails.
    read_failures: frozenset[int] = frozenset()
    #: (kind, time_s) of the disturbances whose response is measured (cloud_end, load_end, load_start, outage_end).
    events: tuple[tuple[str, float], ...] = ()
    calibration_points: tuple[tuple[float, float], ...] = field(default=(), compare=False)

    @property
    def heater_max_w(self) -> float:
        """The heater's full power."""
        return self.params.heater.max_power_w

    def describe(self) -> str:
        """One line about the plant."""
        p = self.params
        return (
            f"seed {self.seed} {self.kind}: heater {p.heater.max_power_w:.0f} W {self.curve} dz "
            f"{100 * self.dead_zone_frac:.0f} %, lag {p.inverter.tau_s:.1f} s, GX {self.gx_period_s:.1f} s, "
            f"accept {self.accept_w:.0f} W ({self.taper}), SoC {self.initial_soc_pct:.1f} %, "
            f"{self.duration_s // 60} min"
        )


class FamilyPlant(Plant):
    """The plant with a family member's battery taper and regulator shape.

    ``step_real`` takes the servo angle the controller commands and moves the
    plant's servo to the angle at which the plant's phase-angle curve (dead
    zone 0) gives what the family's regulator shape gives; ``step`` takes
    angles in that equivalent space (the oracle, which knows the true curve).
    """

    def __init__(self, day: ScenarioDay, spec: FamilySpec, start_s: float) -> None:
        self.spec = spec
        self._exp = TAPERS[spec.taper]
        self._room0 = max(100.0 - spec.initial_soc_pct, 1e-6)
        super().__init__(day, start_s=start_s, soc_pct=spec.initial_soc_pct, params=day.params)
        self._real = spec.params.heater  # the knob geometry the controller sees
        self._map_cache: dict[float, float] = {}
        self._noise = random.Random(spec.seed + 7919)

    def gx_values(self) -> dict[str, float | None]:
        """The GX registers, with the +-1 W of a real meter and shunt (they never sit exactly still).

        Without it a plateau of PV and house load with the heater steady is a picture that does not
        change at all, which the loop's frozen-data check (control/freshness.py) rightly takes for a
        hung driver.
        """
        values = super().gx_values()
        for name in ("grid_l1_w", "meter_l1_w", "ac_consumption_l1_w", "battery_power_w", "bms_power_w"):
            v = values.get(name)
            if isinstance(v, int | float):
                values[name] = v + self._noise.choice((-1, 0, 1))
        return values

    def _acceptance(self, dt_s: float) -> float:
        spec = self.spec
        soc = self.soc_pct
        if soc >= 100.0 or spec.accept_w <= 0.0:
            return 0.0
        bp = self.params.battery
        acc = spec.accept_w * ((100.0 - soc) / self._room0) ** self._exp
        acc = min(max(acc, min(bp.taper_floor_w, spec.accept_w)), bp.max_charge_w)
        room_w = (100.0 - soc) * bp.capacity_wh / 100.0 * 3600.0 / (dt_s * bp.charge_efficiency)
        return acc if acc < room_w else room_w

    def equivalent_angle(self, angle_deg: float) -> float:
        """The angle of the plant's own curve that gives what the family's regulator gives at angle_deg."""
        hit = self._map_cache.get(angle_deg)
        if hit is not None:
            return hit
        knob = knob_fraction_for_angle(angle_deg, self._real)
        frac = shape_power_fraction(knob, self.spec.curve, self.spec.dead_zone_frac)
        eq = angle_for_knob_fraction(regulator_knob_fraction(frac, 0.0) if frac > 0 else 0.0, self.params.heater)
        if len(self._map_cache) < 4096:
            self._map_cache[angle_deg] = eq
        return eq

    def step_real(self, dt_s: float, act: Actuation) -> None:
        """Step with the servo angle as the controller commands it (another actuator's input as it is)."""
        if self.regulator is not None:
            self.step(dt_s, act)
            return
        self.step(dt_s, Actuation(act.relay_on, self.equivalent_angle(act.servo_angle_deg)))

    def power_at_current_angle_w(self) -> float:
        """Heater power the regulator would pass at the servo's angle now with the relay closed."""
        return heater_power_w(True, self.servo_deg, self.params.heater)

    def power_at_input_w(self, act: Actuation) -> float:
        """Heater power with the relay closed at the servo's angle now, or at another actuator's input."""
        reg = self.params.heater.regulator
        if self.regulator is None or act.drive is None:
            return self.power_at_current_angle_w()
        if reg.actuator == "pwm_0_10v":
            return self.params.heater.max_power_w * zero_ten_power_fraction(act.drive, reg.zero_ten)
        return self.params.heater.max_power_w * act.drive


# --- the randomiser ------------------------------------------------------------------


def _ramp_to(series: list[float], start: int, end: int, frm: float, to: float, ramp_s: int) -> None:
    """Set series[start:end] to `to`, reached linearly from `frm` over ramp_s seconds."""
    for i in range(start, min(end, len(series))):
        k = i - start
        series[i] = to if k >= ramp_s else frm + (to - frm) * (k + 1) / (ramp_s + 1)


def _pv_profile(rng: random.Random, n: int, kind: str, high_w: float) -> tuple[list[float], list[float]]:
    """PV available per second and the times at which a cloud has passed (the ramp back up has ended)."""
    pv = [high_w] * n
    ends: list[float] = []
    enhance = rng.random() < 0.5
    t = rng.randint(60, 120)
    level = high_w
    while t < n - 30:
        if kind == "broken":
            low = high_w * rng.uniform(0.25, 0.45)
            dur_low, dur_high = rng.randint(15, 45), rng.randint(30, 60)
        else:
            low = high_w * rng.uniform(0.2, 0.5)
            dur_low, dur_high = rng.randint(30, 120), rng.randint(90, 240)
        ramp_down, ramp_up = rng.randint(1, 10), rng.randint(1, 10)
        _ramp_to(pv, t, n, level, low, ramp_down)
        up = t + dur_low
        if up >= n - 20:
            break
        peak = high_w * (rng.uniform(1.10, 1.25) if enhance else 1.0)
        _ramp_to(pv, up, n, low, peak, ramp_up)
        ends.append(float(up + ramp_up))
        level = peak
        if enhance:
            hold = up + ramp_up + rng.randint(3, 15)
            _ramp_to(pv, hold, n, peak, high_w, rng.randint(2, 6))
            level = high_w
        t = up + dur_high
    return pv, ends


def _appliance(rng: random.Random, name: str) -> list[tuple[int, int, float]]:
    """An appliance's pieces: (offset s, duration s, power W)."""
    if name == "kettle":
        return [(0, rng.randint(60, 180), rng.uniform(1800.0, 2200.0))]
    if name == "washing_machine":
        return [(0, rng.randint(120, 300), rng.uniform(1900.0, 2100.0))]
    on_s, off_s, power = rng.randint(3, 8), rng.randint(3, 10), rng.uniform(1200.0, 2000.0)
    pieces, t = [], 0
    while t < rng.randint(60, 150):
        pieces.append((t, on_s, power))
        t += on_s + off_s
    return pieces  # induction hob, pulsing


def _house_profile(rng: random.Random, n: int, base_w: float) -> tuple[list[float], list[tuple[str, float]]]:
    house = [base_w] * n
    events: list[tuple[str, float]] = []
    t = rng.randint(90, 200)
    while t < n - 120:
        name = rng.choice(("kettle", "washing_machine", "hob"))
        pieces = _appliance(rng, name)
        for off, dur, power in pieces:
            for i in range(t + off, min(t + off + dur, n)):
                house[i] += power
        if name != "hob":
            off, dur, _power = pieces[0]
            events.append(("load_start", float(t + off)))
            if t + off + dur < n - 30:
                events.append(("load_end", float(t + off + dur)))
        t += max(off + dur for off, dur, _p in pieces) + rng.randint(60, 240)
    return house, events


def random_spec(seed: int) -> FamilySpec:
    """The family member with this seed: plant, GX behaviour and a 5-15 minute scenario."""
    rng = random.Random(seed)
    heater_w = rng.uniform(1000.0, 4000.0)
    house_base = rng.uniform(100.0, 400.0)
    high = (heater_w + house_base) * rng.uniform(0.7, 1.3)
    curve = rng.choice(CURVES)
    dead = rng.uniform(0.0, 0.15)
    kind = rng.choice(("steps", "broken"))
    n = rng.randint(5, 15) * 60
    accept = 0.0 if rng.random() < 0.15 else rng.uniform(0.0, 800.0)
    soc0 = 100.0 if accept == 0.0 else rng.uniform(97.0, 99.5)
    taper = rng.choice(tuple(TAPERS))
    inverter_w = max(2400.0, rng.uniform(1.0, 1.4) * (heater_w + 2200.0))
    params = PlantParams(
        heater=HeaterPlantParams(max_power_w=heater_w, dead_zone_frac=0.0),
        battery=BatteryParams(
            capacity_wh=rng.uniform(4800.0, 15000.0),
            max_charge_w=max(2400.0, accept),
            max_discharge_w=inverter_w * 1.1,
            taper_start_pct=min(95.0, soc0 - 1.0),
        ),
        inverter=InverterParams(max_power_w=inverter_w, tau_s=rng.uniform(0.5, 3.0)),
        mppt_max_w=high * 1.3,
    )
    pv, cloud_ends = _pv_profile(rng, n, kind, high)
    house, house_events = _house_profile(rng, n, house_base)
    outages: tuple[tuple[float, float], ...] = ()
    events = [("cloud_end", START_S + t) for t in cloud_ends] + [(k, START_S + t) for k, t in house_events]
    if rng.random() < 0.6:
        a = START_S + rng.uniform(120.0, n - 90.0)
        outages = ((a, a + rng.uniform(5.0, 30.0)),)
        events.append(("outage_end", outages[0][1]))
    failures = frozenset(rng.sample(range(30, n - 10), rng.randint(0, 4)))
    real = HeaterPlantParams(max_power_w=heater_w, knob_zero_deg=rng.uniform(5.0, 30.0),
                             knob_full_deg=rng.uniform(140.0, 175.0))
    params = replace(params, heater=replace(params.heater, knob_zero_deg=real.knob_zero_deg,
                                            knob_full_deg=real.knob_full_deg))
    spec = FamilySpec(
        seed=seed, kind=kind, params=params, curve=curve, dead_zone_frac=dead, taper=taper, accept_w=accept,
        initial_soc_pct=soc0, gx_period_s=rng.choice((1.0, 1.0, 1.5, 2.0)), gx_jitter_s=rng.uniform(0.0, 0.3),
        poll_offset_s=rng.uniform(0.0, 1.0), duration_s=n, pv_w=tuple(pv), house_w=tuple(house),
        outages_s=outages, read_failures=failures, events=tuple(sorted(events, key=lambda e: e[1])),
    )
    return replace(spec, calibration_points=measured_calibration(spec, rng))


def measured_calibration(spec: FamilySpec, rng: random.Random, points: int = 12) -> tuple[tuple[float, float], ...]:
    """The table a calibration sweep would give: the true curve at a few angles, each within +-3 %."""
    h = spec.params.heater
    out: list[tuple[float, float]] = []
    last = 0.0
    for i in range(points + 1):
        angle = h.knob_zero_deg + (h.knob_full_deg - h.knob_zero_deg) * i / points
        frac = shape_power_fraction(i / points, spec.curve, spec.dead_zone_frac)
        power = 0.0 if frac <= 0.0 else max(last, h.max_power_w * frac * rng.uniform(0.97, 1.03))
        out.append((angle, power))
        last = power
    return tuple(out)


def with_actuator(spec: FamilySpec, actuator: str) -> FamilySpec:
    """The plant with its heater driven by another actuator (pwm_0_10v, ssr_burst; see pvheater/sim/regulators.py).

    The regulator shape and dead zone of the spec belong to the knob and do not apply; the calibration table is
    measured on the actuator's own curve at a few inputs within +-3 %, as `pvheater calibrate` gives.
    """
    if actuator == "servo":
        return spec
    h = spec.params.heater
    reg = replace(h.regulator, actuator=actuator)
    rng = random.Random(spec.seed * 7919 + 3)
    points = 12
    if actuator == "pwm_0_10v":
        lo, hi = zero_ten_duty_range(reg.zero_ten)
        inputs = [lo + (hi - lo) * i / points for i in range(points + 1)]
        fracs = [zero_ten_power_fraction(d, reg.zero_ten) for d in inputs]
    else:
        n = reg.burst.period_cycles
        inputs = [round(n * i / points) / n for i in range(points + 1)]
        fracs = inputs
    out: list[tuple[float, float]] = []
    last = 0.0
    for x, frac in zip(inputs, fracs, strict=True):
        power = 0.0 if frac <= 0.0 else max(last, h.max_power_w * frac * rng.uniform(0.97, 1.03))
        out.append((x, power))
        last = power
    params = replace(spec.params, heater=replace(h, regulator=reg))
    return replace(spec, params=params, calibration_points=tuple(out))


def spec_day(spec: FamilySpec) -> ScenarioDay:
    """The spec's inputs as a ScenarioDay (a whole day; the scenario fills START_S .. START_S + duration)."""
    a = int(START_S)
    pv = [0.0] * DAY_S
    house = [spec.house_w[0]] * DAY_S
    pv[a : a + spec.duration_s] = spec.pv_w
    house[a : a + spec.duration_s] = spec.house_w
    scenario = Scenario(f"family-{spec.seed}", spec.describe(), seed=spec.seed,
                        initial_soc_pct=spec.initial_soc_pct, gx_outages_s=spec.outages_s)
    return ScenarioDay(scenario=scenario, seed=spec.seed, params=spec.params, pv_avail_w=tuple(pv),
                       house_l1_w=tuple(house), house_l2_w=(0.0,) * DAY_S, house_l3_w=(0.0,) * DAY_S,
                       forecast_w=(0.0,) * 24)


# --- the runner ------------------------------------------------------------------------


class _FlakySource:
    """The loop's measurement source: the GX's last publish, or a failed read on the ticks told."""

    def __init__(self) -> None:
        self.m: Measurements | None = None
        self.fail = False

    def read(self) -> Measurements:
        """The snapshot handed in; GxUnavailable on a failed read or before the first publish."""
        if self.fail:
            raise GxUnavailable("read failed (simulated)")
        if self.m is None:
            raise GxUnavailable("no GX data published yet")
        return self.m


@dataclass(frozen=True)
class FamilyRun:
    """One run of a family plant: the run (for pvheater.sim.metrics) and what this runner counts itself."""

    run: RunResult
    relay: tuple[bool, ...]
    servo_moves: int
    servo_deg: float
    switchings: int
    under_load: int
    #: The actuator's own wear figures when it is not the servo (pvheater/sim/regulators.py).
    wear: dict[str, float] = field(default_factory=dict)


def publish_times(spec: FamilySpec, start_s: float, end_s: float) -> list[float]:
    """When the GX publishes: every gx_period_s with jitter, none in an outage."""
    rng = random.Random(spec.seed * 7919 + 1)
    out, t = [], start_s + rng.uniform(0.0, spec.gx_period_s)
    while t < end_s:
        if not any(a <= t < b for a, b in spec.outages_s):
            out.append(t)
        t += max(0.2, spec.gx_period_s + rng.uniform(-spec.gx_jitter_s, spec.gx_jitter_s))
    return out


def controller_loop(spec: FamilySpec, config: Config | None = None) -> tuple[ControlLoop, _FlakySource, object]:
    """The real ControlLoop set up as a user would for this plant: knob angles, heater power, calibration."""
    from pvheater.sim.controller_strategy import SimHeater, config_for_plant

    cfg = config_for_plant(spec.params.heater, config)
    cal = Calibration(spec.calibration_points) if spec.calibration_points else None
    if cal is None:
        cal = Calibration.linear(cfg.servo.knob_zero_deg, cfg.servo.knob_full_deg, cfg.heater.max_power_w)
    heater = SimHeater(cal, cfg.servo.min_move_deg, cfg.heater.actuator)
    source = _FlakySource()
    loop = ControlLoop(source, heater, cfg, logger=_QUIET)
    loop.poll_interval_s = cfg.poll.interval_s  # type: ignore[attr-defined]
    return loop, source, heater


def run_spec(spec: FamilySpec, who: str, config: Config | None = None) -> FamilyRun:
    """Run one family plant with `who` = "off", "oracle_late" or "pvheater" over its scenario."""
    day = spec_day(spec)
    start, end = START_S, START_S + spec.duration_s
    plant = FamilyPlant(day, spec, start)
    n = round((end - start) / DT_S)
    cols = [array("d", bytes(8 * n)) for _ in range(8)]
    relay_col: list[bool] = []
    pubs = publish_times(spec, start, end) if who == "pvheater" else []
    pub_i = 0
    poll_next = start + spec.poll_offset_s
    poll_k = 0
    loop = source = heater = None
    oracle = None
    interval_s = 1.0
    if who == "pvheater":
        loop, source, heater = controller_loop(spec, config)
        interval_s = loop.poll_interval_s
    elif who == "oracle_late":
        oracle = OracleStrategy(plant.params.heater, late_s=2.0, name="oracle_late_2s")
    act = Actuation(False, spec.params.heater.knob_zero_deg)
    last_cmd = act.servo_angle_deg
    moves, degrees, switchings, under_load = 0, 0.0, 0, 0
    oracle_next = start
    relay_was = False
    for k in range(n):
        now = start + k * DT_S
        if loop is not None:
            while pub_i < len(pubs) and pubs[pub_i] <= now + 1e-9:
                source.m = Measurements(time_s=pubs[pub_i], values=plant.gx_values())
                pub_i += 1
            if now >= poll_next - 1e-9:
                source.fail = poll_k in spec.read_failures
                seconds = int(now) % DAY_S
                local = datetime.time(seconds // 3600, seconds % 3600 // 60, seconds % 60)
                loop.tick(now, local, _SIM_UTC_S + now)
                angle = heater.servo_angle_deg
                if heater.actuator != "servo":
                    act = Actuation(heater.relay_on, spec.params.heater.knob_zero_deg, heater.drive)
                else:
                    act = Actuation(heater.relay_on, heater.calibration.zero_angle_deg if angle is None else angle)
                poll_k += 1
                poll_next += interval_s
        elif oracle is not None and now >= oracle_next - 1e-9:
            act = oracle.decide(now, None, plant.truth())
            oracle_next += oracle.interval_s
        if act.servo_angle_deg != last_cmd:
            moves += 1
            degrees += abs(act.servo_angle_deg - last_cmd)
            last_cmd = act.servo_angle_deg
        if act.relay_on != relay_was:
            switchings += 1
            # the current the contacts make or break: the regulator's output at the servo's angle now
            if plant.power_at_input_w(act) > UNDER_LOAD_W:
                under_load += 1
            relay_was = act.relay_on
        if oracle is not None:
            plant.step(DT_S, act)
        else:
            plant.step_real(DT_S, act)
        for col, value in zip(cols, (plant.pv_avail_w, plant.pv_used_w, plant.house_w, plant.heater_w,
                                     plant.battery_w, plant.grid_w, plant.soc_pct, plant.surplus_w), strict=True):
            col[k] = value
        relay_col.append(plant.relay_on)
    run = RunResult(
        scenario=day.name, strategy=None if who == "off" else who, seed=spec.seed, start_s=start, end_s=end,
        dt_s=DT_S, series=RunSeries(start, DT_S, *cols), energy=plant.energy(), relay_toggles=plant.relay_toggles,
        servo_travel_deg=degrees, servo_moves=moves, start_soc_pct=spec.initial_soc_pct, end_soc_pct=plant.soc_pct,
        decisions=poll_k, publishes=pub_i, wall_s=0.0, outages_s=spec.outages_s, heater_max_w=spec.heater_max_w,
    )
    if plant.regulator is not None:
        moves, degrees = 0, 0.0
    return FamilyRun(run, tuple(relay_col), moves, degrees, switchings, under_load, plant.actuator_wear())


# --- response times -------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """How fast the heater followed one event: seconds to 90 % of the available surplus (None: not within 60 s)."""

    kind: str
    time_s: float
    response_s: float | None
    draw_wh: float


def _index(run: RunResult, t: float) -> int:
    return max(0, min(len(run.series) - 1, round((t - run.start_s) / run.dt_s)))


def event_draw_wh(run: RunResult, base: RunResult, a_s: float, b_s: float) -> float:
    """Heater-caused draw (battery + grid, as pvheater.sim.metrics counts it) between two times, Wh."""
    i, j = _index(run, a_s), _index(run, b_s)
    s, sb = run.series, base.series
    joules = 0.0
    for k in range(i, j):
        joules += max(0.0, sb.battery_w[k] - s.battery_w[k])
        joules += max(0.0, max(s.grid_w[k], 0.0) - max(sb.grid_w[k], 0.0))
    return joules * run.dt_s / 3600.0


def responses(spec: FamilySpec, fr: FamilyRun, base: RunResult) -> list[Response]:
    """Response to each measurable event: relay closes, a cloud has passed, a big load ended, an outage ended.

    The reference time is the event (for relay_close the close itself, for
    outage_end the first publish after the outage). An event counts when the
    surplus stays >= 300 W for the 20 s after it and no other disturbance
    starts within those 20 s.
    """
    run = fr.run
    s = run.series
    cap = spec.heater_max_w
    marks: list[tuple[str, float]] = []
    for k in range(1, len(fr.relay)):
        if fr.relay[k] and not fr.relay[k - 1]:
            marks.append(("relay_close", run.start_s + k * run.dt_s))
    pubs = publish_times(spec, run.start_s, run.end_s)
    for kind, t in spec.events:
        if kind == "outage_end":
            t = next((p for p in pubs if p >= t), t)
        if kind != "load_start":
            marks.append((kind, t))
    starts = sorted(t for kind, t in spec.events if kind in ("load_start", "cloud_end"))
    cloud_starts = _drops(spec)
    out = []
    for kind, t in marks:
        others = [x for x in starts + cloud_starts if t < x < t + 20.0]
        i = _index(run, t)
        j = _index(run, t + 20.0)
        if others or j - i < 10 or min(s.surplus_w[i:j]) < 300.0:
            continue
        found = None
        for k in range(i, _index(run, t + 60.0)):
            if s.heater_w[k] >= 0.9 * min(s.surplus_w[k], cap) - 20.0:
                found = run.start_s + k * run.dt_s - t
                break
        out.append(Response(kind, t, found, event_draw_wh(run, base, t, t + 20.0)))
    for _kind, t in spec.events:
        if _kind == "load_start":
            out.append(Response("load_start", t, None, event_draw_wh(run, base, t, t + 20.0)))
    return out


def _drops(spec: FamilySpec) -> list[float]:
    """Times at which PV starts falling by more than 20 % (a cloud arrives)."""
    pv = spec.pv_w
    return [START_S + i for i in range(1, len(pv)) if pv[i] < 0.8 * pv[i - 1] and pv[i - 1] >= pv[max(0, i - 2)]]


# --- one plant, all three runs ----------------------------------------------------------


@dataclass(frozen=True)
class PlantOutcome:
    """The controller and the floor on one family plant."""

    spec_line: str
    seed: int
    kind: str
    controller: RunMetrics
    floor: RunMetrics
    moves: int
    servo_deg: float
    switchings: int
    under_load: int
    responses: tuple[Response, ...]
    floor_responses: tuple[Response, ...]
    #: The actuator that set the power, and its own wear figures when it is not the servo.
    actuator: str = "servo"
    wear: dict[str, float] = field(default_factory=dict)
    #: Simulated seconds the plant ran.
    duration_s: float = 0.0
    #: Heater-caused draw of the loop and of the floor with battery and grid netted over each second, kWh (what a
    #: meter that nets over a second sees: an SSR's cycles within a second do not count as draw and export).
    draw_1s_kwh: float = 0.0
    floor_draw_1s_kwh: float = 0.0

    @property
    def relative_capture_1s(self) -> float | None:
        """relative_capture with both draws netted over each second."""
        c, f = self.controller, self.floor
        if c.oracle_surplus_kwh <= 1e-6:
            return None
        fc = (f.heater_kwh - self.floor_draw_1s_kwh) / f.oracle_surplus_kwh
        if fc <= 0.01:
            return None
        return (c.heater_kwh - self.draw_1s_kwh) / c.oracle_surplus_kwh / fc

    @property
    def relative_capture(self) -> float | None:
        """Controller capture / late-oracle capture (None when the floor captured nothing)."""
        c, f = self.controller.capture, self.floor.capture
        if c is None or f is None or f <= 0.01:
            return None
        return c / f


def netted_draw_kwh(run: RunResult, base: RunResult, window_s: float = 1.0) -> float:
    """Heater-caused draw (as pvheater.sim.metrics counts it) with each series averaged over window_s first, kWh."""
    s, b = run.series, base.series
    k = max(1, round(window_s / run.dt_s))
    joules = 0.0
    for i in range(0, len(s) - k + 1, k):
        battery, battery0 = sum(s.battery_w[i:i + k]) / k, sum(b.battery_w[i:i + k]) / k
        grid, grid0 = sum(s.grid_w[i:i + k]) / k, sum(b.grid_w[i:i + k]) / k
        joules += max(0.0, battery0 - battery) + max(0.0, max(grid, 0.0) - max(grid0, 0.0))
    return joules * k * run.dt_s / 3_600_000.0


def evaluate(
    seed: int, config: Config | None = None, actuator: str = "servo", calibrated: bool = True
) -> PlantOutcome:
    """Run the family plant `seed`: heater off, late oracle, pvheater; metrics and responses.

    With another actuator than the servo only the loop's run drives it (`with_actuator`); the heater-off
    baseline and the floor are the same runs as the servo's, so every actuator is held to the same floor.
    Without `calibrated` the loop has no calibration table (the straight-line default, as on a system never
    calibrated): only the heater observer's learned curve corrects it.
    """
    spec = random_spec(seed)
    if not calibrated:
        spec = replace(spec, calibration_points=())
    base = run_spec(spec, "off").run
    floor = run_spec(spec, "oracle_late")
    ctl = run_spec(with_actuator(spec, actuator), "pvheater", config)
    return PlantOutcome(
        spec_line=spec.describe(), seed=seed, kind=spec.kind,
        controller=compute_metrics(ctl.run, base), floor=compute_metrics(floor.run, base),
        moves=ctl.servo_moves, servo_deg=ctl.servo_deg, switchings=ctl.switchings, under_load=ctl.under_load,
        responses=tuple(responses(spec, ctl, base)), floor_responses=tuple(responses(spec, floor, base)),
        actuator=actuator, wear=dict(ctl.wear), duration_s=float(spec.duration_s),
        draw_1s_kwh=netted_draw_kwh(ctl.run, base), floor_draw_1s_kwh=netted_draw_kwh(floor.run, base),
    )


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values by linear interpolation (NaN when empty)."""
    if not values:
        return math.nan
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def directed_spec(
    seed: int,
    pv_w: list[float],
    house_w: list[float],
    *,
    outages_s: tuple[tuple[float, float], ...] = (),
    read_failures: frozenset[int] = frozenset(),
    events: tuple[tuple[str, float], ...] = (),
) -> FamilySpec:
    """The family plant `seed` (its hardware and GX timing) with given inputs per second from START_S."""
    spec = random_spec(seed)
    peak = max(pv_w)
    params = replace(spec.params, mppt_max_w=max(spec.params.mppt_max_w, peak))
    return replace(spec, params=params, duration_s=len(pv_w), pv_w=tuple(pv_w), house_w=tuple(house_w),
                   outages_s=outages_s, read_failures=read_failures, events=events)
