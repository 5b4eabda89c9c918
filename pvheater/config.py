"""Configuration: frozen dataclasses as the schema, loaded from YAML and validated.

Each field's metadata carries its documentation and its limits, so the schema,
the checks and the error messages come from one place. Errors name the key
path and what was expected, in one line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import stat
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pvheater.control.timeofday import hhmm_seconds, parse_fetch_times, parse_hhmm, parse_window
from pvheater.errors import ConfigError
from pvheater.paths import packaged_config


def setting(default: Any, **limits: Any) -> Any:
    """A config field with its default and optional min/max/choices (what each key does: the `#:` line above it)."""
    return field(default=default, metadata=limits)


@dataclass(frozen=True)
class UnitIds:
    """Modbus unit ID of each device role on the GX; null when that device is not installed."""

    #: System service (always 100).
    system: int = setting(100, min=0, max=247)
    #: MultiPlus / VE.Bus port (Venus GX 242, Cerbo GX 227, MultiPlus-II GX 228, CCGX 246).
    vebus: int | None = setting(242, min=0, max=247)
    #: Solar charger (Venus GX VE.Direct 1: 245).
    mppt: int | None = setting(245, min=0, max=247)
    #: CAN-bus BMS battery (Venus GX: 225).
    bms: int | None = setting(225, min=0, max=247)
    #: Grid meter, e.g. ET340 (its VRM instance).
    grid: int | None = setting(40, min=0, max=247)


@dataclass(frozen=True)
class GxConfig:
    """Where the Venus GX's Modbus-TCP server is and how to talk to it."""

    #: GX address or host name.
    host: str = setting("venus.local")
    #: Modbus-TCP port.
    port: int = setting(502, min=1, max=65535)
    #: Seconds to wait for one answer.
    timeout_s: float = setting(3.0, min=0.2, max=30.0)
    #: First wait before reconnecting.
    reconnect_min_s: float = setting(1.0, min=0.1, max=600.0)
    #: Longest wait between reconnects.
    reconnect_max_s: float = setting(60.0, min=0.1, max=3600.0)
    #: Unit ID per device.
    unit_ids: UnitIds = field(default_factory=UnitIds)
    #: Unit IDs of further solar chargers beyond unit_ids.mppt (VE.Direct or VE.Can), summed.
    solar_chargers: tuple[int, ...] | None = setting(
        None, min=0, max=247
    )
    #: No grid: the inverter's continuous rating caps heater + house.
    off_grid: bool = setting(False)
    #: Inverter continuous rating, W, on the heater's phase (null: the VE.Bus nominal power).
    inverter_rating_w: float | None = setting(
        None,
        min=100.0, max=200000.0,
    )
    #: The phase (1-3) the heater is wired to.
    heater_phase: int = setting(1, min=1, max=3)
    #: Off-grid: W of the inverter's rating kept free for appliances switching on unannounced (a kettle).
    off_grid_reserve_w: float = setting(0.0, min=0.0, max=100000.0)

    def check(self) -> list[tuple[str, str]]:
        """Cross-field checks: (key, message) pairs."""
        if self.solar_chargers is not None:
            for i, uid in enumerate(self.solar_chargers):
                if not 0 <= uid <= 247:
                    return [(f"solar_chargers[{i}]", f"expected an integer from 0 to 247, got {uid}")]
        if not valid_host(self.host):
            return [("host", "expected an IP address or a host name (dot-separated labels of 1 to 63 letters, "
                     f"digits, '-' or '_', at most 253 characters), got {_clip(self.host)}")]
        if self.inverter_rating_w is not None and self.off_grid_reserve_w >= self.inverter_rating_w:
            return [(
                "off_grid_reserve_w",
                "must be less than gx.inverter_rating_w, or the heater never runs off-grid "
                f"(got {self.off_grid_reserve_w:g} >= {self.inverter_rating_w:g})",
            )]
        if self.reconnect_min_s > self.reconnect_max_s:
            return [(
                "reconnect_min_s",
                "must not exceed gx.reconnect_max_s "
                f"(got {self.reconnect_min_s} > {self.reconnect_max_s})",
            )]
        return []


@dataclass(frozen=True)
class PollConfig:
    """How often the GX is read and the controller steps."""

    #: Seconds between reads (the GX updates about 1/s).
    interval_s: float = setting(1.0, min=0.5, max=60.0)


@dataclass(frozen=True)
class ControlConfig:
    """How much of the surplus the heater may take (see pvheater/controller.py)."""

    #: No heating below this battery SoC.
    min_soc_pct: float = setting(95.0, min=10.0, max=100.0)
    #: After stopping for low SoC, heat again only above min_soc_pct + this.
    soc_hysteresis_pct: float = setting(
        2.0, min=0.0, max=20.0
    )
    #: Battery_first: heater takes only PV that would be curtailed or exported; heater_first: above min_soc_pct the
    #: heater also takes what the battery would charge.
    policy: str = setting(
        "battery_first",
        choices=("battery_first", "heater_first"),
    )
    #: Grid import tolerated before backing off.
    grid_import_allowance_w: float = setting(
        30.0, min=0.0, max=1000.0
    )
    #: Battery discharge tolerated before backing off.
    battery_discharge_allowance_w: float = setting(
        30.0, min=0.0, max=1000.0
    )
    #: Grid import while PV is still held back is the inverter catching up: back off only after this long.
    inverter_lag_s: float = setting(
        3.0,
        min=0.0, max=30.0,
    )
    #: With DC feed-in: export left unused as a margin.
    export_margin_w: float = setting(
        50.0, min=0.0, max=2000.0
    )
    #: Spare power smaller than this is left alone (no hunting).
    deadband_w: float = setting(40.0, min=0.0, max=500.0)
    #: A deficit (heater taking battery/grid power) smaller than this is left alone.
    deficit_tolerance_w: float = setting(
        20.0, min=0.0, max=500.0
    )
    #: Proportional gain (W per W of error).
    kp: float = setting(0.3, min=0.0, max=2.0)
    #: Integral gain (W per W of error per second).
    ki_per_s: float = setting(0.35, min=0.0, max=5.0)
    #: Fastest rise of the heater power (backing off is never limited).
    raise_w_per_s: float = setting(
        400.0, min=5.0, max=5000.0
    )
    #: Rise when hidden PV first shows (grows exponentially to raise_w_per_s).
    probe_start_w_per_s: float = setting(
        80.0, min=1.0, max=5000.0
    )
    #: Seconds of hidden PV until the rise reaches raise_w_per_s.
    probe_accel_s: float = setting(
        6.0, min=0.0, max=600.0
    )
    #: After probes of hidden PV hit the same limit, stay below it up to this long.
    probe_hold_s: float = setting(
        60.0, min=0.0, max=3600.0
    )
    #: Error assumed while PV is hidden (MPPT limited in absorption/float).
    probe_w: float = setting(
        400.0, min=10.0, max=5000.0
    )
    #: Stop wanting heat after this long without any surplus seen.
    idle_off_s: float = setting(
        900.0, min=0.0, max=7200.0
    )
    #: A house load change at least this big goes to (or comes from) the heater at once.
    feed_forward_min_w: float = setting(
        250.0,
        min=50.0, max=5000.0,
    )
    #: How long the load PV covered while held back is remembered (return there after a cloud).
    memory_s: float = setting(
        600.0,
        min=0.0, max=7200.0,
    )
    #: Returning to the remembered load, stay this far below it.
    restore_margin_w: float = setting(
        100.0, min=0.0, max=2000.0
    )
    #: A house load that ends within this long of starting is pulsing (a hob): not given back at once.
    pulse_s: float = setting(
        20.0,
        min=0.0, max=600.0,
    )


#: Pin names gpiozero takes on a Raspberry Pi: GPIO17 / BCM17 / 17 (Broadcom number), BOARD11 / J8:11 (header), WPI0.
_PIN_NAME = re.compile(r"(GPIO|BCM|WPI|BOARD)\d{1,2}|\d{1,2}|J8:\d{1,2}")


def pin_problem(pin: str) -> str | None:
    """Why a pin name cannot be a Raspberry Pi pin gpiozero knows (None: it looks right)."""
    if _PIN_NAME.fullmatch(pin):
        return None
    hint = ""
    compact = re.sub(r"[\s_-]+", "", pin).upper()
    if compact != pin and _PIN_NAME.fullmatch(compact):
        hint = f"; did you mean {compact}?"
    return f"{pin!r} is not a pin name gpiozero knows (use e.g. GPIO17, BCM17 or BOARD11){hint}"


def _broadcom_pin(pin: str) -> str | None:
    """'GPIO17' for GPIO17 / BCM17 / 17, else None (header names need the board's table)."""
    m = re.fullmatch(r"(?:GPIO|BCM)?(\d{1,2})", pin)
    return None if m is None else f"GPIO{int(m.group(1))}"


@dataclass(frozen=True)
class RelayConfig:
    """The relay that switches the heater circuit: the safety guard."""

    #: GPIO pin driving the relay board (GPIO or BOARD name).
    pin: str = setting("GPIO17")
    #: False for relay boards that switch on when the pin is low (many 5 V boards).
    active_high: bool = setting(
        True
    )
    #: Once on, stay on at least this long (unless unsafe).
    min_on_s: float = setting(60.0, min=0.0, max=3600.0)
    #: Once off, stay off at least this long.
    min_off_s: float = setting(120.0, min=0.0, max=3600.0)
    #: Most relay switchings (on and off edges) in any hour.
    max_switches_per_hour: int = setting(
        6, min=2, max=60
    )
    #: Fresh samples in a row that must want heat before the relay closes.
    confirm_samples: int = setting(
        3, min=2, max=60
    )
    #: Relay off when the newest GX data are older than this.
    stale_after_s: float = setting(
        5.0, min=1.0, max=300.0
    )
    #: The knob sits at zero this long before the relay opens (no current); data older than stale_after_s - this -
    #: poll.interval_s turn the knob to zero first.
    zero_settle_s: float = setting(
        1.0, min=0.1, max=30.0,
    )
    #: Optional local time HH:MM before which it never heats.
    window_start: str | None = setting(None)
    #: Optional local time HH:MM after which it never heats.
    window_end: str | None = setting(None)

    def check(self) -> list[tuple[str, str]]:
        """The pin must be a pin name; time windows must be HH:MM."""
        problems = []
        if (bad_pin := pin_problem(self.pin)) is not None:
            problems.append(("pin", bad_pin))
        for key in ("window_start", "window_end"):
            text = getattr(self, key)
            if text is not None:
                try:
                    parse_hhmm(text)
                except ValueError as exc:
                    problems.append((key, str(exc)))
        if not problems and self.window_start is not None and self.window_start == self.window_end:
            problems.append(("window_end", f"must differ from relay.window_start (both {self.window_end}); "
                             "for no time limit set both to null"))
        return problems


@dataclass(frozen=True)
class ServoConfig:
    """The servo that turns the SCR regulator's knob."""

    #: GPIO pin of the servo signal (GPIO or BOARD name; the seed wiring: GPIO21).
    pin: str = setting("GPIO21")
    #: Pulse width at min_angle_deg.
    min_pulse_width_ms: float = setting(1.0, min=0.3, max=3.0)
    #: Pulse width at max_angle_deg.
    max_pulse_width_ms: float = setting(2.0, min=0.3, max=3.0)
    #: Servo frame (20 ms = 50 Hz).
    frame_width_ms: float = setting(20.0, min=5.0, max=50.0)
    #: Servo angle at min_pulse_width_ms.
    min_angle_deg: float = setting(0.0, min=-360.0, max=360.0)
    #: Servo angle at max_pulse_width_ms.
    max_angle_deg: float = setting(180.0, min=-360.0, max=360.0)
    #: Servo angle where the regulator knob is at zero.
    knob_zero_deg: float = setting(0.0, min=-360.0, max=360.0)
    #: Servo angle where the knob is at full power.
    knob_full_deg: float = setting(180.0, min=-360.0, max=360.0)
    #: Smaller changes are not worth moving the servo.
    min_move_deg: float = setting(1.0, min=0.0, max=20.0)
    #: Stop the pulses this long after a move so the servo does not buzz.
    detach_after_s: float = setting(
        2.0, min=0.2, max=60.0
    )

    def check(self) -> list[tuple[str, str]]:
        """The pin must be a pin name; pulse widths and angles ordered; the knob in the servo's range."""
        if (bad_pin := pin_problem(self.pin)) is not None:
            return [("pin", bad_pin)]
        if self.min_pulse_width_ms >= self.max_pulse_width_ms:
            return [("min_pulse_width_ms", "must be less than servo.max_pulse_width_ms "
                     f"(got {self.min_pulse_width_ms} >= {self.max_pulse_width_ms})")]
        if self.max_pulse_width_ms >= self.frame_width_ms:
            return [("max_pulse_width_ms", "must be less than servo.frame_width_ms "
                     f"(got {self.max_pulse_width_ms} >= {self.frame_width_ms})")]
        if self.min_angle_deg == self.max_angle_deg:
            return [("max_angle_deg", f"must differ from servo.min_angle_deg (both {self.min_angle_deg})")]
        lo, hi = sorted((self.min_angle_deg, self.max_angle_deg))
        for key in ("knob_zero_deg", "knob_full_deg"):
            value = getattr(self, key)
            if not lo <= value <= hi:
                return [(key, f"must lie between servo.min_angle_deg and servo.max_angle_deg "
                         f"({lo}..{hi}), got {value}")]
        if self.knob_zero_deg == self.knob_full_deg:
            return [("knob_full_deg", f"must differ from servo.knob_zero_deg (both {self.knob_zero_deg})")]
        return []


@dataclass(frozen=True)
class PwmConfig:
    """A PWM -> 0-10 V converter module feeding an isolated 0-10 V control input (heater.actuator: pwm_0_10v)."""

    #: GPIO pin of the module's PWM input (GPIO or BOARD name).
    pin: str = setting("GPIO18")
    #: PWM frequency the module expects (most: 1-3 kHz).
    frequency_hz: float = setting(1000.0, min=10.0,
                                  max=100_000.0)
    #: True for modules whose output falls as the duty rises (open-collector input).
    inverted: bool = setting(False)
    #: Duty (0..1) where the regulator just gives no power (0 W end of the range).
    min_duty: float = setting(0.0,
                              min=0.0, max=1.0)
    #: Duty (0..1) where the regulator reaches full power.
    max_duty: float = setting(1.0, min=0.0, max=1.0)

    def check(self) -> list[tuple[str, str]]:
        """The duty range must rise."""
        if self.min_duty >= self.max_duty:
            return [("min_duty", f"must be less than pwm.max_duty (got {self.min_duty} >= {self.max_duty})")]
        return []


@dataclass(frozen=True)
class BurstConfig:
    """A zero-cross SSR switched on whole mains cycles, spread evenly (heater.actuator: ssr_burst)."""

    #: GPIO pin driving the SSR's input (GPIO or BOARD name).
    pin: str = setting("GPIO18")
    #: Mains frequency.
    mains_hz: int = setting(50, choices=(50, 60))
    #: Mains cycles per pattern period: the power resolution is one cycle of it.
    period_cycles: int = setting(
        50, min=2, max=1000
    )
    #: True when a HIGH pin turns the SSR on (the usual DC-input SSR).
    active_high: bool = setting(True)


#: The actuators heater.actuator can name.
ACTUATORS = ("servo", "pwm_0_10v", "ssr_burst")


@dataclass(frozen=True)
class HeaterConfig:
    """The water heater and what sets its power."""

    #: Heater power at full knob.
    max_power_w: float = setting(2000.0, min=100.0, max=10000.0)
    #: YAML written by `pvheater calibrate`; null: linear from the actuator's zero to its full end.
    calibration_file: str | None = setting(
        None
    )
    #: What sets the power: servo (turns the regulator's knob), pwm_0_10v, ssr_burst.
    actuator: str = setting(
        "servo", choices=ACTUATORS
    )
    #: With the tank full (the heater does not draw), the knob waits at this % of the heater's power.
    sense_power_pct: float = setting(
        10.0,
        min=1.0, max=50.0,
    )
    #: Open the relay when the tank has been full this long (0: keep it closed at the sense power).
    tank_full_open_after_s: float = setting(
        0.0,
        min=0.0, max=86400.0,
    )


@dataclass(frozen=True)
class CalibrationConfig:
    """How `pvheater calibrate-servo` sweeps the knob, when a step counts as settled, and its safety caps."""

    #: Servo step between measured angles.
    step_deg: float = setting(5.0, min=0.5, max=45.0)
    #: GX readings in a row that must agree before an angle counts as settled.
    settle_samples: int = setting(3,
                                  min=2, max=20)
    #: Readings agree when they lie within this many watts.
    settle_tolerance_w: float = setting(20.0, min=1.0,
                                        max=500.0)
    #: Discard the run when an angle has not settled after this long.
    settle_timeout_s: float = setting(20.0,
                                      min=2.0, max=300.0)
    #: Discard the run when the house load moved more than this (heater-off baseline before vs after).
    house_tolerance_w: float = setting(
        50.0,
        min=5.0, max=2000.0,
    )
    #: Stop the sweep at the angle where the heater takes more than this.
    max_test_power_w: float = setting(4000.0,
                                      min=50.0, max=10000.0)
    #: Abort (relay off, nothing written) after this long.
    max_duration_s: float = setting(600.0, min=30.0,
                                    max=3600.0)
    #: --limits: how fast the servo moves to the knob's ends and back.
    limits_speed_deg_s: float = setting(10.0,
                                        min=1.0, max=180.0)
    #: Pwm_0_10v and ssr_burst: step between measured inputs, as a fraction of the input's range.
    step_fraction: float = setting(
        0.025,
        min=0.01, max=0.5,
    )


@dataclass(frozen=True)
class GpioConfig:
    """Which gpiozero pin library drives the pins."""

    #: Null: gpiozero's choice; or lgpio, pigpio, rpigpio, native, mock.
    pin_factory: str | None = setting(
        None,
        choices=("lgpio", "pigpio", "rpigpio", "native", "mock"),
    )


@dataclass(frozen=True)
class LogConfig:
    """Where `pvheater run` logs, besides the console."""

    #: Rotating log file; null: console only.
    file: str | None = setting("pvheater.log")
    #: DEBUG, INFO, WARNING or ERROR.
    level: str = setting("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    #: Rotate the file at this size.
    max_bytes: int = setting(1_000_000, min=10_000, max=1_000_000_000)
    #: Rotated files kept.
    backups: int = setting(5, min=0, max=100)


@dataclass(frozen=True)
class HistoryConfig:
    """The SQLite history `pvheater run` keeps and `pvheater stats` reads."""

    #: SQLite file of ticks and events; null: no history.
    file: str | None = setting("pvheater.db")
    #: Rows and events older than this are deleted once a day.
    retention_days: int = setting(90, min=1, max=3650)
    #: A row at least this often, besides one on every change.
    row_every_s: float = setting(
        60.0, min=5.0, max=3600.0
    )


@dataclass(frozen=True)
class ServiceConfig:
    """How the running service can be found by `pvheater reload`."""

    #: `pvheater run` writes its process ID here for `pvheater reload`; null: none.
    pid_file: str | None = setting(
        "pvheater.pid"
    )
    #: Local control channel (a Unix socket, mode 0600) for `pvheater status`; null: none.
    socket_file: str | None = setting(
        "pvheater.sock"
    )


def parse_listen(text: str) -> tuple[str, int]:
    """(address, port) of "ADDRESS:PORT" ("[v6]:PORT" for IPv6); ValueError with a one-line message otherwise."""
    example = "expected ADDRESS:PORT with the address of this machine on the house network, e.g. 192.168.1.20:8080"
    host, sep, port_text = text.rpartition(":")
    if not sep and not text.isdigit():
        raise ValueError(f"{example} (no port; got {_clip(text)})")
    if not host:
        raise ValueError(f"{example} (a bare port would listen on every network; got {_clip(text)})")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{example} (the address must be an IP address, got {_clip(host)})") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{example} (the port must be 1 to 65535, got {_clip(port_text)})")
    return str(address), int(port_text)


@dataclass(frozen=True)
class WebConfig:
    """The optional status page (pvheater/web.py); off unless listen is set."""

    #: ADDRESS:PORT to serve the status page on (e.g. 192.168.1.20:8080); null: no page, nothing listens.
    listen: str | None = setting(None)
    #: File holding the token that enables the mode and boost controls; null: read-only (unless token_env).
    token_file: str | None = setting(None)
    #: Environment variable holding that token, instead of token_file.
    token_env: str | None = setting(None)
    #: Seconds between the page's refreshes of the live values.
    refresh_s: float = setting(2.0, min=1.0, max=60.0)
    #: Further names the page may be asked by (the Host header), e.g. [pvheater.fritz.box]; IP addresses,
    #: localhost and this machine's own name (with .local) are always accepted. null: no others.
    hostnames: tuple[str, ...] | None = setting(None)

    def check(self) -> list[tuple[str, str]]:
        """listen must be an explicit ADDRESS:PORT; one token source at most; host names without port or scheme."""
        for name in self.hostnames or ():
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", name):
                return [("hostnames", f"expected host names such as pvheater.fritz.box (no port, no scheme), "
                                      f"got {_clip(name)}")]
        if self.listen is not None:
            try:
                parse_listen(self.listen)
            except ValueError as exc:
                return [("listen", str(exc))]
        if self.token_file is not None and self.token_env is not None:
            return [("token_env", "set web.token_file or web.token_env, not both")]
        if self.token_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.token_env):
            return [("token_env", f"expected the name of an environment variable, got {_clip(self.token_env)}")]
        return []


@dataclass(frozen=True)
class SiteConfig:
    """Where the panels are: for the sun rule (no network) and the forecast."""

    #: Degrees north (south negative); null (with longitude_deg): no sun rule, no forecast.
    latitude_deg: float | None = setting(
        None, min=-90.0, max=90.0
    )
    #: Degrees east (west negative).
    longitude_deg: float | None = setting(None, min=-180.0, max=180.0)
    #: Never heat while the sun's centre stands lower than this (-0.833: between sunrise and sunset).
    min_sun_elevation_deg: float = setting(
        -0.833,
        min=-18.0, max=60.0,
    )

    def check(self) -> list[tuple[str, str]]:
        """Latitude and longitude come together."""
        if (self.latitude_deg is None) != (self.longitude_deg is None):
            missing = "latitude_deg" if self.latitude_deg is None else "longitude_deg"
            return [(missing, "set both site.latitude_deg and site.longitude_deg, or neither")]
        return []

    @property
    def located(self) -> bool:
        """True when latitude and longitude are set."""
        return self.latitude_deg is not None and self.longitude_deg is not None


@dataclass(frozen=True)
class PlaneConfig:
    """One plane of panels for the forecast."""

    #: Tilt: 0 horizontal .. 90 vertical.
    declination_deg: float = setting(35.0, min=0.0, max=90.0)
    #: -90 east, 0 south, 90 west, +-180 north.
    azimuth_deg: float = setting(0.0, min=-180.0, max=180.0)
    #: Peak power of the plane's modules, kW.
    kwp: float = setting(2.5, min=0.01, max=1000.0)


@dataclass(frozen=True)
class ForecastConfig:
    """Optional forecast.solar estimate and the forecast-aware battery reserve (see pvheater/forecast.py)."""

    #: Fetch a forecast and let it allow heating below control.min_soc_pct.
    enabled: bool = setting(False)
    #: The forecast.solar API (public, no key).
    base_url: str = setting("https://api.forecast.solar")
    #: The planes of panels; one request each.
    planes: tuple[PlaneConfig, ...] = setting((PlaneConfig(),))
    #: Local times HH:MM of the fetches, comma-separated (the cron job).
    fetch_times: str = setting(
        "05:20,10:20,13:20"
    )
    #: Never more requests than this in any hour (the public API allows 12).
    max_requests_per_hour: int = setting(
        6, min=1, max=12
    )
    #: Seconds to wait for an answer.
    timeout_s: float = setting(10.0, min=1.0, max=120.0)
    #: The last forecast and the request log; a restart reads it.
    cache_file: str = setting("forecast.json")
    #: A forecast older than this is not used.
    max_age_h: float = setting(12.0, min=1.0, max=48.0)
    #: Usable battery capacity.
    battery_capacity_wh: float = setting(4800.0, min=100.0, max=1_000_000.0)
    #: Early heating never below this SoC, whatever the forecast.
    early_min_soc_pct: float = setting(
        30.0, min=10.0, max=100.0
    )
    #: Only this share of the forecast energy is counted on.
    safety_factor: float = setting(0.7, min=0.1, max=1.0)
    #: House load assumed for the rest of the day.
    house_base_w: float = setting(250.0, min=0.0, max=10_000.0)
    #: The battery is planned full this long before the forecast's sunset.
    fill_margin_h: float = setting(
        2.0, min=0.0, max=8.0
    )
    #: Stop early heating while measured PV is below this share of the forecast.
    reality_factor: float = setting(
        0.8, min=0.1, max=1.5
    )
    #: Smoothing of measured and forecast PV for that comparison, minutes.
    reality_tau_min: float = setting(
        30.0, min=1.0, max=240.0
    )

    def check(self) -> list[tuple[str, str]]:
        """Fetch times must be HH:MM; at least one plane."""
        try:
            parse_fetch_times(self.fetch_times)
        except ValueError as exc:
            return [("fetch_times", str(exc))]
        if not self.planes:
            return [("planes", "expected at least one plane")]
        return []


#: Pattern of a 1-wire sensor id as the kernel names it under /sys/bus/w1/devices: family-serial.
W1_ID_PATTERN = re.compile(r"[0-9a-f]{2}-[0-9a-f]{12}")


@dataclass(frozen=True)
class TankSensorConfig:
    """The optional tank thermometer: a DS18B20 on the Pi's 1-wire bus (see pvheater/tank_sensor.py)."""

    #: Read the tank temperature from a DS18B20 (kernel w1-gpio/w1-therm).
    enabled: bool = setting(False)
    #: Sensor id such as 28-0000061a2b3c; null: the only one on the bus.
    id: str | None = setting(None)
    #: Where the kernel lists the 1-wire devices.
    base_dir: str = setting("/sys/bus/w1/devices")
    #: Stop heating at this tank temperature; set it a few K below the heater's thermostat.
    max_temp_c: float = setting(
        60.0,
        min=30.0, max=95.0,
    )
    #: After such a stop, heat again only below max_temp_c - this.
    hysteresis_k: float = setting(5.0, min=0.5,
                                  max=20.0)
    #: Seconds between readings (one takes the sensor ~0.75 s).
    read_interval_s: float = setting(10.0, min=1.0,
                                     max=600.0)

    def check(self) -> list[tuple[str, str]]:
        """The id must look like the kernel's name of a 1-wire device."""
        if self.id is not None and not W1_ID_PATTERN.fullmatch(self.id):
            return [("id", f"expected a 1-wire id such as 28-0000061a2b3c (ls {self.base_dir}), got {self.id!r}")]
        return []

    @property
    def stale_after_s(self) -> float:
        """A reading older than this counts as missing: three intervals, at least 30 s."""
        return max(3.0 * self.read_interval_s, 30.0)


@dataclass(frozen=True)
class TopupConfig:
    """Grid top-up when PV will not reach the daily goal: a deliberate exception to "never from the grid"."""

    #: Allow heating from the grid to reach the daily goal.
    enabled: bool = setting(False)
    #: Local time window HH:MM-HH:MM of the top-up (e.g. the night tariff).
    window: str = setting("22:00-06:00")
    #: Heater power of a top-up; null: heater.max_power_w.
    power_w: float | None = setting(None, min=100.0,
                                    max=10000.0)

    def check(self) -> list[tuple[str, str]]:
        """The window must be HH:MM-HH:MM."""
        try:
            parse_window(self.window)
        except ValueError as exc:
            return [("window", str(exc))]
        return []


@dataclass(frozen=True)
class LegionellaConfig:
    """A periodic hot cycle: every N days the tank must reach temp_c once."""

    #: Days between cycles; null or 0: off.
    every_days: int | None = setting(None, min=0, max=60)
    #: Temperature the tank must reach (tank sensor).
    temp_c: float = setting(60.0, min=50.0, max=80.0)
    #: The heater's thermostat is set to 60 degC or more: a tank-full event counts as a cycle.
    thermostat_at_least_60: bool = setting(
        False
    )

    @property
    def enabled(self) -> bool:
        """True when a cycle every N days is configured."""
        return bool(self.every_days)


@dataclass(frozen=True)
class HotWaterConfig:
    """Hot water guaranteed: mode, a daily goal, grid top-up, boost, legionella (see pvheater/control/hotwater.py)."""

    #: Mode at the first start (later the last mode set survives restarts): auto, solar_only or off.
    mode: str = setting(
        "auto",
        choices=("auto", "solar_only", "off"),
    )
    #: The daily goal's deadline HH:MM (hot by then); null: the end of topup.window.
    goal_time: str | None = setting(
        None
    )
    #: Goal met when this much heater energy was delivered.
    daily_kwh: float | None = setting(None, min=0.1,
                                      max=100.0)
    #: Goal met when the tank sensor reads this.
    goal_temp_c: float | None = setting(None, min=30.0, max=95.0)
    #: Tank volume: turns a temperature gap into kWh for the top-up plan.
    tank_volume_l: float | None = setting(
        None, min=10.0, max=5000.0
    )
    #: Local time HH:MM when pvheater decides whether PV will make the goal.
    decision_time: str = setting("15:00")
    #: Longest boost, also for a boost to a temperature, minutes.
    boost_max_min: float = setting(180.0, min=5.0,
                                   max=720.0)
    #: Keeps the mode and the last 60 degC date across restarts.
    state_file: str = setting("hot_water_state.json")
    #: Grid top-up.
    topup: TopupConfig = field(default_factory=TopupConfig)
    #: Legionella cycle.
    legionella: LegionellaConfig = field(default_factory=LegionellaConfig)

    def check(self) -> list[tuple[str, str]]:
        """Times must be HH:MM; with forced heating, decision, window and deadline must come in that order."""
        for key in ("goal_time", "decision_time"):
            text = getattr(self, key)
            if text is not None:
                try:
                    parse_hhmm(text)
                except ValueError as exc:
                    return [(key, str(exc))]
        if not (self.topup.enabled or self.legionella.enabled):
            return []
        start, end = parse_window(self.topup.window)
        deadline = self.goal_time if self.goal_time is not None else end.strftime("%H:%M")

        def after_deadline_s(t: str, end_side: bool = False) -> float:
            offset = (hhmm_seconds(t) - hhmm_seconds(deadline)) % 86400.0
            return 86400.0 if end_side and offset == 0.0 else offset

        decision = after_deadline_s(self.decision_time)
        if decision == 0.0:
            return [("decision_time", f"must differ from the goal's deadline {deadline}")]
        if not decision <= after_deadline_s(start.strftime("%H:%M")) < after_deadline_s(
            end.strftime("%H:%M"), end_side=True
        ):
            return [("topup.window", f"must lie between hot_water.decision_time and the goal's deadline "
                     f"({self.decision_time} .. {deadline}), got {self.topup.window}")]
        return []


#: An MQTT topic level as pvheater's own topics use it: no wildcards, no empty level, no leading or trailing '/'.
_TOPIC = re.compile(r"[^/#+\x00]+(/[^/#+\x00]+)*")
#: A node or object id as Home Assistant's discovery topic takes it.
_NODE_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class MqttConfig:
    """Optional MQTT publishing with Home Assistant discovery (see pvheater/mqtt.py; needs `pip install '.[mqtt]'`)."""

    #: Connect to the broker below and publish the state; off: no connection at all.
    enabled: bool = setting(False)
    #: Broker address or host name.
    host: str = setting("localhost")
    #: Broker port (1883 plain, 8883 TLS by convention).
    port: int = setting(1883, min=1, max=65535)
    #: Topics: <base_topic>/state, /availability, /result, /set/mode, /set/boost, /set/boost_minutes.
    base_topic: str = setting("pvheater")
    #: Home Assistant's discovery prefix; null: publish no discovery.
    discovery_prefix: str | None = setting("homeassistant")
    #: This installation's id in the discovery topics and unique ids (letters, digits, '_', '-').
    node_id: str = setting("pvheater")
    #: Broker user; null: none.
    username: str | None = setting(None)
    #: File holding the broker password (first line; keep it mode 0600); never put the password in this file.
    password_file: str | None = setting(None)
    #: Or: the environment variable holding the broker password.
    password_env: str | None = setting(None)
    #: Connect with TLS.
    tls: bool = setting(False)
    #: CA certificate file (PEM) for TLS; null: the system's CAs.
    ca_file: str | None = setting(None)
    #: Publish the state at least this often, besides on every tick that changed it.
    publish_every_s: float = setting(60.0, min=1.0, max=3600.0)
    #: MQTT keepalive: the broker declares pvheater gone (last will: offline) after 1.5 times this.
    keepalive_s: int = setting(30, min=5, max=3600)
    #: Longest wait between reconnect attempts (from 1 s, doubling).
    reconnect_max_s: float = setting(30.0, min=1.0, max=600.0)
    #: Boost length the boost button starts with until set/boost_minutes changes it.
    boost_minutes: float = setting(60.0, min=1.0, max=720.0)

    #: Keys refused with a reason (before the unknown-key message).
    REFUSED: typing.ClassVar[dict[str, str]] = {
        "password": "not allowed in the config file (it would sit there in clear); put the password in a file "
        "named by mqtt.password_file (mode 0600) or an environment variable named by mqtt.password_env",
    }

    def check(self) -> list[tuple[str, str]]:
        """Host, topics and ids well-formed; one password source; a CA file only with TLS."""
        if not valid_host(self.host):
            return [("host", f"expected an IP address or a host name, got {_clip(self.host)}")]
        for key in ("base_topic", "discovery_prefix"):
            value = getattr(self, key)
            if value is not None and not _TOPIC.fullmatch(value):
                return [(key, "expected topic levels separated by '/', without '+', '#', empty levels or a "
                         f"leading or trailing '/', got {_clip(value)}")]
        if not _NODE_ID.fullmatch(self.node_id):
            return [("node_id", f"expected letters, digits, '_' or '-', got {_clip(self.node_id)}")]
        if self.password_file is not None and self.password_env is not None:
            return [("password_env", "set mqtt.password_file or mqtt.password_env, not both")]
        if (self.password_file is not None or self.password_env is not None) and self.username is None:
            return [("username", "a password needs mqtt.username")]
        if self.ca_file is not None and not self.tls:
            return [("ca_file", "needs mqtt.tls: true")]
        return []


@dataclass(frozen=True)
class Config:
    """The whole pvheater configuration."""

    #: The Venus GX.
    gx: GxConfig = field(default_factory=GxConfig)
    #: Polling.
    poll: PollConfig = field(default_factory=PollConfig)
    #: Control.
    control: ControlConfig = field(default_factory=ControlConfig)
    #: Relay.
    relay: RelayConfig = field(default_factory=RelayConfig)
    #: Servo.
    servo: ServoConfig = field(default_factory=ServoConfig)
    #: Heater.
    heater: HeaterConfig = field(default_factory=HeaterConfig)
    #: Pwm_0_10v actuator.
    pwm: PwmConfig = field(default_factory=PwmConfig)
    #: Ssr_burst actuator.
    burst: BurstConfig = field(default_factory=BurstConfig)
    #: Calibrate-servo.
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    #: Pin library.
    gpio: GpioConfig = field(default_factory=GpioConfig)
    #: Logging.
    log: LogConfig = field(default_factory=LogConfig)
    #: History database.
    history: HistoryConfig = field(default_factory=HistoryConfig)
    #: Running as a service.
    service: ServiceConfig = field(default_factory=ServiceConfig)
    #: Status page.
    web: WebConfig = field(default_factory=WebConfig)
    #: Where the panels are.
    site: SiteConfig = field(default_factory=SiteConfig)
    #: PV forecast.
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    #: Tank thermometer.
    tank_sensor: TankSensorConfig = field(default_factory=TankSensorConfig)
    #: Hot water guaranteed.
    hot_water: HotWaterConfig = field(default_factory=HotWaterConfig)
    #: MQTT and Home Assistant.
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    def check(self) -> list[tuple[str, str]]:
        """Relay and servo on different pins; a GX that stops answering must fail a read before the data go stale."""
        relay_pin, servo_pin = _broadcom_pin(self.relay.pin), _broadcom_pin(self.servo.pin)
        if self.relay.pin == self.servo.pin or (relay_pin is not None and relay_pin == servo_pin):
            return [("servo.pin", f"must differ from relay.pin (both {relay_pin or self.relay.pin}): "
                     "the relay and the servo each need their own pin")]
        if self.gx.timeout_s >= self.relay.stale_after_s:
            return [("gx.timeout_s", "must be less than relay.stale_after_s, or a silent GX keeps the heater on "
                     f"past the stale limit (got {self.gx.timeout_s} >= {self.relay.stale_after_s})")]
        if self.forecast.enabled and not self.site.located:
            return [("forecast.enabled", "needs site.latitude_deg and site.longitude_deg")]
        return self._check_actuator() or self._check_hot_water()

    @property
    def actuator_pin_key(self) -> str:
        """The config key of the pin the selected actuator drives (servo.pin, pwm.pin or burst.pin)."""
        return {"servo": "servo.pin", "pwm_0_10v": "pwm.pin", "ssr_burst": "burst.pin"}[self.heater.actuator]

    @property
    def actuator_pin(self) -> str:
        """The pin the selected actuator drives."""
        section, name = self.actuator_pin_key.split(".")
        return str(getattr(getattr(self, section), name))

    def _check_actuator(self) -> list[tuple[str, str]]:
        """The selected actuator's pin must not be the relay's."""
        key, pin = self.actuator_pin_key, self.actuator_pin
        if pin == self.relay.pin:
            return [(key, f"must differ from relay.pin (both {pin!r}; the relay guards the {self.heater.actuator})")]
        return []

    def _check_hot_water(self) -> list[tuple[str, str]]:
        """Hot-water settings that need the tank sensor, or must stay below its limit."""
        hw, tank = self.hot_water, self.tank_sensor
        if hw.legionella.enabled and not (tank.enabled or hw.legionella.thermostat_at_least_60):
            return [("hot_water.legionella.every_days", "needs tank_sensor.enabled or "
                     "hot_water.legionella.thermostat_at_least_60: true (nothing else tells that the tank was hot)")]
        if hw.goal_temp_c is not None and not tank.enabled:
            return [("hot_water.goal_temp_c", "needs tank_sensor.enabled")]
        if tank.enabled:
            for key, value in (("goal_temp_c", hw.goal_temp_c), ("legionella.temp_c", hw.legionella.temp_c)):
                if value is not None and value > tank.max_temp_c and (key == "goal_temp_c" or hw.legionella.enabled):
                    return [(f"hot_water.{key}", f"must not exceed tank_sensor.max_temp_c, or it is never reached "
                             f"(got {value} > {tank.max_temp_c})")]
        return []


# --- loading -----------------------------------------------------------------


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return _clip(value)
    return repr(value)


def _clip(text: str, limit: int = 80) -> str:
    """repr() of a string, shortened to about limit characters (a message stays one readable line)."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def valid_host(host: str) -> bool:
    """True for an IPv4/IPv6 address or a host name that the resolver accepts (labels of 1..63 characters)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    name = host[:-1] if host.endswith(".") else host
    return 0 < len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in name.split("."))


def _convert(path: str, tp: Any, value: Any, meta: typing.Mapping[str, Any]) -> Any:
    """Check one value against its annotated type and limits; return it converted."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _convert(path, args[0], value, meta)
    if origin is tuple:
        if not isinstance(value, list) or not value:
            got = "an empty list" if value == [] else _describe(value)
            raise ConfigError(f"{path}: expected a non-empty list, got {got}")
        item_tp = typing.get_args(tp)[0]
        return tuple(_convert(f"{path}[{i}]", item_tp, item, {}) for i, item in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
        return _build(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected {_limits_text(tp, meta)}, got {_describe(value)}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected {_limits_text(tp, meta)}, got {_describe(value)}")
        try:
            value = float(value)
        except OverflowError:
            value = math.inf if value > 0 else -math.inf
        if not math.isfinite(value):  # NaN fails every comparison: it would switch the limit checks off
            raise ConfigError(f"{path}: expected a finite {_limits_text(tp, meta)[2:]}, got {_describe(value)}")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected {_limits_text(tp, meta)}, got {_describe(value)}")
    else:  # pragma: no cover - a schema error, not a user error
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if (lo is not None and value < lo) or (hi is not None and value > hi) or (
        choices is not None and value not in choices
    ):
        raise ConfigError(f"{path}: expected {_limits_text(tp, meta)}, got {_describe(value)}")
    return value


def _limits_text(tp: Any, meta: typing.Mapping[str, Any]) -> str:
    if meta.get("choices") is not None:
        return "one of " + ", ".join(str(c) for c in meta["choices"])
    lo, hi = meta.get("min"), meta.get("max")
    text = _type_name(tp)
    if lo is not None and hi is not None:
        return f"{text} from {lo} to {hi}"
    if lo is not None:
        return f"{text} >= {lo}"
    if hi is not None:
        return f"{text} <= {hi}"
    return text


def _build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    refused = getattr(cls, "REFUSED", {})
    for key in data:
        if key in refused:
            raise ConfigError(f"{prefix}.{key}: {refused[key]}" if prefix else f"{key}: {refused[key]}")
        if key not in known:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(
                f"{where}: unknown key{' (it belongs under gx:)' if where == 'unit_ids' else ''} "
                f"(expected one of: {', '.join(known)})"
            )
    kwargs = {}
    for name, fld in known.items():
        if name in data:
            path = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _convert(path, hints[name], data[name], fld.metadata)
    obj = cls(**kwargs)
    checker = getattr(obj, "check", None)
    if checker is not None:
        for key, message in checker():
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{where}: {message}")
    return obj


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """Validate a parsed config mapping and build the Config."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"top level: expected a mapping of sections, got {_describe(data)}")
    return _build(Config, data, "")


def default_config_path() -> Path:
    """./config.yaml when it exists, else the config.yaml shipped with pvheater."""
    local = Path("config.yaml")
    return local if local.is_file() else packaged_config()


#: Largest config or calibration file read (both are a few kB; this bounds memory before parsing).
MAX_YAML_BYTES = 1 << 20
#: Deepest nesting of mappings and lists accepted (the config needs 4; YAML's composer recurses per level).
MAX_YAML_DEPTH = 50
#: Longest integer scalar accepted, in characters (no setting needs more than 10 digits).
MAX_INT_CHARS = 30


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, deep nesting and absurdly long integers (with line numbers)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node, counting the nesting depth."""
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """Construct a mapping; a key given twice is an error naming both lines."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: the base class says so
                    continue
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_describe(key)} (first at line {first.line + 1})",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: Any) -> int:
        """An integer scalar, refused when longer than MAX_INT_CHARS characters."""
        text = self.construct_scalar(node)
        if len(text) > MAX_INT_CHARS:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of {len(text)} characters is too long", node.start_mark
            )
        return int(super().construct_yaml_int(node))


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _read_bounded(file: Path, kind: str) -> str:
    """The text of a regular file of at most MAX_YAML_BYTES, UTF-8; ConfigError in one line otherwise."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below as not a regular file.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"{file}: {kind} file not found") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read ({exc.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or other special file"
        raise ConfigError(f"{file}: {kind} file is {what}, expected a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_YAML_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{file}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{file}: {kind} file is larger than {MAX_YAML_BYTES // 1024} KiB; is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte 0x{data[exc.start]:02X} at offset {exc.start}); "
                          "save it as UTF-8") from None
    return text.removeprefix("\ufeff")


def read_yaml_file(file: Path, kind: str) -> Any:
    """Read and parse a YAML file; ConfigError naming the file (and line) when it cannot be."""
    text = _read_bounded(file, kind)
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)  # checks the characters first
        return loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise ConfigError(f"{file}: not valid YAML: character U+{code:04X} at offset {exc.position} "
                          "is not allowed") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{file}: not valid YAML{where}: {problem}") from None
    except RecursionError:  # pragma: no cover - bounded by MAX_YAML_DEPTH
        raise ConfigError(f"{file}: not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_config(path: Path | str | None = None) -> Config:
    """Read, parse and validate a config file; raise ConfigError with a one-line reason."""
    file = Path(path) if path is not None else default_config_path()
    data = read_yaml_file(file, "config")
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
