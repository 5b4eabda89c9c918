"""Burst-fire over whole mains cycles (pure): which cycle a zero-cross SSR conducts, spread evenly.

An "energy bucket" (first-order sigma-delta; Bresenham's line in integers):
the request is taken as k = floor(f x period) whole cycles per period of
`period_cycles` (N), never rounded up: a request between two whole cycles
fires the lower one, so the controller's fine steps around the limit of the
surplus never turn into a step of a whole cycle (40 W for 2 kW at 50 cycles)
into the battery or the grid; the loop sees the export left over and asks
for more, which fires the next cycle only once the request reaches it. Each
mains cycle the bucket gains k, and when it holds half a period or more the
cycle is fired and N is taken out. With k fixed the bucket comes back to the
same value after every period, so each period fires exactly k cycles --
less than one cycle below the request, the same count every period, so a
meter reading a period sees a steady power (a pattern that varied the count
from period to period to resolve the request more finely, carrying the
error across periods, drew more on the whole simulated days: the seconds
with the extra cycle take it from the battery or the grid, see BENCHMARKS.md)
-- and the pattern repeats seamlessly from period to period, the on-cycles
spread as evenly as whole cycles allow: at k/N <= 1/2 no on-block is longer
than one cycle and the off-blocks are floor or ceil of (N - k) / k; above
1/2 the same with on and off swapped.

A higher request takes effect at the start of the next period; a lower
request takes effect at once (waiting would draw from the battery or the
grid), and so does the first request after zero (a new period starts).
Cycles in which the driver could not act (it woke late) are booked with
`hold`, at the level the pin kept, so the energy stays right whatever the
timing jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A fraction meant as k / period_cycles may come out a hair below it in floating point; it still fires k.
_EXACT = 1e-6


@dataclass
class BurstStats:
    """What a burst pattern has done: cycles, fired cycles, SSR switch-ons, longest blocks while bursting."""

    cycles: int = 0
    on_cycles: int = 0
    switch_ons: int = 0
    #: The longest run of fired and of idle cycles while the fraction lay strictly between 0 and 1 (flicker).
    longest_on_block: int = 0
    longest_off_block: int = 0


class BurstPattern:
    """The cycle-by-cycle on/off sequence for a requested fraction of full power (see the module doc)."""

    def __init__(self, period_cycles: int) -> None:
        if period_cycles < 1:
            raise ValueError(f"period_cycles must be at least 1, got {period_cycles}")
        self.period_cycles = period_cycles
        self.requested = 0.0
        self._k_requested = 0
        self._k = 0  # cycles per period of the period under way
        self._acc = 0  # the bucket, in 1/period_cycles of a cycle
        self._pos = 0
        self.stats = BurstStats()
        self._run_on = False
        self._run = 0
        self._run_counts = False  # the current block lies wholly in bursting cycles

    @property
    def fraction(self) -> float:
        """The fraction of cycles the period under way fires (the request in whole cycles per period)."""
        return self._k / self.period_cycles

    def request(self, fraction: float) -> None:
        """Ask for a fraction 0..1 of full power, in whole cycles rounded down: next period on, at once when lower."""
        f = min(max(fraction, 0.0), 1.0) if fraction == fraction else 0.0  # NaN -> 0
        self.requested = f
        k = cycles_per_period(f, self.period_cycles)
        self._k_requested = k
        if k == 0:
            self._acc = 0
        if self._k == 0:
            self._pos = 0  # nothing is being fired: a new period starts with the next cycle
        if k < self._k:
            self._k = k

    @property
    def idle(self) -> bool:
        """True when nothing is requested and nothing is being fired (the driver may sleep)."""
        return self._k_requested == 0 and self._k == 0

    def _advance(self) -> None:
        if self._pos == 0:
            self._k = self._k_requested
        self._pos = (self._pos + 1) % self.period_cycles

    def next_cycle(self) -> bool:
        """Whether the next mains cycle is fired."""
        self._advance()
        n = self.period_cycles
        self._acc += self._k
        on = 2 * self._acc >= n
        if on:
            self._acc -= n
        self._count(on, 1)
        return on

    def hold(self, cycles: int, on: bool) -> None:
        """Book cycles that passed at a level the driver could not change (it woke late)."""
        if cycles <= 0:
            return
        n = self.period_cycles
        for _ in range(cycles):
            self._advance()
            self._acc += self._k - (n if on else 0)
        self._acc = min(max(self._acc, -n * n), n * n)  # a long stall leaves a debt of at most one period
        self._count(on, cycles)

    def _count(self, on: bool, cycles: int) -> None:
        s = self.stats
        bursting = 0 < self._k < self.period_cycles
        s.cycles += cycles
        if on:
            s.on_cycles += cycles
        if on == self._run_on and self._run:
            self._run += cycles
            self._run_counts = self._run_counts and bursting
            return
        self._close_block()
        if on:
            s.switch_ons += 1
        self._run_on, self._run, self._run_counts = on, cycles, bursting

    def _close_block(self) -> None:
        """A block ended: count it among the longest when it lay wholly in bursting cycles."""
        if not (self._run and self._run_counts):
            return
        s = self.stats
        if self._run_on:
            s.longest_on_block = max(s.longest_on_block, self._run)
        else:
            s.longest_off_block = max(s.longest_off_block, self._run)


def cycles_per_period(fraction: float, period_cycles: int) -> int:
    """Whole cycles a period fires for a fraction 0..1: rounded down, never above the request."""
    return math.floor(fraction * period_cycles + _EXACT)


def cycles_fired(pattern: BurstPattern, cycles: int) -> int:
    """Run the pattern for a number of cycles; how many of them were fired."""
    return sum(1 for _ in range(cycles) if pattern.next_cycle())
