"""Legionella over three simulated weeks through the service's hot-water part: the real DS18B20 reader on a fake
sysfs tree fed by a tank model, the state file, and two restarts (the "last at 60 degC" date survives them).

Forced only when no natural (solar) cycle happened in N days: 3 sunny days, 17 grey, 1 sunny, N = 7.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import replace
from pathlib import Path

from pvheater.config import Config
from pvheater.control.messages import HeatRequest
from pvheater.hot_water_store import HotWaterStore
from pvheater.service.hot_water import HotWater
from pvheater.sim.w1 import FakeW1Bus
from pvheater.tank_sensor import TankSensor, TankSensorThread

DAY0 = datetime.datetime(2026, 6, 1)
STEP_S = 60.0
SUNNY, GREY = 2600.0, 150.0
WATER_KWH_PER_L_K = 4.186 / 3600.0


class Tank:
    """150 l, thermostat at 65 degC / 7 K, 2 W/K losses, 40 l drawn at 07:00 and 19:00."""

    def __init__(self) -> None:
        self.temp_c = 45.0
        self.open_ = False

    def step(self, heater_w: float, local: datetime.datetime) -> float:
        if self.temp_c >= 65.0:
            self.open_ = True
        elif self.temp_c <= 58.0:
            self.open_ = False
        power_w = 0.0 if self.open_ else heater_w
        kwh = power_w * STEP_S / 3.6e6
        loss_kwh = 2.0 * (self.temp_c - 20.0) * STEP_S / 3.6e6
        self.temp_c += (kwh - loss_kwh) / (150.0 * WATER_KWH_PER_L_K)
        if (local.hour, local.minute) in ((7, 0), (19, 0)):
            self.temp_c = (self.temp_c * 110.0 + 12.0 * 40.0) / 150.0
        return power_w


def surplus_w(local: datetime.datetime, peak_w: float) -> float:
    hours = local.hour + local.minute / 60.0
    return peak_w * math.sin(math.pi * (hours - 8.0) / 10.0) if 8.0 <= hours <= 18.0 else 0.0


def test_legionella_forced_only_without_a_natural_cycle_in_7_days_over_3_weeks_with_a_restart(
        tmp_path: Path) -> None:
    bus = FakeW1Bus(tmp_path / "w1")
    sensor_id = bus.add(temp_c=45.0)
    cfg = Config()
    cfg = replace(
        cfg,
        tank_sensor=replace(cfg.tank_sensor, enabled=True, base_dir=str(tmp_path / "w1"), max_temp_c=70.0),
        hot_water=replace(cfg.hot_water, legionella=replace(cfg.hot_water.legionella, every_days=7)),
    )
    now = [0.0]
    store = HotWaterStore(tmp_path / "hot_water_state.json")

    def service() -> tuple[HotWater, TankSensorThread]:
        reader = TankSensorThread(TankSensor(tmp_path / "w1"), 60.0, clock=lambda: now[0])
        return HotWater(cfg, tank=reader, store=store, local_tz=datetime.UTC), reader

    hw, reader = service()
    tank = Tank()
    peaks = [SUNNY] * 3 + [GREY] * 17 + [SUNNY]
    forced_starts: list[datetime.datetime] = []
    hot_lines: list[datetime.datetime] = []
    forced_ticks: list[datetime.datetime] = []
    max_c = 0.0
    # restarts at noon of days 5 and 14: without the saved date the count would start over (due 12 and 21)
    restarts = {int(5.5 * 86400 / STEP_S), int(14.5 * 86400 / STEP_S)}
    for i in range(int(len(peaks) * 86400 / STEP_S)):
        now[0] = i * STEP_S
        local = DAY0 + datetime.timedelta(seconds=now[0])
        if i in restarts:  # a new service loads the state file
            hw, reader = service()
        bus.set_temp(sensor_id, tank.temp_c)
        reader.read_once()
        surplus = surplus_w(local, peaks[(local - DAY0).days])
        utc_s = local.replace(tzinfo=datetime.UTC).timestamp()
        request, forced = hw.advise(HeatRequest(surplus > 0, surplus, "surplus"), None, now[0], local.time(), utc_s,
                                    tank.open_, None)
        assert hw.last is not None
        events = hw.last.advice.events
        forced_starts += [local for e in events if e.startswith("legionella cycle forced")]
        hot_lines += [local for e in events if e.startswith("legionella: tank hot")]
        if forced:
            forced_ticks.append(local)
        drawn_w = tank.step(request.power_w if request.want_heat else 0.0, local)
        hw.account(now[0], None, drawn_w, forced, local.time(), utc_s)
        max_c = max(max_c, tank.temp_c)
    forced_days = [(t - DAY0).days for t in forced_starts]
    # last natural cycle day 2 -> the window of day 9 forces one, which reaches 60 after midnight (day 10) -> day 17
    assert forced_days == [9, 17], forced_days
    assert all(t.time() == datetime.time(22, 0) for t in forced_starts)
    assert all(t.time() >= datetime.time(22) or t.time() < datetime.time(6) for t in forced_ticks)
    hot_days = sorted({(t - DAY0).days for t in hot_lines})
    assert {0, 1, 2, 20} <= set(hot_days)  # the sunny days count as natural cycles, nothing forced after them
    assert not any(d in forced_days for d in (0, 1, 2, 3, 4, 5, 6, 7, 8, 20))
    assert store.load().last_60c == (DAY0 + datetime.timedelta(days=20)).date()
    assert max_c < 70.5  # never heated past max_temp_c
