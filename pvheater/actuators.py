"""The pins: the relay, the actuator that sets the power, and the Heater port on top. The only gpiozero module.

The actuator is one of (heater.actuator):

- `Servo` (servo): turns the SCR regulator's knob; its input is the servo angle.
- `PwmOutput` (pwm_0_10v): a PWM pin feeding a PWM -> 0-10 V module, which
  feeds a regulator's isolated 0-10 V control input; its input is the duty
  (0..1 of the module's output, 0 = 0 V), inverted on the pin when pwm.inverted.
- `BurstOutput` (ssr_burst): a zero-cross SSR switched on whole mains cycles
  by an evenly spread pattern (pvheater/control/burst.py); its input is the
  fraction of cycles fired. A timing thread sets the pin at each cycle, or
  (threaded=False) whoever calls `run_cycles` does, in simulated time.

Each takes the requested fraction of full power (`set_power_fraction`) and
maps it through its calibration (watts -> its input); a fraction of zero puts
its input at the zero end (the servo's zero angle, 0 % duty, no cycles).

Wiring and safety notes:

- The relay is constructed OFF (open) from the first instant for both board
  polarities: gpiozero's `initial_value=False` configures the pin as an
  output already at the inactive level (high for active-low boards).
- The servo sends no pulses until the first move (`initial_angle=None`), and
  stops them (`detach`) `detach_after_s` after its last move, so it does not
  buzz or hunt; the knob stays where it was put. `tick(now_s)` does that; the
  service loop calls it every interval (Heater.apply calls it too). No
  threads, no timers.
- Switching off: relay open first, then the knob to zero. Switching on: the
  knob to its angle first, then the relay closes.
- After close() the pins are released (inputs). Wire the relay board so that a
  released pin means "open" (most boards have a pull resistor for that).
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import gpiozero
from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinInvalidPin, PinPWMUnsupported
from gpiozero.pins import Factory

from pvheater.calibration.curve import Calibration, calibration_from_config
from pvheater.config import BurstConfig, Config, PwmConfig, RelayConfig, ServoConfig
from pvheater.control.burst import BurstPattern
from pvheater.control.messages import SAFE_OFF, HeaterOutput
from pvheater.control.servo import worth_moving
from pvheater.errors import ConfigError, HardwareError, PvHeaterError


@dataclass(frozen=True)
class _PinLibrary:
    module: str
    factory: str
    install: str
    runtime: str


#: Each pin library: where its gpiozero factory lives, how to install it, what it needs at run time.
PIN_LIBRARIES: dict[str, _PinLibrary] = {
    "lgpio": _PinLibrary(
        "gpiozero.pins.lgpio",
        "LGPIOFactory",
        "install it into the venv with `pip install lgpio` (where no wheel fits, pip builds it against the "
        "system's liblgpio: `sudo apt install swig liblgpio-dev`), or `sudo apt install python3-lgpio` and "
        "create the venv with `python3 -m venv --system-site-packages`",
        "it needs a Raspberry Pi's /dev/gpiochip* and a user in the gpio group",
    ),
    "pigpio": _PinLibrary(
        "gpiozero.pins.pigpio",
        "PiGPIOFactory",
        "install it into the venv with `pip install pigpio` and the daemon with `sudo apt install pigpiod`",
        "the pigpiod daemon must be running: `sudo systemctl enable --now pigpiod` (pigpio does not run on a Pi 5)",
    ),
    "rpigpio": _PinLibrary(
        "gpiozero.pins.rpigpio",
        "RPiGPIOFactory",
        "install it into the venv with `pip install RPi.GPIO` (on a Pi 5: `pip install rpi-lgpio` instead)",
        "RPi.GPIO runs only on a Raspberry Pi 4 or older (on a Pi 5 use lgpio)",
    ),
    "native": _PinLibrary(
        "gpiozero.pins.native",
        "NativeFactory",
        "it ships with gpiozero; reinstall gpiozero into the venv",
        "it needs a Raspberry Pi 4 or older with /dev/gpiomem",
    ),
}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _library_error(name: str, exc: BaseException) -> HardwareError:
    """One clear line: which pin library failed, why, and what to do."""
    lib = PIN_LIBRARIES[name]
    if isinstance(exc, ImportError):
        return HardwareError(f"gpio.pin_factory {name}: the library is not installed ({_one_line(exc)}); {lib.install}")
    return HardwareError(f"gpio.pin_factory {name}: cannot be used ({_one_line(exc)}); {lib.runtime}")


def make_pin_factory(name: str | None) -> Factory:
    """A gpiozero pin factory by name (None: gpiozero's default choice); HardwareError when unusable."""
    if name == "mock":
        from gpiozero.pins.mock import MockFactory, MockPWMPin

        return MockFactory(pin_class=MockPWMPin)
    if name is None:
        return _default_pin_factory()
    if name not in PIN_LIBRARIES:
        choices = ", ".join([*PIN_LIBRARIES, "mock"])
        raise HardwareError(f"gpio.pin_factory: unknown pin library {name!r} (expected one of {choices})")
    lib = PIN_LIBRARIES[name]
    # pigpio prints a multi-line banner to stdout when the daemon is not running; the error says it in one line.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module = __import__(lib.module, fromlist=[lib.factory])
            return getattr(module, lib.factory)()
        except Exception as exc:  # third-party libraries raise their own types (lgpio.error, RuntimeError, OSError)
            raise _library_error(name, exc) from None


def _default_pin_factory() -> Factory:
    """gpiozero's own choice (GPIOZERO_PIN_FACTORY, else lgpio, rpigpio, pigpio, native), without its warnings."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            gpiozero.Device.ensure_pin_factory()
        except BadPinFactory as exc:
            tried = "; ".join(_one_line(w.message) for w in caught if isinstance(w.message, Warning))
            detail = f" ({tried})" if tried else f" ({_one_line(exc)})"
            raise HardwareError(
                f"gpio.pin_factory: no pin library works here{detail}; on Raspberry Pi OS: `sudo apt install "
                f"python3-lgpio` and a venv made with `python3 -m venv --system-site-packages`; or set "
                f"gpio.pin_factory: mock to simulate"
            ) from None
        except Exception as exc:  # a factory named by GPIOZERO_PIN_FACTORY failed with its library's own error
            raise HardwareError(
                f"gpio.pin_factory: gpiozero's default pin library failed ({_one_line(exc)}); "
                "set gpio.pin_factory to lgpio, pigpio, rpigpio or native to see what it needs"
            ) from None
    factory = gpiozero.Device.pin_factory
    assert factory is not None  # ensure_pin_factory set it or raised
    return factory


def _pin_error(key: str, pin: str, exc: BaseException) -> PvHeaterError:
    """One line naming the config key of the pin that could not be used (a wrong name or pin: ConfigError, exit 2)."""
    if isinstance(exc, PinInvalidPin):
        return ConfigError(f"{key}: {pin!r} is not a valid pin name (use e.g. GPIO17 or BOARD11)")
    if isinstance(exc, GPIOPinInUse):
        return ConfigError(f"{key}: pin {pin!r} is already in use (relay.pin and servo.pin must differ)")
    if isinstance(exc, PinPWMUnsupported):
        return HardwareError(f"{key}: the pin library cannot do PWM on pin {pin!r}")
    return HardwareError(f"{key}: cannot use pin {pin!r} ({_one_line(exc)})")


class Relay:
    """The heater circuit's relay: open from construction on, for both board polarities."""

    def __init__(self, cfg: RelayConfig, pin_factory: Factory) -> None:
        try:
            self._device = gpiozero.OutputDevice(
                cfg.pin, active_high=cfg.active_high, initial_value=False, pin_factory=pin_factory
            )
        except Exception as exc:  # gpiozero and the pin libraries raise many types; all mean "pin unusable"
            raise _pin_error("relay.pin", cfg.pin, exc) from None

    @property
    def is_on(self) -> bool:
        """True while the relay is closed (heater circuit on)."""
        return bool(self._device.is_active)

    def set(self, on: bool) -> None:
        """Close (on) or open (off) the relay."""
        if on:
            self._device.on()
        else:
            self._device.off()

    def close(self) -> None:
        """Open the relay and release its pin."""
        if not self._device.closed:
            self._device.off()
            self._device.close()


class Actuator(Protocol):
    """The port every actuator offers: the requested fraction of full power in, its own input on the pin."""

    kind: str
    #: The unit of the actuator's input, for messages ("deg", "duty", "of cycles").
    unit: str

    @property
    def input_value(self) -> float | None:
        """The last commanded input (angle, duty, fraction of cycles); None before the first."""
        ...

    def use_calibration(self, calibration: Calibration) -> None:
        """Map watts through this calibration from now on; ConfigError when it leaves the input's range."""
        ...

    def set_power_fraction(self, fraction: float, now_s: float) -> None:
        """Set a fraction 0..1 of full power (0: the zero end of the input)."""
        ...

    def set_input(self, value: float, now_s: float) -> bool:
        """Command the input directly (the calibration sweep); True when the pin changed."""
        ...

    def tick(self, now_s: float) -> None:
        """Housekeeping between commands."""
        ...

    def wear(self) -> dict[str, float]:
        """The actuator's own wear figures so far."""
        ...

    def close(self) -> None:
        """Input to zero and the pin released."""
        ...


def _check_range(actuator: Actuator, calibration: Calibration, in_range: Callable[[float], bool]) -> None:
    """ConfigError when a calibration point's input lies outside what the actuator can be set to."""
    what = "angle" if actuator.kind == "servo" else "input"
    for value, _ in calibration.points:
        if not in_range(value):
            raise ConfigError(f"calibration {what} {value} {actuator.unit} lies outside the {actuator.kind}'s range")


def _power_input(calibration: Calibration, fraction: float) -> float:
    """The calibrated input for a fraction of the calibration's full power (zero end for <= 0 or NaN)."""
    if not fraction > 0:
        return calibration.zero_angle_deg
    return calibration.angle_for(fraction * calibration.max_power_w)


class Servo:
    """The knob's servo: moves only when worth it, detaches after each move, tracks its travel."""

    kind = "servo"
    unit = "deg"

    def __init__(self, cfg: ServoConfig, pin_factory: Factory, zero_angle_deg: float | None = None) -> None:
        self._cfg = cfg
        self.zero_angle_deg = cfg.knob_zero_deg if zero_angle_deg is None else zero_angle_deg
        try:
            self._device = gpiozero.AngularServo(
                cfg.pin,
                initial_angle=None,
                min_angle=cfg.min_angle_deg,
                max_angle=cfg.max_angle_deg,
                min_pulse_width=cfg.min_pulse_width_ms / 1000.0,
                max_pulse_width=cfg.max_pulse_width_ms / 1000.0,
                frame_width=cfg.frame_width_ms / 1000.0,
                pin_factory=pin_factory,
            )
        except Exception as exc:  # gpiozero and the pin libraries raise many types; all mean "pin unusable"
            raise _pin_error("servo.pin", cfg.pin, exc) from None
        self.angle_deg: float | None = None
        self.attached = False
        self.last_move_s: float | None = None
        self.travel_deg = 0.0
        self.moves = 0
        self.calibration = Calibration.linear(cfg.knob_zero_deg, cfg.knob_full_deg, 1.0)

    @property
    def input_value(self) -> float | None:
        """The last commanded angle."""
        return self.angle_deg

    def in_range(self, angle_deg: float) -> bool:
        """True when the servo can reach angle_deg."""
        lo, hi = sorted((self._cfg.min_angle_deg, self._cfg.max_angle_deg))
        return lo <= angle_deg <= hi

    def use_calibration(self, calibration: Calibration) -> None:
        """Map watts to angles through this calibration; its zero end becomes the zero angle."""
        _check_range(self, calibration, self.in_range)
        self.calibration = calibration
        self.zero_angle_deg = calibration.zero_angle_deg

    def set_power_fraction(self, fraction: float, now_s: float) -> None:
        """Move to the calibrated angle for a fraction of full power (small moves skipped)."""
        self.move_to(_power_input(self.calibration, fraction), now_s)

    def set_input(self, value: float, now_s: float) -> bool:
        """Command an angle (see move_to)."""
        return self.move_to(value, now_s)

    def move_to(self, angle_deg: float, now_s: float) -> bool:
        """Command an angle; skipped below min_move_deg unless it goes to the zero angle. True when moved."""
        if not self.in_range(angle_deg):
            raise ValueError(
                f"servo angle {angle_deg} outside {self._cfg.min_angle_deg}..{self._cfg.max_angle_deg} deg"
            )
        if not worth_moving(self.angle_deg, angle_deg, self.zero_angle_deg, self._cfg.min_move_deg):
            return False
        if self.angle_deg is not None:
            self.travel_deg += abs(angle_deg - self.angle_deg)
        self._device.angle = angle_deg
        self.angle_deg = angle_deg
        self.attached = True
        self.last_move_s = now_s
        self.moves += 1
        return True

    def tick(self, now_s: float) -> None:
        """Stop the pulses once detach_after_s has passed since the last move."""
        if self.attached and self.last_move_s is not None and now_s - self.last_move_s >= self._cfg.detach_after_s:
            self.detach()

    def detach(self) -> None:
        """Stop the pulses now (the servo holds by friction, no buzzing)."""
        self._device.detach()
        self.attached = False

    def wear(self) -> dict[str, float]:
        """Servo moves and degrees travelled."""
        return {"servo_moves": self.moves, "servo_travel_deg": self.travel_deg}

    def close(self) -> None:
        """Stop the pulses and release the pin."""
        if not self._device.closed:
            self._device.detach()
            self._device.close()
        self.attached = False


class _UnitInput:
    """What the actuators whose input is a number 0..1 (a duty, a fraction of cycles) share: range, calibration."""

    kind: str
    unit: str
    calibration: Calibration

    @property
    def input_value(self) -> float | None:
        """The last commanded input 0..1; None before the first."""
        raise NotImplementedError

    @property
    def angle_deg(self) -> float | None:
        """The calibration sweep's name for the last commanded input."""
        return self.input_value

    @staticmethod
    def in_range(value: float) -> bool:
        """True for an input 0..1."""
        return 0.0 <= value <= 1.0

    def use_calibration(self, calibration: Calibration) -> None:
        """Map watts to inputs through this calibration."""
        _check_range(self, calibration, self.in_range)
        self.calibration = calibration

    def set_power_fraction(self, fraction: float, now_s: float) -> None:
        """The calibrated input for a fraction of full power; exactly 0 (0 V, no cycles fired) for zero."""
        self.set_input(0.0 if not fraction > 0 else _power_input(self.calibration, fraction), now_s)

    def set_input(self, value: float, now_s: float) -> bool:
        """Set the input 0..1; True when it changed."""
        raise NotImplementedError

    def move_to(self, value: float, now_s: float) -> bool:
        """The calibration sweep's name for set_input."""
        return self.set_input(value, now_s)


class PwmOutput(_UnitInput):
    """A PWM pin feeding a PWM -> 0-10 V module: duty 0..1 of the module's output, inverted on the pin if asked."""

    kind = "pwm_0_10v"
    unit = "duty"

    def __init__(self, cfg: PwmConfig, pin_factory: Factory) -> None:
        self._cfg = cfg
        try:
            # active_high=False writes 1 - value: an inverted module sees "0 V" from the first instant too.
            self._device = gpiozero.PWMOutputDevice(
                cfg.pin, active_high=not cfg.inverted, initial_value=0.0, frequency=cfg.frequency_hz,
                pin_factory=pin_factory,
            )
        except Exception as exc:  # gpiozero and the pin libraries raise many types; all mean "pin unusable"
            raise _pin_error("pwm.pin", cfg.pin, exc) from None
        self.duty: float | None = None
        self.changes = 0
        self.calibration = Calibration.linear(cfg.min_duty, cfg.max_duty, 1.0)

    @property
    def input_value(self) -> float | None:
        """The last commanded duty (before inversion)."""
        return self.duty

    def set_input(self, value: float, now_s: float) -> bool:
        """Set the duty 0..1; True when it changed."""
        if not self.in_range(value):
            raise ValueError(f"pwm duty {value} outside 0..1")
        if value == self.duty:
            return False
        self._device.value = value
        self.duty = value
        self.changes += 1
        return True

    def tick(self, now_s: float) -> None:
        """Nothing to do: the module holds its output while the PWM runs."""

    def wear(self) -> dict[str, float]:
        """No moving part: only how often the duty changed."""
        return {"duty_changes": self.changes}

    def close(self) -> None:
        """Duty 0 (0 V), then release the pin."""
        if not self._device.closed:
            self._device.value = 0.0
            self._device.close()
        self.duty = 0.0


class BurstOutput(_UnitInput):
    """A zero-cross SSR on a pin, fired on whole mains cycles by an evenly spread pattern (see the module doc).

    threaded=True: a timing thread sets the pin at each mains cycle (asleep
    while nothing is asked); it never bursts missed cycles out after waking
    late, it books them at the level the pin held. threaded=False: nothing
    runs by itself; `run_cycles(n)` steps the pattern and the pin (simulated time).
    """

    kind = "ssr_burst"
    unit = "of cycles"

    def __init__(
        self,
        cfg: BurstConfig,
        pin_factory: Factory,
        *,
        threaded: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        try:
            self._device = gpiozero.DigitalOutputDevice(
                cfg.pin, active_high=cfg.active_high, initial_value=False, pin_factory=pin_factory
            )
        except Exception as exc:  # gpiozero and the pin libraries raise many types; all mean "pin unusable"
            raise _pin_error("burst.pin", cfg.pin, exc) from None
        self.cycle_s = 1.0 / cfg.mains_hz
        self.pattern = BurstPattern(cfg.period_cycles)
        self.calibration = Calibration.linear(0.0, 1.0, 1.0)
        self.fraction: float | None = None
        self.late_cycles = 0
        self._on = False
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="pvheater-ssr-burst", daemon=True)
            self._thread.start()

    @property
    def input_value(self) -> float | None:
        """The last commanded fraction of cycles."""
        return self.fraction

    def set_input(self, value: float, now_s: float) -> bool:
        """Ask for a fraction 0..1 of cycles from the next period on; zero stops firing at once."""
        if not self.in_range(value):
            raise ValueError(f"ssr_burst fraction {value} outside 0..1")
        with self._lock:
            changed = value != self.fraction
            self.fraction = value
            self.pattern.request(value)
            if value == 0.0:
                self._set_pin(False)
        if value > 0.0:
            self._wake.set()
        return changed

    def _set_pin(self, on: bool) -> None:
        if on != self._on and not self._device.closed:
            self._device.value = on
        self._on = on

    def run_cycles(self, cycles: int) -> int:
        """Step the pattern and the pin through whole cycles; how many were fired."""
        fired = 0
        with self._lock:
            for _ in range(cycles):
                on = self.pattern.next_cycle()
                self._set_pin(on)
                fired += on
        return fired

    @property
    def pin_on(self) -> bool:
        """True while the pin turns the SSR on."""
        return self._on

    def _run(self) -> None:
        """The timing thread: one pattern step per mains cycle on the monotonic clock."""
        next_s = self._clock()
        while not self._stop.is_set():
            if self.pattern.idle:
                self._wake.wait()
                self._wake.clear()
                next_s = self._clock()
                continue
            delay_s = next_s - self._clock()
            if delay_s > 0 and self._stop.wait(delay_s):
                break
            late = int((self._clock() - next_s) / self.cycle_s)
            if late > 0:  # woke late: those cycles passed at the level the pin held
                with self._lock:
                    self.pattern.hold(late, self._on)
                self.late_cycles += late
                next_s += late * self.cycle_s
            self.run_cycles(1)
            next_s += self.cycle_s

    def tick(self, now_s: float) -> None:
        """Nothing to do: the timing thread runs by itself."""

    def wear(self) -> dict[str, float]:
        """SSR switch-ons and the longest on- and off-blocks (cycles) while bursting."""
        st = self.pattern.stats
        return {
            "ssr_switch_ons": st.switch_ons, "cycles": st.cycles, "on_cycles": st.on_cycles,
            "longest_on_block": st.longest_on_block, "longest_off_block": st.longest_off_block,
        }

    def close(self) -> None:
        """Stop firing and the thread, pin off, then release it."""
        with self._lock:
            self.pattern.request(0.0)
            self.fraction = 0.0
            self._set_pin(False)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if not self._device.closed:
            self._device.off()
            self._device.close()


def make_actuator(config: Config, pin_factory: Factory, *, burst_thread: bool = True) -> Actuator:
    """The actuator heater.actuator names, on its pin (input at zero from the first instant)."""
    kind = config.heater.actuator
    if kind == "pwm_0_10v":
        return PwmOutput(config.pwm, pin_factory)
    if kind == "ssr_burst":
        return BurstOutput(config.burst, pin_factory, threaded=burst_thread)
    return Servo(config.servo, pin_factory)


class Heater:
    """The heater port: one apply(output, now_s) drives the relay and the actuator in a safe order."""

    def __init__(
        self, relay: Relay, actuator: Actuator, calibration: Calibration, pin_factory: Factory | None = None
    ) -> None:
        """Take ownership of relay and actuator (and of pin_factory, closed by close(), when given)."""
        actuator.use_calibration(calibration)
        self.relay = relay
        self.actuator = actuator
        self.calibration = calibration
        self._pin_factory = pin_factory
        self._closed = False

    @classmethod
    def from_config(cls, config: Config, pin_factory: Factory | None = None, *, burst_thread: bool = True) -> Heater:
        """Build the pins from the config; without pin_factory, make (and own) the configured one."""
        calibration = calibration_from_config(config)
        owned = pin_factory is None
        factory = make_pin_factory(config.gpio.pin_factory) if pin_factory is None else pin_factory
        relay: Relay | None = None
        try:
            relay = Relay(config.relay, factory)
            actuator = make_actuator(config, factory, burst_thread=burst_thread)
            try:
                return cls(relay, actuator, calibration, factory if owned else None)
            except ConfigError as exc:
                actuator.close()
                where = config.heater.calibration_file or "the default calibration"
                raise ConfigError(f"{where}: {exc}") from None
        except BaseException:
            if relay is not None:
                relay.close()
            if owned and factory is not gpiozero.Device.pin_factory:
                factory.close()
            raise

    @property
    def servo(self) -> Servo:
        """The servo, when the actuator is one (AttributeError otherwise)."""
        if not isinstance(self.actuator, Servo):
            raise AttributeError(f"the heater's actuator is {self.actuator.kind}, not a servo")
        return self.actuator

    @property
    def relay_on(self) -> bool:
        """True while the relay is closed."""
        return self.relay.is_on

    @property
    def servo_angle_deg(self) -> float | None:
        """The last commanded servo angle; None before the first move or without a servo."""
        return self.actuator.angle_deg if isinstance(self.actuator, Servo) else None

    @property
    def input_value(self) -> float | None:
        """The actuator's last commanded input (angle, duty, fraction of cycles): what the calibration maps to watts."""
        return self.actuator.input_value

    @property
    def travel_deg(self) -> float:
        """Total degrees the servo was commanded to travel (0 without a servo)."""
        return self.actuator.travel_deg if isinstance(self.actuator, Servo) else 0.0

    @property
    def moves(self) -> int:
        """How many times the servo was moved (0 without a servo)."""
        return self.actuator.moves if isinstance(self.actuator, Servo) else 0

    def apply(self, output: HeaterOutput, now_s: float) -> None:
        """Set relay and actuator: off = relay first then input to zero; on = input first then relay."""
        if output.relay_on:
            self.actuator.set_power_fraction(output.power_w / self.calibration.max_power_w, now_s)
            self.relay.set(True)
        else:
            self.relay.set(False)
            self.actuator.set_power_fraction(0.0, now_s)
        self.actuator.tick(now_s)

    def tick(self, now_s: float) -> None:
        """Housekeeping between applies: detach the servo when its time has come."""
        self.actuator.tick(now_s)

    def safe_off(self, now_s: float) -> None:
        """Relay open, then the actuator to zero."""
        self.apply(SAFE_OFF, now_s)

    def close(self) -> None:
        """Relay open, actuator to zero, then release the pins.

        Releasing stops a servo's pulses at once, so a knob not yet at zero may
        stop short (the relay is open, so the heater is off regardless). To
        park the knob, call safe_off() and keep calling tick() for
        detach_after_s first.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.relay.set(False)
            if isinstance(self.actuator, Servo):
                self.actuator.move_to(self.calibration.zero_angle_deg, self.actuator.last_move_s or 0.0)
            else:
                self.actuator.set_power_fraction(0.0, 0.0)
        finally:
            self.actuator.close()
            self.relay.close()
            if self._pin_factory is not None and self._pin_factory is not gpiozero.Device.pin_factory:
                self._pin_factory.close()
