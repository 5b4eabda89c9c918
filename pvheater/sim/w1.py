"""A fake 1-wire sysfs tree for the simulator and tests: DS18B20 sensors whose files the simulation writes.

It writes what the kernel's w1-therm driver shows under /sys/bus/w1/devices,
so the real :class:`pvheater.tank_sensor.TankSensor` reads it unchanged:
``w1_slave`` with the nine scratchpad bytes (12-bit resolution, the Dallas
CRC-8 over the first eight) and ``crc=.. YES``, then ``t=<millidegrees>``;
and, optionally, the newer ``temperature`` file. Faults write what a broken
sensor shows: a CRC mismatch, the 85.0 degC power-on value, -127 (gone), an
all-zero scratchpad, garbage, or no sensor folder at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FAULTS = ("crc", "power_on", "disconnected", "zeros", "garbage", "missing")


def crc8_dallas(data: bytes) -> int:
    """The Dallas/Maxim 1-wire CRC-8 (x^8 + x^5 + x^4 + 1, reflected), as the DS18B20 computes it."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def scratchpad(temp_c: float) -> bytes:
    """The nine scratchpad bytes of a DS18B20 at 12-bit resolution reading temp_c (1/16 degC steps)."""
    raw = round(temp_c * 16) & 0xFFFF
    head = bytes([raw & 0xFF, raw >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10])
    return head + bytes([crc8_dallas(head)])


def w1_slave_text(pad: bytes, crc_ok: bool | None = None) -> str:
    """The w1_slave file of a scratchpad: YES/NO from its CRC (or forced), and t= from its temperature."""
    hexes = " ".join(f"{b:02x}" for b in pad)
    ok = crc8_dallas(pad[:8]) == pad[8] if crc_ok is None else crc_ok
    raw = int.from_bytes(pad[:2], "little", signed=True)
    return f"{hexes} : crc={pad[8]:02x} {'YES' if ok else 'NO'}\n{hexes} t={raw * 1000 // 16}\n"


class FakeW1Bus:
    """A fake /sys/bus/w1/devices under base_dir with DS18B20 sensors the simulation sets."""

    def __init__(self, base_dir: Path | str, temperature_file: bool = False) -> None:
        self.base_dir = Path(base_dir)
        self.temperature_file = temperature_file
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "w1_bus_master1").mkdir(exist_ok=True)

    def add(self, sensor_id: str = "28-00000000feed", temp_c: float = 20.0) -> str:
        """Plug in a sensor reading temp_c; returns its id."""
        (self.base_dir / sensor_id).mkdir(exist_ok=True)
        self.set_temp(sensor_id, temp_c)
        return sensor_id

    def _write(self, sensor_id: str, w1_slave: str, temperature: str | None) -> None:
        folder = self.base_dir / sensor_id
        folder.mkdir(exist_ok=True)
        tmp = folder / "w1_slave.tmp"
        tmp.write_text(w1_slave, encoding="ascii")
        tmp.replace(folder / "w1_slave")  # a reader never sees half a file
        if self.temperature_file and temperature is not None:
            tmp = folder / "temperature.tmp"
            tmp.write_text(temperature, encoding="ascii")
            tmp.replace(folder / "temperature")

    def set_temp(self, sensor_id: str, temp_c: float) -> None:
        """The sensor now reads temp_c (rounded to the DS18B20's 1/16 degC)."""
        pad = scratchpad(temp_c)
        milli = int.from_bytes(pad[:2], "little", signed=True) * 1000 // 16
        self._write(sensor_id, w1_slave_text(pad), f"{milli}\n")

    def set_fault(self, sensor_id: str, fault: str) -> None:
        """Make the sensor show one of FAULTS."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}: expected one of {', '.join(FAULTS)}")
        if fault == "missing":
            shutil.rmtree(self.base_dir / sensor_id, ignore_errors=True)
        elif fault == "crc":
            pad = bytearray(scratchpad(50.0))
            pad[8] ^= 0x01
            self._write(sensor_id, w1_slave_text(bytes(pad)), None)
        elif fault == "power_on":
            self._write(sensor_id, w1_slave_text(scratchpad(85.0)), "85000\n")
        elif fault == "disconnected":
            self._write(sensor_id, w1_slave_text(scratchpad(-127.0)), "-127000\n")
        elif fault == "zeros":
            self._write(sensor_id, w1_slave_text(bytes(9)), None)
        else:
            self._write(sensor_id, "\x00\x13garbage\n", "garbage\n")
