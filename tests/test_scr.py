"""The one SCR phase-angle curve (control/scr.py): its shape, its inverse, and who uses it."""

from __future__ import annotations

import itertools
import math

import pytest

from pvheater.calibration import fit
from pvheater.control.scr import conduction_for_power_fraction, phase_angle_power_fraction
from pvheater.sim import plant


def test_the_curve_of_a_resistive_load() -> None:
    assert phase_angle_power_fraction(0.0) == 0.0
    assert phase_angle_power_fraction(-0.5) == 0.0
    assert phase_angle_power_fraction(1.0) == 1.0
    assert phase_angle_power_fraction(1.5) == 1.0
    assert phase_angle_power_fraction(0.5) == pytest.approx(0.5, abs=1e-12)  # firing at 90 degrees: half power
    x = 2 / 3  # firing at 60 degrees
    assert phase_angle_power_fraction(x) == pytest.approx(x - math.sin(2 * math.pi * x) / (2 * math.pi), abs=1e-12)
    xs = [k / 200 for k in range(201)]
    ys = [phase_angle_power_fraction(v) for v in xs]
    assert all(b > a for a, b in itertools.pairwise(ys))  # strictly rising
    assert phase_angle_power_fraction(0.1) < 0.01  # flat start: ~ x^3


@pytest.mark.parametrize("frac", [0.0, 1e-6, 0.001, 0.02, 0.1, 0.35, 0.5, 0.65, 0.9, 0.98, 0.999, 1.0])
def test_the_inverse(frac: float) -> None:
    x = conduction_for_power_fraction(frac)
    assert 0.0 <= x <= 1.0
    assert phase_angle_power_fraction(x) == pytest.approx(frac, abs=1e-9)


def test_plant_and_calibration_share_the_curve() -> None:
    assert fit.conduction_for_power_fraction is conduction_for_power_fraction
    assert plant.phase_angle_power_fraction is phase_angle_power_fraction
    assert plant.conduction_for_power_fraction is conduction_for_power_fraction
