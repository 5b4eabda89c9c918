"""The tank model, its hook in the plant, and the oracle that respects the thermostat."""

from __future__ import annotations

import pytest

from pvheater.sim.params import Actuation, PlantParams
from pvheater.sim.plant import Plant, angle_for_power_w
from pvheater.sim.scenarios import TANK_SCENARIOS, build_day, constant_day
from pvheater.sim.strategy import OracleStrategy
from pvheater.sim.tank import WATER_WH_PER_L_K, Tank, TankParams, shower


def test_element_heats_the_water_by_its_energy() -> None:
    tank = Tank(TankParams(volume_l=100.0, start_c=40.0, loss_w_at_40k=0.0, draws=()))
    for s in range(3600):
        tank.advance(float(s), 1.0, tank.element_w(2000.0))
    assert tank.temp_c == pytest.approx(40.0 + 2000.0 / (100.0 * WATER_WH_PER_L_K), rel=1e-6)
    assert tank.heat_in_wh == pytest.approx(2000.0)


@pytest.mark.parametrize(("start_c", "closed"), [(52.0, True), (60.5, False)])
def test_thermostat_opens_at_the_setpoint_and_closes_7_k_below(start_c: float, closed: bool) -> None:
    tank = Tank(TankParams(volume_l=50.0, start_c=start_c, loss_w_at_40k=400.0, draws=()))
    assert tank.thermostat_closed is closed
    t = 0.0
    while tank.thermostat_closed:  # heat until it opens
        tank.advance(t, 1.0, tank.element_w(3000.0))
        t += 1.0
    assert tank.temp_c == pytest.approx(max(60.0, start_c), abs=0.05)
    assert tank.element_w(3000.0) == 0.0
    while not tank.thermostat_closed:  # cool by the losses until it closes
        tank.advance(t, 1.0, tank.element_w(3000.0))
        t += 1.0
    assert tank.temp_c == pytest.approx(53.0, abs=0.05)
    assert [c for _, c in tank.events][-2:] == ([False, True] if closed else [True])


def test_a_shower_cools_the_tank_by_the_hot_water_taken() -> None:
    tank = Tank(TankParams(volume_l=150.0, start_c=60.0, loss_w_at_40k=0.0, draws=(shower("07:00", 10.0),)))
    t0 = 7 * 3600.0
    for s in range(600):
        tank.advance(t0 + s, 1.0, 0.0)
    # 90 l at 40 degC, >= 58 % of it hot from the tank (more as it cools): well past the 7 K hysteresis
    assert 40.0 < tank.temp_c < 47.0
    assert tank.thermostat_closed
    assert tank.drawn_wh == pytest.approx(150.0 * WATER_WH_PER_L_K * (60.0 - tank.temp_c), rel=1e-6)


def test_plant_element_draws_nothing_while_the_thermostat_is_open() -> None:
    params = PlantParams(tank=TankParams(start_c=61.0, draws=()))
    plant = Plant(constant_day(2500.0, 200.0, params=params))
    full = Actuation(True, angle_for_power_w(2000.0, params.heater))
    for _ in range(30):
        plant.step(1.0, full)
    assert plant.heater_w == 0.0
    assert plant.gx_values()["ac_consumption_l1_w"] == 200
    assert plant.truth().tank_accepts is False
    assert plant.energy().heater_wh == 0.0
    assert abs(plant.energy().balance_error_wh) < 1e-6


def test_plant_energy_balance_holds_with_a_tank_cycling() -> None:
    day = build_day("tank_small")
    plant = Plant(day)
    oracle = OracleStrategy(day.params.heater)
    for s in range(9 * 3600, 16 * 3600):
        plant.time_s = float(s) if s == 9 * 3600 else plant.time_s
        plant.step(1.0, oracle.decide(float(s), None, plant.truth()))
    assert plant.tank is not None
    assert sum(1 for _, closed in plant.tank.events if closed) >= 3  # several cycles in the sunny hours
    assert plant.tank.heat_in_wh == pytest.approx(plant.energy().heater_wh)
    assert abs(plant.energy().balance_error_wh) < 1e-3


def test_oracle_leaves_the_relay_open_while_the_thermostat_is_open() -> None:
    params = PlantParams(tank=TankParams(start_c=61.0, draws=()))
    plant = Plant(constant_day(2500.0, 200.0, params=params))
    oracle = OracleStrategy(params.heater)
    assert oracle.decide(0.0, None, plant.truth()).relay_on is False


def test_tank_scenarios_are_built_by_name() -> None:
    for name in TANK_SCENARIOS:
        assert build_day(name).params.tank is not None
