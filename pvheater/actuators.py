"""The pins: relay, servo and the Heater port on top of them. The only module that imports gpiozero.

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
import warnings
from dataclasses import dataclass

import gpiozero
from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinInvalidPin, PinPWMUnsupported
from gpiozero.pins import Factory

from pvheater.calibration.curve import Calibration, calibration_from_config
from pvheater.config import Config, RelayConfig, ServoConfig
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


class Servo:
    """The knob's servo: moves only when worth it, detaches after each move, tracks its travel."""

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

    def in_range(self, angle_deg: float) -> bool:
        """True when the servo can reach angle_deg."""
        lo, hi = sorted((self._cfg.min_angle_deg, self._cfg.max_angle_deg))
        return lo <= angle_deg <= hi

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

    def close(self) -> None:
        """Stop the pulses and release the pin."""
        if not self._device.closed:
            self._device.detach()
            self._device.close()
        self.attached = False


class Heater:
    """The heater port: one apply(output, now_s) drives the relay and the knob in a safe order."""

    def __init__(
        self, relay: Relay, servo: Servo, calibration: Calibration, pin_factory: Factory | None = None
    ) -> None:
        """Take ownership of relay and servo (and of pin_factory, closed by close(), when given)."""
        for angle_deg, _ in calibration.points:
            if not servo.in_range(angle_deg):
                raise ConfigError(f"calibration angle {angle_deg} deg lies outside the servo's range")
        servo.zero_angle_deg = calibration.zero_angle_deg
        self.relay = relay
        self.servo = servo
        self.calibration = calibration
        self._pin_factory = pin_factory
        self._closed = False

    @classmethod
    def from_config(cls, config: Config, pin_factory: Factory | None = None) -> Heater:
        """Build the pins from the config; without pin_factory, make (and own) the configured one."""
        calibration = calibration_from_config(config)
        owned = pin_factory is None
        factory = make_pin_factory(config.gpio.pin_factory) if pin_factory is None else pin_factory
        relay: Relay | None = None
        try:
            relay = Relay(config.relay, factory)
            servo = Servo(config.servo, factory, zero_angle_deg=calibration.zero_angle_deg)
            try:
                return cls(relay, servo, calibration, factory if owned else None)
            except ConfigError as exc:
                servo.close()
                where = config.heater.calibration_file or "servo.knob_zero_deg/knob_full_deg"
                raise ConfigError(f"{where}: {exc}") from None
        except BaseException:
            if relay is not None:
                relay.close()
            if owned and factory is not gpiozero.Device.pin_factory:
                factory.close()
            raise

    @property
    def relay_on(self) -> bool:
        """True while the relay is closed."""
        return self.relay.is_on

    @property
    def servo_angle_deg(self) -> float | None:
        """The last commanded servo angle; None before the first move."""
        return self.servo.angle_deg

    @property
    def travel_deg(self) -> float:
        """Total degrees the servo was commanded to travel."""
        return self.servo.travel_deg

    @property
    def moves(self) -> int:
        """How many times the servo was moved."""
        return self.servo.moves

    def apply(self, output: HeaterOutput, now_s: float) -> None:
        """Set relay and knob: off = relay first then knob to zero; on = knob first then relay."""
        if output.relay_on:
            self.servo.move_to(self.calibration.angle_for(output.power_w), now_s)
            self.relay.set(True)
        else:
            self.relay.set(False)
            self.servo.move_to(self.calibration.zero_angle_deg, now_s)
        self.servo.tick(now_s)

    def tick(self, now_s: float) -> None:
        """Housekeeping between applies: detach the servo when its time has come."""
        self.servo.tick(now_s)

    def safe_off(self, now_s: float) -> None:
        """Relay open, then knob to zero."""
        self.apply(SAFE_OFF, now_s)

    def close(self) -> None:
        """Relay open, knob to zero, then release the pins.

        Releasing stops the pulses at once, so a knob not yet at zero may stop
        short (the relay is open, so the heater is off regardless). To park the
        knob, call safe_off() and keep calling tick() for detach_after_s first.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self.relay.set(False)
            self.servo.move_to(self.calibration.zero_angle_deg, self.servo.last_move_s or 0.0)
        finally:
            self.servo.close()
            self.relay.close()
            if self._pin_factory is not None and self._pin_factory is not gpiozero.Device.pin_factory:
                self._pin_factory.close()
