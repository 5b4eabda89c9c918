"""The calibration's measurement: sweep the actuator's input, measure the heater on the GX at each step.

The names say angle and knob (the servo's words); for pwm_0_10v the input
swept is the duty from pwm.min_duty to pwm.max_duty, for ssr_burst the
fraction of mains cycles from 0 to 1, in steps of calibration.step_fraction
of that range.

`pvheater calibrate` (pvheater/commands/calibrate_servo.py) wires this
to the pins and the GX; everything here takes its hardware, its clock and its
`wait(seconds)` as arguments (a `Bench`), so tests run it in simulated time.

**Sweep.** With the relay open and the knob at zero, the AC consumption the GX
reports is read until it settles: the *baseline*. Then the relay closes and
the servo steps from `servo.knob_zero_deg` to `servo.knob_full_deg`; at each
angle the consumption is read every `poll.interval_s` until
`calibration.settle_samples` readings in a row lie within
`calibration.settle_tolerance_w`, and the heater's power is their mean minus
the baseline. At the end the relay opens, the knob returns to zero and the
baseline is read again: when the house load moved by more than
`calibration.house_tolerance_w` the run is discarded. Where the heater takes
more than `calibration.max_test_power_w` the sweep turns no further; after
`calibration.max_duration_s` it is aborted. Whatever happens, it ends with the
relay open and the knob at zero.

The fit of the measured points is in pvheater/calibration/fit.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pvheater.calibration.curve import input_range
from pvheater.config import Config
from pvheater.control.measurements import Measurements
from pvheater.errors import ConfigError, GxError, PvHeaterError

#: GX readings a manual step waits before it asks (the servo slews, a meter updates).
MANUAL_WAIT_READINGS = 2
#: How long --limits holds each end of the knob.
LIMITS_HOLD_S = 3.0


class CalibrationRefused(PvHeaterError):
    """The calibration did not start: the GX is silent or the battery too low. The relay never closed."""


class CalibrationDiscarded(PvHeaterError):
    """The calibration ran but its measurements cannot be trusted; nothing was written."""


class CalibrationAborted(PvHeaterError):
    """The calibration stopped half-way (GX failure, time cap); relay off, knob at zero, nothing written."""


class RelayPort(Protocol):
    """The relay as the calibration drives it."""

    def set(self, on: bool) -> None:
        """Close (on) or open (off) the relay."""


class ServoPort(Protocol):
    """The knob's servo as the calibration drives it."""

    angle_deg: float | None  # the last commanded angle

    def move_to(self, angle_deg: float, now_s: float) -> bool:
        """Command an angle."""

    def tick(self, now_s: float) -> None:
        """Housekeeping between moves (stop the pulses after a while)."""


@dataclass(frozen=True)
class Bench:
    """What a calibration drives and reads: relay, servo, the GX, and time (real or simulated)."""

    relay: RelayPort
    servo: ServoPort
    read: Callable[[], Measurements]
    clock: Callable[[], float]
    wait: Callable[[float], None]

    def pause(self, seconds: float) -> None:
        """Let time pass, then let the servo stop its pulses when due."""
        self.wait(seconds)
        self.servo.tick(self.clock())


@dataclass(frozen=True)
class SweepSettings:
    """The calibration settings in one place, taken from the config."""

    zero_deg: float
    full_deg: float
    step_deg: float
    interval_s: float
    settle_samples: int
    settle_tolerance_w: float
    settle_timeout_s: float
    house_tolerance_w: float
    max_test_power_w: float
    max_duration_s: float
    min_soc_pct: float
    limits_speed_deg_s: float
    min_move_deg: float
    #: The actuator swept (servo, pwm_0_10v, ssr_burst) and its input's unit.
    actuator: str = "servo"
    unit: str = "deg"
    #: ssr_burst: inputs are whole cycles of a period (1 / burst.period_cycles), so each period fires the same count
    #: and the meter's readings agree; 0: any input.
    quantum: float = 0.0

    def angles(self) -> list[float]:
        """The sweep's angles, no two closer than the servo moves (ssr_burst: whole cycles of a period)."""
        angles = sweep_angles(self.zero_deg, self.full_deg, self.step_deg, min_gap_deg=self.min_move_deg)
        if self.quantum <= 0:
            return angles
        whole = [round(round(a / self.quantum) * self.quantum, 6) for a in angles]
        return sorted(set(whole), key=whole.index)

    def show(self, value: float) -> str:
        """An input as the reports print it ('  45.0 deg', '0.350 duty')."""
        if self.unit == "deg":
            return f"{value:7.1f} deg"
        return f"{value:7.3f} {self.unit}"

    @classmethod
    def from_config(cls, cfg: Config) -> SweepSettings:
        """The settings of a Config; ConfigError when they do not fit together."""
        c = cfg.calibration
        if c.settle_timeout_s < (c.settle_samples + 1) * cfg.poll.interval_s:
            raise ConfigError(
                f"calibration.settle_timeout_s must allow settle_samples + 1 readings every poll.interval_s "
                f"(got {c.settle_timeout_s:g} s < ({c.settle_samples} + 1) x {cfg.poll.interval_s:g} s)"
            )
        actuator = cfg.heater.actuator
        if actuator == "servo" and c.step_deg <= cfg.servo.min_move_deg:
            raise ConfigError(
                f"calibration.step_deg must be larger than servo.min_move_deg, or the servo skips the steps "
                f"(got {c.step_deg:g} <= {cfg.servo.min_move_deg:g})"
            )
        zero, full = input_range(cfg)
        servo = actuator == "servo"
        return cls(
            zero_deg=zero,
            full_deg=full,
            step_deg=c.step_deg if servo else c.step_fraction * abs(full - zero),
            interval_s=cfg.poll.interval_s,
            settle_samples=c.settle_samples,
            settle_tolerance_w=c.settle_tolerance_w,
            settle_timeout_s=c.settle_timeout_s,
            house_tolerance_w=c.house_tolerance_w,
            max_test_power_w=c.max_test_power_w,
            max_duration_s=c.max_duration_s,
            min_soc_pct=cfg.control.min_soc_pct,
            limits_speed_deg_s=c.limits_speed_deg_s,
            min_move_deg=cfg.servo.min_move_deg if servo else 0.0,
            actuator=actuator,
            unit={"servo": "deg", "pwm_0_10v": "duty"}.get(actuator, "of cycles"),
            quantum=1.0 / cfg.burst.period_cycles if actuator == "ssr_burst" else 0.0,
        )


def sweep_angles(zero_deg: float, full_deg: float, step_deg: float, min_gap_deg: float = 0.0) -> list[float]:
    """Angles from the knob's zero end to its full end in steps of step_deg, both ends included.

    A last gap shorter than a quarter step (or than min_gap_deg) is not
    measured on its own: the last step is stretched to the full end instead.
    """
    if step_deg <= 0:
        raise ValueError(f"step_deg must be positive, got {step_deg}")
    span_deg = full_deg - zero_deg
    sign = 1.0 if span_deg > 0 else -1.0
    n = math.floor(abs(span_deg) / step_deg + 1e-9)
    angles = [zero_deg + sign * k * step_deg for k in range(n + 1)]
    if abs(angles[-1] - full_deg) > 1e-9:
        if abs(angles[-1] - full_deg) <= max(0.25 * step_deg, min_gap_deg) and len(angles) > 1:
            angles[-1] = full_deg  # a sliver of a step: end exactly at the knob's full end
        else:
            angles.append(full_deg)
    return [round(a, 6) for a in angles]


# --- what the GX shows of the heater ------------------------------------------------

#: Sources of the heater's power: the GX's AC consumption (L1-L3), else the MultiPlus' AC output.
SOURCE_CONSUMPTION = "ac_consumption"
SOURCE_AC_OUT = "vebus_ac_out"
SOURCE_TEXT = {
    SOURCE_CONSUMPTION: "AC consumption (system /Ac/Consumption L1-L3)",
    SOURCE_AC_OUT: "VE.Bus AC-out (vebus /Ac/Out L1-L3)",
}


def _ac_out_w(m: Measurements) -> float | None:
    phases = [m.get(f"vebus_ac_out_l{n}_w") for n in (1, 2, 3)]
    valid = [p for p in phases if p is not None]
    return sum(valid) if valid else None


def power_source(m: Measurements) -> str | None:
    """Which GX value carries the heater's load: AC consumption, else VE.Bus AC-out; None when neither."""
    if m.consumption_w is not None:
        return SOURCE_CONSUMPTION
    if _ac_out_w(m) is not None:
        return SOURCE_AC_OUT
    return None


def load_w(m: Measurements, source: str) -> float:
    """The AC load (house + heater) a snapshot shows on source; CalibrationAborted when it went missing."""
    value = m.consumption_w if source == SOURCE_CONSUMPTION else _ac_out_w(m)
    if value is None:
        raise CalibrationAborted(f"the GX stopped reporting {SOURCE_TEXT[source]}")
    return value


def check_soc(m: Measurements, min_soc_pct: float) -> None:
    """CalibrationRefused when the battery SoC is unknown or below min_soc_pct."""
    soc = m.soc_pct
    if soc is None:
        raise CalibrationRefused("the GX reports no battery SoC (no system or BMS value); cannot check it is charged")
    if soc < min_soc_pct:
        raise CalibrationRefused(
            f"battery SoC {soc:g} % is below control.min_soc_pct ({min_soc_pct:g} %); "
            "calibrate when the battery is charged"
        )


def check_ready(m: Measurements, min_soc_pct: float) -> str:
    """The power source to measure on; CalibrationRefused when the battery is low or no load value is read."""
    check_soc(m, min_soc_pct)
    source = power_source(m)
    if source is None:
        raise CalibrationRefused(
            "the GX reports neither AC consumption nor VE.Bus AC-out, so the heater cannot be measured; "
            "use --manual and read the watts on a meter"
        )
    return source


# --- settling ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """A settled value: the mean of the last readings that agreed, all readings taken, and how long it took."""

    value_w: float
    readings_w: tuple[float, ...]
    elapsed_s: float


def settle(
    sample: Callable[[], float],
    bench: Bench,
    settings: SweepSettings,
    what: str,
    deadline_s: float | None = None,
) -> Settled:
    """Read every interval until settle_samples readings agree within the tolerance; raise after the timeout.

    CalibrationDiscarded when `what` has not settled within settle_timeout_s;
    CalibrationAborted when the run's deadline passes first.
    """
    start_s = bench.clock()
    readings: list[float] = []
    n = settings.settle_samples
    while True:
        bench.pause(settings.interval_s)
        readings.append(sample())
        recent = readings[-n:]
        if len(recent) == n and max(recent) - min(recent) <= settings.settle_tolerance_w:
            return Settled(sum(recent) / n, tuple(readings), bench.clock() - start_s)
        now_s = bench.clock()
        if deadline_s is not None and now_s >= deadline_s:
            raise CalibrationAborted(
                f"the calibration took longer than calibration.max_duration_s ({settings.max_duration_s:g} s)"
            )
        if now_s - start_s >= settings.settle_timeout_s:
            shown = ", ".join(f"{r:.0f}" for r in readings[-2 * n:])
            raise CalibrationDiscarded(
                f"{what} did not settle within calibration.settle_timeout_s ({settings.settle_timeout_s:g} s): "
                f"the last readings ({shown} W) vary by more than calibration.settle_tolerance_w "
                f"({settings.settle_tolerance_w:g} W); is the house load steady?"
            )


# --- the automatic sweep -------------------------------------------------------------


@dataclass(frozen=True)
class SweepPoint:
    """One measured angle: the heater's power, the GX value it came from, and the time to settle."""

    angle_deg: float
    power_w: float
    load_w: float | None = None
    settle_s: float | None = None


@dataclass(frozen=True)
class Sweep:
    """The measurements of one calibration run, before the fit."""

    points: tuple[SweepPoint, ...]
    method: str  # "sweep" or "manual"
    source: str | None = None
    baseline_start_w: float | None = None
    baseline_end_w: float | None = None
    soc_pct: float | None = None
    stopped_at_cap: bool = False
    duration_s: float = 0.0


class _OverCap(Exception):
    """Internal: a reading showed the heater above max_test_power_w."""

    def __init__(self, power_w: float) -> None:
        super().__init__(f"{power_w:.0f} W")
        self.power_w = power_w


def safe_off(bench: Bench, zero_deg: float) -> None:
    """Relay open first, then the knob to zero."""
    try:
        bench.relay.set(False)
    finally:
        bench.servo.move_to(zero_deg, bench.clock())


def _move(bench: Bench, angle_deg: float) -> None:
    """Move to a sweep angle; CalibrationAborted if the servo skipped it (a step below servo.min_move_deg)."""
    if not bench.servo.move_to(angle_deg, bench.clock()) and angle_deg != bench.servo.angle_deg:
        raise CalibrationAborted(f"the servo skipped the move to {angle_deg:g} deg (smaller than servo.min_move_deg)")


def preflight(bench: Bench, settings: SweepSettings, manual: bool = False) -> Measurements:
    """Read the GX once and check the battery (and, unless manual, that the heater can be measured).

    CalibrationRefused when the GX does not answer, the SoC is below
    min_soc_pct or unknown, or no AC load value is read. Touches no pin.
    """
    try:
        first = bench.read()
    except GxError as exc:
        raise CalibrationRefused(str(exc)) from None
    if manual:
        check_soc(first, settings.min_soc_pct)
    else:
        check_ready(first, settings.min_soc_pct)
    return first


def run_sweep(
    bench: Bench,
    settings: SweepSettings,
    report: Callable[[str], None] = print,
    first: Measurements | None = None,
) -> Sweep:
    """The automatic sweep (see the module doc); the relay is open and the knob at zero when it returns or raises.

    `first` is the reading preflight() checked; without it the sweep runs the preflight itself.
    """
    start_s = bench.clock()
    deadline_s = start_s + settings.max_duration_s
    first = preflight(bench, settings) if first is None else first
    source = check_ready(first, settings.min_soc_pct)
    report(f"battery SoC {first.soc_pct:g} %; measuring the heater as the rise in {SOURCE_TEXT[source]}")
    zero = settings.zero_deg

    def load() -> float:
        return load_w(bench.read(), source)

    try:
        safe_off(bench, zero)
        before = settle(load, bench, settings, "the heater-off baseline", deadline_s)
        report(f"baseline, heater off: {before.value_w:.0f} W")
        bench.relay.set(True)
        points, stopped_at_cap = _step_through_angles(bench, settings, load, before.value_w, deadline_s, report)
        safe_off(bench, zero)
        after = settle(load, bench, settings, "the heater-off baseline at the end", deadline_s)
        report(f"baseline, heater off again: {after.value_w:.0f} W")
    except GxError as exc:
        raise CalibrationAborted(f"the GX failed during the sweep: {exc}") from None
    finally:
        safe_off(bench, zero)
    _check_house_steady(before.value_w, after.value_w, settings)
    if len(points) < 2:
        raise CalibrationDiscarded(
            f"only {len(points)} angle(s) measured before the heater exceeded calibration.max_test_power_w "
            f"({settings.max_test_power_w:g} W); raise it or check the knob's zero angle"
        )
    return Sweep(
        points=tuple(points),
        method="sweep",
        source=source,
        baseline_start_w=before.value_w,
        baseline_end_w=after.value_w,
        soc_pct=first.soc_pct,
        stopped_at_cap=stopped_at_cap,
        duration_s=bench.clock() - start_s,
    )


def _step_through_angles(
    bench: Bench,
    settings: SweepSettings,
    load: Callable[[], float],
    baseline_w: float,
    deadline_s: float,
    report: Callable[[str], None],
) -> tuple[list[SweepPoint], bool]:
    """With the relay closed: the settled heater power at each angle; (points, stopped at the power cap)."""
    points: list[SweepPoint] = []
    span_deg = abs(settings.full_deg - settings.zero_deg)
    for angle in settings.angles():
        _check_draws_something(points, settings, abs(angle - settings.zero_deg) / span_deg)
        _move(bench, angle)

        def heater_w() -> float:
            power = load() - baseline_w
            if power > settings.max_test_power_w:
                raise _OverCap(power)
            return power

        try:
            got = settle(heater_w, bench, settings, f"the power at {angle:g} {settings.unit}", deadline_s)
        except _OverCap as over:
            report(
                f"{settings.show(angle)}  {over.power_w:6.0f} W  above calibration.max_test_power_w "
                f"({settings.max_test_power_w:g} W): the sweep stops here, the table ends at the angle before"
            )
            return points, True
        points.append(SweepPoint(angle, got.value_w, got.value_w + baseline_w, got.elapsed_s))
        report(f"{settings.show(angle)}  {got.value_w:6.0f} W  (settled after {got.elapsed_s:.0f} s)")
    return points, False


#: A sweep whose heater drew nothing over this fraction of the knob's travel stops (well past any dead zone).
NOTHING_BY_TRAVEL_FRAC = 0.3
#: ... in at least this many measured angles.
NOTHING_MIN_ANGLES = 3


def _check_draws_something(points: list[SweepPoint], settings: SweepSettings, travel_frac: float) -> None:
    """CalibrationAborted when the knob has gone NOTHING_BY_TRAVEL_FRAC of its travel and the heater drew nothing."""
    if travel_frac < NOTHING_BY_TRAVEL_FRAC or len(points) < NOTHING_MIN_ANGLES:
        return
    noise_w = 2 * settings.settle_tolerance_w
    most_w = max(p.power_w for p in points)
    if most_w < noise_w:
        last_deg = points[-1].angle_deg
        raise CalibrationAborted(
            f"the heater drew nothing (at most {most_w:.0f} W) up to {last_deg:g} deg, "
            f"{100 * NOTHING_BY_TRAVEL_FRAC:.0f} % of the knob's travel, far past any dead zone: check that the "
            "relay switches the heater, the heater's thermostat has not cut out (tank hot) and the regulator gets "
            "power; the sweep stopped there"
        )


def _check_house_steady(before_w: float, after_w: float, settings: SweepSettings) -> None:
    """CalibrationDiscarded when the heater-off baseline moved by more than calibration.house_tolerance_w."""
    moved_w = after_w - before_w
    if abs(moved_w) > settings.house_tolerance_w:
        raise CalibrationDiscarded(
            f"the house load changed during the calibration: the heater-off baseline was {before_w:.0f} W "
            f"before and {after_w:.0f} W after ({moved_w:+.0f} W, more than calibration.house_tolerance_w "
            f"{settings.house_tolerance_w:g} W); run it again while the house load is steady"
        )


# --- manual mode --------------------------------------------------------------------------


def parse_watts(text: str) -> float | None:
    """A person's answer in watts ('1200', '1.2 kW', '800W'); None when it is not one."""
    t = text.strip().lower().replace(",", ".")
    scale = 1.0
    if t.endswith("kw"):
        t, scale = t[:-2], 1000.0
    elif t.endswith("w"):
        t = t[:-1]
    try:
        value = float(t) * scale
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def run_manual(
    bench: Bench,
    settings: SweepSettings,
    ask: Callable[[str], str],
    report: Callable[[str], None] = print,
    first: Measurements | None = None,
) -> Sweep:
    """Step through the angles with the relay closed and ask a person for the watts their meter shows.

    An empty answer skips the angle, 'q' ends the sweep early (the table ends
    at the last answer); anything else that is not watts is asked again.
    `first` is the reading preflight() checked; without it the preflight runs here.
    """
    start_s = bench.clock()
    first = preflight(bench, settings, manual=True) if first is None else first
    zero = settings.zero_deg
    points: list[SweepPoint] = []
    stopped_at_cap = False
    try:
        safe_off(bench, zero)
        bench.pause(settings.interval_s)
        bench.relay.set(True)
        for angle in settings.angles():
            _move(bench, angle)
            bench.pause(MANUAL_WAIT_READINGS * settings.interval_s)
            answer = _ask_watts(ask, f"{_where(settings, angle)}: heater watts on your meter (Enter: skip, q: stop)? ")
            if answer == "stop":
                break
            if answer is None:
                continue
            if answer > settings.max_test_power_w:
                stopped_at_cap = True
                report(f"{answer:.0f} W is above calibration.max_test_power_w ({settings.max_test_power_w:g} W): "
                       "the sweep stops here, the table ends at the angle before")
                break
            points.append(SweepPoint(angle, answer))
    finally:
        safe_off(bench, zero)
    if len(points) < 2:
        raise CalibrationDiscarded(f"only {len(points)} angle(s) answered; at least 2 are needed")
    return Sweep(
        points=tuple(points), method="manual", soc_pct=first.soc_pct, stopped_at_cap=stopped_at_cap,
        duration_s=bench.clock() - start_s,
    )


def _where(settings: SweepSettings, value: float) -> str:
    """Where the actuator stands, as the manual prompt says it."""
    if settings.actuator == "servo":
        return f"knob at {value:g} deg"
    return f"{settings.actuator} at {value:g} {settings.unit}"


def _ask_watts(ask: Callable[[str], str], prompt: str) -> float | str | None:
    """Watts, 'stop', or None (skip); asks again after an answer that is neither."""
    while True:
        text = ask(prompt).strip()
        if not text:
            return None
        if text.lower() in ("q", "quit", "stop"):
            return "stop"
        watts = parse_watts(text)
        if watts is not None:
            return watts
        prompt = f"not a number of watts: {text!r}; " + prompt.split(": ", 1)[-1]


# --- --limits ---------------------------------------------------------------------------------


def move_slowly(bench: Bench, from_deg: float, to_deg: float, speed_deg_s: float, step_deg: float) -> None:
    """Move the servo from one angle to another in small steps at about speed_deg_s."""
    span = to_deg - from_deg
    steps = max(1, math.floor(abs(span) / step_deg * (1.0 - 1e-9)))  # each move a little over step_deg
    for k in range(1, steps + 1):
        bench.servo.move_to(from_deg + span * k / steps, bench.clock())
        bench.pause(abs(span) / steps / speed_deg_s)


def run_limits(
    bench: Bench,
    settings: SweepSettings,
    pulse_ms: Callable[[float], float],
    report: Callable[[str], None] = print,
) -> None:
    """Relay open: knob to zero, slowly to full, hold, slowly back to zero; report the pulse width at each end."""
    zero, full = settings.zero_deg, settings.full_deg
    step = max(settings.min_move_deg, 1.0)
    try:
        bench.relay.set(False)
        bench.servo.move_to(zero, bench.clock())
        report(f"knob zero: servo at {zero:g} deg, pulse {pulse_ms(zero):.3f} ms")
        bench.pause(LIMITS_HOLD_S)
        move_slowly(bench, zero, full, settings.limits_speed_deg_s, step)
        report(f"knob full: servo at {full:g} deg, pulse {pulse_ms(full):.3f} ms")
        bench.pause(LIMITS_HOLD_S)
        move_slowly(bench, full, zero, settings.limits_speed_deg_s, step)
        report(f"back at knob zero: servo at {zero:g} deg, pulse {pulse_ms(zero):.3f} ms")
    finally:
        safe_off(bench, zero)
