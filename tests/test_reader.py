"""GxReader over a real loopback socket against the GX simulator: decoding, GX quirks, failures, backoff."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from pvheater.config import GxConfig, UnitIds
from pvheater.errors import DeviceAbsent, GxError, GxUnavailable
from pvheater.reader import GxReader
from pvheater.registers import RegisterMap, load_register_map, plan_blocks
from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator

MakeConfig = Callable[..., GxConfig]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def test_read_returns_every_value_decoded(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    clock = FakeClock(42.0)
    with GxReader(gx_config(), register_map, clock=clock) as reader:
        snapshot = reader.read()
    assert snapshot.time_s == 42.0
    assert snapshot.absent_roles == frozenset()
    assert set(snapshot.values) == set(register_map.by_name())
    for name, value in SAMPLE_VALUES.items():
        assert snapshot.get(name) == pytest.approx(value), name
    assert snapshot.soc_pct == 100
    assert snapshot.pv_curtailed


def test_one_request_per_device_per_read_and_only_reads(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    config = gx_config()
    expected = [
        (getattr(config.unit_ids, role), 3, block.address, block.count)
        for role, device in register_map.devices.items()
        for block in plan_blocks(device)
    ]
    assert len(expected) == len(register_map.devices)
    with GxReader(config, register_map) as reader:
        for _ in range(25):
            reader.read()
        reader.probe(245)
    requests = gx_sim.requests
    assert {fc for _, fc, _, _ in requests} == {3}
    assert requests[: 25 * len(expected)] == expected * 25


def test_unconfigured_device_is_not_read(gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap) -> None:
    with GxReader(gx_config(unit_ids=UnitIds(bms=None)), register_map) as reader:
        snapshot = reader.read()
    assert 225 not in {unit for unit, *_ in gx_sim.requests}
    assert snapshot.get("bms_soc_pct") is None
    assert "bms" not in snapshot.absent_roles
    assert snapshot.get("battery_soc_pct") == 100


# --- every type and scale, round-tripped through the simulator ---------------------------

ODD_MAP = {
    "role": "system",
    "service": "test",
    "served": [[0, 40]],
    "reserved": [[38, 40]],
    "registers": [
        {"name": "i16_scale10", "path": "/a", "address": 0, "type": "int16", "scale": 10, "unit": "A"},
        {"name": "u16_scale100", "path": "/b", "address": 1, "type": "uint16", "scale": 100, "unit": "V"},
        {"name": "i32_scale_tenth", "path": "/c", "address": 2, "type": "int32", "scale": 0.1, "unit": "W"},
        {"name": "u32_scale_minus10", "path": "/d", "address": 4, "type": "uint32", "scale": -10, "unit": "Ah"},
        {"name": "u16_scale_minus10", "path": "/e", "address": 6, "type": "uint16", "scale": -10, "unit": "Ah"},
        {"name": "i16_scale_tenth", "path": "/f", "address": 7, "type": "int16", "scale": 0.1, "unit": "W"},
        {"name": "i16_min", "path": "/g", "address": 10, "type": "int16", "scale": 1, "unit": ""},
        {"name": "u16_max", "path": "/h", "address": 11, "type": "uint16", "scale": 1, "unit": ""},
        {"name": "i32_min", "path": "/i", "address": 12, "type": "int32", "scale": 1, "unit": ""},
        {"name": "u32_max", "path": "/j", "address": 14, "type": "uint32", "scale": 1, "unit": ""},
        {"name": "i32_scale100", "path": "/k", "address": 20, "type": "int32", "scale": 100, "unit": "kWh"},
    ],
}
ODD_VALUES = {
    "i16_scale10": -123.4,
    "u16_scale100": 654.32,
    "i32_scale_tenth": -1234560.0,
    "u32_scale_minus10": -12345.6,
    "u16_scale_minus10": -250.5,
    "i16_scale_tenth": -327680.0,
    "i16_min": -32768,
    "u16_max": 65535,
    "i32_min": -(2**31),
    "u32_max": 2**32 - 1,
    "i32_scale100": -98765.43,
}


@pytest.fixture
def odd_map(tmp_path: Path) -> RegisterMap:
    (tmp_path / "odd.yaml").write_text(yaml.safe_dump(ODD_MAP), encoding="utf-8")
    return load_register_map(tmp_path)


def test_every_type_and_scale_round_trips(odd_map: RegisterMap) -> None:
    units = UnitIds(vebus=None, mppt=None, bms=None, grid=None)
    with GxSimulator(odd_map, units) as sim:
        sim.set_values(ODD_VALUES)
        config = GxConfig(host="127.0.0.1", port=sim.port, timeout_s=0.5, unit_ids=units)
        with GxReader(config, odd_map) as reader:
            snapshot = reader.read()
        assert sim.requests == [(100, 3, 0, 22)]
    for name, value in ODD_VALUES.items():
        assert snapshot.get(name) == pytest.approx(value, abs=1e-9), name


# --- GX quirks -----------------------------------------------------------------------------


def test_absent_device_0x0a_names_role_unit_and_where_to_look(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    gx_sim.remove_device("mppt")
    with GxReader(gx_config(), register_map) as reader:
        snapshot = reader.read()
        problem = reader.problems["mppt"]
    assert snapshot.absent_roles == frozenset({"mppt"})
    assert snapshot.get("mppt_state") is None
    assert snapshot.get("battery_soc_pct") == 100
    assert "no mppt device at unit ID 245 (GX answered 0x0A)" in problem
    assert "Settings > Services > Modbus TCP > Available services" in problem
    assert "pvheater read-registers --discover" in problem


def test_absent_device_0x0b_on_older_venus_os(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    gx_sim.absent_code = 0x0B
    gx_sim.remove_device("bms")
    gx_sim.exception_override["grid"] = 0x0B
    with GxReader(gx_config(), register_map) as reader:
        snapshot = reader.read()
        assert snapshot.absent_roles == frozenset({"bms", "grid"})
        assert "no bms device at unit ID 225 (GX answered 0x0B)" in reader.problems["bms"]
        assert "no grid device at unit ID 40 (GX answered 0x0B)" in reader.problems["grid"]
        gx_sim.add_device("bms")
        del gx_sim.exception_override["grid"]
        assert reader.read().absent_roles == frozenset()
        assert reader.problems == {}


def test_absent_system_service_raises_device_absent(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    gx_sim.remove_device("system")
    with GxReader(gx_config(), register_map) as reader, pytest.raises(DeviceAbsent) as info:
        reader.read()
    assert (info.value.role, info.value.unit_id) == ("system", 100)
    assert "no system service at unit ID 100" in str(info.value)


def test_read_across_an_undefined_gap_raises_0x02_naming_the_range(
    tmp_path: Path, gx_sim: GxSimulator, gx_config: MakeConfig
) -> None:
    wrong = {
        "role": "vebus",
        "service": "com.victronenergy.vebus",
        "served": [[3, 247]],  # wrong: the GX has nothing at 148-199
        "registers": [
            {"name": "nominal_w", "path": "/Ac/Out/NominalInverterPower", "address": 130, "type": "uint32",
             "scale": 1, "unit": "W"},
            {"name": "microgrid_mode", "path": "/MicroGrid/Mode", "address": 200, "type": "uint16", "scale": 1,
             "unit": ""},
        ],
    }
    (tmp_path / "vebus.yaml").write_text(yaml.safe_dump(wrong), encoding="utf-8")
    with GxReader(gx_config(), load_register_map(tmp_path)) as reader, pytest.raises(GxError) as info:
        reader.read()
    assert not isinstance(info.value, GxUnavailable)
    assert "vebus registers 130-200 at unit ID 242 (0x02" in str(info.value)
    assert "register map does not match" in str(info.value)


def test_other_exception_codes_raise_gx_error_naming_the_code(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    gx_sim.exception_override["vebus"] = 0x04
    with GxReader(gx_config(), register_map) as reader, pytest.raises(GxError, match=r"0x04 \(server device failure\)"):
        reader.read()


def test_invalid_zero_and_implausible_values_read_as_none(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    gx_sim.set_invalid(["battery_soc_pct", "battery_voltage_v", "grid_l1_w", "bms_soc_pct"])
    gx_sim.set_values({"mppt_yield_w": 65000, "meter_l1_w": -40000})
    with GxReader(gx_config(), register_map) as reader:
        snapshot = reader.read()
        assert snapshot.get("battery_soc_pct") is None  # zero_invalid
        assert snapshot.get("battery_voltage_v") is None  # zero_invalid
        assert snapshot.get("bms_soc_pct") is None
        assert snapshot.soc_pct is None
        assert snapshot.get("grid_l1_w") == 0  # a real zero is possible here
        assert snapshot.get("mppt_yield_w") is None  # above valid range
        assert snapshot.get("meter_l1_w") is None  # below valid range
        gx_sim.set_values({"battery_soc_pct": 250})
        assert reader.read().get("battery_soc_pct") is None


def test_probe_reports_which_roles_answer(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    with GxReader(gx_config(), register_map) as reader:
        assert reader.probe(100) == ("system",)
        assert reader.probe(0) == ("system",)
        assert reader.probe(245) == ("mppt",)
        assert reader.probe(7) == ()
    assert {fc for _, fc, _, _ in gx_sim.requests} == {3}


# --- failures and reconnect ---------------------------------------------------------


def test_silent_gx_fails_within_the_timeout(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    gx_sim.silent = True
    with GxReader(gx_config(timeout_s=0.5), register_map) as reader:
        started = time.monotonic()
        with pytest.raises(GxUnavailable) as info:
            reader.read()
        elapsed_s = time.monotonic() - started
    assert 0.4 <= elapsed_s < 1.5
    assert f"GX at 127.0.0.1:{gx_sim.port} did not answer within 0.5 s" in str(info.value)
    assert len(gx_sim.requests) == 1  # no retries


def test_closed_port_fails_fast(register_map: RegisterMap) -> None:
    sim = GxSimulator(register_map, UnitIds()).start()
    port = sim.port
    sim.stop()
    config = GxConfig(host="127.0.0.1", port=port, timeout_s=0.5)
    started = time.monotonic()
    with GxReader(config, register_map) as reader, pytest.raises(GxUnavailable) as info:
        reader.read()
    assert time.monotonic() - started < 0.5
    assert f"GX at 127.0.0.1:{port} cannot be reached" in str(info.value)
    assert "\n" not in str(info.value)


def test_reconnects_after_the_gx_restarts_with_backoff(
    gx_sim: GxSimulator, gx_config: MakeConfig, register_map: RegisterMap
) -> None:
    clock = FakeClock()
    reader = GxReader(gx_config(reconnect_min_s=1.0, reconnect_max_s=4.0), register_map, clock=clock)
    assert reader.read().get("battery_soc_pct") == 100

    gx_sim.stop()  # the GX reboots: the connection drops
    with pytest.raises(GxUnavailable, match="closed the connection"):
        reader.read()
    expected_delays = [2.0, 4.0, 4.0]  # doubling from 1 s, capped at 4 s
    clock.advance(1.0)
    for delay_s in expected_delays:
        with pytest.raises(GxUnavailable, match="cannot be reached"):
            reader.read()
        with pytest.raises(GxUnavailable, match=re.escape(f"next attempt in {delay_s:.1f} s")):
            reader.read()
        clock.advance(delay_s)

    gx_sim.start()
    assert gx_sim.port == gx_config().port  # same port after the restart
    gx_sim.clear_requests()
    clock.advance(-0.5)  # still backing off: no network traffic at all
    with pytest.raises(GxUnavailable, match=r"next attempt in 0\.5 s"):
        reader.read()
    assert gx_sim.requests == []
    clock.advance(0.5)
    gx_sim.set_values({"battery_soc_pct": 96})
    assert reader.read().get("battery_soc_pct") == 96

    gx_sim.stop()  # a success reset the backoff: the first wait is 1 s again
    with pytest.raises(GxUnavailable):
        reader.read()
    with pytest.raises(GxUnavailable, match=r"next attempt in 1\.0 s"):
        reader.read()
    reader.close()
