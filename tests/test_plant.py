"""The plant's physics: regulator curve, servo, curtailment, charge first, inverter lag, feed-in, GX values."""

from __future__ import annotations

import itertools
import math

import pytest

from pvheater.registers import load_register_map
from pvheater.sim.params import Actuation
from pvheater.sim.plant import (
    MODE_LIMITED,
    MODE_TRACKING,
    MPPT_ABSORPTION,
    MPPT_BULK,
    MPPT_FLOAT,
    HeaterPlantParams,
    Plant,
    angle_for_knob_fraction,
    angle_for_power_w,
    heater_power_w,
    knob_fraction_for_angle,
    regulator_knob_fraction,
    regulator_power_fraction,
)
from pvheater.sim.scenarios import build_day, constant_day, hhmm

HP = HeaterPlantParams()
OFF = Actuation(False, HP.knob_zero_deg)


def settle(plant: Plant, seconds: int, act: Actuation = OFF, dt_s: float = 1.0) -> None:
    for _ in range(round(seconds / dt_s)):
        plant.step(dt_s, act)


# --- regulator curve and servo geometry ------------------------------------------------


def test_regulator_curve_dead_zone_endpoints_and_shape() -> None:
    dead = HP.dead_zone_frac
    assert regulator_power_fraction(0.0) == 0.0
    assert regulator_power_fraction(dead) == 0.0
    assert regulator_power_fraction(dead / 2) == 0.0
    assert regulator_power_fraction(1.0) == 1.0
    assert regulator_power_fraction(1.5) == 1.0
    # half-way through the live travel the firing angle is pi/2: half power
    assert regulator_power_fraction(dead + 0.5 * (1 - dead)) == pytest.approx(0.5, abs=1e-12)
    # firing angle pi/3 (x = 2/3): P = 1 - 1/3 + sin(2 pi/3) / (2 pi)
    expected = 1 - 1 / 3 + math.sin(2 * math.pi / 3) / (2 * math.pi)
    assert regulator_power_fraction(dead + (2 / 3) * (1 - dead)) == pytest.approx(expected, abs=1e-12)
    # strictly increasing after the dead zone, flat (S-shaped) at both ends
    knobs = [dead + (1 - dead) * k / 200 for k in range(1, 201)]
    powers = [regulator_power_fraction(k) for k in knobs]
    assert all(b > a for a, b in itertools.pairwise(powers))
    assert powers[0] < 1e-4  # cubic start just after the dead zone
    assert 1 - powers[-2] < 1e-4


@pytest.mark.parametrize("power_frac", [0.0005, 0.01, 0.1, 0.25, 0.5, 0.77, 0.95, 0.9999])
def test_regulator_inverse_round_trip(power_frac: float) -> None:
    knob = regulator_knob_fraction(power_frac)
    assert HP.dead_zone_frac < knob < 1.0
    assert regulator_power_fraction(knob) == pytest.approx(power_frac, abs=1e-9)
    assert regulator_knob_fraction(0.0) == HP.dead_zone_frac
    assert regulator_knob_fraction(1.0) == 1.0


def test_angle_knob_mapping_and_heater_power() -> None:
    assert knob_fraction_for_angle(HP.knob_zero_deg, HP) == 0.0
    assert knob_fraction_for_angle(HP.knob_full_deg, HP) == 1.0
    assert knob_fraction_for_angle(0.0, HP) == 0.0  # below the pot's end stop
    assert knob_fraction_for_angle(180.0, HP) == 1.0
    assert knob_fraction_for_angle(90.0, HP) == pytest.approx(0.5)
    for frac in (0.0, 0.3, 1.0):
        assert knob_fraction_for_angle(angle_for_knob_fraction(frac, HP), HP) == pytest.approx(frac)
    assert heater_power_w(False, 160.0, HP) == 0.0
    assert heater_power_w(True, 160.0, HP) == HP.max_power_w
    for watts in (50.0, 700.0, 1500.0):
        assert heater_power_w(True, angle_for_power_w(watts, HP), HP) == pytest.approx(watts, abs=1e-6)


def test_servo_slews_at_limited_speed_with_any_dt() -> None:
    plant = Plant(constant_day(0.0, 200.0), servo_deg=HP.knob_zero_deg)
    full = Actuation(True, HP.knob_full_deg)
    plant.step(0.5, full)
    assert plant.servo_deg == pytest.approx(HP.knob_zero_deg + 0.5 * HP.servo_speed_deg_s)
    settle(plant, 2, full)
    assert plant.servo_deg == HP.knob_full_deg
    assert plant.servo_travel_deg == pytest.approx(HP.knob_full_deg - HP.knob_zero_deg)
    assert plant.servo_moves == 1
    assert plant.relay_toggles == 1
    plant.step(1.0, Actuation(True, 500.0))  # beyond the servo's range: clamped, already there
    assert plant.servo_deg == HP.servo_max_deg


# --- curtailment, charge first, taper ------------------------------------------------------


def test_full_battery_without_feed_in_curtails_pv() -> None:
    plant = Plant(constant_day(2000.0, 300.0, initial_soc_pct=100.0))
    settle(plant, 30)
    gx = plant.gx_values()
    m = plant.measurements()
    assert gx["mppt_operation_mode"] == MODE_LIMITED
    assert gx["mppt_state"] == MPPT_FLOAT
    assert gx["battery_power_w"] == 0
    assert abs(gx["grid_l1_w"]) <= 1
    assert gx["pv_dc_w"] == pytest.approx(300 / 0.93 + 20, abs=1)  # only what the loads take
    assert gx["pv_dc_w"] < 2000 - 1000
    assert m.pv_curtailed
    assert plant.soc_pct == 100.0
    # an extra load is met by more PV, not by the battery or the grid (after the inverter's lag)
    settle(plant, 10, Actuation(True, angle_for_power_w(1000.0, HP)))
    assert plant.heater_w == pytest.approx(1000.0)
    assert abs(plant.grid_w) < 1.0
    assert abs(plant.battery_w) < 1.0
    assert plant.pv_used_w == pytest.approx(1300 / 0.93 + 20, abs=1)


def test_absorption_tapers_and_soc_never_exceeds_100() -> None:
    plant = Plant(constant_day(2300.0, 200.0, initial_soc_pct=96.0, seconds=7200))
    settle(plant, 5)
    assert plant.mppt_state == MPPT_ABSORPTION
    assert plant.mppt_mode == MODE_LIMITED  # the battery takes less than PV could give
    accept_96 = plant.battery_w
    assert 0 < accept_96 < plant.params.battery.max_charge_w
    seen_max = plant.soc_pct
    previous_battery_w = plant.battery_w
    for _ in range(3600):
        plant.step(1.0, OFF)
        seen_max = max(seen_max, plant.soc_pct)
        assert plant.battery_w <= previous_battery_w + 1e-9  # acceptance only falls as SoC rises
        previous_battery_w = plant.battery_w
    assert seen_max <= 100.0
    assert plant.soc_pct == 100.0
    assert plant.mppt_state == MPPT_FLOAT
    assert plant.battery_w == 0.0


def test_charge_first_at_60_pct_then_heat() -> None:
    day = build_day("morning60")
    baseline_plant = Plant(day)
    settle(baseline_plant, int(hhmm("06:00")))
    assert baseline_plant.soc_pct == pytest.approx(60.0, abs=2.0)
    # in bulk the MPPT tracks and the battery takes everything beyond the house
    settle(baseline_plant, int(hhmm("08:00") - hhmm("06:00")))
    gx = baseline_plant.gx_values()
    assert gx["mppt_state"] == MPPT_BULK
    assert gx["mppt_operation_mode"] == MODE_TRACKING
    assert gx["battery_power_w"] > 500
    assert baseline_plant.pv_used_w == pytest.approx(baseline_plant.pv_avail_w)


def test_charge_first_oracle_heats_only_near_full() -> None:
    from pvheater.sim.day import run_day
    from pvheater.sim.strategy import make_strategy

    day = build_day("morning60")
    start, end = hhmm("05:00"), hhmm("14:00")
    soc_at_5 = Plant(day)
    settle(soc_at_5, int(start))
    run = run_day(day, make_strategy("oracle", day), start_s=start, end_s=end, soc_pct=soc_at_5.soc_pct)
    s = run.series
    heat_below_90_wh = sum(h for h, soc in zip(s.heater_w, s.soc_pct, strict=True) if soc < 90.0) / 3600
    charge_below_90_wh = sum(b for b, soc in zip(s.battery_w, s.soc_pct, strict=True) if soc < 90.0 and b > 0) / 3600
    assert heat_below_90_wh < 1.0  # the battery charges first: nothing for the heater
    assert charge_below_90_wh > 1000.0
    assert run.energy.heater_wh > 3000.0  # ... and once full, the heater gets the surplus
    first_heat = next(k for k, h in enumerate(s.heater_w) if h > 50)
    assert s.soc_pct[first_heat] > 95.0


# --- inverter ---------------------------------------------------------------------------------


def _grid_after_step(dt_s: float) -> list[float]:
    """Grid power per dt after a 2 kW heater step with a full battery and PV to spare."""
    plant = Plant(constant_day(2400.0, 200.0, initial_soc_pct=100.0), servo_deg=HP.knob_full_deg)
    full_off = Actuation(False, HP.knob_full_deg)
    settle(plant, 20, full_off, dt_s)
    grid = []
    for _ in range(round(10 / dt_s)):
        plant.step(dt_s, Actuation(True, HP.knob_full_deg))
        grid.append(plant.grid_w)
    return grid


def test_inverter_lag_shows_a_load_step_as_import_for_1_to_2_s() -> None:
    grid = _grid_after_step(1.0)
    assert grid[0] > 1000.0  # the first second: mostly imported
    assert 200.0 < grid[1] < grid[0]  # still visible in the second second
    assert grid[3] < 100.0
    assert grid[5] < 10.0
    assert all(g < 1.0 for g in grid[8:])  # then ~0: the inverter has caught up
    assert all(b <= a for a, b in itertools.pairwise(grid))
    # exact discretisation: the imported energy does not depend on dt (2 kW x tau)
    fine = _grid_after_step(0.1)
    energy_1s, energy_01s = sum(grid), sum(fine) * 0.1
    assert energy_1s == pytest.approx(energy_01s, rel=0.01)
    assert energy_1s == pytest.approx(2000.0 * Plant(constant_day(0, 0)).params.inverter.tau_s, rel=0.02)


def test_dc_feed_in_shows_surplus_as_export() -> None:
    plant = Plant(constant_day(2300.0, 300.0, initial_soc_pct=100.0, dc_feed_in=True))
    settle(plant, 30)
    gx = plant.gx_values()
    export_w = (2300 - 20) * 0.93 - 300
    assert gx["mppt_operation_mode"] == MODE_TRACKING
    assert gx["pv_dc_w"] == 2300
    assert gx["grid_l1_w"] == pytest.approx(-export_w, abs=2)
    assert not plant.measurements().pv_curtailed
    settle(plant, 10, Actuation(True, angle_for_power_w(1000.0, HP)))
    assert plant.grid_w == pytest.approx(-(export_w - 1000), abs=2)  # the heater takes it from the export
    assert plant.pv_used_w == pytest.approx(2300)


def test_three_phase_multi_on_l1_exports_what_l2_l3_draw() -> None:
    day = build_day("three_phase")
    plant = Plant(day, start_s=hhmm("13:00"), soc_pct=100.0)
    settle(plant, 60)
    gx = plant.gx_values()
    assert gx["grid_l2_w"] is not None and gx["grid_l3_w"] is not None
    assert gx["grid_l2_w"] > 0 and gx["grid_l3_w"] > 0
    assert gx["grid_l1_w"] < 0  # the Multi feeds back on L1 what L2/L3 import
    total = gx["grid_l1_w"] + gx["grid_l2_w"] + gx["grid_l3_w"]
    assert abs(total) <= 3  # ESS regulates the sum to 0
    assert plant.measurements().grid_w == total


# --- GX values ------------------------------------------------------------------------------


def test_gx_values_are_the_register_names_rounded_as_registers_carry_them() -> None:
    regs = load_register_map().by_name()
    plant = Plant(build_day("clear"), start_s=hhmm("11:00"), soc_pct=97.3)
    settle(plant, 5, Actuation(True, 90.0))
    gx = plant.gx_values()
    assert set(gx) == set(regs)
    for name, value in gx.items():
        if value is None:
            continue
        reg = regs[name]
        assert reg.decode_raw(reg.encode_value(value)) == pytest.approx(value, abs=1e-9), name
        assert reg.plausible(value), name
    assert gx["battery_soc_pct"] == 97  # integer on the system service
    assert gx["bms_soc_pct"] == pytest.approx(round(plant.soc_pct, 1))
    assert gx["grid_l2_w"] is None and gx["vebus_ac_out_l2_w"] is None  # single phase
    assert gx["vebus_ac_out_l1_w"] % 10 == 0  # vebus power registers carry W/10


def test_step_with_any_dt_agrees_with_1s_steps() -> None:
    day = build_day("clouds")
    coarse = Plant(day, start_s=hhmm("12:00"), soc_pct=99.0)
    fine = Plant(day, start_s=hhmm("12:00"), soc_pct=99.0)
    act = Actuation(True, 100.0)
    settle(coarse, 600, act, 1.0)
    settle(fine, 600, act, 0.25)
    plant_5s = Plant(day, start_s=hhmm("12:00"), soc_pct=99.0)
    settle(plant_5s, 600, act, 5.0)  # long steps are split into <= 1 s
    for other in (fine, plant_5s):
        assert other.time_s == pytest.approx(coarse.time_s)
        assert other.energy().heater_wh == pytest.approx(coarse.energy().heater_wh, rel=0.01)
        assert other.energy().pv_used_wh == pytest.approx(coarse.energy().pv_used_wh, rel=0.01)
        assert other.soc_pct == pytest.approx(coarse.soc_pct, abs=0.05)
        assert abs(other.energy().balance_error_wh) < 1e-6
