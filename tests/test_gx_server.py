"""The GX simulator seen by a plain pymodbus client: addresses, quirks, writes refused, lifecycle, gx-sim."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from pvheater.config import GxConfig, UnitIds
from pvheater.errors import PvHeaterError
from pvheater.reader import GxReader
from pvheater.registers import RegisterMap
from pvheater.sim.gx_server import GxSimulator


@pytest.fixture
def client(gx_sim: GxSimulator) -> Iterator[ModbusTcpClient]:
    """A raw client connected to the gx_sim fixture."""
    raw = ModbusTcpClient("127.0.0.1", port=gx_sim.port, timeout=0.5, retries=0)
    assert raw.connect()
    yield raw
    raw.close()


def words(client: ModbusTcpClient, unit: int, address: int, count: int, fc: int = 3) -> list[int]:
    read = client.read_holding_registers if fc == 3 else client.read_input_registers
    response = read(address, count=count, device_id=unit)
    assert not response.isError(), response
    return list(response.registers)


def exception_code(client: ModbusTcpClient, unit: int, address: int, count: int) -> int:
    response = client.read_holding_registers(address, count=count, device_id=unit)
    assert response.isError()
    return int(response.exception_code)


def test_system_block_has_values_reserved_ffff_and_unmapped_zero(gx_sim: GxSimulator, client: ModbusTcpClient) -> None:
    block = words(client, 100, 800, 120)
    at = {800 + i: w for i, w in enumerate(block)}
    assert at[843] == 100  # battery_soc_pct
    assert at[840] == 552  # battery_voltage_v 55.2 V, scale 10
    assert [at[a] for a in range(827, 830)] == [0xFFFF] * 3  # RESERVED
    assert at[867] == 0xFFFF
    assert at[800] == 0  # serial: served, not mapped
    assert at[817] == 0


def test_int32_goes_high_word_first(gx_sim: GxSimulator, client: ModbusTcpClient) -> None:
    gx_sim.set_values({"grid_l1_w": -250})
    assert words(client, 100, 908, 2) == [0xFFFF, 0xFF06]
    gx_sim.set_values({"meter_import_kwh": 1000})  # raw 100000 = 0x0001_86A0
    assert words(client, 40, 2634, 2) == [0x0001, 0x86A0]


def test_system_also_answers_on_unit_0_and_to_function_code_4(client: ModbusTcpClient) -> None:
    assert words(client, 0, 843, 1) == [100]
    assert words(client, 100, 843, 1, fc=4) == [100]


def test_unknown_unit_and_missing_service_answer_0x0a(gx_sim: GxSimulator, client: ModbusTcpClient) -> None:
    assert exception_code(client, 7, 843, 1) == 0x0A
    assert exception_code(client, 245, 843, 1) == 0x0A  # a system address at the MPPT's unit ID
    gx_sim.absent_code = 0x0B
    assert exception_code(client, 7, 843, 1) == 0x0B


def test_undefined_addresses_and_gaps_answer_0x02(client: ModbusTcpClient) -> None:
    assert exception_code(client, 100, 5000, 1) == 0x02  # nothing there
    assert exception_code(client, 100, 915, 10) == 0x02  # ends outside 800-919
    assert exception_code(client, 242, 140, 61) == 0x02  # crosses 148-199
    assert len(words(client, 242, 3, 125)) == 125


def test_writes_are_refused_and_change_nothing(gx_sim: GxSimulator, client: ModbusTcpClient) -> None:
    single = client.write_register(843, 5, device_id=100)
    multiple = client.write_registers(33, [4], device_id=242)
    assert single.isError() and single.exception_code == 0x02
    assert multiple.isError() and multiple.exception_code == 0x02
    assert words(client, 100, 843, 1) == [100]
    assert words(client, 242, 33, 1) == [3]
    coils = client.read_coils(0, count=1, device_id=100)
    assert coils.isError() and coils.exception_code == 0x01
    assert [(u, fc) for u, fc, _, _ in gx_sim.requests[:3]] == [(100, 6), (242, 16), (100, 3)]


def test_exception_override_and_remove_device(gx_sim: GxSimulator, client: ModbusTcpClient) -> None:
    gx_sim.exception_override["mppt"] = 0x0B
    assert exception_code(client, 245, 775, 1) == 0x0B
    gx_sim.exception_override.clear()
    gx_sim.remove_device("mppt")
    assert exception_code(client, 245, 775, 1) == 0x0A
    gx_sim.add_device("mppt", 243)
    assert words(client, 243, 775, 1) == [5]


def test_set_values_validates_names_and_ranges(gx_sim: GxSimulator, client: ModbusTcpClient) -> None:
    with pytest.raises(ValueError, match="unknown value name 'soc'"):
        gx_sim.set_values({"soc": 1})
    with pytest.raises(ValueError, match="register 'battery_soc_pct'"):
        gx_sim.set_values({"grid_l1_w": 1, "battery_soc_pct": -1})
    assert words(client, 100, 843, 1) == [100]  # all or nothing
    gx_sim.set_values({"battery_soc_pct": None})
    assert words(client, 100, 843, 1) == [0]


def test_silent_simulator_never_answers(gx_sim: GxSimulator, client: ModbusTcpClient) -> None:
    gx_sim.silent = True
    with pytest.raises(ModbusIOException):
        client.read_holding_registers(843, count=1, device_id=100)
    assert gx_sim.requests == [(100, 3, 843, 1)]


def test_int32_updates_from_another_thread_are_never_torn(
    gx_sim: GxSimulator, register_map: RegisterMap
) -> None:
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            gx_sim.set_values({"grid_l1_w": -1})  # words FFFF FFFF
            gx_sim.set_values({"grid_l1_w": 1})  # words 0000 0001
            stop.wait(0.0001)  # let the server thread have the GIL

    thread = threading.Thread(target=flip)
    thread.start()
    try:
        config = GxConfig(host="127.0.0.1", port=gx_sim.port, timeout_s=0.5)
        with GxReader(config, register_map) as reader:
            seen = {reader.read().get("grid_l1_w") for _ in range(100)}
    finally:
        stop.set()
        thread.join()
    assert seen <= {-1.0, 1.0}


def test_start_stop_are_idempotent_and_restart_keeps_the_port(register_map: RegisterMap) -> None:
    sim = GxSimulator(register_map, UnitIds())
    assert sim.start() is sim.start()
    port = sim.port
    assert port > 0
    sim.stop()
    sim.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with sim:
        assert sim.port == port
        with ModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=0) as raw:
            assert not raw.read_holding_registers(843, count=1, device_id=100).isError()


def test_a_busy_port_fails_with_one_line(gx_sim: GxSimulator, register_map: RegisterMap) -> None:
    with pytest.raises(PvHeaterError, match=f"cannot listen on 127.0.0.1:{gx_sim.port}"):
        GxSimulator(register_map, UnitIds(), port=gx_sim.port).start()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_gx_sim_command_serves_until_ctrl_c(tmp_path: Path, register_map: RegisterMap) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("gx:\n  unit_ids:\n    mppt: 243\n    bms: null\n", encoding="utf-8")
    port = free_port()
    command = [sys.executable, "-m", "pvheater.cli", "gx-sim", "--port", str(port), "--config", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                assert selector.select(timeout=15), "gx-sim printed nothing"
            line = proc.stdout.readline()
            assert line.startswith(f"GX simulator listening on 127.0.0.1:{port}; unit IDs: system 100 (and 0)")
            assert "mppt 243" in line and "bms" not in line
            gx = GxConfig(host="127.0.0.1", port=port, timeout_s=2.0, unit_ids=UnitIds(mppt=243, bms=None))
            with GxReader(gx, register_map) as reader:
                snapshot = reader.read()
            assert snapshot.pv_curtailed and snapshot.soc_pct == 100
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            assert proc.wait(timeout=5) == 0
            assert time.monotonic() - started < 5
            assert proc.stderr is not None and proc.stderr.read() == ""
        finally:
            if proc.poll() is None:
                proc.kill()
