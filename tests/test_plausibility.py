"""Invalid-as-0 and wrapped registers, refused by the energy balance; read over Modbus from the GX simulator."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pvheater.config import GxConfig, UnitIds
from pvheater.reader import GxReader, refuse_implausible
from pvheater.registers import RegisterMap
from pvheater.sim.gx_server import GxSimulator

#: Midday, heating: PV 2400 W, battery charging 300 W, house 500 W + heater 1600 W on L1 from the inverter,
#: the grid at +10 W, consumption on L2 (180 W) fed by the grid (no inverter there).
DAY: dict[str, float | None] = {
    "ac_consumption_l1_w": 2100, "ac_consumption_l2_w": 180, "ac_consumption_l3_w": 0,
    "grid_l1_w": 10, "grid_l2_w": 180, "grid_l3_w": 0,
    "battery_voltage_v": 53.0, "battery_current_a": 5.7, "battery_power_w": 302, "battery_soc_pct": 97,
    "pv_dc_w": 2400, "mppt_yield_w": 2400, "bms_power_w": 302, "bms_soc_pct": 96.6,
    "meter_l1_w": 10, "meter_l2_w": 180, "meter_l3_w": 0,
    "vebus_ac_out_l1_w": 2100, "vebus_ac_out_l2_w": 0, "vebus_ac_out_l3_w": 0,
}
#: Each power register read as 0 (the GX's invalid value) that the balance refutes.
INVALID_ZEROS = ["pv_dc_w", "mppt_yield_w", "grid_l2_w", "meter_l2_w", "ac_consumption_l1_w", "battery_power_w"]


@pytest.mark.parametrize("name", INVALID_ZEROS)
def test_an_invalid_zero_is_refused(name: str) -> None:
    values = dict(DAY, **{name: 0})
    refused = refuse_implausible(values)
    assert list(refused) == [name] and values[name] is None


def test_a_consistent_picture_is_kept_whole() -> None:
    values = dict(DAY)
    assert refuse_implausible(values) == {} and values == DAY


@pytest.mark.parametrize(
    "changes",
    [
        {"pv_dc_w": 0, "mppt_yield_w": 0, "battery_power_w": -300, "battery_current_a": -5.7, "bms_power_w": -300},
        {"pv_dc_w": 0, "mppt_yield_w": 0, "grid_l1_w": 800, "meter_l1_w": 800},  # charged from the grid
        {"grid_l3_w": 0, "meter_l3_w": 0},  # no consumption on L3: a real 0
        {"battery_power_w": 0, "battery_current_a": 0.3, "bms_power_w": 0},  # idle battery
    ],
    ids=["night_discharge", "grid_charge", "idle_phase", "idle_battery"],
)
def test_a_real_zero_is_kept(changes: dict[str, float]) -> None:
    values = dict(DAY, **changes)
    assert refuse_implausible(values) == {}


def test_a_wrapped_int16_battery_power_is_refused() -> None:
    # -33000 W reads +32536 on the int16 register (and is out of range); -40 kW reads +25536, in range
    values = dict(DAY, battery_power_w=25536, battery_current_a=-754.7, bms_power_w=None)
    refused = refuse_implausible(values)
    assert list(refused) == ["battery_power_w"] and "wrapped" in refused["battery_power_w"]


@pytest.fixture
def day_sim(register_map: RegisterMap) -> GxSimulator:
    sim = GxSimulator(register_map, UnitIds(), host="127.0.0.1", port=0)
    with sim:
        yield sim


@pytest.mark.parametrize("name", INVALID_ZEROS)
def test_over_modbus_no_decision_is_taken_on_an_invalid_zero(
    day_sim: GxSimulator, register_map: RegisterMap, name: str
) -> None:
    day_sim.set_values(DAY)
    day_sim.set_invalid([name])
    gx = replace(GxConfig(), host="127.0.0.1", port=day_sim.port, timeout_s=1.0)
    with GxReader(gx, register_map) as reader:
        m = reader.read()
    assert m.get(name) is None and name in reader.refused
    if name.startswith(("pv_dc", "mppt_yield")):
        assert m.pv_w is None or m.pv_w == 2400  # the other PV source stands in, never the invalid 0
    if name == "battery_power_w":
        assert m.battery_w == 302  # the BMS's 32-bit register


def test_bms_soc_is_preferred(day_sim: GxSimulator, register_map: RegisterMap) -> None:
    day_sim.set_values(DAY)
    gx = replace(GxConfig(), host="127.0.0.1", port=day_sim.port, timeout_s=1.0)
    with GxReader(gx, register_map) as reader:
        assert reader.read().soc_pct == pytest.approx(96.6)


@pytest.mark.parametrize("battery_w", [-33000, -40000, -60000])
def test_over_modbus_a_wrapped_battery_power_is_never_believed(
    day_sim: GxSimulator, register_map: RegisterMap, battery_w: float
) -> None:
    """Victron's server wraps an int16: -33000 W reads +32536 (out of range), -40000 W reads +25536 (in range)."""
    day_sim.wrap = True
    volts = 53.0
    day_sim.remove_device("bms")
    day_sim.set_values(dict(DAY, battery_power_w=battery_w, battery_current_a=battery_w / volts))
    gx = replace(GxConfig(), host="127.0.0.1", port=day_sim.port, timeout_s=1.0)
    with GxReader(gx, register_map) as reader:
        m = reader.read()
    assert m.get("battery_power_w") is None
    assert m.battery_w is None  # and with the grid known, the guard opens the relay on it


def test_a_wrapped_power_beside_an_idle_battery_is_not_believed() -> None:
    """An idle battery (0 A) and battery power reading +25536 W (-40 kW wrapped): an invalid 0 A or a wrapped
    power cannot be told apart, so neither is believed; the BMS's 0 W, agreeing with the 0 A, stands."""
    values = dict(DAY, battery_power_w=25536, battery_current_a=0.0, bms_power_w=0)
    refused = refuse_implausible(values)
    assert {"battery_power_w", "battery_current_a"} <= set(refused) and "bms_power_w" not in refused
    assert values["bms_power_w"] == 0 and values["battery_power_w"] is None


@pytest.mark.parametrize("bms", [True, False])
def test_over_modbus_a_wrapped_power_beside_an_idle_battery_is_never_the_battery_power(
    day_sim: GxSimulator, register_map: RegisterMap, bms: bool
) -> None:
    """Seen in the soak (wrap episode, battery idle at full SoC): 25536 W was believed and the relay stayed closed."""
    day_sim.wrap = True
    if not bms:
        day_sim.remove_device("bms")
    day_sim.set_values(dict(DAY, battery_power_w=-40000, battery_current_a=0.0, bms_power_w=0))
    gx = replace(GxConfig(), host="127.0.0.1", port=day_sim.port, timeout_s=1.0)
    with GxReader(gx, register_map) as reader:
        m = reader.read()
    assert m.get("battery_power_w") is None
    assert m.battery_w == (0 if bms else None)  # without the BMS the battery is unknown: the guard opens the relay


@pytest.mark.parametrize("name", ["pv_dc_w", "mppt_yield_w"])
def test_a_dc_pv_zero_beside_the_other_dc_pv_source_is_refused_with_the_battery_idle(name: str) -> None:
    """Seen in the soak (invalid 0 on pv_dc_w, battery idle at full SoC, grid ~0): PV read 0 W beside
    mppt_yield_w at 2000 W; the balance (battery charging more than the grid gives) could not refute it."""
    values = dict(DAY, pv_dc_w=2000, mppt_yield_w=2000, battery_power_w=2, battery_current_a=0.0, bms_power_w=2,
                  grid_l1_w=0, meter_l1_w=0)
    values[name] = 0
    refused = refuse_implausible(values)
    assert name in refused and values[name] is None


#: Seen in the soak week (day 2, clouds, 12:40): heating, the ESS loop overshoots and L1 exports 243 W for a few
#: seconds (the Multi feeds 240 W back through its AC input, the battery discharges); an invalid 0 on the system's
#: grid L1 read then was believed (grid 0 W instead of -243 W) because every grid rule looked at import only.
EXPORT: dict[str, float | None] = dict(
    DAY, ac_consumption_l1_w=1398, grid_l1_w=-243, meter_l1_w=-243, vebus_ac_in_l1_w=-240, vebus_ac_out_l1_w=1400,
    battery_power_w=-267, battery_current_a=-5.0, bms_power_w=-267, pv_dc_w=1517, mppt_yield_w=1517,
)


@pytest.mark.parametrize("name", ["grid_l1_w", "meter_l1_w"])
def test_a_grid_zero_during_export_is_refused(name: str) -> None:
    values = dict(EXPORT, **{name: 0})
    refused = refuse_implausible(values)
    assert list(refused) == [name] and values[name] is None


@pytest.mark.parametrize("name", ["grid_l1_w", "meter_l1_w"])
def test_a_grid_zero_during_export_is_refused_without_the_other_grid_register(name: str) -> None:
    """Without the meter (or the system's copy) to compare: the inverter feeding 240 W back through its input,
    with no load on that input, exports them; the grid cannot read 0."""
    other = "meter_l1_w" if name == "grid_l1_w" else "grid_l1_w"
    values = dict(EXPORT, **{name: 0, other: None})
    refused = refuse_implausible(values)
    assert list(refused) == [name] and "feeds 240 W back" in refused[name]


def test_a_real_grid_zero_with_loads_on_the_inverter_input_is_kept() -> None:
    """The Multi feeds 240 W back through its input and a 240 W load on that input takes them: grid 0 is real."""
    values = dict(EXPORT, grid_l1_w=0, meter_l1_w=0, ac_consumption_l1_w=1640)
    assert refuse_implausible(values) == {}


def test_a_pv_zero_while_the_inverter_makes_more_than_the_battery_gives_is_refused() -> None:
    """The MPPT not installed, the system's PV an invalid 0: 1640 W from DC with the battery giving 267 W."""
    values = dict(EXPORT, pv_dc_w=0, mppt_yield_w=None)
    refused = refuse_implausible(values)
    assert list(refused) == ["pv_dc_w"] and "from DC" in refused["pv_dc_w"]


def test_a_real_pv_zero_at_night_is_kept() -> None:
    """Night: the inverter makes 500 W from the battery's 560 W (losses): PV 0 W is real."""
    values = dict(EXPORT, pv_dc_w=0, mppt_yield_w=0, vebus_ac_in_l1_w=0, vebus_ac_out_l1_w=500,
                  ac_consumption_l1_w=500, grid_l1_w=0, meter_l1_w=0, battery_power_w=-560, battery_current_a=-10.6,
                  bms_power_w=-560)
    assert refuse_implausible(values) == {}


@pytest.mark.parametrize("meter", [True, False])
def test_over_modbus_a_grid_zero_during_export_is_never_the_grid_power(
    day_sim: GxSimulator, register_map: RegisterMap, meter: bool
) -> None:
    """The soak's case over Modbus: grid L1 an invalid 0 while L1 exports 243 W. With the meter the grid power is
    the meter's -243 W; without it the grid is unknown (the guard opens the relay on it), never 0 W."""
    if not meter:
        day_sim.remove_device("grid")
    day_sim.set_values({k: v for k, v in EXPORT.items() if meter or not k.startswith("meter_")})
    day_sim.set_invalid(["grid_l1_w"])
    gx = replace(GxConfig(), host="127.0.0.1", port=day_sim.port, timeout_s=1.0)
    with GxReader(gx, register_map) as reader:
        m = reader.read()
    assert m.get("grid_l1_w") is None and "grid_l1_w" in reader.refused
    assert m.grid_w == (-243 + 180 if meter else None)  # the meter's L1 and L2
