"""Each claim of ../shared/victron/NOTES.md that pvheater relies on, and the tests against the simulator that cover it.

The table below is the audit: one row per claim the code depends on, naming
the tests that check it (over Modbus on loopback against pvheater's GX
simulator where the claim is about the wire). `test_every_claim_names_tests_that_exist`
fails when a covering test is renamed or removed. The claims no other test
covered yet are checked here: the SoC rounding, the 32-bit registers chosen
wherever Victron's list has one, and a 16-bit overflow that the 32-bit
register avoids.
"""

from __future__ import annotations

import csv
import importlib
from dataclasses import replace
from pathlib import Path

import pytest

from pvheater.config import GxConfig, UnitIds
from pvheater.reader import GxReader
from pvheater.registers import RegisterMap, round_half_away
from pvheater.sim.gx_server import GxSimulator, wrapped

ATTRIBUTES_CSV = Path(__file__).resolve().parents[1].parent / "shared/victron/attributes.csv"

#: NOTES.md claim -> the tests that cover it ("module::function"; this module's own tests are listed too).
CLAIMS: dict[str, tuple[str, ...]] = {
    "value = raw / scale, scales 10, 100, 0.1, 0.01 and negative": (
        "test_reader::test_every_type_and_scale_round_trips",
        "test_registers::test_scale_point_one_decodes_exactly",
        "test_read_registers_cli::test_independent_gx_from_attributes_csv_decodes_right",
    ),
    "32-bit values are sent high word first": (
        "test_gx_server::test_int32_goes_high_word_first",
        "test_reader::test_every_type_and_scale_round_trips",
    ),
    "prefer the 32-bit register where one exists (789 uint16 x10 overflows above 6553 W)": (
        "test_notes_claims::test_the_map_uses_the_32_bit_register_wherever_victron_has_one",
        "test_notes_claims::test_pv_above_6553_w_reads_right_from_the_32_bit_register",
    ),
    "an invalid or missing value reads as 0, indistinguishable from a real 0": (
        "test_reader::test_invalid_zero_and_implausible_values_read_as_none",
        "test_plausibility::test_over_modbus_no_decision_is_taken_on_an_invalid_zero",
        "test_field_fit::test_no_heating_decision_is_taken_on_an_invalid_zero",
    ),
    "RESERVED words read 0xFFFF": (
        "test_gx_server::test_system_block_has_values_reserved_ffff_and_unmapped_zero",
        "test_registers::test_reserved_ranges_are_the_csv_reserved_rows_inside_served",
    ),
    "out-of-range values wrap (-33000 W on an int16 reads +32536)": (
        "test_plausibility::test_a_wrapped_int16_battery_power_is_refused",
        "test_plausibility::test_over_modbus_a_wrapped_battery_power_is_never_believed",
        "test_notes_claims::test_the_simulator_wraps_like_victrons_server",
    ),
    "system SoC (843) is whole percent, rounded half away from zero; the BMS (266) has 0.1 %": (
        "test_notes_claims::test_system_soc_rounds_half_away_and_the_bms_soc_wins",
        "test_plausibility::test_bms_soc_is_preferred",
    ),
    "function codes 3/4 read, pvheater only reads with 3 and never writes": (
        "test_reader::test_one_request_per_device_per_read_and_only_reads",
        "test_gx_server::test_writes_are_refused_and_change_nothing",
        "test_gx_server::test_system_also_answers_on_unit_0_and_to_function_code_4",
    ),
    "at most 125 registers per request; contiguous blocks in one request each": (
        "test_registers::test_the_125_word_limit_splits_blocks",
        "test_registers::test_shipped_map_reads_in_one_block_per_device",
    ),
    "a read across an undefined gap fails whole with 0x02": (
        "test_reader::test_read_across_an_undefined_gap_raises_0x02_naming_the_range",
        "test_gx_server::test_undefined_addresses_and_gaps_answer_0x02",
        "test_registers::test_served_ranges_are_gapless_runs_of_the_service",
    ),
    "unknown unit ID: 0x0A from Venus OS 3.70, 0x0B before; both mean the device is not there": (
        "test_reader::test_absent_device_0x0a_names_role_unit_and_where_to_look",
        "test_reader::test_absent_device_0x0b_on_older_venus_os",
        "test_gx_server::test_unknown_unit_and_missing_service_answer_0x0a",
    ),
    "every failed request is an ERROR in the GX's log (discovery says how many it makes, --full warns)": (
        "test_field_fit::test_discovery_finds_each_gx_types_unit_ids_and_says_how_many_reads",
        "test_field_fit::test_discover_full_warns_that_each_miss_is_an_error_on_the_gx",
    ),
    "the system service answers on unit 100 (and 0)": (
        "test_gx_server::test_system_also_answers_on_unit_0_and_to_function_code_4",
        "test_reader::test_read_returns_every_value_decoded",
    ),
    "unit IDs per GX type (Venus GX, Cerbo GX, MultiPlus-II GX)": (
        "test_field_fit::test_discovery_finds_each_gx_types_unit_ids_and_says_how_many_reads",
    ),
    "the server answers from a cache: a hung driver's last values go on being served": (
        "test_hostile_gx::test_frozen_gx_opens_the_relay_within_30_s_and_recovers",
        "test_freshness::test_a_picture_unchanged_for_longer_than_the_bound_is_frozen",
    ),
    "one persistent connection and one block read per device per tick": (
        "test_reader::test_one_request_per_device_per_read_and_only_reads",
        "test_faults::test_connection_drop_holds_the_power_and_reconnects",
    ),
    "MppOperationMode 1 with State 4/5 is curtailed PV; mode 1 in bulk is not; DC feed-in shows as export": (
        "test_field_fit::test_several_chargers_are_summed_and_any_curtailing_one_shows_hidden_surplus",
        "test_field_fit::test_ac_coupled_pv_throttled_with_a_full_battery_is_hidden_surplus",
        "test_plant::test_full_battery_without_feed_in_curtails_pv",
        "test_plant::test_dc_feed_in_shows_surplus_as_export",
    ),
}


def test_every_claim_names_tests_that_exist() -> None:
    missing = []
    for claim, tests in CLAIMS.items():
        assert tests, claim
        for name in tests:
            module, function = name.split("::")
            if not callable(getattr(importlib.import_module(module), function, None)):
                missing.append(f"{claim}: {name}")
    assert missing == []


@pytest.fixture
def sim(register_map: RegisterMap) -> GxSimulator:
    simulator = GxSimulator(register_map, UnitIds(), host="127.0.0.1", port=0)
    with simulator:
        yield simulator


def _reader(sim: GxSimulator, register_map: RegisterMap) -> GxReader:
    return GxReader(replace(GxConfig(), host="127.0.0.1", port=sim.port, timeout_s=1.0), register_map)


def test_system_soc_rounds_half_away_and_the_bms_soc_wins(sim: GxSimulator, register_map: RegisterMap) -> None:
    assert [round_half_away(x) for x in (94.5, 95.49, -0.5, 2.5)] == [95, 95, -1, 3]
    sim.set_values({"battery_soc_pct": 94.5, "bms_soc_pct": 94.5})
    with _reader(sim, register_map) as reader:
        m = reader.read()
    assert m.get("battery_soc_pct") == 95.0  # whole percent, half away from zero: a 95 % gate would open
    assert m.soc_pct == pytest.approx(94.5)  # the BMS's 0.1 % is what the guard sees
    sim.remove_device("bms")
    with _reader(sim, register_map) as reader:
        assert reader.read().soc_pct == 95.0  # without a BMS only the whole percent is known


def test_the_simulator_wraps_like_victrons_server(register_map: RegisterMap) -> None:
    battery = register_map.by_name()["battery_power_w"]
    assert wrapped(battery, -33000.0) == 32536.0  # NOTES.md's example
    yield_16 = replace(battery, type="uint16", scale=10.0)
    assert wrapped(yield_16, 7000.0) == 446.4  # raw 70000 wraps to 4464


def _victron_registers() -> dict[tuple[str, str], set[str]]:
    """(service, path) -> the Modbus types Victron's list serves it as."""
    types: dict[tuple[str, str], set[str]] = {}
    with ATTRIBUTES_CSV.open(newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) >= 6:
                types.setdefault((row[0], row[1]), set()).add(row[5])
    return types


def test_the_map_uses_the_32_bit_register_wherever_victron_has_one(register_map: RegisterMap) -> None:
    victron = _victron_registers()
    checked = 0
    for device in register_map.devices.values():
        for reg in device.registers:
            offered = victron.get((device.service, reg.path), set())
            assert offered, f"{reg.name}: {reg.path} is not in Victron's list for {device.service}"
            if reg.type in ("int16", "uint16"):
                assert not offered & {"int32", "uint32"}, f"{reg.name}: a 32-bit register exists for {reg.path}"
            checked += 1
    assert checked >= 30


def test_pv_above_6553_w_reads_right_from_the_32_bit_register(sim: GxSimulator, register_map: RegisterMap) -> None:
    sim.set_values({"mppt_yield_w": 7000, "pv_dc_w": 7000})
    with _reader(sim, register_map) as reader:
        m = reader.read()
    assert m.get("mppt_yield_w") == 7000.0  # 789 (uint16, x10) would have wrapped to 446.4 W
