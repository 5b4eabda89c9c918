"""pwm_0_10v and ssr_burst on gpiozero mock pins: duty and frequency, the SSR's cycle sequence, zero on every off."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from pvheater.actuators import BurstOutput, Heater, PwmOutput, Relay, make_actuator
from pvheater.calibration.curve import Calibration, calibration_from_config
from pvheater.config import BurstConfig, Config, PwmConfig, config_from_dict
from pvheater.control.burst import BurstPattern, cycles_fired
from pvheater.control.messages import SAFE_OFF, HeaterOutput
from pvheater.errors import ConfigError

FRACTIONS = [0.0, 0.01, 0.02, 0.1, 0.25, 1 / 3, 0.37, 0.5, 0.63, 2 / 3, 0.9, 0.98, 0.99, 1.0]


@pytest.fixture
def factory() -> MockFactory:
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()
    f.close()


def config(actuator: str, **sections: dict) -> Config:
    return config_from_dict({"heater": {"actuator": actuator}, **sections})


# --- pwm_0_10v ------------------------------------------------------------------------------------


@pytest.mark.parametrize("inverted", [False, True])
@pytest.mark.parametrize("frequency_hz", [100.0, 1000.0, 2500.0])
def test_pwm_duty_and_frequency_across_the_range(factory: MockFactory, inverted: bool, frequency_hz: float) -> None:
    cfg = PwmConfig(pin="GPIO18", frequency_hz=frequency_hz, inverted=inverted)
    pwm = PwmOutput(cfg, factory)
    pin = factory.pin("GPIO18")
    assert pin.frequency == frequency_hz
    assert pin.state == (1.0 if inverted else 0.0)  # 0 V from the first instant
    for k in range(21):
        duty = k / 20
        pwm.set_input(duty, 0.0)
        assert pin.frequency == frequency_hz
        assert pin.state == pytest.approx(1.0 - duty if inverted else duty, abs=1e-12)
    pwm.close()


def test_pwm_maps_watts_through_the_duty_range_and_sends_zero_volts_for_zero(factory: MockFactory) -> None:
    cfg = config("pwm_0_10v", pwm={"min_duty": 0.1, "max_duty": 0.9}, heater={"actuator": "pwm_0_10v",
                                                                             "max_power_w": 2000.0})
    heater = Heater.from_config(cfg, pin_factory=factory)
    pin = factory.pin("GPIO18")
    relay = factory.pin("GPIO17")
    for power_w, duty in ((2000.0, 0.9), (1000.0, 0.5), (500.0, 0.3), (1.0, 0.1004)):
        heater.apply(HeaterOutput(relay_on=True, power_w=power_w), 0.0)
        assert pin.state == pytest.approx(duty, abs=1e-4)
        assert relay.state == 1
    heater.apply(HeaterOutput(relay_on=True, power_w=0.0), 1.0)
    assert pin.state == 0.0  # 0 W is 0 V, not the bottom of the module's range
    heater.close()
    assert pin.function == "input"


def test_pwm_rejects_a_duty_outside_0_1(factory: MockFactory) -> None:
    pwm = PwmOutput(PwmConfig(), factory)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        pwm.set_input(1.2, 0.0)
    pwm.close()


# --- the burst pattern (pure) -----------------------------------------------------------------------


def _blocks(seq: list[bool]) -> tuple[int, int]:
    """Longest run of True and of False in a sequence."""
    longest = {True: 0, False: 0}
    run, prev = 0, None
    for s in seq:
        run = run + 1 if s == prev else 1
        prev = s
        longest[s] = max(longest[s], run)
    return longest[True], longest[False]


def _needed(f: float) -> tuple[int, int]:
    """The longest on- and off-block an even spread of whole cycles needs at fraction f."""
    if f <= 0.5:
        return 1, math.ceil((1 - f) / f - 1e-9)
    return math.ceil(f / (1 - f) - 1e-9), 1


@pytest.mark.parametrize("f", [x for x in FRACTIONS if 0 < x < 1])
@pytest.mark.parametrize("period", [10, 50, 100])
def test_pattern_fires_the_fraction_within_one_cycle_spread_evenly(f: float, period: int) -> None:
    p = BurstPattern(period)
    p.request(f)
    seq = [p.next_cycle() for _ in range(20 * period)]
    k = math.floor(f * period + 1e-6)
    for start in range(0, len(seq), period):  # every period: the same whole cycles, less than one below the request
        assert sum(seq[start:start + period]) == k
        assert k <= f * period + 1e-6 < k + 1
    if 0 < k < period:
        on_max, off_max = _blocks(seq)  # across period boundaries too
        need_on, need_off = _needed(k / period)
        assert on_max <= need_on and off_max <= need_off
        assert p.stats.longest_on_block <= need_on and p.stats.longest_off_block <= need_off


def test_pattern_zero_full_a_rise_at_the_next_period_a_fall_at_once() -> None:
    p = BurstPattern(10)
    assert cycles_fired(p, 30) == 0
    p.request(1.0)
    assert cycles_fired(p, 10) == 10
    p.request(0.5)
    fired = [p.next_cycle() for _ in range(10)]
    assert sum(fired) == 5 and p.stats.switch_ons == 5  # the first of them ended the full block
    for _ in range(3):
        p.next_cycle()
    p.request(0.8)  # a rise mid-period waits for the period's end
    assert sum(p.next_cycle() for _ in range(7)) in (3, 4)
    assert sum(p.next_cycle() for _ in range(10)) == 8
    for _ in range(3):
        p.next_cycle()
    p.request(0.2)  # a fall takes effect at once
    assert sum(p.next_cycle() for _ in range(7)) in (1, 2)
    assert sum(p.next_cycle() for _ in range(10)) == 2
    p.request(0.0)  # zero at once
    assert cycles_fired(p, 5) == 0 and p.idle


@pytest.mark.parametrize("period", [10, 50, 60])
def test_pattern_never_fires_more_than_asked_and_whole_cycles_exactly(period: int) -> None:
    for k in range(period + 1):  # k / period (the calibration sweep's inputs, watts / full power): exactly k
        for f in (k / period, (k / period) * (1 - 1e-12), k * (1 / period)):
            p = BurstPattern(period)
            p.request(f)
            assert cycles_fired(p, 3 * period) == 3 * k
    for step in range(1, 400):  # the controller's fine steps: never a cycle above the request
        f = step / 400
        p = BurstPattern(period)
        p.request(f)
        fired = cycles_fired(p, 4 * period)
        assert fired <= 4 * f * period + 1e-9 and fired > 4 * (f * period - 1)


def test_hold_books_cycles_the_driver_missed() -> None:
    p = BurstPattern(50)
    p.request(0.5)
    cycles_fired(p, 10)
    p.hold(4, True)  # the pin stayed on 4 cycles while the thread slept
    fired = cycles_fired(p, 86)
    total_on = 5 + 4 + fired
    assert abs(total_on - 0.5 * 100) <= 1


# --- ssr_burst on the pin ---------------------------------------------------------------------------


@pytest.mark.parametrize("active_high", [True, False])
@pytest.mark.parametrize("f", FRACTIONS)
def test_burst_pin_sequence_reproduces_the_fraction(factory: MockFactory, f: float, active_high: bool) -> None:
    cfg = BurstConfig(pin="GPIO18", mains_hz=50, period_cycles=50, active_high=active_high)
    burst = BurstOutput(cfg, factory, threaded=False)
    pin = factory.pin("GPIO18")
    assert bool(pin.state) == (not active_high)  # SSR off from the first instant
    burst.set_input(f, 0.0)
    seq = []
    for _ in range(3 * 50):
        burst.run_cycles(1)
        seq.append(bool(pin.state) == active_high)
    k = math.floor(f * 50 + 1e-6)
    for start in range(0, len(seq), 50):  # never above the request, less than one cycle below it
        assert sum(seq[start:start + 50]) == k and k <= f * 50 + 1e-6 < k + 1
    if 0 < k < 50:
        on_max, off_max = _blocks(seq)
        need_on, need_off = _needed(k / 50)
        assert on_max <= need_on and off_max <= need_off
    # the pin changes only when the pattern does: its history has one entry per switch
    changes = sum(1 for a, b in itertools.pairwise(seq) if a != b)
    assert len(pin.states) - 1 <= changes + 2
    burst.close()
    assert pin.function == "input"


def test_burst_through_the_heater_and_zero_on_every_safety_off(factory: MockFactory) -> None:
    cfg = config("ssr_burst", heater={"actuator": "ssr_burst", "max_power_w": 2000.0})
    heater = Heater.from_config(cfg, pin_factory=factory, burst_thread=False)
    burst = heater.actuator
    assert isinstance(burst, BurstOutput)
    pin = factory.pin("GPIO18")
    heater.apply(HeaterOutput(relay_on=True, power_w=700.0), 0.0)
    assert burst.run_cycles(50) == 17  # 700 / 2000 x 50 = 17.5: rounded down
    assert factory.pin("GPIO17").state == 1
    for off in (SAFE_OFF, HeaterOutput(relay_on=False, power_w=900.0), HeaterOutput(relay_on=True, power_w=0.0)):
        heater.apply(HeaterOutput(relay_on=True, power_w=2000.0), 1.0)
        burst.run_cycles(3)
        assert pin.state == 1
        heater.apply(off, 2.0)
        assert pin.state == 0  # at once, not at the period's end
        assert burst.run_cycles(100) == 0
    heater.apply(HeaterOutput(relay_on=True, power_w=1900.0), 3.0)
    burst.run_cycles(2)
    heater.safe_off(4.0)
    assert pin.state == 0 and factory.pin("GPIO17").state == 0
    heater.close()


def test_burst_timing_thread_fires_on_the_clock_and_stops(factory: MockFactory) -> None:
    burst = BurstOutput(BurstConfig(pin="GPIO18", mains_hz=50, period_cycles=10), factory)
    pin = factory.pin("GPIO18")
    time.sleep(0.1)
    assert burst.pattern.stats.cycles == 0  # asleep while nothing is asked
    burst.set_input(0.5, 0.0)
    time.sleep(0.6)
    st = burst.pattern.stats
    assert st.cycles >= 15  # ~30 cycles of 20 ms, whatever the machine's load
    # late wake-ups are booked at the level the pin held and paid back over the next cycles
    assert abs(st.on_cycles - 0.5 * st.cycles) <= 0.1 * st.cycles + 2
    assert len(pin.states) > 5
    burst.set_input(0.0, 0.0)
    assert pin.state == 0
    time.sleep(0.1)
    burst.close()
    assert pin.function == "input"


# --- selection and config --------------------------------------------------------------------------


def test_make_actuator_follows_heater_actuator(factory: MockFactory) -> None:
    for kind, cls in (("pwm_0_10v", PwmOutput), ("ssr_burst", BurstOutput)):
        act = make_actuator(config(kind), factory, burst_thread=False)
        assert isinstance(act, cls) and act.kind == kind
        act.close()


def test_default_calibration_spans_each_actuators_input() -> None:
    assert calibration_from_config(config("pwm_0_10v", pwm={"min_duty": 0.2, "max_duty": 0.8})).points == (
        (0.2, 0.0), (0.8, 2000.0))
    assert calibration_from_config(config("ssr_burst")).points == ((0.0, 0.0), (1.0, 2000.0))


def test_a_servo_calibration_is_refused_for_another_actuator(tmp_path) -> None:
    f = tmp_path / "cal.yaml"
    f.write_text("points: [[20, 0], [160, 2000]]\n")
    cfg = config("pwm_0_10v", heater={"actuator": "pwm_0_10v", "calibration_file": str(f)})
    with pytest.raises(ConfigError, match=r"made for the servo, but heater\.actuator is pwm_0_10v"):
        calibration_from_config(cfg)


def test_calibration_outside_the_duty_range_is_refused(factory: MockFactory) -> None:
    relay = Relay(Config().relay, factory)
    pwm = PwmOutput(PwmConfig(), factory)
    with pytest.raises(ConfigError, match=r"calibration input 1\.5 duty lies outside the pwm_0_10v's range"):
        Heater(relay, pwm, Calibration(((0.0, 0.0), (1.5, 2000.0))))
    pwm.close()
    relay.close()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"heater": {"actuator": "triac"}}, "heater.actuator: expected one of servo, pwm_0_10v, ssr_burst"),
        ({"pwm": {"min_duty": 0.6, "max_duty": 0.4}}, "pwm.min_duty: must be less than pwm.max_duty"),
        ({"pwm": {"frequency_hz": 5}}, "pwm.frequency_hz: expected a number from 10.0 to 100000.0"),
        ({"burst": {"mains_hz": 55}}, "burst.mains_hz: expected one of 50, 60"),
        ({"burst": {"period_cycles": 1}}, "burst.period_cycles: expected an integer from 2 to 1000"),
        ({"heater": {"actuator": "ssr_burst"}, "burst": {"pin": "GPIO17"}}, "burst.pin: must differ from relay.pin"),
        ({"heater": {"actuator": "pwm_0_10v"}, "pwm": {"pin": "GPIO17"}}, "pwm.pin: must differ from relay.pin"),
    ],
)
def test_config_errors_are_one_line(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_unused_actuators_pin_may_equal_the_relays() -> None:
    assert config_from_dict({"pwm": {"pin": "GPIO17"}}).heater.actuator == "servo"
    assert replace(Config().heater).actuator == "servo"


# --- the calibration sweep's inputs -----------------------------------------------------------------


def test_sweep_steps_the_duty_range_and_whole_cycles_of_a_period() -> None:
    from pvheater.calibration.sweep import SweepSettings

    pwm = SweepSettings.from_config(config("pwm_0_10v", pwm={"min_duty": 0.1, "max_duty": 0.9}))
    duties = pwm.angles()
    assert duties[0] == 0.1 and duties[-1] == 0.9 and len(duties) == 41
    assert pwm.unit == "duty" and pwm.min_move_deg == 0.0
    burst = SweepSettings.from_config(config("ssr_burst", burst={"period_cycles": 50}))
    fractions = burst.angles()
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(abs(f * 50 - round(f * 50)) < 1e-9 for f in fractions)  # whole cycles of the period
    assert fractions == sorted(set(fractions))
    # the servo's steps are unchanged
    assert SweepSettings.from_config(Config()).angles() == [5.0 * k for k in range(37)]


@pytest.mark.parametrize("actuator", ["pwm_0_10v", "ssr_burst"])
def test_history_counts_the_power_of_each_actuator(factory: MockFactory, actuator: str, tmp_path) -> None:
    from pvheater.history import History, HistoryRecorder

    heater = Heater.from_config(config(actuator), pin_factory=factory, burst_thread=False)
    history = History(tmp_path / "h.db")
    recorder = HistoryRecorder(history, heater, lambda: 0.0)
    heater.apply(HeaterOutput(relay_on=True, power_w=1000.0), 0.0)
    assert recorder._heater_now() == pytest.approx(1000.0)
    heater.safe_off(1.0)
    assert recorder._heater_now() == 0.0
    heater.close()
    history.close()
