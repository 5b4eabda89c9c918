"""The heater's power behind the actuators without a knob: a 0-10 V regulator and an SSR-burst heater.

The plant (pvheater/sim/plant.py) models the servo and the SCR regulator's
knob itself; for `pwm_0_10v` and `ssr_burst` it asks one of these models,
through `make_regulator`, for the heater's power in each step from the
actuator's input (`Actuation.drive`):

- **0-10 V regulator** (`ZeroTenVoltRegulator`): the PWM module's output
  voltage is 10 V x the duty; the regulator gives nothing below `start_v`,
  full power from `full_v`, and in between phase-angle control with the
  conduction fraction linear in the voltage (the same curve as the knob's,
  pvheater/control/scr.py). It follows a new input within the step (an SCR
  regulator's control input acts within a mains cycle or two).
- **SSR-burst heater** (`BurstHeater`): power is the fraction of whole mains
  cycles fired, nothing in between. On the live rig the input is the share
  of cycles the pin fired in the step (read off the mock pin, cycle by
  cycle); on the bench, with no pins, the commanded fraction is run through
  the actuator's own pattern (pvheater/control/burst.py), so the power is
  quantised to whole cycles exactly as the SSR would fire them. The meter
  the GX reads averages over one second (`metered_w`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from pvheater.control.burst import BurstPattern, BurstStats
from pvheater.control.scr import phase_angle_power_fraction


@dataclass(frozen=True)
class ZeroTenVoltParams:
    """A regulator with a 0-10 V control input behind a PWM -> 0-10 V module."""

    #: Control voltage below which the regulator gives nothing, and from which it gives full power.
    start_v: float = 0.6
    full_v: float = 9.6


@dataclass(frozen=True)
class BurstParams:
    """A zero-cross SSR switching the heater on whole mains cycles."""

    mains_hz: int = 50
    period_cycles: int = 50
    #: False: a what-if SSR that could fire any fraction of a cycle (the request as it is, no whole cycles; not a
    #: real device) -- bench/ssr_steps.py sets it to measure what the whole-cycle step costs.
    whole_cycles: bool = True


@dataclass(frozen=True)
class RegulatorParams:
    """Which actuator drives the simulated heater, and the models of those that do not turn a knob."""

    actuator: str = "servo"
    zero_ten: ZeroTenVoltParams = field(default_factory=ZeroTenVoltParams)
    burst: BurstParams = field(default_factory=BurstParams)


class Regulator(Protocol):
    """The heater's power from an actuator input, step by step."""

    def power_w(self, relay_on: bool, drive: float, dt_s: float) -> float:
        """Average heater power over a step of dt_s with the relay and the input held."""
        ...

    @property
    def metered_w(self) -> float:
        """The heater's power as the GX's meter shows it now."""
        ...

    def wear(self) -> dict[str, float]:
        """The actuator's own wear figures (none for a 0-10 V input)."""
        ...


def zero_ten_duty_range(params: ZeroTenVoltParams) -> tuple[float, float]:
    """The duties where the regulator starts and reaches full power (what pwm.min_duty/max_duty would be set to)."""
    return params.start_v / 10.0, params.full_v / 10.0


def zero_ten_power_fraction(duty: float, params: ZeroTenVoltParams) -> float:
    """P/Pmax of the 0-10 V regulator at a PWM duty 0..1 (the module's output as a fraction of 10 V)."""
    volts = 10.0 * duty
    if volts <= params.start_v:
        return 0.0
    if volts >= params.full_v:
        return 1.0
    return phase_angle_power_fraction((volts - params.start_v) / (params.full_v - params.start_v))


class ZeroTenVoltRegulator:
    """The 0-10 V regulator (see the module doc)."""

    def __init__(self, max_power_w: float, params: ZeroTenVoltParams) -> None:
        self.max_power_w = max_power_w
        self.params = params
        self._last_w = 0.0

    def power_w(self, relay_on: bool, drive: float, dt_s: float) -> float:
        """The regulator's power at the duty (0 with the relay open)."""
        self._last_w = self.max_power_w * zero_ten_power_fraction(drive, self.params) if relay_on else 0.0
        return self._last_w

    @property
    def metered_w(self) -> float:
        """The last step's power (the output is steady within a step)."""
        return self._last_w

    def wear(self) -> dict[str, float]:
        """No moving part, no switching."""
        return {}


class BurstHeater:
    """The SSR-burst heater (see the module doc); `from_pin=True`: drive is the share of cycles fired already."""

    def __init__(self, max_power_w: float, params: BurstParams, *, from_pin: bool = False) -> None:
        self.max_power_w = max_power_w
        self.params = params
        self.from_pin = from_pin
        self.pattern = BurstPattern(params.period_cycles)
        self._carry = 0.0  # a part cycle left over from the last step
        self._window: deque[tuple[float, float]] = deque()  # (dt, energy) of the last second
        self._window_s = 0.0
        self._window_j = 0.0

    def power_w(self, relay_on: bool, drive: float, dt_s: float) -> float:
        """Power over the step: whole cycles fired of those in the step (0 with the relay open)."""
        if self.from_pin or not self.params.whole_cycles:
            power = self.max_power_w * drive if relay_on else 0.0
        else:
            self.pattern.request(drive if relay_on else 0.0)
            cycles_f = dt_s * self.params.mains_hz + self._carry
            cycles = int(cycles_f)
            self._carry = cycles_f - cycles
            fired = sum(1 for _ in range(cycles) if self.pattern.next_cycle())
            power = self.max_power_w * fired / (dt_s * self.params.mains_hz)
        self._meter(dt_s, power)
        return power

    def _meter(self, dt_s: float, power_w: float) -> None:
        """Keep one second of steps for the meter's average."""
        self._window.append((dt_s, power_w * dt_s))
        self._window_s += dt_s
        self._window_j += power_w * dt_s
        while self._window_s - self._window[0][0] >= 1.0 - 1e-9:
            dt, e = self._window.popleft()
            self._window_s -= dt
            self._window_j -= e

    @property
    def metered_w(self) -> float:
        """The heater's power averaged over the last second, as a meter integrates it."""
        return self._window_j / self._window_s if self._window_s > 0 else 0.0

    @property
    def stats(self) -> BurstStats:
        """The pattern's cycle counts and blocks (bench mode)."""
        return self.pattern.stats

    def wear(self) -> dict[str, float]:
        """SSR switch-ons and the longest blocks while bursting (bench mode; the live rig counts them on the pin)."""
        if self.from_pin:
            return {}
        st = self.pattern.stats
        return {
            "ssr_switch_ons": st.switch_ons, "longest_on_block": st.longest_on_block,
            "longest_off_block": st.longest_off_block,
        }


def make_regulator(params: RegulatorParams, max_power_w: float, *, from_pin: bool = False) -> Regulator | None:
    """The model for params.actuator; None for the servo (the plant's own knob model)."""
    if params.actuator == "pwm_0_10v":
        return ZeroTenVoltRegulator(max_power_w, params.zero_ten)
    if params.actuator == "ssr_burst":
        return BurstHeater(max_power_w, params.burst, from_pin=from_pin)
    return None
