"""Off-grid cap: heater + house on the heater's phase never exceed the inverter's continuous rating.

With no grid, everything the house and the heater draw on a phase comes from
that phase's inverter; beyond its continuous rating it overloads (and, held
long enough, shuts down: a blackout). The cap keeps the phase's
consumption (house + heater, as the GX measures it) below the rating minus a
margin, stepping from the heater's last command (see cap_w). Unknown
consumption or rating: cap 0 (no heating on a guess).

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


@dataclass(frozen=True)
class CapSettings:
    """The rating (None: from the VE.Bus register), the heater's phase, the margin."""

    rating_w: float | None = None
    phase: int = 1
    margin_w: float = MARGIN_W
    settle_s: float = SETTLE_S

    @classmethod
    def from_config(cls, config: Config) -> CapSettings | None:
        """The cap's settings, or None when the system has a grid (no cap)."""
        gx = config.gx
        if not gx.off_grid:
            return None
        return cls(rating_w=gx.inverter_rating_w, phase=gx.heater_phase)


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

    The headroom is the rating minus the margin minus the phase's consumption,
    which includes what the heater drew when the sample was taken -- so no
    estimate of the heater's power (nor the calibration's accuracy) enters it.
    Both steps start from the least command the sample may not show yet (the
    servo lags; that command is at most what the heater drew), so the command
    never exceeds the rating minus the house the sample showed. Short of
    headroom the heater gives up all the shortfall at once; with headroom it
    rises by half of it (all of it, against a lagging sample, would swing).
    """
    rating = rating_w(m, settings)
    if rating is None:
        return 0.0, "off-grid: inverter rating unknown (set gx.inverter_rating_w)"
    consumption = None if m is None else m.phase_w("ac_consumption", settings.phase)
    if m is None or consumption is None or f"ac_consumption_l{settings.phase}_w" in m.refused:
        return 0.0, f"off-grid: consumption on L{settings.phase} unknown"
    headroom_w = rating - settings.margin_w - consumption
    _, least_w = _last_and_least_w(state, m.time_s, settings.settle_s)
    cap = least_w + headroom_w if headroom_w < 0 else least_w + 0.5 * headroom_w
    cap = max(0.0, cap)
    return cap, (f"off-grid cap {cap:.0f} W (inverter {rating:.0f} W, L{settings.phase} consumes "
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
