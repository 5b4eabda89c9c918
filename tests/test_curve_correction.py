"""Online curve correction: learned from knob steps against a regulator curve the controller never saw."""

from __future__ import annotations

import pytest

from pvheater.control.curve_correction import Curve, Learner, observe
from pvheater.control.scr import phase_angle_power_fraction

TOP = 2000.0


def phase_angle_true_w(command_w: float, dead: float = 0.08) -> float:
    """The regulator of the whole-day plant behind a linear (uncalibrated) knob mapping."""
    knob = command_w / TOP
    if knob <= dead:
        return 0.0
    return TOP * phase_angle_power_fraction((knob - dead) / (1 - dead))


def drive(lr: Learner, commands: list[float], true_w, house_w: float = 300.0, noise: list[float] | None = None):
    """Hold each command 5 s, one sample a second taken before the tick's command (the knob's last position)."""
    t, k, last = 0.0, 0, 0.0
    for cmd in commands:
        for _ in range(5):
            wobble = noise[k % len(noise)] if noise else 0.0
            lr = observe(lr, t, cmd, t, house_w + true_w(last) + wobble)
            last, t, k = cmd, t + 1.0, k + 1
    return lr


STEPS = [0, 600, 1000, 1400, 1000, 600, 1800, 1200, 400, 1600, 800, 1400, 200, 1000, 1700, 900] * 3


@pytest.mark.parametrize(
    ("true_w", "worst_before_w", "worst_after_w"),
    [
        (phase_angle_true_w, 380.0, 130.0),  # phase angle with an 8 % dead zone behind a linear knob: S-shaped
        (lambda c: TOP * (c / TOP) ** 2, 500.0, 120.0),  # a log-taper pot: too weak at the bottom
        (lambda c: c, 0.0, 1.0),  # already right: stays right
    ],
)
def test_learns_the_curve_from_knob_steps(true_w, worst_before_w: float, worst_after_w: float) -> None:
    lr = drive(Learner(Curve.linear(TOP)), STEPS, true_w)
    targets = [200.0 * i for i in range(1, 10)]
    before = max(abs(true_w(Curve.linear(TOP).command_for(p)) - p) for p in targets)
    after = max(abs(true_w(lr.curve.command_for(p)) - p) for p in targets)
    assert before == pytest.approx(worst_before_w, abs=60.0) if worst_before_w else before < 1.0
    assert after <= worst_after_w
    assert lr.learned > 0
    # the curve stays invertible and spans the heater
    assert all(b > a for a, b in zip(lr.curve.true_w, lr.curve.true_w[1:], strict=False))
    assert lr.curve.true_w[0] == 0.0 and lr.curve.true_w[-1] == pytest.approx(TOP)


def test_a_moving_house_teaches_nothing() -> None:
    # the house swings by 200 W every second: no step is steady enough to learn from
    lr = drive(Learner(Curve.linear(TOP)), STEPS, phase_angle_true_w, noise=[0.0, 200.0, -150.0])
    assert lr.learned == 0 and lr.curve == Curve.linear(TOP)


@pytest.mark.parametrize(("command_w", "expected_w"), [(-5.0, 0.0), (0.0, 0.0), (1000.0, 1000.0), (2500.0, TOP)])
def test_linear_curve_round_trip(command_w: float, expected_w: float) -> None:
    curve = Curve.linear(TOP)
    assert curve.true_for(command_w) == pytest.approx(expected_w)
    assert curve.command_for(curve.true_for(command_w)) == pytest.approx(expected_w)
