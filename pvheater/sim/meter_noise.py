"""A real meter's noise on the simulated GX powers: real systems never publish a perfectly still picture."""

from __future__ import annotations

import random
from collections.abc import Mapping

#: Register name prefixes of the AC powers a real meter measures (grid, grid meter, AC consumption).
METERED_PREFIXES = ("grid_l", "meter_l", "ac_consumption_l")


def with_meter_noise(values: Mapping[str, float | None], rng: random.Random, noise_w: float) -> dict[str, float | None]:
    """The values with whole-watt Gaussian noise (sigma noise_w) on each metered AC power that is not 0 or None.

    A phase reading exactly 0 W (an unused phase) stays 0, as on a real meter.
    """
    out = dict(values)
    for name, value in values.items():
        if value and name.startswith(METERED_PREFIXES) and name.endswith("_w"):
            out[name] = float(round(value + rng.gauss(0.0, noise_w)))
    return out
