"""Online correction of the power curve from what the GX sees (pure).

The controller asks for a power; the calibration turns it into a knob angle.
On a plant that was never calibrated (the default, linear curve against a
phase-angle regulator with a dead zone) the heater's true power differs from
the command -- in the middle of the knob by up to twice the step, at the
bottom it gives nothing. This module learns the true curve from deliberate
knob changes: when the command moved by at least `_MIN_STEP_W` after holding
for a while, and then holds again, the change in AC consumption over the next
samples is the heater's true change (the house did not move when the samples
before and after are steady).

The curve is kept as knots: true power at command 0, 1/N, ... 1 of the
heater's maximum (monotone, 0 at 0 and the maximum at full: the heater's rated
power is known). An observed step scales the curve's increments between its
two commands by (observed / expected) ** _RATE, and the others so that the
total stays the maximum -- a steep middle means flat ends.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: Knots of the curve (command fractions 0, 1/N, ..., 1).
_KNOTS = 10
#: The smallest command step that teaches anything, W (smaller ones drown in the house's noise).
_MIN_STEP_W = 150.0
#: How long the command must have held before the step, and after it until the first sample used, s.
_HOLD_BEFORE_S = 2.0
_SETTLE_S = 1.5
#: Smaller moves of the command than this still count as holding (the PI's nudges), W.
_DRIFT_W = 30.0
#: Samples after the settle time that must agree (a moving house is rejected).
_SAMPLES_AFTER = 2
#: Samples that differ by more than this are a moving house, W.
_STEADY_W = 40.0
#: Exponent of a correction step (0.5: two observations of the same ratio go most of the way).
_RATE = 0.6
#: Ratios beyond these are not believed (a house load that changed with the knob).
_RATIO_MIN, _RATIO_MAX = 0.2, 5.0
#: The smallest increment a segment keeps, as a fraction of an even share (the curve stays invertible).
_MIN_SEGMENT = 0.02


@dataclass(frozen=True)
class Curve:
    """True heater power at the knots (command = i / N of the maximum), W."""

    max_power_w: float
    true_w: tuple[float, ...]

    @classmethod
    def linear(cls, max_power_w: float) -> Curve:
        """The uncorrected curve: true = command."""
        return cls(max_power_w, tuple(max_power_w * i / _KNOTS for i in range(_KNOTS + 1)))

    def true_for(self, command_w: float) -> float:
        """The heater's true power for a command, W (piecewise linear)."""
        top = self.max_power_w
        if top <= 0 or command_w <= 0:
            return 0.0
        if command_w >= top:
            return self.true_w[-1]
        pos = command_w / top * _KNOTS
        i = int(pos)
        frac = pos - i
        return self.true_w[i] + frac * (self.true_w[i + 1] - self.true_w[i])

    def command_for(self, true_power_w: float) -> float:
        """The command that gives a true power, W (the inverse; 0 for 0, the maximum for the maximum)."""
        top = self.max_power_w
        if top <= 0 or true_power_w <= 0:
            return 0.0
        if true_power_w >= self.true_w[-1]:
            return top
        for i in range(_KNOTS):
            lo, hi = self.true_w[i], self.true_w[i + 1]
            if true_power_w <= hi:
                frac = 0.0 if hi <= lo else (true_power_w - lo) / (hi - lo)
                return top * (i + frac) / _KNOTS
        return top

    def corrected(self, from_w: float, to_w: float, observed_w: float) -> Curve:
        """The curve after a command step from_w -> to_w changed the true power by observed_w."""
        top = self.max_power_w
        lo, hi = sorted((min(max(from_w, 0.0), top), min(max(to_w, 0.0), top)))
        expected = self.true_for(hi) - self.true_for(lo)
        observed = observed_w if to_w >= from_w else -observed_w
        if top <= 0 or hi - lo < _MIN_STEP_W or expected <= 0 or observed <= 0:
            return self
        ratio = min(max(observed / expected, _RATIO_MIN), _RATIO_MAX) ** _RATE
        incs = [self.true_w[i + 1] - self.true_w[i] for i in range(_KNOTS)]
        inside = [0.0] * _KNOTS  # the share of each segment the step covered
        for i in range(_KNOTS):
            a, b = top * i / _KNOTS, top * (i + 1) / _KNOTS
            inside[i] = max(0.0, min(b, hi) - max(a, lo)) / (b - a)
        scaled = [inc * (1.0 + (ratio - 1.0) * share) for inc, share in zip(incs, inside, strict=True)]
        floor = _MIN_SEGMENT * top / _KNOTS
        fixed = sum(s for s, share in zip(scaled, inside, strict=True) if share > 0)
        rest = sum(s for s, share in zip(scaled, inside, strict=True) if share == 0)
        if fixed >= top - floor * _KNOTS:  # the step alone would take the whole range: scale everything
            fixed, rest = fixed + rest, 0.0
            inside = [1.0] * _KNOTS
        factor = (top - fixed) / rest if rest > 0 else 1.0
        incs = [max(floor, s if share > 0 else s * factor) for s, share in zip(scaled, inside, strict=True)]
        total = sum(incs)
        knots, acc = [0.0], 0.0
        for inc in incs:
            acc += inc * top / total
            knots.append(acc)
        knots[-1] = top
        return Curve(top, tuple(knots))


@dataclass(frozen=True)
class Learner:
    """A pending observation: the step being watched, and the consumption before it."""

    curve: Curve
    #: Command before and after the step, when it was made, consumption just before it.
    from_w: float | None = None
    to_w: float | None = None
    step_s: float | None = None
    before_w: float | None = None
    #: Consumption samples after the settle time.
    after: tuple[float, ...] = ()
    #: The last command, since when it holds, and the last consumption sample seen (time, W).
    command_w: float = 0.0
    command_s: float | None = None
    last_sample: tuple[float, float] | None = None
    #: Steps learned from.
    learned: int = 0


def observe(
    lr: Learner, now_s: float, command_w: float, sample_s: float | None, consumption_w: float | None
) -> Learner:
    """Feed one tick: the command in force now and the newest consumption sample (time, W) -- the curve learns."""
    out = lr
    if sample_s is not None and consumption_w is not None and (
        lr.last_sample is None or sample_s > lr.last_sample[0]
    ):
        out = _sample(out, sample_s, consumption_w)
        out = _replace(out, last_sample=(sample_s, consumption_w))
    if out.step_s is not None:
        if abs(command_w - (out.to_w or 0.0)) > _DRIFT_W:
            out = _replace(_drop(out), command_w=command_w, command_s=now_s)  # moved on before it was seen
    elif out.command_s is None or abs(command_w - out.command_w) > _DRIFT_W:
        held = out.command_s is not None and now_s - out.command_s >= _HOLD_BEFORE_S
        if held and abs(command_w - out.command_w) >= _MIN_STEP_W and out.last_sample is not None:
            out = _replace(out, from_w=out.command_w, to_w=command_w, step_s=now_s, before_w=out.last_sample[1],
                           after=())
        out = _replace(out, command_w=command_w, command_s=now_s)
    return out


def _sample(lr: Learner, sample_s: float, consumption_w: float) -> Learner:
    """A new consumption sample: collect it after the settle time; learn once enough agree."""
    if lr.step_s is None or sample_s < lr.step_s + _SETTLE_S:
        return lr
    after = (*lr.after, consumption_w)
    if max(after) - min(after) > _STEADY_W:
        return _drop(lr)  # the house moved
    if len(after) < _SAMPLES_AFTER:
        return _replace(lr, after=after)
    assert lr.from_w is not None and lr.to_w is not None and lr.before_w is not None
    observed = sum(after) / len(after) - lr.before_w
    curve = lr.curve.corrected(lr.from_w, lr.to_w, observed)
    return _replace(_drop(lr), curve=curve, learned=lr.learned + (curve is not lr.curve))


def _drop(lr: Learner) -> Learner:
    return _replace(lr, from_w=None, to_w=None, step_s=None, before_w=None, after=())


def _replace(lr: Learner, **kw: object) -> Learner:
    return replace(lr, **kw)  # type: ignore[arg-type]
