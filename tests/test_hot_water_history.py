"""Forced heating in the history and in `pvheater stats`: a grid top-up through the real loop on a grey afternoon,
logged with its reason and kWh, counted as grid kWh (the rest solar), and "last at 60 degC"."""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path

import pytest

from pvheater.config import Config
from pvheater.control.hotwater import HotWaterAdvice
from pvheater.control.messages import SAFE_OFF, HeatRequest
from pvheater.history import History, HistoryRecorder, connect_read_only
from pvheater.service.hot_water import HotWaterTick
from pvheater.service.loop import TickReport
from pvheater.sim.controller_strategy import SIM_DAY_UTC_S, ControllerStrategy
from pvheater.sim.plant import Plant
from pvheater.sim.scenarios import Scenario, build_day
from pvheater.sim.tank import TankParams
from pvheater.stats import compute_stats, format_stats


def topup_config() -> Config:
    cfg = Config()
    hw = cfg.hot_water
    return replace(cfg, hot_water=replace(
        hw, goal_time="18:00", decision_time="14:00", topup=replace(hw.topup, enabled=True, window="14:00-18:00")))


def test_a_grid_topup_is_logged_with_reason_and_kwh_and_counted_as_grid_in_stats(tmp_path: Path) -> None:
    day = build_day(Scenario("grey", "overcast", seed=5, pv_peak_w=250.0, tank=TankParams(start_c=30.0, draws=()),
                             initial_soc_pct=40.0))
    start_s, end_s = 13 * 3600 + 50 * 60, 15 * 3600 + 30 * 60
    plant = Plant(day, start_s=start_s)
    strategy = ControllerStrategy(day, topup_config())
    clock = [SIM_DAY_UTC_S + start_s]
    history = History(tmp_path / "h.db")
    recorder = HistoryRecorder(history, strategy.heater, lambda: clock[0], row_every_s=60.0)
    strategy.loop.on_report = recorder
    recorder.start(float(start_s))
    heater_wh = forced_wh = 0.0
    for s in range(start_s, end_s):
        clock[0] = SIM_DAY_UTC_S + s
        act = strategy.decide(float(s), plant.measurements(time_s=float(s)), None)
        plant.step(1.0, act)
        heater_wh += plant.heater_w / 3600.0
        if s >= 14 * 3600:
            forced_wh += min(plant.heater_w, max(0.0, plant.grid_w) + max(0.0, -plant.battery_w)) / 3600.0
    last = strategy.loop.last
    assert last is not None and last.hot_water is not None and last.hot_water.forced == "topup"
    assert last.output.relay_on and last.output.power_w == pytest.approx(2000.0)
    recorder.stop(float(end_s), "test")
    history.close()

    conn = connect_read_only(tmp_path / "h.db")
    events = conn.execute("SELECT kind, detail FROM events WHERE kind IN ('hot_water', 'forced')").fetchall()
    conn.close()
    texts = [d for k, d in events if k == "hot_water"]
    decision = "hot-water decision at the window's start 14:00: gap unknown"
    assert any(t.startswith(decision) and "top-up 8.0 kWh at 2000 W in 14:00-18:00" in t for t in texts), texts
    assert any(t.startswith("top-up started at 14:00: 8.0 kWh planned at 2000 W") for t in texts), texts
    forced = [d for k, d in events if k == "forced"]
    assert len(forced) == 1 and forced[0].startswith("topup: ")
    stats = compute_stats(tmp_path / "h.db", days=None)
    (d,) = stats.days
    assert d.topups == 1
    assert 2.5 < d.grid_kwh < 3.2  # 1.5 h at 2 kW, less what the little PV covered
    assert d.grid_kwh == pytest.approx(forced_wh / 1000.0, rel=0.03)  # the plant's own split
    assert d.heater_kwh == pytest.approx(heater_wh / 1000.0, rel=0.03)
    assert d.solar_kwh == pytest.approx(d.heater_kwh - d.grid_kwh)
    table = format_stats(stats)
    assert "solar kWh" in table and "grid kWh" in table and "top-ups" in table


def _report(now_s: float, last_60c: datetime.date | None) -> TickReport:
    advice = HotWaterAdvice(True, None, 2000.0, "solar surplus", "auto")
    tick = HotWaterTick(advice, None, None, 0.0, 0.0, 0.0, last_60c)
    return TickReport(now_s, None, HeatRequest(False, 0.0, "x"), SAFE_OFF, None, hot_water=tick)


def test_last_at_60_degc_in_stats(tmp_path: Path) -> None:
    history = History(tmp_path / "h.db")
    wall = [SIM_DAY_UTC_S]
    recorder = HistoryRecorder(history, ControllerStrategy(build_day("clear")).heater, lambda: wall[0])
    recorder(_report(0.0, datetime.date(2024, 6, 1)))  # loaded from the state file at the start: not an event
    wall[0] += 10
    recorder(_report(10.0, datetime.date(2024, 6, 1)))
    wall[0] += 10
    recorder(_report(20.0, datetime.date(2024, 6, 21)))
    recorder.stop(30.0)
    history.close()
    stats = compute_stats(tmp_path / "h.db", days=None)
    assert stats.last_60c == "2024-06-21"
    assert format_stats(stats).splitlines()[-1] == "last at 60 degC: 2024-06-21"
    assert stats.as_json()["last_60c"] == "2024-06-21"
