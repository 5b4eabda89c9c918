"""The DS18B20 adapter against a fake sysfs tree: good readings, every fault case, one log line per episode."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from pvheater.config import TankSensorConfig
from pvheater.errors import ConfigError
from pvheater.sim.w1 import FAULTS, FakeW1Bus, crc8_dallas, scratchpad, w1_slave_text
from pvheater.tank_sensor import TankSensor, TankSensorThread, list_sensors, parse_w1_slave

SENSOR = "28-0000061a2b3c"
OTHER = "28-000005e2fdc3"


def w1_slave(milli: int, crc: str = "YES") -> str:
    """A w1_slave file as w1-therm writes it (the scratchpad bytes roughly matching the value)."""
    raw = milli * 16 // 1000 & 0xFFFF
    lo, hi = raw & 0xFF, raw >> 8
    scratch = f"{lo:02x} {hi:02x} 4b 46 7f ff 0c 10 1c"
    return f"{scratch} : crc=1c {crc}\n{scratch} t={milli}\n"


def make_sensor(base: Path, sensor_id: str = SENSOR, text: str | None = None, temperature: str | None = None) -> Path:
    folder = base / sensor_id
    folder.mkdir(parents=True, exist_ok=True)
    if text is not None:
        (folder / "w1_slave").write_text(text, encoding="ascii")
    if temperature is not None:
        (folder / "temperature").write_text(temperature, encoding="ascii")
    # The bus master lives beside the sensors, as on a Pi.
    (base / "w1_bus_master1").mkdir(exist_ok=True)
    return folder


def test_good_w1_slave_reading(tmp_path: Path) -> None:
    make_sensor(tmp_path, text=w1_slave(23125))
    reading = TankSensor(tmp_path).read(now_s=12.5)
    assert (reading.temp_c, reading.time_s, reading.valid, reading.problem) == (23.125, 12.5, True, None)


def test_good_temperature_file_reading_and_negative_values(tmp_path: Path) -> None:
    make_sensor(tmp_path, temperature="-1250\n")
    reading = TankSensor(tmp_path, SENSOR).read(1.0)
    assert reading.valid and reading.temp_c == -1.25


def test_w1_slave_is_preferred_over_temperature(tmp_path: Path) -> None:
    make_sensor(tmp_path, text=w1_slave(55000), temperature="20000\n")
    assert TankSensor(tmp_path).read(0.0).temp_c == 55.0


@pytest.mark.parametrize(
    ("text", "temperature", "problem"),
    [
        (w1_slave(85000), None, "85.0 degC: the power-on value"),
        (None, "85000\n", "85.0 degC: the power-on value"),
        (w1_slave(-127000), None, "-127 degC: sensor disconnected"),
        (None, "-127000", "-127 degC: sensor disconnected"),
        (w1_slave(23125, crc="NO"), None, "CRC error"),
        ("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", None, "all-zero scratchpad"),
        (w1_slave(150000), None, "outside the DS18B20's range"),
        ("garbage\n", None, "unreadable w1_slave 'garbage'"),
        ("", None, "unreadable w1_slave"),
        ("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=abc\n", None, "unreadable"),
        ("72 01 : crc=57 MAYBE\n72 01 t=23125\n", None, "unreadable"),
        (None, "hot\n", "unreadable temperature file 'hot'"),
    ],
)
def test_implausible_or_broken_readings_are_invalid(tmp_path: Path, text: str | None, temperature: str | None,
                                                    problem: str) -> None:
    make_sensor(tmp_path, text=text, temperature=temperature)
    reading = TankSensor(tmp_path).read(3.0)
    assert not reading.valid and reading.temp_c is None and reading.time_s == 3.0
    assert problem in reading.problem


def test_missing_configured_sensor_names_what_was_found(tmp_path: Path) -> None:
    make_sensor(tmp_path, OTHER, text=w1_slave(40000))
    reading = TankSensor(tmp_path, SENSOR).read(0.0)
    assert not reading.valid
    assert reading.problem == f"sensor not found under {tmp_path} (found: {OTHER})"


def test_no_sensor_at_all_and_no_base_dir(tmp_path: Path) -> None:
    for base in (tmp_path, tmp_path / "absent"):
        reading = TankSensor(base).read(0.0)
        assert not reading.valid and reading.problem.startswith(f"no 1-wire temperature sensor under {base}")


def test_sensor_folder_without_files(tmp_path: Path) -> None:
    make_sensor(tmp_path)
    assert "no w1_slave or temperature file" in TankSensor(tmp_path).read(0.0).problem


def test_two_sensors_without_id_is_a_one_line_config_error_naming_both(tmp_path: Path) -> None:
    make_sensor(tmp_path, SENSOR, text=w1_slave(40000))
    make_sensor(tmp_path, OTHER, text=w1_slave(20000))
    sensor = TankSensor(tmp_path)
    with pytest.raises(ConfigError) as err:
        sensor.resolve()
    message = str(err.value)
    assert "\n" not in message and message.startswith("tank_sensor.id: several")
    assert OTHER in message and SENSOR in message
    # The same while running: an invalid reading, never an exception in the reader thread.
    reading = sensor.read(0.0)
    assert not reading.valid and reading.problem == message
    # With the id set, the right one is read.
    assert TankSensor(tmp_path, OTHER).read(0.0).temp_c == 20.0
    assert list_sensors(tmp_path) == [OTHER, SENSOR]


def test_from_config_uses_base_dir_and_id(tmp_path: Path) -> None:
    make_sensor(tmp_path, OTHER, text=w1_slave(33000))
    sensor = TankSensor.from_config(TankSensorConfig(enabled=True, id=OTHER, base_dir=str(tmp_path)))
    assert sensor.read(0.0).temp_c == 33.0


def test_a_problem_episode_is_logged_once_at_start_and_once_at_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_sensor(tmp_path, text=w1_slave(40000))
    sensor = TankSensor(tmp_path)
    caplog.set_level(logging.INFO, logger="pvheater")
    assert sensor.read(0.0).valid
    assert caplog.records == []
    (folder / "w1_slave").write_text(w1_slave(40000, crc="NO"))
    for t in range(1, 6):
        assert not sensor.read(float(t)).valid
    (folder / "w1_slave").write_text(w1_slave(85000))  # another problem in the same episode: no new line
    assert not sensor.read(6.0).valid
    (folder / "w1_slave").unlink()
    assert not sensor.read(7.0).valid
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "CRC error" in caplog.records[0].getMessage()
    (folder / "w1_slave").write_text(w1_slave(41500))
    assert sensor.read(8.0).temp_c == 41.5
    assert sensor.read(9.0).valid
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "valid again (41.5 degC) after 7 bad reading(s)" in caplog.records[1].getMessage()
    # A second episode logs again.
    (folder / "w1_slave").write_text(w1_slave(-127000))
    sensor.read(10.0)
    sensor.read(11.0)
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING"]


def test_parse_w1_slave_of_the_kernel_documentation_example() -> None:
    text = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
    assert parse_w1_slave(text) == (23.125, None)


def test_thread_reads_in_the_background_and_stops(tmp_path: Path) -> None:
    folder = make_sensor(tmp_path, text=w1_slave(30000))
    clock = iter(float(i) for i in range(10_000))
    thread = TankSensorThread(TankSensor(tmp_path), interval_s=0.02, clock=lambda: next(clock))
    assert thread.latest() is None
    thread.start()
    try:
        deadline = time.monotonic() + 5.0
        while (thread.latest() is None) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert thread.latest() is not None and thread.latest().temp_c == 30.0
        (folder / "w1_slave").write_text(w1_slave(31000))
        while thread.latest().temp_c != 31.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert thread.latest().temp_c == 31.0
    finally:
        thread.stop()
    assert thread._thread is None
    stamped = thread.latest().time_s
    time.sleep(0.1)
    assert thread.latest().time_s == stamped  # stopped: no more readings


# --- the simulator's fake bus, read by the real sensor -------------------------------------------


def test_crc8_of_the_kernel_documentation_scratchpad() -> None:
    assert crc8_dallas(bytes.fromhex("72014b467fff0e10")) == 0x57
    pad = scratchpad(23.125)
    assert crc8_dallas(pad[:8]) == pad[8]
    assert parse_w1_slave(w1_slave_text(pad)) == (23.125, None)


@pytest.mark.parametrize("temperature_file", [False, True])
def test_fake_bus_temperatures_and_every_fault_through_the_real_reader(tmp_path: Path, temperature_file: bool) -> None:
    bus = FakeW1Bus(tmp_path / "w1", temperature_file=temperature_file)
    sensor_id = bus.add(temp_c=48.3)
    sensor = TankSensor(tmp_path / "w1")
    assert sensor.read(0.0).temp_c == 48.312  # 1/16 degC steps, whole millidegrees as w1-therm writes them
    bus.set_temp(sensor_id, -3.5)
    assert sensor.read(1.0).temp_c == -3.5
    expected = {"crc": "CRC error", "power_on": "85.0 degC", "disconnected": "-127 degC", "zeros": "all-zero",
                "garbage": "unreadable", "missing": "no 1-wire temperature sensor"}
    assert set(expected) == set(FAULTS)
    for fault, problem in expected.items():
        bus.set_fault(sensor_id, fault)
        reading = sensor.read(2.0)
        assert not reading.valid and problem in reading.problem, fault
        bus.set_temp(sensor_id, 60.0)
        assert sensor.read(3.0).temp_c == 60.0
    with pytest.raises(ValueError, match="unknown fault"):
        bus.set_fault(sensor_id, "smoke")
