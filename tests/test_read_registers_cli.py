"""`pvheater read-registers` end to end: simulator, discovery, failures, an independent GX from attributes.csv."""

from __future__ import annotations

import csv
import json
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pvheater.cli import main
from pvheater.config import UnitIds, load_config
from pvheater.errors import ConfigError
from pvheater.registers import RegisterMap
from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator

ATTRIBUTES_CSV = Path(__file__).resolve().parents[1].parent / "shared/victron/attributes.csv"
Capture = pytest.CaptureFixture[str]


def write_config(tmp_path: Path, port: int = 502, unit_ids: str = "") -> Path:
    path = tmp_path / "config.yaml"
    text = f"gx:\n  host: 192.0.2.1\n  port: {port}\n  timeout_s: 0.5\n"
    if unit_ids:
        text += "  unit_ids:\n" + unit_ids
    path.write_text(text, encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- with the project's simulator ------------------------------------------------------


def test_simulate_prints_a_table_of_every_value(tmp_path: Path, capsys: Capture, register_map: RegisterMap) -> None:
    assert main(["read-registers", "--simulate", "--config", str(write_config(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("GX 127.0.0.1:")
    assert lines[1].split() == ["role", "unit", "address", "name", "value"]
    assert len(lines) == 2 + len(register_map.all_registers())
    rows = {line.split()[3]: line for line in lines[2:]}
    assert rows["battery_soc_pct"].split()[:3] == ["system", "100", "843"]
    assert rows["battery_soc_pct"].endswith("100 %")
    assert rows["battery_voltage_v"].endswith("55.2 V")
    assert rows["mppt_state"].endswith("5 (Float)")
    assert rows["mppt_operation_mode"].endswith("1 (Voltage/current limited)")
    assert rows["vebus_ac_in_l1_w"].endswith("-10 W")


def test_simulate_json_has_every_value_by_name(tmp_path: Path, capsys: Capture, register_map: RegisterMap) -> None:
    config = write_config(tmp_path, unit_ids="    bms: null\n")
    assert main(["read-registers", "--simulate", "--json", "--config", str(config)]) == 0
    data = json.loads(capsys.readouterr().out)
    for name, value in SAMPLE_VALUES.items():
        expected = None if name.startswith("bms_") else pytest.approx(value)
        assert data[name] == expected, name
    assert set(data) == set(register_map.by_name()) | {"_gx", "_unit_ids", "_absent", "_enum"}
    assert data["_unit_ids"]["bms"] is None
    assert data["_absent"] == {}
    assert data["_enum"]["mppt_state"] == "Float"


def test_absent_device_is_one_line_in_the_table_and_null_in_json(
    gx_sim: GxSimulator, tmp_path: Path, capsys: Capture
) -> None:
    gx_sim.remove_device("mppt")
    gx_sim.set_invalid(["battery_soc_pct"])
    config = write_config(tmp_path, port=gx_sim.port)
    args = ["read-registers", "--config", str(config), "--host", "127.0.0.1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    mppt_lines = [line for line in out.splitlines() if line.startswith("mppt")]
    assert len(mppt_lines) == 1
    assert "absent: no mppt device at unit ID 245 (GX answered 0x0A)" in mppt_lines[0]
    assert re.search(r"battery_soc_pct\s+invalid$", out, re.MULTILINE)
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mppt_state"] is None
    assert data["battery_soc_pct"] is None
    assert "no mppt device at unit ID 245" in data["_absent"]["mppt"]


def test_discover_prints_unit_ids_to_paste(register_map: RegisterMap, tmp_path: Path, capsys: Capture) -> None:
    units = UnitIds(vebus=227, mppt=243, bms=None, grid=30)
    with GxSimulator(register_map, units) as sim:
        args = ["read-registers", "--config", str(write_config(tmp_path, port=sim.port)), "--host", "127.0.0.1"]
        assert main([*args, "--discover"]) == 0
        assert {fc for _, fc, _, _ in sim.requests} == {3}
    out = capsys.readouterr().out
    assert "    bms: null  # no bms device answered" in out
    assert "# in config.yaml: replace these keys of the gx: section" in out
    parsed = yaml.safe_load(out)
    assert parsed == {"gx": {"host": "127.0.0.1", "port": sim.port,
                             "unit_ids": {"system": 100, "mppt": 243, "bms": None, "grid": 30, "vebus": 227}}}
    pasted = tmp_path / "pasted.yaml"
    pasted.write_text(out, encoding="utf-8")  # paste-ready as printed: host, port and the indented unit_ids
    cfg = load_config(pasted)
    assert cfg.gx.unit_ids == units and cfg.gx.host == "127.0.0.1" and cfg.gx.port == sim.port


def test_discover_names_the_port_only_when_not_502(register_map: RegisterMap) -> None:
    from pvheater.commands.read_registers import format_discovery
    from pvheater.config import GxConfig
    from pvheater.reader import GxReader

    reader = GxReader(GxConfig(host="192.0.2.7"), register_map)  # not connected: only its endpoint is used
    block = format_discovery({100: ("system",)}, reader, register_map, "192.0.2.7", 502)
    assert yaml.safe_load(block)["gx"] == {"host": "192.0.2.7", "unit_ids": {
        "system": 100, "mppt": None, "bms": None, "grid": None, "vebus": None}}
    assert "port:" not in block


def test_unit_ids_pasted_at_the_top_level_gets_a_hint(tmp_path: Path) -> None:
    pasted = tmp_path / "config.yaml"
    pasted.write_text("unit_ids:\n  mppt: 243\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unit_ids: unknown key \(it belongs under gx:\) \(expected one of"):
        load_config(pasted)


def test_discover_full_probes_every_unit_id_quickly(register_map: RegisterMap, tmp_path: Path, capsys: Capture) -> None:
    with GxSimulator(register_map, UnitIds(mppt=117)) as sim:
        args = ["read-registers", "--config", str(write_config(tmp_path, port=sim.port)), "--host", "127.0.0.1"]
        started = time.monotonic()
        assert main([*args, "--discover", "--full", "--json"]) == 0
        assert time.monotonic() - started < 10
        probed = {unit for unit, *_ in sim.requests}
    assert probed == set(range(248))
    data = json.loads(capsys.readouterr().out)
    assert data["unit_ids"]["mppt"] == 117
    assert data["found"]["0"] == ["system"]


def test_full_without_discover_is_a_usage_error(tmp_path: Path, capsys: Capture) -> None:
    assert main(["read-registers", "--full", "--config", str(write_config(tmp_path))]) == 2
    assert "--full only works with --discover" in capsys.readouterr().err


def test_bad_port_is_refused_by_the_parser(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["read-registers", "--port", "70000"])
    assert info.value.code == 2
    assert "expected a TCP port 1-65535, got 70000" in capsys.readouterr().err


def test_closed_port_exits_1_with_one_line_fast(tmp_path: Path, capsys: Capture) -> None:
    port = free_port()
    started = time.monotonic()
    code = main(["read-registers", "--config", str(write_config(tmp_path)), "--host", "127.0.0.1", "--port", str(port)])
    elapsed_s = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == 1
    assert elapsed_s < 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"pvheater: GX error: GX at 127.0.0.1:{port} cannot be reached")
    assert "check gx.host" in captured.err and "Modbus TCP is enabled" in captured.err


def test_silent_gx_exits_1_within_the_timeout(gx_sim: GxSimulator, tmp_path: Path, capsys: Capture) -> None:
    gx_sim.silent = True
    started = time.monotonic()
    code = main(["read-registers", "--config", str(write_config(tmp_path, port=gx_sim.port)), "--host", "127.0.0.1"])
    elapsed_s = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1
    assert elapsed_s < 0.5 + 1.0
    assert err.count("\n") == 1
    assert "did not answer within 0.5 s" in err


# --- an independent GX built from attributes.csv ------------------------------------------

#: D-Bus values published by the independent GX, by (service, path); every csv row of a
#: path carries the value (the 16- and 32-bit registers of one quantity agree).
CSV_VALUES: dict[tuple[str, str], float] = {
    ("system", "/Ac/Consumption/L1/Power"): 812,
    ("system", "/Ac/Consumption/L2/Power"): 123,
    ("system", "/Ac/Consumption/L3/Power"): 45,
    ("system", "/Ac/Grid/L1/Power"): -250,
    ("system", "/Ac/Grid/L2/Power"): 31,
    ("system", "/Ac/Grid/L3/Power"): -7,
    ("system", "/Ac/ActiveIn/Source"): 1,
    ("system", "/Dc/Battery/Voltage"): 53.2,
    ("system", "/Dc/Battery/Current"): -12.5,
    ("system", "/Dc/Battery/Power"): -665,
    ("system", "/Dc/Battery/Soc"): 97,
    ("system", "/Dc/Battery/State"): 2,
    ("system", "/Dc/Pv/Power"): 3450,
    ("solarcharger", "/State"): 5,
    ("solarcharger", "/Pv/V"): 98.76,
    ("solarcharger", "/MppOperationMode"): 1,
    ("solarcharger", "/Yield/Power"): 3450,
    ("battery", "/Dc/0/Power"): -1234,
    ("battery", "/Soc"): 97.5,
    ("grid", "/Ac/L1/Power"): -260,
    ("grid", "/Ac/L2/Power"): 25,
    ("grid", "/Ac/L3/Power"): -5,
    ("grid", "/Ac/Energy/Forward"): 12345.67,
    ("grid", "/Ac/Energy/Reverse"): 2345.67,
    ("vebus", "/Ac/ActiveIn/L1/P"): -240,
    ("vebus", "/Ac/ActiveIn/L2/P"): 10,
    ("vebus", "/Ac/ActiveIn/L3/P"): 0,
    ("vebus", "/Ac/Out/L1/P"): 1230,
    ("vebus", "/Ac/Out/L2/P"): 20,
    ("vebus", "/Ac/Out/L3/P"): 30,
    ("vebus", "/State"): 9,
    ("vebus", "/Mode"): 3,
}
#: What pvheater must report for those values, by its value names (written by hand).
EXPECTED = {
    "ac_consumption_l1_w": 812, "ac_consumption_l2_w": 123, "ac_consumption_l3_w": 45,
    "grid_l1_w": -250, "grid_l2_w": 31, "grid_l3_w": -7, "active_input_source": 1,
    "battery_voltage_v": 53.2, "battery_current_a": -12.5, "battery_power_w": -665,
    "battery_soc_pct": 97, "battery_state": 2, "pv_dc_w": 3450,
    "mppt_state": 5, "mppt_pv_voltage_v": 98.76, "mppt_operation_mode": 1, "mppt_yield_w": 3450,
    "bms_power_w": -1234, "bms_soc_pct": 97.5,
    "meter_l1_w": -260, "meter_l2_w": 25, "meter_l3_w": -5,
    "meter_import_kwh": 12345.67, "meter_export_kwh": 2345.67,
    "vebus_ac_in_l1_w": -240, "vebus_ac_in_l2_w": 10, "vebus_ac_in_l3_w": 0,
    "vebus_ac_out_l1_w": 1230, "vebus_ac_out_l2_w": 20, "vebus_ac_out_l3_w": 30,
    "vebus_state": 9, "vebus_mode": 3,
}
#: Unit ID -> service of the independent GX (a Venus GX's usual ports).
CSV_UNITS = {100: "system", 0: "system", 242: "vebus", 245: "solarcharger", 225: "battery", 40: "grid"}
STRUCT_FORMATS = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I"}


def csv_words() -> dict[str, dict[int, int]]:
    """Every word each service serves, by short service name, encoded with struct from the csv rows."""
    served: dict[str, dict[int, int]] = {}
    with ATTRIBUTES_CSV.open(newline="", encoding="utf-8") as handle:
        for service, path, _dbus, _unit, address_text, mtype, scale, _access in csv.reader(handle):
            short = service.removeprefix("com.victronenergy.")
            address = int(address_text)
            sized = re.fullmatch(r"(\w+)\[(\d+)\]", mtype)
            if sized:
                fill = 0xFFFF if sized.group(1) == "reserved" else 0
                data = [fill] * int(sized.group(2))
            else:
                value = CSV_VALUES.get((short, path), 0)
                packed = struct.pack(STRUCT_FORMATS[mtype], round(value * float(scale or 1)))
                data = list(struct.unpack(f">{len(packed) // 2}H", packed))
            table = served.setdefault(short, {})
            for offset, word in enumerate(data):
                table[address + offset] = word
    return served


class CsvGxHandler(socketserver.BaseRequestHandler):
    """Modbus-TCP by hand: read holding/input registers, 0x0A for unknown units, 0x02 for gaps."""

    def handle(self) -> None:
        assert isinstance(self.server, CsvGxServer)
        served = self.server.served
        while header := self._receive(7):
            transaction, _protocol, length, unit = struct.unpack(">HHHB", header)
            pdu = self._receive(length - 1)
            if len(pdu) != length - 1:
                return
            function = pdu[0]
            self.server.requests.append((unit, function))
            table = served.get(CSV_UNITS.get(unit, ""), {})
            if function not in (3, 4):
                reply = struct.pack(">BB", function | 0x80, 0x01)
            elif not table:
                reply = struct.pack(">BB", function | 0x80, 0x0A)
            else:
                address, count = struct.unpack(">HH", pdu[1:5])
                wanted = range(address, address + count)
                if all(a in table for a in wanted):
                    reply = struct.pack(f">BB{count}H", function, 2 * count, *(table[a] for a in wanted))
                else:
                    reply = struct.pack(">BB", function | 0x80, 0x02)
            self.request.sendall(struct.pack(">HHHB", transaction, 0, len(reply) + 1, unit) + reply)

    def _receive(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.request.recv(size - len(data))
            if not chunk:
                return b""
            data += chunk
        return data


class CsvGxServer(socketserver.ThreadingTCPServer):
    """The independent GX: the csv's words per service and a log of (unit, function code)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CsvGxHandler)
        self.served = csv_words()
        self.requests: list[tuple[int, int]] = []


@pytest.fixture
def csv_gx() -> Iterator[CsvGxServer]:
    if not ATTRIBUTES_CSV.is_file():
        pytest.skip(f"Victron's register list not found at {ATTRIBUTES_CSV}")
    server = CsvGxServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_independent_gx_from_attributes_csv_decodes_right(
    csv_gx: CsvGxServer, tmp_path: Path, capsys: Capture
) -> None:
    port = csv_gx.server_address[1]
    units = "".join(f"    {role}: {unit}\n" for role, unit in [("system", 100), ("vebus", 242), ("mppt", 245),
                                                                    ("bms", 225), ("grid", 40)])
    config = write_config(tmp_path, unit_ids=units)
    code = main(["read-registers", "--json", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data["_absent"] == {}
    for name, value in EXPECTED.items():
        assert data[name] == pytest.approx(value), name
    assert {function for _, function in csv_gx.requests} == {3}
