"""The tank thermometer: a DS18B20 on the Pi's 1-wire bus, read from the kernel's sysfs files.

The kernel's w1-gpio and w1-therm drivers do the bus work (``dtoverlay=w1-gpio``
in /boot/config.txt); each sensor appears as ``<base_dir>/28-xxxxxxxxxxxx/``
with one or both of:

- ``w1_slave``: two lines, the scratchpad bytes with ``crc=xx YES`` (or ``NO``),
  then the same bytes with ``t=23125`` (millidegrees Celsius);
- ``temperature``: newer kernels, just ``23125``; a CRC error there is a read error.

``w1_slave`` is read when present (it shows the CRC), else ``temperature``.
A reading is invalid -- ``TankReading.valid`` False with the problem in one
phrase -- on a CRC NO, 85.0 degC (the power-on value: the sensor reset or never
converted), -127 degC (what w1-therm reports for a sensor that vanished), an
all-zero scratchpad (a bus short passes the CRC), a value outside the
DS18B20's -55..125 degC, text that does not parse, a missing file or sensor.
A problem episode is logged once when it starts (WARNING) and once when it
ends (INFO); control goes on as without a sensor (pvheater.control.hotwater).

A reading takes the kernel ~0.75 s (the conversion), so the service reads in
:class:`TankSensorThread`, never in the control tick; the tick takes
``latest()``, which the pure part judges by its age.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pvheater.config import TankSensorConfig
from pvheater.control.hotwater import TankReading
from pvheater.errors import ConfigError

__all__ = ["TankReading", "TankSensor", "TankSensorThread", "list_sensors", "parse_temperature", "parse_w1_slave"]

log = logging.getLogger("pvheater")

#: 1-wire family code of the DS18B20.
DS18B20_FAMILY = "28"
POWER_ON_C = 85.0
DISCONNECTED_C = -127.0
RANGE_C = (-55.0, 125.0)


def list_sensors(base_dir: Path) -> list[str]:
    """Ids of the DS18B20 sensors the kernel lists under base_dir, sorted; [] when it does not exist."""
    try:
        return sorted(p.name for p in base_dir.iterdir() if p.name.startswith(DS18B20_FAMILY + "-"))
    except OSError:
        return []


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat[:40] + ("..." if len(flat) > 40 else ""))


def _plausible(milli: int) -> tuple[float | None, str | None]:
    temp_c = milli / 1000.0
    if temp_c == POWER_ON_C:
        return None, "85.0 degC: the power-on value (sensor reset or no conversion)"
    if temp_c == DISCONNECTED_C:
        return None, "-127 degC: sensor disconnected"
    if not RANGE_C[0] <= temp_c <= RANGE_C[1]:
        return None, f"{temp_c:g} degC is outside the DS18B20's range"
    return temp_c, None


def parse_w1_slave(text: str) -> tuple[float | None, str | None]:
    """(temperature degC, None) from a w1_slave file, or (None, the problem)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) != 2 or "crc=" not in lines[0] or "t=" not in lines[1]:
        return None, f"unreadable w1_slave {_short(text)}"
    verdict = lines[0].rsplit(None, 1)[-1]
    if verdict == "NO":
        return None, "CRC error"
    if verdict != "YES":
        return None, f"unreadable w1_slave {_short(text)}"
    raw = lines[0].split(":", 1)[0].split()
    if raw and all(b == "00" for b in raw):
        return None, "all-zero scratchpad (bus short?)"
    try:
        milli = int(lines[1].rsplit("t=", 1)[1])
    except ValueError:
        return None, f"unreadable w1_slave {_short(text)}"
    return _plausible(milli)


def parse_temperature(text: str) -> tuple[float | None, str | None]:
    """(temperature degC, None) from a `temperature` file (millidegrees), or (None, the problem)."""
    try:
        milli = int(text.strip())
    except ValueError:
        return None, f"unreadable temperature file {_short(text)}"
    return _plausible(milli)


class TankSensor:
    """One DS18B20: the configured id, or the only one on the bus; `read(now_s)` never raises."""

    def __init__(self, base_dir: Path | str = "/sys/bus/w1/devices", sensor_id: str | None = None,
                 logger: logging.Logger = log) -> None:
        self.base_dir = Path(base_dir)
        self.sensor_id = sensor_id
        self.log = logger
        self._problem: str | None = None
        self._bad_reads = 0

    @classmethod
    def from_config(cls, config: TankSensorConfig, logger: logging.Logger = log) -> TankSensor:
        """The sensor of the tank_sensor section."""
        return cls(config.base_dir, config.id, logger)

    def resolve(self) -> str | None:
        """The id to read: the configured one, else the only one found (None: none found).

        Raises ConfigError naming the ids when several are found and none is configured.
        """
        if self.sensor_id is not None:
            return self.sensor_id
        found = list_sensors(self.base_dir)
        if len(found) > 1:
            raise ConfigError(f"tank_sensor.id: several 1-wire temperature sensors found ({', '.join(found)}); "
                              "set tank_sensor.id to the tank's")
        return found[0] if found else None

    def _read_value(self) -> tuple[str, float | None, str | None]:
        try:
            sensor = self.resolve()
        except ConfigError as exc:
            return "?", None, str(exc)
        if sensor is None:
            return "?", None, (f"no 1-wire temperature sensor under {self.base_dir} "
                               "(dtoverlay=w1-gpio in /boot/config.txt? wiring, 4.7 kOhm pull-up?)")
        folder = self.base_dir / sensor
        for name, parse in (("w1_slave", parse_w1_slave), ("temperature", parse_temperature)):
            file = folder / name
            try:
                text = file.read_text(encoding="ascii", errors="replace")
            except FileNotFoundError:
                continue
            except OSError as exc:
                return sensor, None, f"read error ({exc.strerror or exc})"
            value, problem = parse(text)
            return sensor, value, problem
        if folder.is_dir():
            return sensor, None, f"no w1_slave or temperature file in {folder}"
        found = list_sensors(self.base_dir)
        return sensor, None, f"sensor not found under {self.base_dir} (found: {', '.join(found) or 'none'})"

    def read(self, now_s: float) -> TankReading:
        """Read the sensor now (blocking ~0.75 s on real hardware); log the start and end of a problem episode."""
        sensor, value, problem = self._read_value()
        if problem is not None:
            self._bad_reads += 1
            if self._problem is None:
                self.log.warning("tank sensor %s: %s; going on as without a sensor", sensor, problem)
                self._problem = problem
            return TankReading(temp_c=None, time_s=now_s, valid=False, problem=problem)
        if self._problem is not None:
            self.log.info("tank sensor %s: valid again (%.1f degC) after %d bad reading(s)", sensor, value,
                          self._bad_reads)
            self._problem = None
            self._bad_reads = 0
        return TankReading(temp_c=value, time_s=now_s, valid=True)


class TankSensorThread:
    """Reads a TankSensor every interval_s in a daemon thread; `latest()` never waits for a reading."""

    def __init__(self, sensor: TankSensor, interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sensor = sensor
        self.interval_s = interval_s
        self.clock = clock
        self._latest: TankReading | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> TankReading | None:
        """The newest reading (None before the first)."""
        with self._lock:
            return self._latest

    def read_once(self) -> TankReading:
        """One reading, stored as the latest (the thread's body; tests call it directly)."""
        reading = self.sensor.read(self.clock())
        with self._lock:
            self._latest = reading
        return reading

    def _run(self) -> None:
        while not self._stop.is_set():
            self.read_once()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Start reading in the background."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tank-sensor", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (waits for a reading in progress up to timeout_s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
