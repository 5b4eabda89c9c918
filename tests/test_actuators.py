"""Relay, servo and heater on gpiozero's mock pins: the physical result (pin levels, duty cycles, order)."""

from __future__ import annotations

import sys
import types
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from pvheater.actuators import Heater, Relay, Servo, make_pin_factory
from pvheater.calibration.curve import Calibration
from pvheater.config import Config, GpioConfig, HeaterConfig, RelayConfig, ServoConfig
from pvheater.control.messages import SAFE_OFF, HeaterOutput
from pvheater.errors import ConfigError, HardwareError

SERVO = ServoConfig(pin="GPIO21", min_move_deg=1.0, detach_after_s=2.0)
RELAY = RelayConfig(pin="GPIO17")


class LoggedPin(MockPWMPin):
    """A mock PWM pin that also writes each change to a log shared by all pins, so order across pins shows.

    This hooks gpiozero's private `_change_state` / `_set_frequency` because no public way gives the order
    across pins: MockPin's public `states` holds each pin's levels with the time since that pin's previous
    change only (no common clock to merge two pins' lists by), and frequency changes (pulses starting and
    stopping) are not recorded at all. The tests below that do not need the cross-pin order read the public
    `state` and `frequency` of the pins instead.
    """

    log: ClassVar[list[tuple[str, str, float | None]]] = []

    def _change_state(self, value: float) -> bool:
        changed = super()._change_state(value)
        if changed:
            LoggedPin.log.append((self.info.name, "state", value))
        return changed

    def _set_frequency(self, value: float | None) -> None:
        if value != self._frequency:
            LoggedPin.log.append((self.info.name, "frequency", value))
        super()._set_frequency(value)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pin_factory = MockFactory(pin_class=MockPWMPin)
    yield pin_factory
    pin_factory.close()
    pin_factory.reset()


@pytest.fixture
def logged() -> Iterator[MockFactory]:
    pin_factory = MockFactory(pin_class=LoggedPin)
    LoggedPin.log = []
    yield pin_factory
    pin_factory.close()
    pin_factory.reset()


def duty(pulse_ms: float, frame_ms: float = 20.0) -> float:
    return pulse_ms / frame_ms


# --- pin factory -----------------------------------------------------------------------------


def test_mock_pin_factory_has_pwm_pins() -> None:
    pin_factory = make_pin_factory("mock")
    try:
        assert isinstance(pin_factory, MockFactory)
        assert pin_factory.pin_class is MockPWMPin
    finally:
        pin_factory.close()


def test_missing_library_is_one_hardware_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pigpio", None)  # `import pigpio` now fails as if not installed
    monkeypatch.delitem(sys.modules, "gpiozero.pins.pigpio", raising=False)
    with pytest.raises(HardwareError) as info:
        make_pin_factory("pigpio")
    message = str(info.value)
    assert message.startswith("gpio.pin_factory pigpio: the library is not installed")
    assert "pip install pigpio" in message
    assert "\n" not in message


def test_pigpio_without_daemon(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """pigpio installed but pigpiod not running: pigpio prints a banner and returns a disconnected pi."""
    stub = types.ModuleType("pigpio")
    names = ["INPUT", "OUTPUT", "ALT0", "ALT1", "ALT2", "ALT3", "ALT4", "ALT5", "PUD_UP", "PUD_DOWN", "PUD_OFF"]
    for number, name in enumerate([*names, "EITHER_EDGE", "RISING_EDGE", "FALLING_EDGE"]):
        setattr(stub, name, number)
    stub.error = type("error", (Exception,), {})  # type: ignore[attr-defined]

    def pi(host: str, port: int) -> object:
        print("%%%%%%%%\nCan't connect to pigpio at localhost(8888)\n\nDid you start the pigpio daemon?\n%%%%%%%%")
        return types.SimpleNamespace(connected=False, sl=types.SimpleNamespace(s=None))

    stub.pi = pi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pigpio", stub)
    monkeypatch.delenv("PIGPIO_ADDR", raising=False)
    monkeypatch.delenv("PIGPIO_PORT", raising=False)
    monkeypatch.delitem(sys.modules, "gpiozero.pins.pigpio", raising=False)
    with pytest.raises(HardwareError) as info:
        make_pin_factory("pigpio")
    assert str(info.value) == (
        "gpio.pin_factory pigpio: cannot be used (failed to connect to localhost:8888); the pigpiod daemon must be "
        "running: `sudo systemctl enable --now pigpiod` (pigpio does not run on a Pi 5)"
    )
    assert capsys.readouterr().out == ""  # the banner is swallowed; the one line says it


@pytest.mark.parametrize("name", ["lgpio", "pigpio", "rpigpio", "native"])
def test_real_pin_libraries_fail_cleanly_off_a_pi(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """On this machine (no Pi, no daemon) each library really fails; the error is one line naming it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pin_factory = make_pin_factory(name)
        except HardwareError as exc:
            message = str(exc)
        else:  # pragma: no cover - only on a Raspberry Pi with that library working
            pin_factory.close()
            pytest.skip(f"{name} works here")
    assert message.startswith(f"gpio.pin_factory {name}: ")
    assert "\n" not in message
    assert ("install" in message) or ("needs" in message) or ("must be running" in message)
    assert caught == []
    assert capsys.readouterr().out == ""  # pigpio's banner does not leak to stdout


def test_library_hints() -> None:
    from pvheater.actuators import PIN_LIBRARIES

    assert "pip install lgpio" in PIN_LIBRARIES["lgpio"].install
    assert "python3-lgpio" in PIN_LIBRARIES["lgpio"].install
    assert "--system-site-packages" in PIN_LIBRARIES["lgpio"].install
    assert "sudo systemctl enable --now pigpiod" in PIN_LIBRARIES["pigpio"].runtime


def test_default_pin_factory_failure_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import gpiozero

    if gpiozero.Device.pin_factory is not None:  # pragma: no cover - someone set a global factory
        pytest.skip("a global pin factory is already set")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pin_factory = make_pin_factory(None)
        except HardwareError as exc:
            message = str(exc)
        else:  # pragma: no cover - on a Raspberry Pi gpiozero finds a library
            assert pin_factory is gpiozero.Device.pin_factory
            pytest.skip("gpiozero found a pin library here")
    assert message.startswith("gpio.pin_factory: no pin library works here (")
    assert "Falling back from lgpio" in message and "sudo apt install python3-lgpio" in message
    assert "\n" not in message
    assert caught == []  # gpiozero's fallback warnings are folded into the message
    assert capsys.readouterr().out == ""
    assert gpiozero.Device.pin_factory is None


def test_unknown_pin_library() -> None:
    with pytest.raises(HardwareError, match=r"^gpio.pin_factory: unknown pin library 'gpiod'"):
        make_pin_factory("gpiod")


# --- relay -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("active_high", "off_level", "on_level"), [(True, 0, 1), (False, 1, 0)])
def test_relay_is_off_from_construction(factory: MockFactory, active_high: bool, off_level: int, on_level: int) -> None:
    relay = Relay(replace(RELAY, active_high=active_high), factory)
    pin = factory.pin("GPIO17")
    assert pin.function == "output"
    assert pin.state == off_level
    assert relay.is_on is False
    # The pin history: the undriven input level (floating reads low), then at once the off level; never on.
    assert [s.state for s in pin.states] == ([0] if active_high else [0, 1])
    relay.set(True)
    assert pin.state == on_level and relay.is_on
    relay.set(False)
    assert pin.state == off_level and not relay.is_on
    relay.close()
    assert pin.function == "input"


@pytest.mark.parametrize(("name", "gpio"), [("GPIO17", "GPIO17"), ("BOARD11", "GPIO17"), ("BOARD40", "GPIO21")])
def test_relay_pin_names(factory: MockFactory, name: str, gpio: str) -> None:
    relay = Relay(replace(RELAY, pin=name), factory)
    relay.set(True)
    assert factory.pin(gpio).state == 1
    relay.close()


@pytest.mark.parametrize("pin", ["GPIO99", "pin seventeen", "BOARD1"])  # BOARD1 is 3V3 power
def test_invalid_relay_pin(factory: MockFactory, pin: str) -> None:
    with pytest.raises(ConfigError) as info:
        Relay(replace(RELAY, pin=pin), factory)
    assert str(info.value) == f"relay.pin: {pin!r} is not a valid pin name (use e.g. GPIO17 or BOARD11)"


# --- servo -----------------------------------------------------------------------------------------


def test_servo_sends_no_pulses_until_the_first_move(factory: MockFactory) -> None:
    servo = Servo(SERVO, factory)
    pin = factory.pin("GPIO21")
    assert pin.frequency is None and pin.state == 0
    assert servo.angle_deg is None and not servo.attached
    servo.close()


@pytest.mark.parametrize(("angle_deg", "pulse_ms"), [(0.0, 1.0), (90.0, 1.5), (180.0, 2.0), (45.0, 1.25)])
def test_servo_duty_cycle(factory: MockFactory, angle_deg: float, pulse_ms: float) -> None:
    servo = Servo(SERVO, factory)
    assert servo.move_to(angle_deg, 0.0)
    pin = factory.pin("GPIO21")
    assert pin.frequency == 50
    assert pin.state == pytest.approx(duty(pulse_ms))
    servo.close()


def test_servo_custom_pulses_and_board_pin(factory: MockFactory) -> None:
    cfg = replace(SERVO, pin="BOARD12", min_pulse_width_ms=0.5, max_pulse_width_ms=2.5, frame_width_ms=20.0)
    servo = Servo(cfg, factory)
    servo.move_to(0.0, 0.0)
    pin = factory.pin("GPIO18")
    assert pin.state == pytest.approx(duty(0.5))
    servo.move_to(90.0, 1.0)
    assert pin.state == pytest.approx(duty(1.5))
    servo.close()


def test_servo_detaches_after_detach_after_s(factory: MockFactory) -> None:
    servo = Servo(SERVO, factory)
    pin = factory.pin("GPIO21")
    servo.move_to(90.0, 100.0)
    servo.tick(101.9)
    assert pin.frequency == 50 and pin.state == pytest.approx(0.075)
    servo.tick(102.0)
    assert pin.frequency is None and pin.state == 0  # no pulses: no buzzing
    assert not servo.attached and servo.angle_deg == 90.0
    servo.move_to(120.0, 200.0)  # a new move attaches again
    assert pin.frequency == 50 and pin.state == pytest.approx(duty(1.0 + 120.0 / 180.0))
    servo.close()


def test_min_move_suppresses_tiny_moves(factory: MockFactory) -> None:
    servo = Servo(SERVO, factory)
    pin = factory.pin("GPIO21")
    servo.move_to(90.0, 0.0)
    assert not servo.move_to(90.6, 1.0)
    assert pin.state == pytest.approx(0.075) and servo.angle_deg == 90.0
    assert not servo.move_to(89.1, 2.0)  # compared with the last commanded angle, so drift cannot creep
    assert servo.move_to(91.0, 3.0)
    assert servo.angle_deg == 91.0
    assert servo.moves == 2 and servo.travel_deg == pytest.approx(1.0)
    servo.close()


def test_going_to_zero_always_moves(factory: MockFactory) -> None:
    servo = Servo(SERVO, factory)
    pin = factory.pin("GPIO21")
    servo.move_to(0.4, 0.0)  # the first move always happens
    assert servo.move_to(0.0, 1.0)  # 0.4 deg < min_move_deg, but it is the knob's zero
    assert pin.state == pytest.approx(duty(1.0))
    assert not servo.move_to(0.0, 2.0)  # already there: nothing sent, no re-attach
    servo.close()


def test_servo_refuses_angles_it_cannot_reach(factory: MockFactory) -> None:
    servo = Servo(SERVO, factory)
    with pytest.raises(ValueError, match="outside"):
        servo.move_to(190.0, 0.0)
    servo.close()


def test_invalid_servo_pin(factory: MockFactory) -> None:
    with pytest.raises(ConfigError, match=r"^servo.pin: 'GPIO77' is not a valid pin name"):
        Servo(replace(SERVO, pin="GPIO77"), factory)


# --- heater ------------------------------------------------------------------------------------------


def make_heater(pin_factory: MockFactory, calibration: Calibration | None = None, **relay: object) -> Heater:
    cal = calibration or Calibration.linear(SERVO.knob_zero_deg, SERVO.knob_full_deg, 2000.0)
    return Heater(Relay(replace(RELAY, **relay), pin_factory), Servo(SERVO, pin_factory), cal)


def test_heater_maps_power_to_duty_cycle(factory: MockFactory) -> None:
    heater = make_heater(factory)
    assert heater.servo_angle_deg is None and heater.relay_on is False
    heater.apply(HeaterOutput(True, 1000.0), 0.0)
    assert factory.pin("GPIO17").state == 1
    assert factory.pin("GPIO21").state == pytest.approx(0.075)  # 1000 of 2000 W: mid angle, 1.5 ms
    assert heater.relay_on and heater.servo_angle_deg == pytest.approx(90.0)
    heater.apply(HeaterOutput(True, 5000.0), 1.0)  # beyond the table: full knob
    assert factory.pin("GPIO21").state == pytest.approx(duty(2.0))
    heater.close()


def test_heater_on_order_knob_then_relay(logged: MockFactory) -> None:
    heater = make_heater(logged)
    LoggedPin.log.clear()
    heater.apply(HeaterOutput(True, 1000.0), 0.0)
    assert LoggedPin.log == [
        ("GPIO21", "frequency", 50),
        ("GPIO21", "state", pytest.approx(0.075)),
        ("GPIO17", "state", 1.0),
    ]
    heater.close()


@pytest.mark.parametrize("active_high", [True, False])
def test_heater_off_order_relay_then_knob(logged: MockFactory, active_high: bool) -> None:
    heater = make_heater(logged, active_high=active_high)
    heater.apply(HeaterOutput(True, 1000.0), 0.0)
    LoggedPin.log.clear()
    heater.apply(SAFE_OFF, 1.0)
    assert LoggedPin.log == [
        ("GPIO17", "state", 0.0 if active_high else 1.0),  # the relay opens first ...
        ("GPIO21", "state", pytest.approx(duty(1.0))),  # ... then the knob goes to zero
    ]
    heater.close()


def test_relay_on_with_zero_power_keeps_relay_and_zeroes_knob(factory: MockFactory) -> None:
    heater = make_heater(factory)
    heater.apply(HeaterOutput(True, 1000.0), 0.0)
    heater.apply(HeaterOutput(True, 0.0, "min on time: 50 s left"), 1.0)
    assert factory.pin("GPIO17").state == 1
    assert heater.servo_angle_deg == 0.0
    heater.close()


def test_idle_heater_does_not_buzz(logged: MockFactory) -> None:
    heater = make_heater(logged)
    heater.safe_off(0.0)  # the first command drives the knob to zero
    assert heater.servo_angle_deg == 0.0
    heater.safe_off(2.0)  # detach_after_s later: pulses stop
    assert logged.pin("GPIO21").frequency is None
    LoggedPin.log.clear()
    for t in range(3, 60):
        heater.safe_off(float(t))  # the service applies SAFE_OFF every tick while idle
    assert LoggedPin.log == []  # nothing re-attaches
    assert heater.moves == 1
    heater.close()


def test_heater_travel_and_moves(factory: MockFactory) -> None:
    heater = make_heater(factory)
    for t, power_w in enumerate([0.0, 1000.0, 1005.0, 1200.0, 0.0]):
        heater.apply(HeaterOutput(power_w > 0, power_w), float(t))
    # 0 -> 90 -> (90.45 skipped) -> 108 -> 0
    assert heater.moves == 4
    assert heater.travel_deg == pytest.approx(90.0 + 18.0 + 108.0)
    heater.close()


def test_heater_tick_detaches(factory: MockFactory) -> None:
    heater = make_heater(factory)
    heater.apply(HeaterOutput(True, 500.0), 10.0)
    heater.tick(11.0)
    assert factory.pin("GPIO21").frequency == 50
    heater.tick(12.0)
    assert factory.pin("GPIO21").frequency is None
    assert factory.pin("GPIO17").state == 1  # the relay is not touched by tick
    heater.close()


def test_reversed_knob(factory: MockFactory) -> None:
    heater = make_heater(factory, Calibration.linear(170.0, 10.0, 2000.0))
    heater.safe_off(0.0)
    pin = factory.pin("GPIO21")
    assert heater.servo_angle_deg == 170.0
    assert pin.state == pytest.approx(duty(1.0 + 170.0 / 180.0))
    heater.apply(HeaterOutput(True, 2000.0), 1.0)
    assert heater.servo_angle_deg == 10.0
    assert pin.state == pytest.approx(duty(1.0 + 10.0 / 180.0))
    heater.close()


def test_close_opens_relay_and_releases_pins(factory: MockFactory) -> None:
    heater = make_heater(factory, active_high=False)
    heater.apply(HeaterOutput(True, 1500.0), 0.0)
    relay_pin, servo_pin = factory.pin("GPIO17"), factory.pin("GPIO21")
    heater.close()
    # undriven input, off (active-low: high), on, off again on close, then released (the mock reads an
    # undriven pin as low; on the board its pull resistor keeps the relay open)
    assert [s.state for s in relay_pin.states] == [0, 1, 0, 1, 0]
    assert relay_pin.function == "input"
    assert servo_pin.frequency is None
    heater.close()  # twice is fine
    again = make_heater(factory)  # the pins are free again
    again.close()


def test_heater_rejects_calibration_beyond_servo_range(factory: MockFactory) -> None:
    relay, servo = Relay(RELAY, factory), Servo(SERVO, factory)
    with pytest.raises(ConfigError, match=r"calibration angle 200\.0 deg lies outside the servo's range"):
        Heater(relay, servo, Calibration(((0.0, 0.0), (200.0, 2000.0))))
    relay.close()
    servo.close()


def test_from_config_with_mock_library() -> None:
    config = Config(gpio=GpioConfig(pin_factory="mock"), heater=HeaterConfig(max_power_w=4000.0))
    heater = Heater.from_config(config)
    heater.apply(HeaterOutput(True, 2000.0), 0.0)
    assert heater.servo_angle_deg == pytest.approx(90.0)
    assert heater.relay_on
    heater.close()


def test_from_config_same_pin_twice_names_servo_pin_and_frees_relay(factory: MockFactory) -> None:
    config = Config(relay=RelayConfig(pin="GPIO21"), servo=ServoConfig(pin="GPIO21"))
    with pytest.raises(ConfigError) as info:
        Heater.from_config(config, factory)
    assert str(info.value) == "servo.pin: pin 'GPIO21' is already in use (relay.pin and servo.pin must differ)"
    Relay(RelayConfig(pin="GPIO21"), factory).close()  # the relay's pin was released again


def test_from_config_bad_relay_pin(factory: MockFactory) -> None:
    with pytest.raises(ConfigError, match=r"^relay.pin: 'GPIO40' is not a valid pin name"):
        Heater.from_config(Config(relay=RelayConfig(pin="GPIO40")), factory)


def test_from_config_calibration_file_beyond_servo_range(factory: MockFactory, tmp_path: Path) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text("points: [[0, 0], [200, 2000]]\n", encoding="utf-8")
    config = Config(heater=HeaterConfig(calibration_file=str(path)))
    with pytest.raises(ConfigError, match=r"cal\.yaml: calibration angle 200.0 deg lies outside"):
        Heater.from_config(config, factory)
    Relay(RELAY, factory).close()  # nothing left reserved
    Servo(SERVO, factory).close()


def test_the_real_servo_and_the_simulated_heater_share_the_small_move_rule(factory: MockFactory) -> None:
    from pvheater.sim.controller_strategy import SimHeater

    heater = make_heater(factory)
    sim = SimHeater(heater.calibration, SERVO.min_move_deg)
    sim.servo_angle_deg = None
    for t, power_w in enumerate([1000.0, 1005.0, 1010.0, 1030.0, 1029.0, 0.0, 3.0, 0.0, 2000.0]):
        output = HeaterOutput(True, power_w)
        heater.apply(output, float(t))
        sim.apply(output, float(t))
        assert heater.servo_angle_deg == sim.servo_angle_deg, power_w
    heater.close()
