"""The real loop on a plant with a tank: tank full detected and parked at the sense power, the close seen."""

from __future__ import annotations

import logging

import pytest

from pvheater.sim.controller_strategy import ControllerStrategy
from pvheater.sim.params import Actuation
from pvheater.sim.plant import Plant
from pvheater.sim.scenarios import Scenario, build_day
from pvheater.sim.soak_engine import plant_calibration
from pvheater.sim.tank import TankParams


def _act(strategy: ControllerStrategy) -> Actuation:
    angle = strategy.heater.servo_angle_deg
    return Actuation(strategy.heater.relay_on, strategy.heater.calibration.zero_angle_deg if angle is None else angle)


def test_tank_full_parks_at_the_sense_power_and_the_close_switches_in_only_that(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a small, lossy tank just below its setpoint at noon: it opens within a minute and closes minutes later
    tank = TankParams(volume_l=5.0, start_c=58.0, loss_w_at_40k=400.0, draws=())
    day = build_day(Scenario("small_lossy_tank", "test", seed=1, tank=tank))
    start_s = 12 * 3600
    plant = Plant(day, start_s=start_s)
    strategy = ControllerStrategy(day)
    strategy.heater.calibration = plant_calibration(day.params.heater)
    strategy.loop.log = logging.getLogger("test.tank")
    sense_w = strategy.loop.sense_power_w
    draw_w: dict[int, float] = {}
    edges: list[tuple[float, bool]] = []
    was_full = False
    with caplog.at_level(logging.INFO, logger="test.tank"):
        for s in range(start_s, start_s + 900):
            strategy.decide(float(s), plant.measurements(), None)
            report = strategy.loop.last
            assert report is not None
            if report.tank_full != was_full:
                edges.append((float(s), report.tank_full))
                was_full = report.tank_full
                if report.tank_full:
                    assert report.request.power_w <= strategy.loop.sense_command_w() + 1.0  # sense W by the curve
            plant.step(1.0, _act(strategy))
            draw_w[s] = max(0.0, -plant.battery_w) + max(0.0, plant.grid_w)
    assert plant.tank is not None
    events = plant.tank.events
    opens = [t for t, closed in events if not closed]
    closes = [t for t, closed in events if closed]
    assert opens and closes, events
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("tank full at 12:") for m in messages) == len(opens), messages
    assert any(m.startswith("thermostat closed at 12:") for m in messages), messages
    full_s = [t for t, full in edges if full]
    closed_s = [t for t, full in edges if not full]
    for t in opens:  # "tank full" within 15 s of each opening
        assert any(0 <= f - t <= 15 for f in full_s), (opens, edges)
    for t in closes:  # the close within 5 s, and only the sense power switches in
        assert any(0 <= c - t <= 5 for c in closed_s), (closes, edges)
        peak_w = max(draw_w[int(t) + k] for k in range(15) if int(t) + k in draw_w)
        assert peak_w <= sense_w + 200.0, (peak_w, sense_w)


def test_a_thermostat_that_closes_while_the_relay_is_open_is_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tank full, the relay opens (tank_full_open_after_s), the tank cools and the thermostat closes unseen: after
    the parked re-check the heater heats again, starting from the sense power (no surge)."""
    from dataclasses import replace

    from pvheater.config import Config
    from pvheater.service import loop as loop_module

    monkeypatch.setattr(loop_module, "RECHECK_PARKED_S", 600.0)
    tank = TankParams(volume_l=5.0, start_c=59.5, loss_w_at_40k=400.0, draws=())
    day = build_day(Scenario("small_lossy_tank", "test", seed=1, tank=tank))
    cfg = Config()
    cfg = replace(cfg, heater=replace(cfg.heater, tank_full_open_after_s=60.0))
    start_s = 12 * 3600
    plant = Plant(day, start_s=start_s)
    strategy = ControllerStrategy(day, cfg)
    strategy.heater.calibration = plant_calibration(day.params.heater)
    sense_w = strategy.loop.sense_power_w
    relay: list[bool] = []
    heater_w: list[float] = []
    draw_w: list[float] = []
    for s in range(start_s, start_s + 1200):
        strategy.decide(float(s), plant.measurements(), None)
        plant.step(1.0, _act(strategy))
        relay.append(strategy.heater.relay_on)
        heater_w.append(plant.heater_w)
        draw_w.append(max(0.0, -plant.battery_w) + max(0.0, plant.grid_w))
    assert plant.tank is not None
    opens = [t - start_s for t, closed in plant.tank.events if not closed]
    closes = [t - start_s for t, closed in plant.tank.events if closed]
    assert opens and closes and closes[0] > opens[0], plant.tank.events
    opened = next(k for k in range(int(opens[0]), len(relay)) if not relay[k])  # the relay parked open
    assert not any(relay[k] for k in range(opened, int(closes[0])))  # the close happened with the relay open
    again = next(k for k in range(int(closes[0]), len(relay)) if relay[k])  # heating resumes after the re-check
    assert max(heater_w[again:]) > 1000.0, "the heater never heated again after the unseen close"
    assert max(draw_w[again:again + 15]) <= sense_w + 200.0  # it starts from the sense power
