"""The first-run wizard behind `pvheater setup`: find the GX, its unit IDs, check the values, pins, a servo jog.

Plain terminal I/O (works over SSH): questions are lines read from the
terminal; the servo jog reads single keys in raw mode (termios), and the
terminal is restored on every exit. The relay is never closed: the jog drives
only the servo, the relay pin is held open from construction to release.
Nothing here talks to a simulator: the caller passes the GX's address.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import select
import shutil
import sys
import termios
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pvheater.actuators import Heater, Relay, Servo, make_pin_factory
from pvheater.commands.read_registers import chosen_unit_ids, discover
from pvheater.config import Config, GxConfig, UnitIds, config_from_dict
from pvheater.config_writer import config_text, write_config
from pvheater.control.measurements import Measurements
from pvheater.errors import ConfigError, DeviceAbsent, GxError, HardwareError
from pvheater.reader import GxReader
from pvheater.registers import RegisterMap, load_register_map

#: Where a GX announces itself on the local network (mDNS), tried when no address is given.
DEFAULT_GX_HOST = "venus.local"


class SetupAborted(Exception):
    """The user ended the wizard (q, Ctrl-C, Ctrl-D): nothing is written."""


@dataclass
class Answers:
    """What the wizard found and was told; `values()` gives them by config key path."""

    host: str = DEFAULT_GX_HOST
    port: int = 502
    unit_ids: dict[str, int | None] = field(default_factory=dict)
    relay_pin: str = "GPIO17"
    relay_active_high: bool = True
    servo_pin: str = "GPIO21"
    knob_zero_deg: float = 0.0
    knob_full_deg: float = 180.0
    max_power_w: float = 2000.0
    pin_factory: str | None = None

    def values(self) -> dict[str, Any]:
        """The chosen settings by dotted config key."""
        out: dict[str, Any] = {
            "gx.host": self.host,
            "gx.port": self.port,
            "relay.pin": self.relay_pin,
            "relay.active_high": self.relay_active_high,
            "servo.pin": self.servo_pin,
            "servo.knob_zero_deg": float(self.knob_zero_deg),
            "servo.knob_full_deg": float(self.knob_full_deg),
            "heater.max_power_w": float(self.max_power_w),
            "gpio.pin_factory": self.pin_factory,
        }
        out.update({f"gx.unit_ids.{role}": uid for role, uid in self.unit_ids.items()})
        return out

    def config(self) -> Config:
        """The chosen settings as a Config (everything else at its default); ConfigError when invalid."""
        data: dict[str, Any] = {}
        for key, value in self.values().items():
            node = data
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        return config_from_dict(data)


class Terminal:
    """Questions and answers on a terminal: lines for questions, raw single keys for the jog."""

    def __init__(self, stdin: TextIO, stdout: TextIO) -> None:
        self.stdin = stdin
        self.stdout = stdout

    def say(self, text: str = "") -> None:
        """Print a line."""
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def ask(self, question: str, default: str | None = None) -> str:
        """One answer line (the default when empty); SetupAborted on end of input."""
        prompt = f"{question} [{default}]: " if default is not None else f"{question}: "
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise SetupAborted("end of input")
        answer = line.strip()
        return answer if answer or default is None else default

    def yes(self, question: str, default: bool) -> bool:
        """A yes/no question."""
        while True:
            answer = self.ask(f"{question} ({'Y/n' if default else 'y/N'})", None).lower()
            if not answer:
                return default
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False
            self.say("  please answer y or n")


# --- the GX ----------------------------------------------------------------------


def gx_config(host: str, port: int, unit_ids: dict[str, int | None] | None = None) -> GxConfig:
    """A GxConfig for the wizard's reads (short timeout, no backoff to speak of)."""
    ids = UnitIds(**unit_ids) if unit_ids else UnitIds()
    return GxConfig(host=host, port=port, timeout_s=2.0, reconnect_min_s=0.1, reconnect_max_s=0.1, unit_ids=ids)


def try_gx(host: str, port: int, register_map: RegisterMap) -> str | None:
    """None when a Victron system service answers at host:port (unit 100), else why not, in one line."""
    try:
        with GxReader(gx_config(host, port), register_map) as reader:
            roles = reader.probe(100)
    except GxError as exc:
        return str(exc)
    if "system" not in roles:
        return f"{host}:{port} answers Modbus-TCP but no Victron system service at unit ID 100"
    return None


def find_gx(term: Terminal, host: str | None, port: int, register_map: RegisterMap) -> str:
    """The GX's address: the one given, else venus.local when it answers, else asked until one answers."""
    candidate = host or DEFAULT_GX_HOST
    while True:
        term.say(f"Looking for the GX at {candidate}:{port} ...")
        problem = try_gx(candidate, port, register_map)
        if problem is None:
            term.say(f"  found a Victron GX at {candidate}:{port}")
            return candidate
        term.say(f"  {problem}")
        answer = term.ask("GX address (IP or host name; q quits)", candidate)
        if answer.lower() == "q":
            raise SetupAborted("no GX")
        candidate = answer


def find_unit_ids(term: Terminal, host: str, port: int, register_map: RegisterMap) -> dict[str, int | None]:
    """Discover the unit IDs (the reader's probe, as `read-registers --discover`) and show them."""
    term.say("Finding the devices behind the GX (Modbus unit IDs) ...")
    with GxReader(gx_config(host, port), register_map) as reader:
        found = discover(reader, full=False)
    chosen: dict[str, int | None] = {}
    for role, units in chosen_unit_ids(found, register_map).items():
        chosen[role] = units[0] if units else None
        extra = f" (also answering: {', '.join(map(str, units[1:]))})" if len(units) > 1 else ""
        term.say(f"  {role:<7} {'not found' if not units else f'unit ID {units[0]}'}{extra}")
    if chosen.get("system") is None:
        raise GxError(f"GX at {host}:{port}: no system service answered; is it a Victron GX?")
    return chosen


#: The values pvheater needs: (label, how to get it from a snapshot, unit, required for heating at all).
NEEDED: tuple[tuple[str, Callable[[Measurements], float | None], str, bool], ...] = (
    ("battery SoC", lambda m: m.soc_pct, "%", True),
    ("battery power (+ = charging)", lambda m: m.battery_w, "W", False),
    ("grid power (+ = import)", lambda m: m.grid_w, "W", False),
    ("PV power", lambda m: m.pv_w, "W", False),
    ("AC consumption", lambda m: m.consumption_w, "W", False),
    ("MPPT state", lambda m: m.mppt_state, "", False),
    ("MPPT operation mode", lambda m: m.mppt_mode, "", False),
)


def check_values(term: Terminal, host: str, port: int, unit_ids: dict[str, int | None],
                 register_map: RegisterMap) -> bool:
    """Read one snapshot through the real reader and say, per needed value, whether it is there and plausible."""
    term.say("Reading the values pvheater uses ...")
    with GxReader(gx_config(host, port, unit_ids), register_map) as reader:
        try:
            m = reader.read()
        except DeviceAbsent as exc:
            term.say(f"  {exc}")
            return False
        problems = dict(reader.problems)
    ok = True
    for label, get, unit, required in NEEDED:
        value = get(m)
        if value is None:
            status = "MISSING or implausible" + (" -- pvheater will not heat without it" if required else "")
            ok = ok and not required
            shown = "-"
        else:
            status = "ok"
            shown = f"{value:.0f} {unit}".strip()
        term.say(f"  {label:<30} {shown:>10}  {status}")
    if m.grid_w is None and m.battery_w is None:
        term.say("  neither grid nor battery power: pvheater will not heat without one of them")
        ok = False
    for role, message in problems.items():
        term.say(f"  {role}: {message}")
    invalid = [reg.name for role, device in register_map.devices.items() if role not in m.absent_roles
               and unit_ids.get(role) is not None for reg in device.registers if m.get(reg.name) is None]
    if invalid:
        term.say(f"  not plausible or not sent (fine if that device lacks them): {', '.join(invalid)}")
    return ok


# --- pins ------------------------------------------------------------------------


def check_pins(relay_pin: str, servo_pin: str | None = None) -> str | None:
    """None when the pin names are valid (and differ), else the one-line reason, from pvheater's own pin checks."""
    cfg = Config()
    factory = make_pin_factory("mock")
    relay = servo = None
    try:
        relay = Relay(dataclasses.replace(cfg.relay, pin=relay_pin), factory)
        if servo_pin is not None:
            servo = Servo(dataclasses.replace(cfg.servo, pin=servo_pin), factory)
    except (HardwareError, ConfigError) as exc:  # a bad name or a pin in use is a ConfigError
        return str(exc)
    finally:
        if servo is not None:
            servo.close()
        if relay is not None:
            relay.close()
        factory.close()
    return None


def ask_pins(term: Terminal, answers: Answers) -> None:
    """Relay pin and level, servo pin: asked until pvheater's checks accept them."""
    term.say("The relay (the safety switch of the heater circuit) and the servo (turns the regulator's knob).")
    while True:
        pin = term.ask("Relay pin (GPIO name like GPIO17, or header pin like BOARD11)", answers.relay_pin)
        problem = check_pins(pin)
        if problem is None:
            answers.relay_pin = pin
            break
        term.say(f"  {problem}")
    while True:
        level = term.ask("Does the relay board close when its input is high or low? "
                         "(many 5 V boards: low)", "high" if answers.relay_active_high else "low").lower()
        if level in ("high", "h", "low", "l"):
            answers.relay_active_high = level.startswith("h")
            break
        term.say("  please answer high or low")
    while True:
        pin = term.ask("Servo pin", answers.servo_pin)
        problem = check_pins(answers.relay_pin, pin)
        if problem is None:
            answers.servo_pin = pin
            break
        term.say(f"  {problem}")
    while True:
        text = term.ask("Heater power at full knob, W", f"{answers.max_power_w:g}")
        try:
            power = float(text)
            config_from_dict({"heater": {"max_power_w": power}})
        except ValueError:
            term.say(f"  expected a number of watts, got {text!r}")
            continue
        except ConfigError as exc:
            term.say(f"  {exc}")
            continue
        answers.max_power_w = power
        break


# --- the servo jog -----------------------------------------------------------------

KEY_UP, KEY_DOWN, KEY_DONE, KEY_ABORT = "up", "down", "done", "abort"


class RawKeys:
    """Single keys from a terminal in raw mode (restored by close): + - and the arrows, letters, Enter, Ctrl-C."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved = termios.tcgetattr(fd)
        tty.setraw(fd, termios.TCSANOW)  # TCSANOW: keys typed ahead are kept

    def close(self) -> None:
        """Restore the terminal's mode."""
        termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)

    def _byte(self, timeout_s: float) -> bytes | None:
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        return os.read(self.fd, 1) if ready else None

    def key(self, timeout_s: float) -> str | None:
        """The next key as a name ('up', 'down', 'done', 'abort') or its character; None after timeout_s."""
        b = self._byte(timeout_s)
        if b is None:
            return None
        if b in (b"\x03", b"\x04", b""):
            return KEY_ABORT
        if b in (b"\r", b"\n"):
            return KEY_DONE
        if b in (b"+", b"="):
            return KEY_UP
        if b in (b"-", b"_"):
            return KEY_DOWN
        if b == b"\x1b":
            if self._byte(0.05) not in (b"[", b"O"):
                return None
            final = self._byte(0.05)
            return {b"A": KEY_UP, b"C": KEY_UP, b"B": KEY_DOWN, b"D": KEY_DOWN}.get(final or b"")
        return b.decode("latin-1").lower()


def jog(heater: Heater, cfg: Config, keys: RawKeys, out: TextIO,
        clock: Callable[[], float] = time.monotonic) -> tuple[float, float]:
    """Move the servo live with the keys; z / f mark the knob's zero and full; Enter ends. (zero, full) angles.

    The relay stays open throughout: only the servo is moved. SetupAborted on Ctrl-C / Ctrl-D.
    """
    lo, hi = sorted((cfg.servo.min_angle_deg, cfg.servo.max_angle_deg))
    zero, full = cfg.servo.knob_zero_deg, cfg.servo.knob_full_deg
    angle = zero
    step = 1.0
    heater.servo.move_to(angle, clock())
    s = cfg.servo

    def show(note: str = "") -> None:
        pulse_ms = s.min_pulse_width_ms + (angle - s.min_angle_deg) / (s.max_angle_deg - s.min_angle_deg) * (
            s.max_pulse_width_ms - s.min_pulse_width_ms)
        relay = "closed!" if heater.relay_on else "open"
        out.write(f"\r  servo {angle:6.1f} deg ({pulse_ms:.3f} ms)  step {step:g}  zero {zero:g}  full {full:g}  "
                  f"relay {relay}  {note}\x1b[K")
        out.flush()

    show()
    while True:
        key = keys.key(0.2)
        heater.tick(clock())
        if key is None:
            continue
        note = ""
        if key == KEY_ABORT:
            out.write("\r\n")
            raise SetupAborted("jog aborted")
        if key == KEY_DONE or key == "q":
            if zero == full:
                show("zero and full must differ")
                continue
            out.write("\r\n")
            out.flush()
            return zero, full
        if key in (KEY_UP, KEY_DOWN):
            target = min(hi, max(lo, angle + (step if key == KEY_UP else -step)))
            if target != angle:
                angle = target
                heater.servo.move_to(angle, clock())
            else:
                note = "end of the servo's range"
        elif key == "s":
            step = 5.0 if step == 1.0 else 1.0
        elif key == "z":
            zero = angle
            note = "zero marked"
        elif key == "f":
            full = angle
            note = "full marked"
        show(note)


def park(heater: Heater, angle_deg: float, wait_s: float = 1.0) -> None:
    """Turn the knob to angle_deg and give the servo up to wait_s to get there (relay stays open)."""
    heater.servo.move_to(angle_deg, time.monotonic())
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
        heater.tick(time.monotonic())


def servo_jog(term: Terminal, answers: Answers, fd: int) -> None:
    """Offer the jog; on yes drive the pins (relay held open) and take the marked knob angles."""
    if not term.yes("Move the servo now to find the knob's zero and full positions? The relay stays open", True):
        term.say("  knob angles keep their defaults; `pvheater calibrate-servo --limits` checks them later")
        return
    cfg = answers.config()
    try:
        heater = Heater.from_config(cfg)
    except (HardwareError, ConfigError) as exc:
        term.say(f"  cannot drive the pins here: {exc}")
        term.say("  knob angles keep their defaults; run `pvheater setup` on the Pi, or set them in the file")
        return
    try:
        term.say("  + / - or the arrow keys move the servo (s: step 1 or 5 deg); turn the knob to where the")
        term.say("  heater just gets nothing and press z, to full power and press f; Enter when done, Ctrl-C aborts.")
        keys = RawKeys(fd)
        try:
            zero, full = jog(heater, cfg, keys, term.stdout)
        finally:
            keys.close()
        answers.knob_zero_deg, answers.knob_full_deg = zero, full
        term.say(f"  knob zero at {zero:g} deg, full at {full:g} deg; parking the knob at zero")
        park(heater, zero, min(cfg.servo.detach_after_s, 1.0))
    finally:
        heater.close()  # relay open, pins released


# --- writing -------------------------------------------------------------------------


def choose_output(term: Terminal, out: Path) -> tuple[Path, bool] | None:
    """Where to write and whether to overwrite it: asks before replacing a file; None: write nothing."""
    while True:
        if not out.exists():
            return out, False
        if out.is_dir():
            term.say(f"  {out} is a directory")
        elif term.yes(f"{out} exists. Overwrite it", False):
            return out, True
        answer = term.ask("Write to which file instead? (empty: write nothing)", "")
        if not answer:
            return None
        out = Path(answer)


def run_wizard(term: Terminal, fd: int, *, host: str | None, port: int, out: Path, pin_factory: str | None,
               note: str = "") -> int:
    """The whole wizard; 0 when a config was written, 1 when nothing was."""
    register_map = load_register_map()
    answers = Answers(port=port, pin_factory=pin_factory)
    term.say("pvheater setup: a few questions, then a commented config.yaml. Ctrl-C stops, nothing is written.")
    answers.host = find_gx(term, host, port, register_map)
    answers.unit_ids = find_unit_ids(term, answers.host, port, register_map)
    if not check_values(term, answers.host, port, answers.unit_ids, register_map) and not term.yes(
        "Some values pvheater needs are missing. Write the config anyway", False
    ):
        raise SetupAborted("values missing")
    ask_pins(term, answers)
    servo_jog(term, answers, fd)
    target = choose_output(term, out)
    if target is None:
        term.say("Nothing written.")
        return 1
    path, overwrite = target
    header = (f"Written by `pvheater setup` on {datetime.date.today().isoformat()} for the GX at "
              f"{answers.host}:{port}.\n{(note + chr(10)) if note else ''}"
              "The values found or chosen are filled in; everything else is the shipped default.")
    text = config_text(answers.values(), header)
    write_config(path, text, answers.values(), overwrite=overwrite)
    flag = "" if path == Path("config.yaml") else f" --config {path}"
    exe = command_name()
    term.say(f"Written {path}. Next:")
    term.say(f"  {exe} read-registers{flag}              # every value pvheater reads")
    term.say(f"  {exe} calibrate-servo{flag} --limits    # the knob's ends, slowly, relay open")
    term.say(f"  {exe} run{flag}")
    return 0


def command_name() -> str:
    """How to call pvheater from this shell: `pvheater` when it is on PATH, else the venv's full path."""
    exe = Path(sys.executable).parent / "pvheater"
    if not exe.is_file() or shutil.which("pvheater") == str(exe):
        return "pvheater"
    home = Path.home()
    return f"~/{exe.relative_to(home)}" if exe.is_relative_to(home) else str(exe)
