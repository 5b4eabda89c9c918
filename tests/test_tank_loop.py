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


#: The small tests' tank plant starts at noon.
START_S = 12 * 3600


def _small_lossy_tank(start_c: float, **heater: float) -> tuple[Plant, ControllerStrategy]:
    """A 5 l lossy tank (no draw-offs) starting at start_c at noon, and the loop on the regulator's own curve;
    `heater` overrides the config's heater section (sense_power_pct, tank_full_open_after_s)."""
    from dataclasses import replace

    from pvheater.config import Config

    tank = TankParams(volume_l=5.0, start_c=start_c, loss_w_at_40k=400.0, draws=())
    day = build_day(Scenario("small_lossy_tank", "test", seed=1, tank=tank))
    cfg = Config()
    cfg = replace(cfg, heater=replace(cfg.heater, **heater))
    strategy = ControllerStrategy(day, cfg)
    strategy.heater.calibration = plant_calibration(day.params.heater)
    return Plant(day, start_s=START_S), strategy


def test_tank_full_parks_at_the_sense_power_and_the_close_switches_in_only_that(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a small, lossy tank just below its setpoint at noon: it opens within a minute and closes minutes later
    plant, strategy = _small_lossy_tank(58.0)
    start_s = START_S
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
            if was_full and edges and edges[-1] == (float(s - 1), True):
                # the tick after the verdict (a tick's request is made before its sample is judged): parked
                assert report.request.power_w <= strategy.loop.sense_command_w() + 1.0  # sense W by the curve
            if report.tank_full != was_full:
                edges.append((float(s), report.tank_full))
                was_full = report.tank_full
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
    from pvheater.service import loop as loop_module

    monkeypatch.setattr(loop_module, "RECHECK_PARKED_S", 600.0)
    plant, strategy = _small_lossy_tank(59.5, tank_full_open_after_s=60.0)
    start_s = START_S
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


@pytest.mark.parametrize("seed", [3, 16, 35])
def test_a_thermostat_close_on_a_family_plant_takes_at_most_the_sense_power_and_200_w(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # family plants (a measured curve, 1.7-2.6 kW, an ESS lag of 1.2-3 s, PV held back by a full battery) with a
    # small lossy tank at 59 degC: the thermostat opens, the knob parks at the sense power, the thermostat closes.
    # seed 16: the open thermostat was learned as the curve's dead zone (the sense command drew 582 W); seeds 3
    # and 35: the climb after the close ran ahead of the inverter (3 s lag) / met a kettle at 512 W
    import dataclasses

    from pvheater.sim import plant as plant_module
    from pvheater.sim.family import random_spec, run_spec
    from pvheater.sim.tank import Tank

    spec = random_spec(seed)
    tank = TankParams(volume_l=5.0 * spec.heater_max_w / 2000.0, start_c=59.0, loss_w_at_40k=400.0, draws=())
    spec = dataclasses.replace(spec, params=dataclasses.replace(spec.params, tank=tank))
    tanks: list[Tank] = []

    class _Noted(Tank):
        def __init__(self, params: TankParams) -> None:
            super().__init__(params)
            tanks.append(self)

    monkeypatch.setattr(plant_module, "Tank", _Noted)
    run = run_spec(spec, "pvheater")
    base = run_spec(spec, "off").run.series  # the house alone, heater off, over the same minutes
    series = run.run.series

    def taken(x: object, i: int) -> float:
        return max(0.0, -x.battery_w[i]) + max(0.0, x.grid_w[i])  # type: ignore[attr-defined]

    bound_w = 0.10 * spec.heater_max_w + 200.0
    closes = [t for t, closed in tanks[0].events if closed]
    checked = 0
    for t in closes:
        k0 = round((t - series.start_s) / series.dt_s)
        if not 0 <= k0 < len(series) or not run.relay[k0]:
            continue
        checked += 1
        window = range(k0, min(len(series), k0 + round(15.0 / series.dt_s)))
        peak_w = max(taken(series, i) - taken(base, i) for i in window)
        assert peak_w <= bound_w, (seed, t, peak_w, bound_w)
    assert checked >= 1, tanks[0].events


def test_a_close_the_sense_power_cannot_show_is_found_by_the_closed_relay_recheck(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Tank full with the relay kept closed, the sense power so small (1 %, 20 W) that the thermostat's close does
    not show in consumption: the periodic climb from the sense power (while PV is held back) finds the close and
    heating resumes -- without it the knob would wait at 20 W for the rest of the day. Each climb on the full tank
    ends after its window; the climb that finds the close takes no more than the sense power + 200 W."""
    from pvheater.service import loop as loop_module

    monkeypatch.setattr(loop_module, "RECHECK_CLOSED_S", 120.0)
    plant, strategy = _small_lossy_tank(58.0, sense_power_pct=1.0)
    start_s = START_S
    strategy.loop.log = logging.getLogger("test.tank.recheck")
    sense_w = strategy.loop.sense_power_w
    heater_w: list[float] = []
    draw_w: list[float] = []
    with caplog.at_level(logging.INFO, logger="test.tank.recheck"):
        for s in range(start_s, start_s + 900):
            strategy.decide(float(s), plant.measurements(), None)
            plant.step(1.0, _act(strategy))
            heater_w.append(plant.heater_w)
            draw_w.append(max(0.0, -plant.battery_w) + max(0.0, plant.grid_w))
    assert plant.tank is not None
    opens = [t - start_s for t, closed in plant.tank.events if not closed]
    closes = [t - start_s for t, closed in plant.tank.events if closed]
    assert opens and closes and closes[0] > opens[0] + 120.0, plant.tank.events
    messages = [r.getMessage() for r in caplog.records]
    assert any("still does not draw with the knob raised" in m for m in messages), messages  # a climb on the full tank
    close_s = int(closes[0])
    assert max(heater_w[close_s:close_s + 3]) <= sense_w + 1.0  # the close itself switches in the sense power only
    window_s = int(loop_module.RECHECK_CLOSED_S + loop_module.RECHECK_CLOSED_WINDOW_S)
    resumed = [k for k in range(close_s, min(len(heater_w), close_s + window_s + 60)) if heater_w[k] > 1000.0]
    assert resumed, "the heater never heated again after the close the sense power could not show"
    assert any("thermostat closed at" in m for m in messages), messages
    assert max(draw_w[close_s:resumed[0] + 15]) <= sense_w + 200.0
