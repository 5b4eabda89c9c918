"""Field fit: every power register read as the GX's invalid 0, over Modbus from the GX simulator.

For each power register of the map there is a picture in which its true value
is far from 0 and the energy balance shows it; the register is then made
invalid (reads 0). The reader must refuse it, no quantity the controller or
the relay guard reads may take the 0 in (each is the true picture's or
unknown), and the heat request is the true picture's -- or the guard finds the
data unusable and holds the relay open (the fail-safe).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pvheater.config import Config, GxConfig, UnitIds
from pvheater.control import controller, guard
from pvheater.control.measurements import Measurements
from pvheater.reader import GxReader
from pvheater.registers import RegisterMap
from pvheater.sim.gx_server import GxSimulator

#: Midday, heating: PV 2400 W, battery +302 W, L1 fed by the inverter (2100 W), L2 by the grid (180 W).
BASE: dict[str, float | None] = {
    "ac_consumption_l1_w": 2100, "ac_consumption_l2_w": 180, "ac_consumption_l3_w": 0,
    "grid_l1_w": 10, "grid_l2_w": 180, "grid_l3_w": 0,
    "battery_voltage_v": 53.0, "battery_current_a": 5.7, "battery_power_w": 302, "battery_soc_pct": 97,
    "battery_state": 1, "pv_dc_w": 2400, "mppt_yield_w": 2400, "mppt_state": 3, "mppt_operation_mode": 2,
    "bms_power_w": 302, "bms_soc_pct": 96.6,
    "meter_l1_w": 10, "meter_l2_w": 180, "meter_l3_w": 0,
    "vebus_ac_out_l1_w": 2100, "vebus_ac_out_l2_w": 0, "vebus_ac_out_l3_w": 0,
    "vebus_ac_in_l1_w": 10, "vebus_ac_in_l2_w": 0, "vebus_ac_in_l3_w": 0,
    "pv_ac_out_l1_w": 0, "pv_ac_out_l2_w": 0, "pv_ac_out_l3_w": 0,
}


def phase(n: int, **values: float) -> dict[str, float | None]:
    """BASE with values of phase n set, given without the phase: grid=..., ac_consumption=..."""
    return dict(BASE, **{f"{key}_l{n}_w": value for key, value in values.items()})


def _importing(n: int) -> dict[str, float | None]:
    """Phase n imports 600 W through a Multi (three Multis: one per phase) feeding 2100 W."""
    return phase(n, ac_consumption=2100, vebus_ac_out=2100, vebus_ac_in=600, grid=600, meter=600)


def _grid_fed(n: int) -> dict[str, float | None]:
    """Phase n has no inverter: its 250 W of loads come from the grid."""
    base = phase(1, ac_consumption=2100, vebus_ac_out=2100) if n != 1 else phase(1, vebus_ac_out=0, vebus_ac_in=0)
    return dict(base, **{f"ac_consumption_l{n}_w": 250, f"grid_l{n}_w": 250, f"meter_l{n}_w": 250,
                         f"vebus_ac_out_l{n}_w": 0, f"vebus_ac_in_l{n}_w": 0})


def _inverting(n: int) -> dict[str, float | None]:
    """Phase n's 800 W come from its Multi (three Multis), the grid gives 5 W."""
    return phase(n, ac_consumption=800, vebus_ac_out=800, vebus_ac_in=5, grid=5, meter=5)


def _grid_charging(n: int) -> dict[str, float | None]:
    """Phase n imports 1500 W: 500 W of loads, 1000 W into its Multi (charging)."""
    return phase(n, ac_consumption=500, vebus_ac_out=500, vebus_ac_in=1500, grid=1500, meter=1500)


def _ac_pv(n: int) -> dict[str, float | None]:
    """AC-coupled PV on phase n's output gives 1500 W: 1170 W to its loads, 330 W into its Multi, which charges
    the battery (+302 W); no solar charger on DC (it reads 0). L1 idle unless it is phase n (its BASE 2100 W
    would need DC the battery does not give)."""
    base = BASE if n == 1 else phase(1, ac_consumption=0, vebus_ac_out=0, vebus_ac_in=0, grid=0, meter=0)
    ac_pv = {"pv_ac_out": 1500, "ac_consumption": 1170, "vebus_ac_out": -330, "vebus_ac_in": 0, "grid": 0, "meter": 0}
    return dict(base, **{f"{key}_l{n}_w": value for key, value in ac_pv.items()}, pv_dc_w=0, mppt_yield_w=0)


#: Each power register, and a picture in which it is far from 0 and the balance shows it.
CASES: dict[str, dict[str, float | None]] = {
    "pv_dc_w": BASE, "mppt_yield_w": BASE, "battery_power_w": BASE, "bms_power_w": BASE,
    "ac_consumption_l1_w": BASE, "vebus_ac_out_l1_w": BASE,
    **{f"grid_l{n}_w": _importing(n) for n in (1, 2, 3)},
    **{f"meter_l{n}_w": _importing(n) for n in (1, 2, 3)},
    "ac_consumption_l2_w": _grid_fed(2), "ac_consumption_l3_w": _grid_fed(3),
    **{f"vebus_ac_out_l{n}_w": _inverting(n) for n in (2, 3)},
    **{f"vebus_ac_in_l{n}_w": _grid_charging(n) for n in (1, 2, 3)},
    **{f"pv_ac_out_l{n}_w": _ac_pv(n) for n in (1, 2, 3)},
}
#: What the controller and the relay guard read from a snapshot.
QUANTITIES = ("soc_pct", "grid_w", "battery_w", "pv_w", "consumption_w", "pv_curtailed")


@pytest.fixture
def sim(register_map: RegisterMap) -> Iterator[GxSimulator]:
    simulator = GxSimulator(register_map, UnitIds(), host="127.0.0.1", port=0)
    with simulator:
        yield simulator


def _read(sim: GxSimulator, register_map: RegisterMap) -> tuple[Measurements, dict[str, str]]:
    gx = replace(GxConfig(), host="127.0.0.1", port=sim.port, timeout_s=1.0)
    with GxReader(gx, register_map) as reader:
        return reader.read(), reader.refused


def test_every_power_register_has_a_case(register_map: RegisterMap) -> None:
    powers = {r.name for r in register_map.all_registers() if r.unit == "W" and r.name != "vebus_nominal_power_w"}
    assert powers == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_no_heating_decision_is_taken_on_an_invalid_zero(
    sim: GxSimulator, register_map: RegisterMap, name: str
) -> None:
    picture = CASES[name]
    assert picture[name] != 0
    sim.set_values(picture)
    true_m, true_refused = _read(sim, register_map)
    assert true_refused == {}, "the true picture is consistent"
    assert true_m.get(name) == picture[name]
    sim.set_invalid([name])
    bad_m, refused = _read(sim, register_map)
    assert name in refused and bad_m.get(name) is None and name in bad_m.refused
    for quantity in QUANTITIES:
        bad, true = getattr(bad_m, quantity), getattr(true_m, quantity)
        assert bad is None or bad == true, f"{quantity}: {bad} with the invalid 0, {true} without"
    config = Config()
    settings = controller.ControllerSettings.from_config(config)
    now_s = bad_m.time_s
    _, true_request = controller.step(controller.ControllerState(), true_m, settings, now_s, True)
    _, bad_request = controller.step(controller.ControllerState(), bad_m, settings, now_s, True)
    _, output = guard.step(guard.GuardState(), bad_request, bad_m, guard.GuardSettings.from_config(config),
                           now_s, None)
    assert output.failsafe or bad_request == true_request


# --- several solar chargers, AC-coupled PV --------------------------------------------------------------


@pytest.mark.parametrize("absent_code", [0x0A, 0x0B])
def test_several_chargers_are_summed_and_any_curtailing_one_shows_hidden_surplus(
    sim: GxSimulator, register_map: RegisterMap, absent_code: int
) -> None:
    sim.absent_code = absent_code  # Venus OS 3.70 and later answer 0x0A for a missing unit, older 0x0B
    sim.add_charger(226)  # Cerbo GX VE.Direct port 1
    sim.add_charger(1)  # a VE.Can MPPT: its device instance is its unit ID
    sim.set_values(dict(BASE, mppt_state=3, mppt_operation_mode=2, mppt_yield_w=1200))  # bulk, tracking
    sim.set_values({"mppt_state#226": 5, "mppt_operation_mode#226": 2, "mppt_yield_w#226": 700})
    sim.set_values({"mppt_state#1": 3, "mppt_operation_mode#1": 1, "mppt_yield_w#1": 500})  # limited in bulk
    gx = replace(GxConfig(), host="127.0.0.1", port=sim.port, timeout_s=1.0, solar_chargers=(226, 1, 17))
    with GxReader(gx, register_map) as reader:
        m = reader.read()
        assert "mppt#17" in m.absent_roles and f"0x{absent_code:02X}" in reader.problems["mppt#17"]
        assert m.get("mppt_yield_w") is None  # one charger unknown: no sum that reads low
        assert not m.pv_curtailed  # a current limit in bulk is not surplus
        sim.set_values({"mppt_operation_mode#226": 1})  # the float charger holds PV back
        m = reader.read()
        assert m.pv_curtailed
    gx = replace(gx, solar_chargers=(226, 1))
    with GxReader(gx, register_map) as reader:
        m = reader.read()
    assert m.get("mppt_yield_w") == 2400 and m.pv_curtailed and not m.absent_roles


def test_ac_coupled_pv_throttled_with_a_full_battery_is_hidden_surplus(
    sim: GxSimulator, register_map: RegisterMap
) -> None:
    full = dict(_ac_pv(1), battery_soc_pct=100, bms_soc_pct=100, battery_power_w=5, battery_current_a=0.1,
                bms_power_w=5, mppt_state=0, mppt_operation_mode=255, vebus_ac_out_l1_hz=50.9)
    sim.set_values(full)
    m, refused = _read(sim, register_map)
    assert refused == {} and m.pv_w == 1500 and m.pv_ac_w == 1500 and m.pv_curtailed
    sim.set_values({"bms_soc_pct": 90, "battery_soc_pct": 90})  # charging: the PV inverter is not held back
    m, _ = _read(sim, register_map)
    assert not m.pv_curtailed


@pytest.mark.parametrize("hz, curtailed", [(50.0, False), (50.1, False), (50.2, True), (51.3, True),
                                           (60.0, False), (60.5, True)])
def test_ac_coupled_pv_is_held_back_only_while_the_multi_shifts_its_frequency(
    sim: GxSimulator, register_map: RegisterMap, hz: float, curtailed: bool
) -> None:
    """Off-grid, battery full: at the nominal frequency (50 or 60 Hz) the PV inverter gives all it can -- a heater
    beyond it would take from the battery; only a shifted frequency (the Multi throttling it) is hidden surplus."""
    sim.set_values(dict(_ac_pv(1), battery_soc_pct=100, bms_soc_pct=100, battery_power_w=5, battery_current_a=0.1,
                        bms_power_w=5, mppt_state=0, mppt_operation_mode=255, vebus_ac_out_l1_hz=hz))
    m, refused = _read(sim, register_map)
    assert refused == {} and m.get("vebus_ac_out_l1_hz") == pytest.approx(hz) and m.pv_curtailed is curtailed


# --- discovery and unit-ID numbering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "gx_type, units",
    [
        ("Venus GX", UnitIds(vebus=242, mppt=245, bms=225, grid=30)),
        ("Cerbo GX", UnitIds(vebus=227, mppt=226, bms=225, grid=40)),
        ("MultiPlus-II GX", UnitIds(vebus=228, mppt=229, bms=225, grid=31)),
        ("CCGX", UnitIds(vebus=246, mppt=247, bms=None, grid=None)),
    ],
)
def test_discovery_finds_each_gx_types_unit_ids_and_says_how_many_reads(
    register_map: RegisterMap, gx_type: str, units: UnitIds, capsys: pytest.CaptureFixture[str]
) -> None:
    from pvheater.commands.read_registers import chosen_unit_ids, discover
    from pvheater.reader import KNOWN_UNIT_IDS

    with GxSimulator(register_map, units) as simulator:
        gx = replace(GxConfig(), host="127.0.0.1", port=simulator.port, timeout_s=1.0)
        with GxReader(gx, register_map) as reader:
            found = discover(reader, full=False)
        sent = len(simulator.requests)
    chosen = chosen_unit_ids(found, register_map)
    for role in ("vebus", "mppt", "bms", "grid"):
        expected = getattr(units, role)
        assert (chosen[role][:1] or [None]) == [expected], f"{gx_type}: {role}"
    err = capsys.readouterr().err
    assert f"probing {len(KNOWN_UNIT_IDS)} unit IDs with up to {5 * len(KNOWN_UNIT_IDS)} short reads" in err
    assert sent <= 5 * len(KNOWN_UNIT_IDS) and "warning" not in err


def test_discover_full_warns_that_each_miss_is_an_error_on_the_gx(
    register_map: RegisterMap, capsys: pytest.CaptureFixture[str]
) -> None:
    from pvheater.commands.read_registers import discover

    with GxSimulator(register_map, UnitIds()) as simulator:
        gx = replace(GxConfig(), host="127.0.0.1", port=simulator.port, timeout_s=1.0)
        with GxReader(gx, register_map) as reader:
            discover(reader, full=True)
    err = capsys.readouterr().err
    assert "probing 248 unit IDs with up to 1240 short reads" in err
    assert "logged at ERROR in the GX's own log" in err


@pytest.mark.parametrize(
    "units, vebus_port",
    [
        (UnitIds(vebus=242, mppt=245), "Venus GX VE.Bus port"),
        (UnitIds(vebus=227, mppt=226), "Cerbo GX VE.Bus port"),
        (UnitIds(vebus=228, mppt=229), "MultiPlus-II / EasySolar-II GX VE.Bus port"),
        (UnitIds(vebus=246, mppt=247), "CCGX VE.Bus port"),
    ],
)
def test_discovery_names_the_gx_port_behind_each_unit_id(
    register_map: RegisterMap, units: UnitIds, vebus_port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The VE.Bus port's device instance differs by GX model (unitid2di.csv: Venus GX 261 -> 242, Cerbo GX 276 ->
    227, MultiPlus-II GX 275 -> 228, CCGX 257 -> 246): the paste-ready block says which port each unit ID is."""
    from pvheater.commands.read_registers import discover, format_discovery

    with GxSimulator(register_map, units) as simulator:
        gx = replace(GxConfig(), host="127.0.0.1", port=simulator.port, timeout_s=1.0)
        with GxReader(gx, register_map) as reader:
            block = format_discovery(discover(reader, full=False), reader, register_map, "venus.local", 502)
    assert f"vebus: {units.vebus}  # {vebus_port}" in block


def test_readme_states_the_probed_unit_id_count_and_no_ekrano_number() -> None:
    from pvheater.reader import KNOWN_UNIT_IDS, PORT_UNIT_IDS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"probes the {len(KNOWN_UNIT_IDS)} unit IDs" in readme
    assert set(PORT_UNIT_IDS) <= set(KNOWN_UNIT_IDS)
    ekrano = [line for line in readme.splitlines() if "Ekrano" in line]
    assert ekrano and not any(str(u) in line for line in ekrano for u in PORT_UNIT_IDS if u != 100)
