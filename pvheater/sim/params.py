"""The simulated plant's parameters, the actuation a strategy sets on it, and the config a user of it would write.

Kept apart from the plant model so that scenarios (which choose parameters),
strategies (which return actuations) and the plant import them without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pvheater.config import Config
from pvheater.sim.regulators import RegulatorParams, zero_ten_duty_range
from pvheater.sim.tank import TankParams


@dataclass(frozen=True)
class Actuation:
    """What a strategy sets on the plant: the relay, and the servo angle to slew to (or the other actuator's input)."""

    relay_on: bool
    servo_angle_deg: float
    #: pwm_0_10v: the duty; ssr_burst: the fraction of cycles (see pvheater/sim/regulators.py); None for the servo.
    drive: float | None = None


@dataclass(frozen=True)
class HeaterPlantParams:
    """The heater, its SCR regulator and the servo turning the regulator's knob."""

    max_power_w: float = 2000.0
    servo_min_deg: float = 0.0
    servo_max_deg: float = 180.0
    #: Servo angles at which the knob sits at zero and at full (the pot uses part of the servo's travel).
    knob_zero_deg: float = 20.0
    knob_full_deg: float = 160.0
    #: Knob fraction at the low end that gives no output at all.
    dead_zone_frac: float = 0.08
    #: Servo slew rate under the knob's load.
    servo_speed_deg_s: float = 120.0
    #: Which actuator sets the power (servo: the knob above), and the models of the others.
    regulator: RegulatorParams = field(default_factory=RegulatorParams)


@dataclass(frozen=True)
class BatteryParams:
    """A lithium battery behind a BMS (defaults: 2 x Pylontech US2000, 4.8 kWh, 48 V)."""

    capacity_wh: float = 4800.0
    max_charge_w: float = 2400.0
    max_discharge_w: float = 2400.0
    #: Acceptance falls linearly from max_charge_w here to 0 at 100 %.
    taper_start_pct: float = 92.0
    #: Smallest acceptance while not yet full, so 100 % is reached in finite time.
    taper_floor_w: float = 40.0
    #: Float ends (charger back to bulk/absorption) below this SoC.
    rebulk_pct: float = 95.0
    charge_efficiency: float = 0.97
    discharge_efficiency: float = 0.97
    #: Open-circuit voltage at 0 % and 100 % (linear), and internal resistance.
    voltage_empty_v: float = 47.0
    voltage_full_v: float = 53.2
    resistance_ohm: float = 0.02


@dataclass(frozen=True)
class InverterParams:
    """A MultiPlus in ESS mode with grid setpoint 0 W (defaults: MultiPlus 48/3000)."""

    max_power_w: float = 2400.0
    efficiency: float = 0.93
    #: First-order lag of the ESS grid regulation behind load steps.
    tau_s: float = 1.0
    #: DC drawn by the inverter whatever its load.
    idle_w: float = 20.0
    #: ESS minimum SoC: below it the battery is not discharged for the loads.
    min_soc_pct: float = 10.0
    #: ESS "feed-in excess DC-coupled PV".
    dc_feed_in: bool = False
    feed_in_limit_w: float = 5000.0


@dataclass(frozen=True)
class PlantParams:
    """The whole plant; defaults follow the original project's system (seed README).

    2.5 kWp PV on a BlueSolar MPPT 150/45, a MultiPlus 48/3000, 2 x 2.4 kWh
    Pylontech, a 2 kW heater behind the SCR regulator.
    """

    heater: HeaterPlantParams = field(default_factory=HeaterPlantParams)
    battery: BatteryParams = field(default_factory=BatteryParams)
    inverter: InverterParams = field(default_factory=InverterParams)
    #: Largest MPPT output (its 45 A current limit at battery voltage).
    mppt_max_w: float = 2400.0
    #: PV string voltage at the maximum power point and open circuit.
    pv_vmp_v: float = 120.0
    pv_voc_v: float = 145.0
    three_phase: bool = False
    #: No grid: the inverter carries every load; what it cannot carry is unserved (shown as grid import, the
    #: GX reads grid 0 W).
    off_grid: bool = False
    #: PV is an AC-coupled PV inverter on the Multi's output (no solar charger): throttled when nothing takes it.
    ac_pv: bool = False
    #: Three Multis (one per phase, inverter.max_power_w in total) instead of one on L1.
    multis: int = 1
    #: The phase the heater is on (three Multis).
    heater_phase: int = 1
    #: Solar chargers sharing the array (2: the first tracks its string, the second curtails first).
    chargers: int = 1
    meter_import_kwh0: float = 12345.0
    meter_export_kwh0: float = 678.0
    #: A hot-water tank behind the element (None: the element always draws what the regulator gives).
    tank: TankParams | None = None


def config_for_plant(heater: HeaterPlantParams, base: Config | None = None) -> Config:
    """The config a user of this simulated hardware would write: knob angles (or duties, SSR timing), heater power."""
    cfg = base or Config()
    servo = replace(
        cfg.servo,
        min_angle_deg=heater.servo_min_deg,
        max_angle_deg=heater.servo_max_deg,
        knob_zero_deg=heater.knob_zero_deg,
        knob_full_deg=heater.knob_full_deg,
    )
    reg = heater.regulator
    min_duty, max_duty = zero_ten_duty_range(reg.zero_ten)
    pwm = replace(cfg.pwm, min_duty=min_duty, max_duty=max_duty)
    burst = replace(cfg.burst, mains_hz=reg.burst.mains_hz, period_cycles=reg.burst.period_cycles)
    return replace(
        cfg, servo=servo, pwm=pwm, burst=burst,
        heater=replace(cfg.heater, max_power_w=heater.max_power_w, actuator=reg.actuator),
    )


def params_for_actuator(params: PlantParams, cfg: Config) -> PlantParams:
    """The plant with the actuator a config selects (its SSR timing too), the rest unchanged."""
    hp = params.heater
    reg = replace(
        hp.regulator, actuator=cfg.heater.actuator,
        burst=replace(hp.regulator.burst, mains_hz=cfg.burst.mains_hz, period_cycles=cfg.burst.period_cycles),
    )
    return replace(params, heater=replace(hp, regulator=reg))


#: Unit ID of the second solar charger of a two-charger plant (Cerbo GX VE.Direct port 1).
SECOND_CHARGER_UNIT = 226


def config_for_installation(params: PlantParams, cfg: Config) -> Config:
    """The gx section its owner would write for the plant: off-grid, the heater's phase, further chargers."""
    gx = replace(cfg.gx, off_grid=params.off_grid, heater_phase=params.heater_phase,
                 solar_chargers=(SECOND_CHARGER_UNIT,) if params.chargers > 1 else cfg.gx.solar_chargers)
    return replace(cfg, gx=gx)
