"""Scenarios, the day runner (GX staleness, outages), the baseline strategies and the metrics."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from pvheater.control.measurements import Measurements
from pvheater.sim.day import run_day
from pvheater.sim.metrics import (
    compute_metrics,
    energy_balance_error_pct,
    format_table,
    heater_caused_draw_kwh,
    oracle_surplus_kwh,
    outage_heater_kwh,
    worst_overshoot_w,
)
from pvheater.sim.params import Actuation
from pvheater.sim.plant import EnergyTotals, PlantTruth
from pvheater.sim.results import RunResult, RunSeries
from pvheater.sim.scenarios import SCENARIOS, build_day, get_scenario, hhmm, scenario_names
from pvheater.sim.strategy import OriginalStrategy, make_strategy, strategy_names

# --- scenarios ----------------------------------------------------------------------------


def test_the_named_scenarios() -> None:
    assert scenario_names() == [
        "clear", "clouds", "morning60", "house_steps", "dc_feedin", "three_phase", "gx_outage",
        "morning60_forecast_good", "morning60_forecast_over",
        "multi_mppt", "ac_coupled", "ac_coupled_offgrid", "offgrid", "three_multis",
    ]
    with pytest.raises(ValueError, match=r"unknown scenario 'sunny'.*clear, clouds"):
        get_scenario("sunny")
    assert SCENARIOS["gx_outage"].gx_outages_s == ((hhmm("12:00"), hhmm("12:20")),)


def test_scenarios_are_seeded_and_reproducible() -> None:
    sc = get_scenario("clouds")
    a, b = build_day(sc), build_day(sc)
    assert a is not b
    assert a.pv_avail_w == b.pv_avail_w and a.house_l1_w == b.house_l1_w and a.forecast_w == b.forecast_w
    other = build_day(sc, seed=99)
    assert other.pv_avail_w != a.pv_avail_w
    assert a.seconds == 86_400
    assert len(a.forecast_w) == 24
    assert max(a.pv_avail_w) <= sc.pv_peak_w * 1.15  # cloud enhancement at most
    assert a.pv_avail_w[int(hhmm("03:00"))] == 0.0
    three = build_day("three_phase")
    assert sum(three.house_l2_w) > 0 and sum(three.house_l3_w) > 0
    assert sum(build_day("clear").house_l2_w) == 0  # single phase: all on L1


# --- runner: energy balance, GX staleness, outage ---------------------------------------------


@pytest.mark.parametrize("scenario", scenario_names())
def test_energy_balance_closes_for_every_scenario(scenario: str) -> None:
    day = build_day(scenario)
    run = run_day(day, make_strategy("oracle", day))
    e = run.energy
    s = run.series
    # the runner's per-step records integrate to the plant's totals
    assert sum(s.pv_used_w) / 3600 == pytest.approx(e.pv_used_wh, rel=1e-9)
    assert sum(s.heater_w) / 3600 == pytest.approx(e.heater_wh, rel=1e-9)
    assert sum(max(g, 0.0) for g in s.grid_w) / 3600 == pytest.approx(e.grid_import_wh, rel=1e-9)
    assert sum(s.battery_w) / 3600 == pytest.approx(e.battery_net_wh, rel=1e-9)
    # PV used = house + heater + battery charge + losses - grid import (net), within 0.5 %
    rhs = e.house_wh + e.heater_wh + e.battery_net_wh + e.losses_wh - (e.grid_import_wh - e.grid_export_wh)
    assert e.pv_used_wh == pytest.approx(rhs, rel=0.005)
    assert energy_balance_error_pct(run) < 0.5
    # the battery's SoC moved by what went in and out, with its efficiencies
    bp = day.params.battery
    stored_wh = e.battery_charge_wh * bp.charge_efficiency - e.battery_discharge_wh / bp.discharge_efficiency
    assert (run.end_soc_pct - run.start_soc_pct) / 100 * bp.capacity_wh == pytest.approx(stored_wh, abs=0.5)
    assert max(s.soc_pct) <= 100.0


class Recorder:
    """A strategy that records what it was shown."""

    name = "recorder"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.seen: list[tuple[float, Measurements | None]] = []

    def decide(self, now_s: float, m: Measurements | None, truth: PlantTruth | None) -> Actuation:
        self.seen.append((now_s, m))
        return Actuation(False, 20.0)


def test_strategies_see_the_last_publish_at_most_1_s_old() -> None:
    day = build_day("clear")
    rec = Recorder(interval_s=0.3)
    run_day(day, rec, dt_s=0.1, start_s=hhmm("10:00"), end_s=hhmm("10:00") + 30, gx_phase_s=0.37)
    first_publish = hhmm("10:00") + 0.37
    assert all(m is None for now, m in rec.seen if now < first_publish - 1e-6)
    later = [(now, m) for now, m in rec.seen if now >= first_publish]
    assert len(later) > 90
    ages = []
    for now, m in later:
        assert m is not None
        assert m.time_s <= now + 1e-9  # never newer than the last publish
        ages.append(now - m.time_s)
    stamps = sorted({m.time_s for _, m in later if m is not None})
    assert all(b - a == pytest.approx(1.0, abs=0.1 + 1e-6) for a, b in itertools.pairwise(stamps))
    assert min(ages) >= -1e-9 and max(ages) < 1.0
    assert max(ages) > 0.5  # and they really do age between publishes


def test_gx_outage_keeps_the_last_snapshot_aging() -> None:
    day = build_day("gx_outage")
    rec = Recorder(interval_s=1.0)
    start, end = hhmm("11:59"), hhmm("12:21")
    run = run_day(day, rec, start_s=start, end_s=end)
    ages = {now: now - m.time_s for now, m in rec.seen if m is not None}
    assert ages[hhmm("11:59:30")] == 0.0
    last_before = hhmm("11:59:59")  # the outage starts at 12:00:00
    assert ages[hhmm("12:10")] == hhmm("12:10") - last_before
    assert ages[hhmm("12:19:59")] == hhmm("12:19:59") - last_before
    assert ages[hhmm("12:20:00")] == 0.0  # publishing again
    steps = round(end - start)
    assert run.publishes == (steps - 1) - 20 * 60  # every second after the start, except the outage


# --- baselines ----------------------------------------------------------------------------


def meas(t: float, *, soc: float = 98, grid: float = 0, battery: float = 0, pv: float = 500, state: int = 0
         ) -> Measurements:
    return Measurements(
        time_s=t,
        values={"battery_soc_pct": soc, "grid_l1_w": grid, "battery_power_w": battery, "pv_dc_w": pv,
                "battery_state": state},
    )


def test_original_algorithm_on_a_hand_made_day() -> None:
    orig = OriginalStrategy(lambda now_s: 2000.0)
    t = hhmm("10:00")
    assert orig.interval_s == 3.0
    assert orig.decide(t, None, None) == Actuation(False, 0.0)  # no data: off
    on = orig.decide(t, meas(t), None)  # forecast 2000 - PV 500 > 700: on at 50 %
    assert on == Actuation(True, 90.0)
    assert orig.decide(t + 3, meas(t + 3, pv=900), None) == Actuation(True, 108.0)  # 1100 > 100: +10 %
    assert orig.decide(t + 6, meas(t + 6, pv=1300), None) == Actuation(True, 126.0)
    assert orig.decide(t + 9, meas(t + 9, pv=1950), None) == Actuation(True, 126.0)  # 50 < 100: hold
    # |battery| > 100 W: -10 %, charging as well as discharging (the original's absolute value)
    assert orig.decide(t + 12, meas(t + 12, battery=150, state=1), None) == Actuation(True, 108.0)
    assert orig.decide(t + 15, meas(t + 15, battery=-150, state=2), None) == Actuation(True, 90.0)
    # the battery discharging a little (state 2) backs off too
    assert orig.decide(t + 18, meas(t + 18, battery=-40, state=2), None) == Actuation(True, 72.0)
    # grid import > 80 W: relay off, power reset to 50 % (the servo stays until the relay closes)
    off = orig.decide(t + 21, meas(t + 21, grid=120), None)
    assert off == Actuation(False, 72.0)
    assert orig.power_pct == 50.0
    assert orig.decide(t + 24, meas(t + 24), None) == Actuation(True, 90.0)
    # clamps at 100 % = 180 deg
    for k in range(10):
        act = orig.decide(t + 27 + 3 * k, meas(t + 27 + 3 * k, pv=100), None)
    assert act == Actuation(True, 180.0)
    # SoC <= 95, outside 09:00-18:00, stale data (> 10 s): off; each time back on at 50 %
    assert orig.decide(t + 60, meas(t + 60, soc=95), None) == Actuation(False, 180.0)
    assert orig.decide(t + 63, meas(t + 63), None) == Actuation(True, 90.0)
    assert not orig.decide(hhmm("18:00"), meas(hhmm("18:00")), None).relay_on
    assert orig.decide(t + 66, meas(t + 66), None).relay_on
    assert not orig.decide(t + 80, meas(t + 69), None).relay_on  # 11 s old
    assert orig.decide(t + 80, meas(t + 70), None).relay_on  # 10 s old: still fresh enough


def test_original_switches_on_only_with_curtailed_pv_in_its_window() -> None:
    day = build_day("clear")
    run = run_day(day, make_strategy("original", day), start_s=hhmm("08:30"), end_s=hhmm("09:30"), soc_pct=99.0)
    s = run.series
    k9 = int(hhmm("09:00") - hhmm("08:30"))
    assert all(h == 0 for h in s.heater_w[:k9])  # before 09:00: never
    assert max(s.heater_w[k9:]) > 500


def test_oracles_capture_everything_and_late_ones_draw_more() -> None:
    day = build_day("clouds")
    window = {"start_s": hhmm("11:00"), "end_s": hhmm("12:30"), "soc_pct": 100.0}
    baseline = run_day(day, None, **window)
    results = {
        name: compute_metrics(run_day(day, make_strategy(name, day), **window), baseline)
        for name in ("oracle", "oracle_late_1s", "oracle_late_2s")
    }
    on_time, late1, late2 = results["oracle"], results["oracle_late_1s"], results["oracle_late_2s"]
    assert on_time.oracle_surplus_kwh > 0.5
    assert on_time.capture == pytest.approx(1.0, abs=0.01)
    assert on_time.draw_kwh < late1.draw_kwh < late2.draw_kwh
    assert late1.draw_grid_kwh > 0  # heater increases imported while the inverter catches up
    assert late1.capture < on_time.capture


def test_strategy_registry() -> None:
    names = strategy_names()
    assert names == ["original", "oracle", "oracle_late_1s", "oracle_late_2s",
                     "pvheater", "pvheater_forecast", "pvheater_heater_first"]
    with pytest.raises(ValueError, match=r"unknown strategy 'nope'.*original"):
        make_strategy("nope", build_day("clear"))


# --- metrics on hand-made runs ---------------------------------------------------------------


def fake_run(strategy: str | None, *, battery: list[float], grid: list[float], heater: list[float],
             surplus: list[float], dt_s: float = 3600.0, outages: tuple[tuple[float, float], ...] = ()
             ) -> RunResult:
    n = len(battery)
    zero = [0.0] * n
    series = RunSeries(0.0, dt_s, zero, zero, zero, heater, battery, grid, [50.0] * n, surplus)
    energy = EnergyTotals(0, 1000.0, 600.0, 0, 300.0, 0, 100.0, 0, 0)
    return RunResult("hand", strategy, 0, 0.0, n * dt_s, dt_s, series, energy, 2, 30.0, 3, 50.0, 51.0, n, n, 0.1,
                     outages, heater_max_w=1000.0)


def test_metrics_definitions_on_a_hand_made_run() -> None:
    # four one-hour steps
    baseline = fake_run(None, battery=[500, 500, 0, -200], grid=[0, 0, 50, 0], heater=[0] * 4,
                        surplus=[0, 800, 1500, 0])
    run = fake_run("x", battery=[500, 300, 0, -250], grid=[0, 20, 40, 100], heater=[0, 900, 1000, 300],
                   surplus=[0, 800, 1500, 0], outages=((3600.0, 7200.0),))
    assert oracle_surplus_kwh(baseline) == pytest.approx((800 + 1000) / 1000)  # capped at heater max 1000
    battery_kwh, grid_kwh = heater_caused_draw_kwh(run, baseline)
    assert battery_kwh == pytest.approx((200 + 50) / 1000)
    assert grid_kwh == pytest.approx((20 + 100) / 1000)  # 40 < 50 in the baseline: not counted
    assert worst_overshoot_w(run) == pytest.approx(300.0)  # 300 W heater against 0 surplus
    assert outage_heater_kwh(run) == pytest.approx(0.9)
    assert outage_heater_kwh(baseline) is None
    m = compute_metrics(run, baseline)
    assert m.heater_kwh == 0.0  # from the energy totals
    assert m.draw_kwh == pytest.approx(0.37)
    assert m.relay_toggles == 2 and m.servo_travel_deg == 30.0 and m.servo_moves == 3
    assert m.end_soc_pct == 51.0
    assert m.balance_error_pct == pytest.approx(0.0)
    table = format_table([m])
    assert "hand" in table and "capture %" in table
    assert format_table([m], markdown=True).startswith("| scenario | strategy |")
    with pytest.raises(ValueError, match="same window"):
        compute_metrics(run, replace(baseline, dt_s=1.0))
    with pytest.raises(ValueError, match="heater-off"):
        compute_metrics(run, run)
