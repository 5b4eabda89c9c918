"""Off-grid overload accounting: the seconds heater + house were above the inverter's rating, and whose doing.

Pure analysis of a run's series (1 s steps of the plant's true powers). A
second above the rating is the house's alone when the house by itself is
above it (nothing a heater controller can do: the heater can only be 0 then);
it is the heater's when the house alone fits and heater + house do not.
"""

from __future__ import annotations

from dataclasses import dataclass

from pvheater.sim.results import RunResult


@dataclass(frozen=True)
class OverloadStats:
    """Seconds above the rating, split by cause, and how far and how long the heater's share went."""

    rating_w: float
    #: Steps where house + heater > rating.
    over_s: float
    #: Of those, the house alone above the rating: with the heater off / still on.
    house_alone_s: float
    house_alone_heater_on_s: float
    #: House within the rating, heater + house above it (the heater's doing).
    heater_caused_s: float
    #: Worst heater + house above the rating in a heater-caused step, W; the longest run of such steps, s.
    worst_excess_w: float
    longest_s: float
    #: Energy above the rating the heater caused (heater-caused steps, plus its whole power in house-alone steps).
    excess_wh: float
    #: Heater-caused steps with no house rise of more than 50 W in the 3 s before (should be none).
    unexplained_s: float


def overload_stats(run: RunResult, rating_w: float, step_rise_w: float = 50.0, window_s: float = 3.0) -> OverloadStats:
    """Classify every step of a run against the rating (off-grid, single phase: the house's total)."""
    house, heater, dt = run.series.house_w, run.series.heater_w, run.dt_s
    over = alone = alone_on = caused = unexplained = 0
    worst = excess_j = 0.0
    longest = streak = 0
    back = max(1, round(window_s / dt))
    for k, (h, q) in enumerate(zip(house, heater, strict=True)):
        total = h + q
        if total <= rating_w:
            streak = 0
            continue
        over += 1
        if h > rating_w:
            alone += 1
            if q > 0.0:
                alone_on += 1
                excess_j += q * dt
            streak = 0
            continue
        caused += 1
        streak += 1
        longest = max(longest, streak)
        worst = max(worst, total - rating_w)
        excess_j += (total - rating_w) * dt
        if not any(house[j] > house[j - 1] + step_rise_w for j in range(max(1, k - back), k + 1)):
            unexplained += 1
    return OverloadStats(rating_w, over * dt, alone * dt, alone_on * dt, caused * dt, worst, longest * dt,
                         excess_j / 3600.0, unexplained * dt)
