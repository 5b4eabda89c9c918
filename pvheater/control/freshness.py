"""Frozen-data detection: a GX picture whose fast-moving values stop changing entirely counts as stale.

Victron's Modbus-TCP server answers from a cache: a device driver that hangs
but stays on the bus keeps serving its last values, so reads go on
succeeding with the same numbers. On a working system the fast-moving
values -- grid meter power, battery current and power, AC consumption, PV --
change from one second to the next (meters and shunts resolve 1 W / 0.1 A
and never sit exactly still). When none of them has changed *at all* for
longer than `frozen_after_s`, the picture is frozen: the caller treats it
like stale data (relay open, knob parked).

Pure: time is the snapshots' own `time_s` (when their first request was
sent), so a snapshot handed in again unchanged -- no new read, as in an
outage -- is the stale check's business, not a freeze; the state is a frozen
dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass

from pvheater.control.measurements import Measurements

#: Register names of the fast-moving values, by what they measure.
FAST_VALUES: tuple[str, ...] = (
    "grid_l1_w", "grid_l2_w", "grid_l3_w",
    "meter_l1_w", "meter_l2_w", "meter_l3_w",
    "battery_current_a", "battery_power_w", "bms_power_w",
    "ac_consumption_l1_w", "ac_consumption_l2_w", "ac_consumption_l3_w",
    "pv_dc_w", "mppt_yield_w",
)
#: Default bound: no real system keeps all of them exactly still this long (see BENCHMARKS.md, frozen data).
FROZEN_AFTER_S = 20.0


@dataclass(frozen=True)
class FreshnessSettings:
    """How long an unchanged picture may last before it counts as frozen."""

    frozen_after_s: float = FROZEN_AFTER_S


@dataclass(frozen=True)
class FreshnessState:
    """The last picture of fast-moving values and since when it has not changed."""

    picture: tuple[float | None, ...] | None = None
    #: time_s of the first snapshot that showed `picture`.
    since_s: float | None = None


def picture(m: Measurements) -> tuple[float | None, ...]:
    """The fast-moving values of a snapshot, in FAST_VALUES order."""
    return tuple(m.get(name) for name in FAST_VALUES)


def step(
    state: FreshnessState, m: Measurements, settings: FreshnessSettings = FreshnessSettings()
) -> tuple[FreshnessState, str | None]:
    """The new state, and why the data count as frozen (None: they move, or there is nothing to judge)."""
    current = picture(m)
    if all(v is None for v in current):
        return FreshnessState(), None  # nothing fast-moving is known: the plausibility checks decide
    if state.picture != current or state.since_s is None or m.time_s < state.since_s:
        return FreshnessState(current, m.time_s), None
    unchanged_s = m.time_s - state.since_s
    if unchanged_s > settings.frozen_after_s:
        return state, f"values frozen for {unchanged_s:.0f} s (grid, battery, consumption and PV all unchanged)"
    return state, None
