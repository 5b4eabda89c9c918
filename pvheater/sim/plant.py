"""Physical model of a Victron ESS with the water heater, steppable in simulated time with any dt.

What is modelled, per step (all powers in W, averages over the step):

- **PV**: the scenario gives the DC power the array could deliver at its maximum
  power point (``pv_avail_w``). A DC-coupled MPPT produces only what the DC bus
  takes: ``pv_used = min(pv_avail, mppt_max, battery acceptance + inverter DC draw)``.
  When it produces less than is available it is *curtailing*: MppOperationMode 1.
  With a full battery and no feed-in that is the hidden surplus.
- **Battery**: capacity, SoC, a charge acceptance that is flat in bulk and falls
  linearly from ``taper_start_pct`` to 100 % (never below ``taper_floor_w`` until
  full, so full is reached), and never more than fills it to 100 % within the step.
  Charger state: bulk below the taper, absorption in it, float at 100 % (latched
  until the SoC falls below ``rebulk_pct``).
- **Inverter** (MultiPlus in ESS, grid setpoint 0 W): it supplies the AC loads
  (house + heater) from DC, up to ``max_power_w``, with ``efficiency`` and an idle
  draw; with DC feed-in it also converts PV the battery cannot take and exports it.
  Its AC output follows the ESS target with a first-order lag (``tau_s``), integrated
  exactly over the step, so a load step shows as grid import that decays in ~1-2 s.
  At the ESS minimum SoC the battery is not discharged (loads beyond PV are imported).
- **Phases**: single-phase (everything on L1), or ``three_phase``: a single-phase
  MultiPlus on L1 behind a three-phase grid meter, house loads spread over L1-L3
  (L2/L3 loads sit on the grid side), heater on L1, and the ESS regulating the *sum*
  of the phases to 0 W (Victron's default), so the Multi exports on L1 what L2/L3 draw.
- **Heater**: relay, a servo that slews toward the commanded angle at
  ``servo_speed_deg_s``, a knob that spans ``knob_zero_deg``..``knob_full_deg`` of the
  servo's range, and an SCR regulator whose power follows the phase-angle curve
  after a dead zone (:func:`regulator_power_fraction`).
- **GX**: :meth:`Plant.gx_values` gives the values the GX would publish now, keyed by
  the register names of ``registers/*.yaml`` and rounded to the registers' scales;
  None marks a value the GX would not have (e.g. L2/L3 on a single-phase system).

Energy accounting (Wh, exact per step):
``pv_used + grid_import - grid_export = house + heater + battery_net + losses``,
where ``battery_net`` is DC energy into the battery terminals (charge positive)
and ``losses`` are the inverter's conversion losses and idle draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pvheater.control.measurements import CHARGER_SEPARATOR, Measurements
from pvheater.control.scr import conduction_for_power_fraction, phase_angle_power_fraction
from pvheater.sim.params import SECOND_CHARGER_UNIT, Actuation, HeaterPlantParams, PlantParams
from pvheater.sim.regulators import Regulator, make_regulator
from pvheater.sim.tank import Tank

if TYPE_CHECKING:
    from pvheater.sim.scenarios import ScenarioDay

#: Charger (solarcharger /State) values the plant produces.
MPPT_OFF, MPPT_BULK, MPPT_ABSORPTION, MPPT_FLOAT = 0, 3, 4, 5
#: /MppOperationMode values.
MODE_OFF, MODE_LIMITED, MODE_TRACKING = 0, 1, 2
#: /Dc/Battery/State values (system service).
BATTERY_IDLE, BATTERY_CHARGING, BATTERY_DISCHARGING = 0, 1, 2
#: |battery power| below which the system reports the battery idle, W.
BATTERY_IDLE_BAND_W = 30.0
#: vebus /State while inverting, and while passing grid through.
VEBUS_INVERTING, VEBUS_PASSTHRU = 9, 8
#: Off-grid frequency shift of an AC-coupled PV inverter: it begins to derate at the first, gives 0 at the second, Hz.
SHIFT_START_HZ, SHIFT_END_HZ = 50.2, 51.5


# --- the heater: regulator curve and servo geometry ----------------------------


def regulator_power_fraction(knob_frac: float, dead_zone_frac: float = 0.08) -> float:
    """Regulator output P/Pmax for a knob fraction 0..1: dead zone, then the phase-angle curve.

    After the dead zone the knob sets the conduction fraction x = (knob - dead) / (1 - dead)
    (see :mod:`pvheater.control.scr`).
    """
    if knob_frac <= dead_zone_frac:
        return 0.0
    if knob_frac >= 1.0:
        return 1.0
    return phase_angle_power_fraction((knob_frac - dead_zone_frac) / (1.0 - dead_zone_frac))


def regulator_knob_fraction(power_frac: float, dead_zone_frac: float = 0.08) -> float:
    """Inverse of :func:`regulator_power_fraction`: the knob fraction giving P/Pmax (0 -> dead-zone edge)."""
    if power_frac <= 0.0:
        return dead_zone_frac
    if power_frac >= 1.0:
        return 1.0
    return dead_zone_frac + conduction_for_power_fraction(power_frac) * (1.0 - dead_zone_frac)


def knob_fraction_for_angle(angle_deg: float, params: HeaterPlantParams) -> float:
    """Knob position 0..1 for a servo angle (clamped at the pot's end stops)."""
    frac = (angle_deg - params.knob_zero_deg) / (params.knob_full_deg - params.knob_zero_deg)
    return 0.0 if frac < 0.0 else 1.0 if frac > 1.0 else frac


def angle_for_knob_fraction(knob_frac: float, params: HeaterPlantParams) -> float:
    """Servo angle that puts the knob at a fraction 0..1 of its travel."""
    knob_frac = min(max(knob_frac, 0.0), 1.0)
    return params.knob_zero_deg + knob_frac * (params.knob_full_deg - params.knob_zero_deg)


def heater_power_w(relay_on: bool, angle_deg: float, params: HeaterPlantParams) -> float:
    """True heater power for a relay state and an actual servo angle."""
    if not relay_on:
        return 0.0
    frac = regulator_power_fraction(knob_fraction_for_angle(angle_deg, params), params.dead_zone_frac)
    return params.max_power_w * frac


def angle_for_power_w(power_w: float, params: HeaterPlantParams) -> float:
    """Servo angle that makes the true regulator deliver power_w (inverts the true curve)."""
    frac = regulator_knob_fraction(power_w / params.max_power_w, params.dead_zone_frac)
    return angle_for_knob_fraction(frac, params)


# --- the plant ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlantTruth:
    """The plant's true state now and the scenario for look-ahead: for oracles only.

    ``pv_avail_w`` and ``house_w`` are the inputs of the step about to be simulated;
    ``surplus_w`` is what the heater could take in that step without reducing the
    battery's charge or importing (battery-first), limited by the inverter.
    """

    time_s: float
    pv_avail_w: float
    house_w: float
    soc_pct: float
    battery_accept_w: float
    surplus_w: float
    heater_w: float
    servo_deg: float
    day: ScenarioDay
    params: PlantParams
    #: False while a tank's thermostat is open (the element draws nothing); True without a tank.
    tank_accepts: bool = True
    #: The tank's water temperature (None: no tank).
    tank_c: float | None = None


@dataclass(frozen=True)
class EnergyTotals:
    """Energy integrated by the plant since it started, Wh."""

    pv_avail_wh: float
    pv_used_wh: float
    house_wh: float
    heater_wh: float
    battery_charge_wh: float
    battery_discharge_wh: float
    losses_wh: float
    grid_import_wh: float
    grid_export_wh: float

    @property
    def battery_net_wh(self) -> float:
        """Net DC energy into the battery (charge minus discharge)."""
        return self.battery_charge_wh - self.battery_discharge_wh

    @property
    def balance_error_wh(self) -> float:
        """PV used - (house + heater + battery net + losses - net grid import): 0 when energy is conserved."""
        net_import = self.grid_import_wh - self.grid_export_wh
        return self.pv_used_wh - (self.house_wh + self.heater_wh + self.battery_net_wh + self.losses_wh - net_import)


@dataclass(slots=True)
class _EnergyCounters:
    """The plant's running energy integrals, Wh (what :meth:`Plant.energy` reports)."""

    pv_avail_wh: float = 0.0
    pv_used_wh: float = 0.0
    house_wh: float = 0.0
    heater_wh: float = 0.0
    battery_charge_wh: float = 0.0
    battery_discharge_wh: float = 0.0
    losses_wh: float = 0.0
    grid_import_wh: float = 0.0
    grid_export_wh: float = 0.0


class Plant:
    """The ESS and the heater, advanced by :meth:`step` with any dt; inputs from a ScenarioDay.

    After each step the attributes ``pv_avail_w``, ``pv_used_w``, ``house_w``,
    ``heater_w``, ``battery_w`` (+ charging), ``grid_w`` (+ import, sum of phases),
    ``inverter_w`` (AC out), ``surplus_w``, ``soc_pct``, ``servo_deg`` hold the
    step's averages / end state. Scenario inputs are per second and wrap at the
    end of the day, so a real-time run may go on past 24 h.
    """

    def __init__(
        self,
        day: ScenarioDay,
        *,
        start_s: float = 0.0,
        soc_pct: float | None = None,
        params: PlantParams | None = None,
        servo_deg: float | None = None,
        drive_from_pin: bool = False,
    ) -> None:
        """`drive_from_pin`: an ssr_burst drive is the share of cycles a pin fired already (the live rig)."""
        self.day = day
        self.params = p = params if params is not None else day.params
        self._pv = day.pv_avail_w
        self._h1, self._h2, self._h3 = day.house_l1_w, day.house_l2_w, day.house_l3_w
        self._n = len(self._pv)
        hp, bp, ip = p.heater, p.battery, p.inverter
        self._heater = hp
        #: The model of a pwm_0_10v or ssr_burst heater (pvheater/sim/regulators.py); None: the servo's knob.
        self.regulator: Regulator | None = make_regulator(hp.regulator, hp.max_power_w, from_pin=drive_from_pin)
        self.time_s = float(start_s)
        self.soc_pct = float(day.scenario.initial_soc_pct if soc_pct is None else soc_pct)
        if not 0.0 <= self.soc_pct <= 100.0:
            raise ValueError(f"soc_pct must be 0..100, got {self.soc_pct}")
        self.relay_on = False
        self.servo_deg = hp.knob_zero_deg if servo_deg is None else float(servo_deg)
        self._servo_cmd_deg = self.servo_deg
        self._heater_cache: tuple[bool, float, float] = (False, self.servo_deg, 0.0)
        self.float_latched = self.soc_pct >= 100.0
        # last-step averages
        i = int(self.time_s) % self._n
        self.pv_avail_w = self._pv[i]
        self.pv_used_w = 0.0
        self.house_l1_w, self.house_l2_w, self.house_l3_w = self._h1[i], self._h2[i], self._h3[i]
        self.house_w = self.house_l1_w + self.house_l2_w + self.house_l3_w
        self.heater_w = 0.0
        self.inverter_w = self.house_w  # settled on the loads at start
        self.pv_ac_w = 0.0
        self._inv_end_w = self.inverter_w
        self.battery_w = 0.0
        self.grid_w = 0.0
        self.accept_w = self._acceptance(1.0)
        self.surplus_w = 0.0
        # counters
        self.relay_toggles = 0
        self.servo_travel_deg = 0.0
        self.servo_moves = 0
        # energy accumulators, Wh
        self._e = _EnergyCounters()
        self._import_wh = p.meter_import_kwh0 * 1000.0
        self._export_wh = p.meter_export_kwh0 * 1000.0
        # constants
        self._lag_dt = -1.0
        self._lag_end = 0.0
        self._lag_avg = 0.0
        self._cap_pct_wh = bp.capacity_wh / 100.0
        self._eff = ip.efficiency
        self._idle_w = ip.idle_w
        self._inverter_max_w = ip.max_power_w
        self._mppt_max_w = p.mppt_max_w
        #: The hot-water tank (None: the element always draws what the regulator gives).
        self.tank: Tank | None = Tank(p.tank) if p.tank is not None else None

    # -- inputs and helpers ---------------------------------------------------------

    def _acceptance(self, dt_s: float) -> float:
        """Battery charge acceptance now, W, including the room left to 100 % within dt."""
        bp = self.params.battery
        soc = self.soc_pct
        if soc >= 100.0:
            return 0.0
        if soc < bp.taper_start_pct:
            acc = bp.max_charge_w
        else:
            acc = max(bp.max_charge_w * (100.0 - soc) / (100.0 - bp.taper_start_pct), bp.taper_floor_w)
        room_w = (100.0 - soc) * bp.capacity_wh / 100.0 * 3600.0 / (dt_s * bp.charge_efficiency)
        return acc if acc < room_w else room_w

    def _surplus(self, pv_w: float, house_w: float, accept_w: float) -> float:
        """AC power the heater could take without cutting battery charge or importing (the one surplus formula)."""
        if self.params.ac_pv:  # AC PV feeds the loads directly; the battery takes its share through the Multi
            spare = pv_w - (accept_w + self._idle_w) / self._eff
            if self.params.off_grid and spare > self._inverter_max_w / self.params.multis:
                spare = self._inverter_max_w / self.params.multis
            spare -= house_w
            return spare if spare > 0.0 else 0.0
        if pv_w > self._mppt_max_w:
            pv_w = self._mppt_max_w
        spare = (pv_w - accept_w - self._idle_w) * self._eff
        if spare > self._inverter_max_w:
            spare = self._inverter_max_w
        spare -= house_w
        return spare if spare > 0.0 else 0.0

    def truth(self) -> PlantTruth:
        """The true state now and the inputs of the coming step (for oracles)."""
        i = int(self.time_s) % self._n
        pv = self._pv[i]
        house = self._h1[i] + self._h2[i] + self._h3[i]
        accept = self._acceptance(1.0)
        return PlantTruth(
            time_s=self.time_s,
            pv_avail_w=pv,
            house_w=house,
            soc_pct=self.soc_pct,
            battery_accept_w=accept,
            surplus_w=self._surplus(pv, house, accept),
            heater_w=self.heater_w,
            servo_deg=self.servo_deg,
            day=self.day,
            params=self.params,
            tank_accepts=self.tank is None or self.tank.thermostat_closed,
            tank_c=None if self.tank is None else self.tank.temp_c,
        )

    # -- stepping ---------------------------------------------------------------------

    def step(self, dt_s: float, actuation: Actuation) -> None:
        """Advance the plant by dt_s seconds with the actuation held; steps longer than 1 s are split."""
        if not dt_s > 0.0:
            raise ValueError(f"dt_s must be positive, got {dt_s}")
        relay = bool(actuation.relay_on)
        cmd = float(actuation.servo_angle_deg)
        drive = actuation.drive
        while dt_s > 1.0 + 1e-9:
            self._advance(1.0, relay, cmd, drive)
            dt_s -= 1.0
        self._advance(dt_s, relay, cmd, drive)

    def _advance(self, dt: float, relay: bool, cmd: float, drive: float | None = None) -> None:
        p = self.params
        hp = self._heater
        ip = p.inverter
        bp = p.battery
        i = int(self.time_s) % self._n
        pv_avail = self._pv[i]
        pv = pv_avail if pv_avail < p.mppt_max_w else p.mppt_max_w
        h1 = self._h1[i]
        h2 = self._h2[i]
        h3 = self._h3[i]

        # relay and servo
        if relay != self.relay_on:
            self.relay_toggles += 1
            self.relay_on = relay
        lo, hi = hp.servo_min_deg, hp.servo_max_deg
        cmd = lo if cmd < lo else hi if cmd > hi else cmd
        if cmd != self._servo_cmd_deg:
            self._servo_cmd_deg = cmd
            if abs(cmd - self.servo_deg) > 1e-9:
                self.servo_moves += 1
        servo = self.servo_deg
        diff = cmd - servo
        if diff != 0.0:
            reach = hp.servo_speed_deg_s * dt
            if abs(diff) <= reach:
                servo = cmd
                self.servo_travel_deg += abs(diff)
            else:
                servo += reach if diff > 0 else -reach
                self.servo_travel_deg += reach
            self.servo_deg = servo
        c_relay, c_servo, c_power = self._heater_cache
        if self.regulator is not None:
            heater = self.regulator.power_w(relay, 0.0 if drive is None else drive, dt)
        elif relay == c_relay and servo == c_servo:
            heater = c_power
        else:
            heater = heater_power_w(relay, servo, hp)
            self._heater_cache = (relay, servo, heater)
        tank = self.tank
        if tank is not None:  # the thermostat decides what the element really draws
            heater = tank.element_w(heater)
            tank.advance(self.time_s, dt, heater)

        # ESS target for the inverter's AC output
        house = h1 + h2 + h3
        load = house + heater
        accept = self._acceptance(dt)
        eff = self._eff
        idle = ip.idle_w
        pv_ac = 0.0
        if p.ac_pv:  # AC PV throttled (frequency shift / zero feed-in) to loads + what the battery accepts
            pv_ac = pv_avail
            if not (ip.dc_feed_in and not p.off_grid):
                room = load + (accept + idle) / eff
                pv_ac = pv_ac if pv_ac < room else room
            pv = 0.0
        target = load - pv_ac
        if p.multis == 3:  # each Multi carries its own phase, at most its rating
            per = ip.max_power_w / 3.0
            phase_loads = [h1, h2, h3]
            phase_loads[p.heater_phase - 1] += heater
            target = sum(min(x, per) for x in phase_loads) - pv_ac
        if ip.dc_feed_in and not p.ac_pv and not p.off_grid:
            spare_ac = (pv - accept - idle) * eff
            cap = load + ip.feed_in_limit_w
            spare_ac = spare_ac if spare_ac < cap else cap
            if spare_ac > target:
                target = spare_ac
        dc_avail = pv + (bp.max_discharge_w if self.soc_pct > ip.min_soc_pct else 0.0)
        dc_cap = (dc_avail - idle) * eff
        if target > dc_cap:
            target = dc_cap
        if target > ip.max_power_w:
            target = ip.max_power_w
        floor = -(accept + idle) / eff if p.ac_pv else 0.0  # with AC PV the Multi charges from its output
        if target < floor:
            target = floor

        # first-order lag, integrated exactly over the step
        if dt != self._lag_dt:
            self._lag_dt = dt
            self._lag_end = math.exp(-dt / ip.tau_s)
            self._lag_avg = ip.tau_s / dt * (1.0 - self._lag_end)
        p0 = self._inv_end_w
        inv_avg = target + (p0 - target) * self._lag_avg
        self._inv_end_w = target + (p0 - target) * self._lag_end

        # DC bus: MPPT gives what the bus takes; the battery balances
        dc_draw = (inv_avg / eff if inv_avg >= 0.0 else inv_avg * eff) + idle
        take = accept + dc_draw
        pv_used = pv if pv < take else take
        if pv_used < 0.0:
            pv_used = 0.0
        battery = pv_used - dc_draw
        pv_used += pv_ac
        self.pv_ac_w = pv_ac
        soc = self.soc_pct
        if battery >= 0.0:
            soc += battery * bp.charge_efficiency * dt / 3600.0 / self._cap_pct_wh
        else:
            soc += battery / bp.discharge_efficiency * dt / 3600.0 / self._cap_pct_wh
        if soc > 100.0:  # only rounding can get here: acceptance leaves no more room
            soc = 100.0
        elif soc < 0.0:
            soc = 0.0
        self.soc_pct = soc
        if soc >= 100.0 - 1e-9:
            self.float_latched = True
        elif soc < bp.rebulk_pct:
            self.float_latched = False

        grid = load - pv_ac - inv_avg  # off-grid: the load the inverter could not carry (unserved)

        # energy, Wh
        h = dt / 3600.0
        e = self._e
        e.pv_avail_wh += pv_avail * h
        e.pv_used_wh += pv_used * h
        e.house_wh += house * h
        e.heater_wh += heater * h
        if battery >= 0.0:
            e.battery_charge_wh += battery * h
        else:
            e.battery_discharge_wh -= battery * h
        e.losses_wh += (dc_draw - inv_avg) * h  # (an AC-charging Multi: its DC is below its AC)
        if grid >= 0.0:
            e.grid_import_wh += grid * h
            self._import_wh += grid * h
        else:
            e.grid_export_wh -= grid * h
            self._export_wh -= grid * h

        # step averages for observers
        self.pv_avail_w = pv_avail
        self.pv_used_w = pv_used
        self.house_l1_w = h1
        self.house_l2_w = h2
        self.house_l3_w = h3
        self.house_w = house
        self.heater_w = heater
        self.inverter_w = inv_avg
        self.battery_w = battery
        self.grid_w = grid
        self.accept_w = accept
        self.surplus_w = self._surplus(pv_avail if p.ac_pv else pv, house, accept)
        self.time_s += dt

    # -- what the GX shows ---------------------------------------------------------------

    @property
    def mppt_state(self) -> int:
        """Solar charger /State now: 0 off (no PV), 3 bulk, 4 absorption, 5 float."""
        if self.pv_avail_w < 5.0:
            return MPPT_OFF
        if self.float_latched:
            return MPPT_FLOAT
        return MPPT_ABSORPTION if self.soc_pct >= self.params.battery.taper_start_pct else MPPT_BULK

    @property
    def mppt_mode(self) -> int:
        """/MppOperationMode now: 0 off, 1 limited (curtailing), 2 tracking."""
        if self.pv_avail_w < 5.0:
            return MODE_OFF
        return MODE_LIMITED if self.pv_used_w < self.pv_avail_w - 1.0 else MODE_TRACKING

    @property
    def output_hz(self) -> float:
        """The Multi's AC output frequency: 50 Hz, raised (frequency shift) while it throttles an AC-coupled PV
        inverter off-grid: from 50.2 Hz (where such inverters begin to derate) towards 51.5 Hz (where they give
        nothing), in proportion to the PV held back."""
        p = self.params
        if not (p.ac_pv and p.off_grid) or self.pv_avail_w < 5.0 or self.pv_ac_w >= self.pv_avail_w - 1.0:
            return 50.0
        held = 1.0 - self.pv_ac_w / self.pv_avail_w
        return round(SHIFT_START_HZ + (SHIFT_END_HZ - SHIFT_START_HZ) * min(1.0, max(0.0, held)), 2)

    @property
    def battery_state(self) -> int:
        """/Dc/Battery/State: 0 idle, 1 charging, 2 discharging."""
        if self.battery_w > BATTERY_IDLE_BAND_W:
            return BATTERY_CHARGING
        if self.battery_w < -BATTERY_IDLE_BAND_W:
            return BATTERY_DISCHARGING
        return BATTERY_IDLE

    @property
    def battery_voltage_v(self) -> float:
        """Battery terminal voltage: linear open-circuit curve plus I x R."""
        bp = self.params.battery
        v_oc = bp.voltage_empty_v + (bp.voltage_full_v - bp.voltage_empty_v) * self.soc_pct / 100.0
        return v_oc + bp.resistance_ohm * self.battery_w / v_oc

    def actuator_wear(self) -> dict[str, float]:
        """The wear figures of a pwm_0_10v or ssr_burst heater model (the servo has servo_moves, servo_travel_deg)."""
        return {} if self.regulator is None else self.regulator.wear()

    def energy(self) -> EnergyTotals:
        """Energy integrated since the plant started."""
        e = self._e
        return EnergyTotals(
            pv_avail_wh=e.pv_avail_wh,
            pv_used_wh=e.pv_used_wh,
            house_wh=e.house_wh,
            heater_wh=e.heater_wh,
            battery_charge_wh=e.battery_charge_wh,
            battery_discharge_wh=e.battery_discharge_wh,
            losses_wh=e.losses_wh,
            grid_import_wh=e.grid_import_wh,
            grid_export_wh=e.grid_export_wh,
        )

    def gx_values(self) -> dict[str, float | None]:
        """What the GX publishes now, by register name, rounded as the registers carry it."""
        p = self.params
        three = p.three_phase
        heater = self.heater_w if self.regulator is None else self.regulator.metered_w
        out_l1 = self.house_l1_w + heater
        inv = self.inverter_w
        if three:
            grid_l1 = out_l1 - inv
            grid_l2: float | None = round(self.house_l2_w)
            grid_l3: float | None = round(self.house_l3_w)
            cons_l2: float | None = grid_l2
            cons_l3: float | None = grid_l3
        else:
            grid_l1 = self.grid_w + (heater - self.heater_w)  # a burst heater: the meter averages its cycles
            grid_l2 = grid_l3 = cons_l2 = cons_l3 = None
        battery = self.battery_w
        volts = self.battery_voltage_v
        pv_avail = self.pv_avail_w
        if pv_avail < 5.0:
            pv_v = 0.0
        else:
            vmp = p.pv_vmp_v * (0.93 + 0.07 * min(1.0, pv_avail / 3000.0))
            limited = 1.0 - self.pv_used_w / pv_avail
            pv_v = vmp + (p.pv_voc_v - vmp) * (limited if limited > 0.0 else 0.0)
        soc = self.soc_pct
        battery_w = round(battery) + 0
        values = self._gx_core(three, heater, out_l1, inv, grid_l1, grid_l2, grid_l3, cons_l2, cons_l3, battery,
                               volts, pv_v, soc, battery_w)
        values["vebus_nominal_power_w"] = p.inverter.max_power_w
        values["vebus_phases"] = p.multis
        if p.multis == 3:
            self._gx_three_multis(values)
        if p.chargers == 2:
            self._gx_two_chargers(values)
        if p.ac_pv:
            values.update(pv_dc_w=0, mppt_yield_w=None, mppt_state=None, mppt_operation_mode=None,
                          mppt_pv_voltage_v=None, pv_ac_out_l1_w=round(self.pv_ac_w),
                          vebus_ac_out_l1_w=round(out_l1 - self.pv_ac_w, -1) + 0.0,
                          vebus_ac_in_l1_w=round(out_l1 - self.pv_ac_w - inv, -1) + 0.0)  # = the grid
        if p.off_grid:
            for n in (1, 2, 3):
                if values.get(f"grid_l{n}_w") is not None:
                    values[f"grid_l{n}_w"] = 0
                values[f"meter_l{n}_w"] = None
                values[f"vebus_ac_in_l{n}_w"] = 0.0 if n == 1 or p.multis == 3 else None
            values.update(active_input_source=240, meter_import_kwh=None, meter_export_kwh=None)
        return values

    def _gx_two_chargers(self, values: dict[str, float | None]) -> None:
        """Two chargers: the first (40 % of the array) tracks while it can, the second holds PV back first."""
        avail = self.pv_avail_w
        first_avail = 0.4 * avail
        first = min(self.pv_used_w, first_avail)
        second = self.pv_used_w - first
        unit = f"{CHARGER_SEPARATOR}{SECOND_CHARGER_UNIT}"

        def mode(used: float, can: float) -> int:
            if avail < 5.0:
                return MODE_OFF
            return MODE_LIMITED if used < can - 1.0 else MODE_TRACKING

        values.update({
            "mppt_yield_w": round(first), "mppt_operation_mode": mode(first, first_avail),
            f"mppt_yield_w{unit}": round(second), f"mppt_operation_mode{unit}": mode(second, avail - first_avail),
            f"mppt_state{unit}": self.mppt_state,
        })

    def _gx_three_multis(self, values: dict[str, float | None]) -> None:
        """Per-phase values with a Multi on each phase (each carrying its phase, the inverter lag shared)."""
        p = self.params
        per = p.inverter.max_power_w / 3.0
        loads = [self.house_l1_w, self.house_l2_w, self.house_l3_w]
        loads[p.heater_phase - 1] += self.heater_w
        wanted = [min(x, per) for x in loads]
        total = sum(wanted)
        share = self.inverter_w / total if total > 0 else 0.0
        for n, (load, want) in enumerate(zip(loads, wanted, strict=True), start=1):
            inv_n = want * share
            values[f"ac_consumption_l{n}_w"] = round(load)
            values[f"vebus_ac_out_l{n}_w"] = round(load, -1) + 0.0
            values[f"vebus_ac_in_l{n}_w"] = round(load - inv_n, -1) + 0.0
            values[f"grid_l{n}_w"] = round(load - inv_n) + 0
            values[f"meter_l{n}_w"] = round(load - inv_n) + 0

    def _gx_core(
        self, three: bool, heater: float, out_l1: float, inv: float, grid_l1: float, grid_l2: float | None,
        grid_l3: float | None, cons_l2: float | None, cons_l3: float | None, battery: float, volts: float,
        pv_v: float, soc: float, battery_w: int,
    ) -> dict[str, float | None]:
        return {
            "ac_consumption_l1_w": round(out_l1),
            "ac_consumption_l2_w": cons_l2,
            "ac_consumption_l3_w": cons_l3,
            "grid_l1_w": round(grid_l1) + 0,
            "grid_l2_w": grid_l2,
            "grid_l3_w": grid_l3,
            "active_input_source": 1,
            "battery_voltage_v": round(volts, 1),
            "battery_current_a": round(battery / volts, 1) + 0.0,
            "battery_power_w": battery_w,
            "battery_soc_pct": round(soc),
            "battery_state": self.battery_state,
            "pv_dc_w": round(self.pv_used_w),
            "pv_ac_out_l1_w": None,
            "pv_ac_out_l2_w": None,
            "pv_ac_out_l3_w": None,
            "mppt_state": self.mppt_state,
            "mppt_pv_voltage_v": round(pv_v, 2),
            "mppt_operation_mode": self.mppt_mode,
            "mppt_yield_w": round(self.pv_used_w),
            "bms_power_w": battery_w,
            "bms_soc_pct": round(soc, 1),
            "meter_l1_w": round(grid_l1) + 0,
            "meter_l2_w": grid_l2,
            "meter_l3_w": grid_l3,
            "meter_import_kwh": round(self._import_wh / 1000.0, 2),
            "meter_export_kwh": round(self._export_wh / 1000.0, 2),
            "vebus_ac_in_l1_w": round(out_l1 - inv, -1) + 0.0,
            "vebus_ac_in_l2_w": None,
            "vebus_ac_in_l3_w": None,
            "vebus_ac_out_l1_w": round(out_l1, -1) + 0.0,
            "vebus_ac_out_l2_w": None,
            "vebus_ac_out_l3_w": None,
            "vebus_state": VEBUS_INVERTING if inv > 20.0 else VEBUS_PASSTHRU,
            "vebus_mode": 3,
            "vebus_ac_out_l1_hz": self.output_hz,
        }

    def measurements(self, time_s: float | None = None) -> Measurements:
        """A Measurements snapshot of :meth:`gx_values`, stamped with time_s (default: the plant's time)."""
        return Measurements(time_s=self.time_s if time_s is None else time_s, values=self.gx_values())
