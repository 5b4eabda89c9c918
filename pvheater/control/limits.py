"""Off-grid cap: heater + house on the heater's phase never exceed the inverter's continuous rating.

With no grid, everything the house and the heater draw on a phase comes from
that phase's inverter; beyond its continuous rating it overloads (and, held
long enough, shuts down: a blackout). The cap keeps the phase's
consumption (house + heater, as the GX measures it) below the rating minus a
margin and a reserve, stepping from the heater's last command (see cap_w).
Unknown consumption or rating: cap 0 (no heating on a guess).

The reserve (gx.off_grid_reserve_w) is the user's: a house step (a kettle) is
seen one GX publish after it happens, so in that second heater + house stay
within the rating only if the step fits in the margin + reserve. What the
reserve costs and what exceeding the continuous rating for that one second
means for a Multi: BENCHMARKS.md, "Off-grid".

Pure: the caller passes the time and keeps the state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pvheater.config import Config
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeaterOutput

#: A sample sees the heater somewhere between the commands of this long before it (servo slew + publish).
SETTLE_S = 2.0
#: Headroom kept below the rating for small loads switching on between two ticks, W.
MARGIN_W = 150.0
#: With headroom, the share of it the heater may rise by in one tick. The rise is in command watts; the heater's
#: true watts per command watt (its curve against the calibration, a dead zone) may be steeper, and with share x
#: slope >= 1 a rise lands on the limit, the next sample (which may not show it yet, so the step starts from the
#: older, lower command) cuts back, and the cap swings with period 2 for good. 0.5 did so on the offgrid
#: scenario's knob (slope about 2 after its dead zone against the straight-line calibration: +-300 W every
#: second whenever the cap bound there); with 0.4 such a swing dies out (tests/test_limits.py, BENCHMARKS.md).
RISE_SHARE = 0.4


@dataclass(frozen=True)
class CapSettings:
    """The rating (None: from the VE.Bus register), the heater's phase, the margin, the user's reserve."""

    rating_w: float | None = None
    phase: int = 1
    margin_w: float = MARGIN_W
    settle_s: float = SETTLE_S
    #: Kept free below the rating beside the margin, for appliances switching on unannounced, W.
    reserve_w: float = 0.0

    @classmethod
    def from_config(cls, config: Config) -> CapSettings | None:
        """The cap's settings, or None when the system has a grid (no cap)."""
        gx = config.gx
        if not gx.off_grid:
            return None
        return cls(rating_w=gx.inverter_rating_w, phase=gx.heater_phase, reserve_w=gx.off_grid_reserve_w)


@dataclass(frozen=True)
class CapState:
    """Recent heater commands: (time_s, power_w, relay_on), oldest first."""

    commands: tuple[tuple[float, float, bool], ...] = ()


def rating_w(m: Measurements | None, settings: CapSettings) -> float | None:
    """The continuous rating on the heater's phase: configured, else VE.Bus nominal power / its phases."""
    if settings.rating_w is not None:
        return settings.rating_w
    if m is None or m.inverter_rating_w is None:
        return None
    phases = m.get("vebus_phases")
    return m.inverter_rating_w / (int(phases) if phases else 1)


def _last_and_least_w(state: CapState, sample_s: float, settle_s: float) -> tuple[float, float]:
    """The last heater command (0 with the relay open), and the least of those a sample may not show yet."""
    powers = [(p if on else 0.0) for _, p, on in state.commands]
    if not powers:
        return 0.0, 0.0
    recent = [(p if on else 0.0) for t, p, on in state.commands if t >= sample_s - settle_s]
    return powers[-1], min([powers[-1], *recent])


def cap_w(state: CapState, m: Measurements | None, settings: CapSettings) -> tuple[float, str]:
    """The most the heater may take now, and why.

    The headroom is the rating minus the margin and the reserve minus the phase's consumption,
    which includes what the heater drew when the sample was taken -- so no
    estimate of the heater's power (nor the calibration's accuracy) enters it.
    Both steps start from the least command the sample may not show yet (the
    servo lags; that command is at most what the heater drew), so the command
    never exceeds the rating minus the house the sample showed. Short of
    headroom the heater gives up all the shortfall at once; with headroom it
    rises by RISE_SHARE of it (all of it, against a lagging sample, would swing).
    """
    rating = rating_w(m, settings)
    if rating is None:
        return 0.0, "off-grid: inverter rating unknown (set gx.inverter_rating_w)"
    consumption = None if m is None else m.phase_w("ac_consumption", settings.phase)
    if m is None or consumption is None or f"ac_consumption_l{settings.phase}_w" in m.refused:
        return 0.0, f"off-grid: consumption on L{settings.phase} unknown"
    headroom_w = rating - settings.margin_w - settings.reserve_w - consumption
    _, least_w = _last_and_least_w(state, m.time_s, settings.settle_s)
    cap = least_w + headroom_w if headroom_w < 0 else least_w + RISE_SHARE * headroom_w
    cap = max(0.0, cap)
    kept = f", {settings.reserve_w:.0f} W reserved" if settings.reserve_w > 0.0 else ""
    return cap, (f"off-grid cap {cap:.0f} W (inverter {rating:.0f} W{kept}, L{settings.phase} consumes "
                 f"{consumption:.0f} W)")


def cap_step(
    state: CapState, m: Measurements | None, settings: CapSettings, now_s: float, output: HeaterOutput
) -> tuple[CapState, HeaterOutput]:
    """Clamp the guard's output to the cap; remember the command. The relay is left as the guard set it."""
    cap, why = cap_w(state, m, settings)
    if output.relay_on and output.power_w > cap:
        output = replace(output, power_w=cap, reason=f"{output.reason}; {why}" if output.reason else why)
    keep = [c for c in state.commands if c[0] >= now_s - 2 * settings.settle_s]
    keep.append((now_s, output.power_w, output.relay_on))
    return CapState(tuple(keep)), output
