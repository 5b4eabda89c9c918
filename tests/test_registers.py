"""The register map: agreement with Victron's attributes.csv, loader validation, block planning, scaling."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvheater.errors import RegisterMapError
from pvheater.registers import (
    MAX_BLOCK_WORDS,
    Device,
    Register,
    RegisterMap,
    load_register_map,
    plan_blocks,
)

ATTRIBUTES_CSV = Path(__file__).resolve().parents[1].parent / "shared/victron/attributes.csv"
needs_csv = pytest.mark.skipif(
    not ATTRIBUTES_CSV.is_file(), reason=f"Victron's register list not found at {ATTRIBUTES_CSV}"
)
FIXED_WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2}


def csv_rows() -> list[dict[str, Any]]:
    """attributes.csv as dicts with the address range each row covers."""
    rows = []
    with ATTRIBUTES_CSV.open(newline="", encoding="utf-8") as handle:
        for service, path, _dbus, _unit, address, mtype, scale, access in csv.reader(handle):
            sized = re.fullmatch(r"(\w+)\[(\d+)\]", mtype)
            width = int(sized.group(2)) if sized else FIXED_WIDTH[mtype]
            rows.append({
                "service": service,
                "path": path,
                "address": int(address),
                "last": int(address) + width - 1,
                "type": mtype,
                "scale": float(scale) if scale else None,
                "access": access,
            })
    return rows


def contiguous_runs(rows: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Maximal address ranges a service covers without a gap."""
    runs: list[tuple[int, int]] = []
    for row in sorted(rows, key=lambda r: r["address"]):
        if runs and row["address"] == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], row["last"])
        else:
            runs.append((row["address"], row["last"]))
    return runs


# --- the shipped map against attributes.csv ---------------------------------------


@needs_csv
def test_every_register_matches_its_csv_row(register_map: RegisterMap) -> None:
    rows = csv_rows()
    for device in register_map.devices.values():
        for reg in device.registers:
            matches = [r for r in rows if r["service"] == device.service and r["address"] == reg.address]
            assert len(matches) == 1, f"{reg.name}: no row for {device.service} at {reg.address}"
            row = matches[0]
            assert (row["path"], row["type"], row["scale"]) == (reg.path, reg.type, reg.scale), reg.name


@needs_csv
def test_served_ranges_are_gapless_runs_of_the_service(register_map: RegisterMap) -> None:
    rows = csv_rows()
    for device in register_map.devices.values():
        runs = contiguous_runs([r for r in rows if r["service"] == device.service])
        for served in device.served:
            assert served in runs, f"{device.role}: served {served} is not one of the csv runs {runs}"


@needs_csv
def test_reserved_ranges_are_the_csv_reserved_rows_inside_served(register_map: RegisterMap) -> None:
    rows = csv_rows()
    for device in register_map.devices.values():
        expected = sorted(
            (r["address"], r["last"])
            for r in rows
            if r["service"] == device.service
            and r["type"].startswith("reserved[")
            and device.served_range(r["address"], r["last"]) is not None
        )
        assert sorted(device.reserved) == expected, device.role


@needs_csv
def test_no_served_range_is_shared_between_services(register_map: RegisterMap) -> None:
    rows = csv_rows()
    for device in register_map.devices.values():
        for first, last in device.served:
            owners = {r["service"] for r in rows if r["address"] <= last and first <= r["last"]}
            assert owners == {device.service}, device.role


def test_shipped_map_reads_in_one_block_per_device(register_map: RegisterMap) -> None:
    assert set(register_map.devices) == {"system", "mppt", "bms", "grid", "vebus"}
    for device in register_map.devices.values():
        assert len(plan_blocks(device)) == 1, device.role


# --- loader validation -------------------------------------------------------------


def valid_doc() -> dict[str, Any]:
    return {
        "role": "mppt",
        "service": "com.victronenergy.solarcharger",
        "served": [[10, 40]],
        "reserved": [[30, 31]],
        "registers": [
            {"name": "a_w", "path": "/A", "address": 10, "type": "int32", "scale": 1, "unit": "W"},
            {"name": "b_state", "path": "/B", "address": 12, "type": "uint16", "scale": 1, "unit": "",
             "enum": {0: "Off", 1: "On"}},
        ],
    }


def write_map(folder: Path, docs: dict[str, dict[str, Any]]) -> Path:
    folder.mkdir(exist_ok=True)
    for file_name, doc in docs.items():
        (folder / file_name).write_text(yaml.safe_dump(doc), encoding="utf-8")
    return folder


def test_valid_doc_loads(tmp_path: Path) -> None:
    register_map = load_register_map(write_map(tmp_path, {"solar.yaml": valid_doc()}))
    device = register_map.devices["mppt"]
    assert device.reserved == ((30, 31),)
    assert [r.name for r in device.registers] == ["a_w", "b_state"]


def _bad_type(doc: dict[str, Any]) -> None:
    doc["registers"][0]["type"] = "float32"


def _overlap(doc: dict[str, Any]) -> None:
    doc["registers"][1]["address"] = 11


def _outside(doc: dict[str, Any]) -> None:
    doc["registers"][1]["address"] = 41


def _missing_key(doc: dict[str, Any]) -> None:
    del doc["registers"][1]["scale"]


def _bad_enum(doc: dict[str, Any]) -> None:
    doc["registers"][1]["enum"] = {"off": 0}


def _zero_scale(doc: dict[str, Any]) -> None:
    doc["registers"][0]["scale"] = 0


def _reserved_over_register(doc: dict[str, Any]) -> None:
    doc["reserved"] = [[12, 13]]


def _reserved_outside(doc: dict[str, Any]) -> None:
    doc["reserved"] = [[50, 51]]


def _unknown_key(doc: dict[str, Any]) -> None:
    doc["registers"][1]["sacle"] = 1


@pytest.mark.parametrize(
    ("breaker", "expected"),
    [
        (_bad_type, "register 'a_w': type must be one of int16, uint16, int32, uint32 (got 'float32')"),
        (_overlap, "register 'b_state': address 11 overlaps 'a_w' (10-11)"),
        (_outside, "register 'b_state': address 41-41 lies outside the served ranges"),
        (_missing_key, "register 'b_state': missing key(s) scale"),
        (_bad_enum, "register 'b_state': enum must map integers to text"),
        (_zero_scale, "register 'a_w': scale must be a non-zero number"),
        (_reserved_over_register, "register 'b_state': address 12-12 overlaps the reserved range [12, 13]"),
        (_reserved_outside, "reserved: range [50, 51] lies outside the served ranges"),
        (_unknown_key, "register 'b_state': unknown key(s) sacle"),
    ],
    ids=lambda v: getattr(v, "__name__", "")[1:] or None,
)
def test_bad_entry_fails_naming_file_and_entry(tmp_path: Path, breaker: Any, expected: str) -> None:
    doc = valid_doc()
    breaker(doc)
    with pytest.raises(RegisterMapError) as info:
        load_register_map(write_map(tmp_path, {"solar.yaml": doc}))
    assert str(info.value).startswith("solar.yaml: ")
    assert expected in str(info.value)


def test_duplicate_name_across_files_fails(tmp_path: Path) -> None:
    other = valid_doc()
    other.update(role="grid", served=[[100, 140]], reserved=[])
    for reg in other["registers"]:
        reg["address"] += 90
    with pytest.raises(RegisterMapError, match=r"solar.yaml: register 'a_w': name also used in grid.yaml"):
        load_register_map(write_map(tmp_path, {"solar.yaml": valid_doc(), "grid.yaml": other}))


def test_served_ranges_of_two_roles_must_not_overlap(tmp_path: Path) -> None:
    other = valid_doc()
    other.update(role="grid", served=[[40, 60]], reserved=[])
    other["registers"] = [{"name": "g_w", "path": "/G", "address": 50, "type": "int16", "scale": 1, "unit": "W"}]
    with pytest.raises(RegisterMapError, match=r"solar.yaml: served: range \[10, 40\] overlaps \[40, 60\]"):
        load_register_map(write_map(tmp_path, {"solar.yaml": valid_doc(), "grid.yaml": other}))


def test_empty_folder_fails(tmp_path: Path) -> None:
    with pytest.raises(RegisterMapError, match="no register map files"):
        load_register_map(tmp_path)


# --- block planning ----------------------------------------------------------------


def reg(name: str, address: int, type_: str = "uint16") -> Register:
    return Register(name=name, role="vebus", path=f"/{name}", address=address, type=type_, scale=1.0, unit="")


def device(served: tuple[tuple[int, int], ...], *registers: Register) -> Device:
    return Device("vebus", "test", served, tuple(sorted(registers, key=lambda r: r.address)))


def spans(dev: Device) -> list[tuple[int, int]]:
    return [(b.address, b.count) for b in plan_blocks(dev)]


def test_registers_in_one_served_range_join_one_block() -> None:
    dev = device(((0, 99),), reg("a", 0), reg("b", 5, "int32"), reg("c", 40))
    assert spans(dev) == [(0, 41)]
    assert [r.name for r in plan_blocks(dev)[0].registers] == ["a", "b", "c"]


def test_a_gap_between_served_ranges_splits_blocks() -> None:
    dev = device(((3, 147), (200, 247)), reg("a", 12), reg("b", 33), reg("c", 200), reg("d", 246, "uint32"))
    assert spans(dev) == [(12, 22), (200, 48)]


def test_the_125_word_limit_splits_blocks() -> None:
    at_limit = device(((0, 999),), reg("a", 0), reg("b", MAX_BLOCK_WORDS - 2, "int32"))
    assert spans(at_limit) == [(0, MAX_BLOCK_WORDS)]
    over_limit = device(((0, 999),), reg("a", 0), reg("b", MAX_BLOCK_WORDS - 1, "int32"))
    assert spans(over_limit) == [(0, 1), (MAX_BLOCK_WORDS - 1, 2)]
    long_run = device(((0, 999),), *(reg(f"r{i}", i * 100) for i in range(5)))
    assert spans(long_run) == [(0, 101), (200, 101), (400, 1)]


# --- scaling -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "scale", "raw", "value"),
    [
        ("uint16", 10, 532, 53.2),
        ("uint16", 100, 11845, 118.45),
        ("int16", 0.1, -123, -1230.0),
        ("uint16", -10, 2505, -250.5),
        ("int32", 1, -250, -250.0),
    ],
)
def test_decode_and_encode_are_inverse(type_: str, scale: float, raw: int, value: float) -> None:
    register = Register(name="x", role="system", path="/X", address=0, type=type_, scale=scale, unit="")
    assert register.decode_raw(raw) == pytest.approx(value)
    assert register.encode_value(value) == raw


def test_scale_point_one_decodes_exactly() -> None:
    register = Register(name="x", role="vebus", path="/X", address=0, type="int16", scale=0.1, unit="W")
    assert register.decode_raw(123) == 1230.0


def test_encode_refuses_a_value_the_type_cannot_hold() -> None:
    register = Register(name="soc", role="system", path="/Soc", address=0, type="uint16", scale=10, unit="%")
    with pytest.raises(ValueError, match=r"register 'soc': 7000 % does not fit uint16 with scale 10 "):
        register.encode_value(7000)
    with pytest.raises(ValueError, match=r"outside 0\.\.65535"):
        register.encode_value(-1)
