"""The SCR regulator's phase-angle curve for a resistive load, and its inverse (pure).

A phase-angle controller fires the thyristors at angle a (0..pi) into each
half wave; the load conducts for the rest of it, the conduction fraction
x = 1 - a / pi. The power of a resistive load, as a fraction of full power, is
P/Pmax = 1 - a/pi + sin(2a) / (2 pi) = x - sin(2 pi x) / (2 pi): flat at both
ends (~ x^3 near 0), steepest in the middle.
"""

from __future__ import annotations

import math

_TWO_PI = 2.0 * math.pi


def phase_angle_power_fraction(conduction: float) -> float:
    """P/Pmax of a resistive load under phase-angle control at a conduction fraction 0..1 (clamped)."""
    if conduction <= 0.0:
        return 0.0
    if conduction >= 1.0:
        return 1.0
    a = math.pi * (1.0 - conduction)
    return 1.0 - a / math.pi + math.sin(2.0 * a) / _TWO_PI


def conduction_for_power_fraction(power_frac: float) -> float:
    """The conduction fraction 0..1 giving P/Pmax under phase-angle control (inverse of the curve)."""
    if power_frac <= 0.0:
        return 0.0
    if power_frac >= 1.0:
        return 1.0
    # f(x) = x - sin(2 pi x)/(2 pi) - y is monotonic, f'(x) = 1 - cos(2 pi x) = 2 sin^2(pi x):
    # Newton, kept inside a shrinking bracket (bisection where a step would leave it).
    lo, hi = 0.0, 1.0
    x = power_frac
    for _ in range(60):
        f = x - math.sin(_TWO_PI * x) / _TWO_PI - power_frac
        if abs(f) < 1e-12:
            break
        if f > 0:
            hi = x
        else:
            lo = x
        slope = 1.0 - math.cos(_TWO_PI * x)
        nxt = x - f / slope if slope > 1e-12 else -1.0
        x = nxt if lo < nxt < hi else 0.5 * (lo + hi)
    return x
