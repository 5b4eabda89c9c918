"""The surplus controller: a pure step from (state, measurements, settings, now) to a heat request.

The error signal is the *spare power* in watts, positive when PV is going to
waste, negative when the heater takes power it should not:

- grid import above `grid_import_allowance_w` or battery discharge above
  `battery_discharge_allowance_w`: the negative excess (back off at once);
- PV hidden by the MPPT (MppOperationMode 1 with the charger in absorption or
  float, battery not discharging): `probe_w`, an assumed surplus, so the power
  rises at a bounded rate until the MPPT tracks again or the battery/grid gives;
- otherwise export beyond `export_margin_w` (DC feed-in) counts as spare, and
  the battery: with `battery_first` a charge below what the battery took while
  PV was being wasted (its acceptance) is negative spare -- the heater is taking
  the battery's share; with `heater_first` any charge power is spare.

A PI acts on that error (a deadband for spare power, a smaller tolerance for
deficits, anti-windup by clamping the integral to the
heater's range, rises limited to `raise_w_per_s`). No I/O, no clock: `now_s`
comes in as an argument.

With a forecast (`reserve`, see pvheater/forecast.py) the SoC gate uses the
reserve's lower limit, and below `min_soc_pct` the battery's charge counts as
spare beyond the share of (battery + heater) the battery must keep to be full
in time. Without one (None) the plain rule applies, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from pvheater.config import Config, ControlConfig
from pvheater.control.guard import soc_gate
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeatRequest

if TYPE_CHECKING:
    from pvheater.control.reserve import ReserveAdvice

#: Weight of a new sample in the battery-acceptance estimate.
_ACCEPT_SMOOTHING = 0.3
#: Longest gap between two samples the integral trusts, seconds.
_MAX_DT_S = 5.0
#: Limits of hidden PV found this close together count as the same (steady sun).
_STEADY_LIMIT_W = 150.0
#: Shortest stay below a limit just found.
_MIN_HOLD_S = 5.0


@dataclass(frozen=True)
class ControllerSettings:
    """What the controller needs from the config."""

    control: ControlConfig
    max_power_w: float

    @classmethod
    def from_config(cls, config: Config) -> ControllerSettings:
        """Take the control section and the heater's maximum power."""
        return cls(control=config.control, max_power_w=config.heater.max_power_w)


@dataclass(frozen=True)
class ControllerState:
    """What the controller remembers between steps."""

    integral_w: float = 0.0
    power_w: float = 0.0
    soc_ok: bool = False
    accept_ref_w: float | None = None
    last_surplus_s: float | None = None
    hidden_since_s: float | None = None
    last_sample_s: float | None = None
    error_w: float = 0.0
    import_since_s: float | None = None
    #: Power at which the last probe of hidden PV hit the limit, and when.
    limit_w: float | None = None
    limit_s: float | None = None
    #: How long to stay below that limit: doubles while limits repeat (steady sun), short when they move.
    hold_s: float = 0.0


def spare_power_w(
    m: Measurements,
    accept_ref_w: float | None,
    settings: ControlConfig,
    import_lag_ok: bool = False,
    battery_share: float | None = None,
    heater_w: float = 0.0,
) -> tuple[float | None, bool]:
    """The error signal (W, + = PV going to waste) and whether the battery is saturated.

    With `import_lag_ok`, grid import while PV is still held back counts as the
    inverter catching up with the last rise: hold (error 0) instead of backing
    off. With `battery_share` (early heating on a forecast) the battery's charge
    beyond that share of (battery + heater_w) is spare, whatever the policy.
    Returns (None, False) when grid and battery power are both unknown.
    """
    grid_w = m.grid_w
    battery_w = m.battery_w
    if grid_w is None and battery_w is None:
        return None, False
    grid = grid_w or 0.0
    battery = battery_w or 0.0
    hidden = m.pv_curtailed and battery >= -settings.battery_discharge_allowance_w
    import_w = max(0.0, grid - settings.grid_import_allowance_w)
    discharge_w = max(0.0, -battery - settings.battery_discharge_allowance_w)
    if discharge_w > 0 or (import_w > 0 and not (hidden and import_lag_ok)):
        return -(import_w + discharge_w), False
    if import_w > 0:
        return 0.0, True  # the inverter is catching up; more PV is there
    export_w = max(0.0, -grid)
    saturated = hidden or export_w > settings.export_margin_w
    if hidden:
        return settings.probe_w, saturated
    spare = max(0.0, export_w - settings.export_margin_w)
    if battery_share is not None:
        spare += battery - battery_share * max(0.0, battery + heater_w)
    elif settings.policy == "heater_first":
        spare += battery
    elif not saturated and accept_ref_w is not None:
        # battery_first: charging less than it accepted while PV was wasted
        # means the heater takes the battery's share.
        spare += min(0.0, battery - accept_ref_w)
    return spare, saturated


def step(
    state: ControllerState,
    m: Measurements | None,
    settings: ControllerSettings,
    now_s: float,
    relay_on: bool,
    reserve: ReserveAdvice | None = None,
) -> tuple[ControllerState, HeatRequest]:
    """One control step: the new state and the heat request for the relay guard (reserve: early heating advice)."""
    c = settings.control
    if m is None:
        return replace(state, integral_w=0.0, power_w=0.0, error_w=0.0), HeatRequest(False, 0.0, "no data")

    min_soc_pct = c.min_soc_pct if reserve is None else reserve.min_soc_pct
    soc_ok = m.soc_pct is not None and soc_gate(m.soc_pct, state.soc_ok, min_soc_pct, c.soc_hysteresis_pct)
    if not soc_ok:
        reason = "SoC unknown" if m.soc_pct is None else f"charging battery first (SoC {m.soc_pct:.0f} %)"
        new = replace(state, soc_ok=False, integral_w=0.0, power_w=0.0, error_w=0.0, last_sample_s=m.time_s)
        return new, HeatRequest(False, 0.0, reason)

    importing = m.grid_w is not None and m.grid_w > c.grid_import_allowance_w
    import_since = (state.import_since_s if state.import_since_s is not None else now_s) if importing else None
    lag_ok = import_since is not None and now_s - import_since < c.inverter_lag_s
    share = None
    if reserve is not None and m.soc_pct is not None and m.soc_pct < c.min_soc_pct:
        share = reserve.battery_share  # early heating: the battery keeps what it needs to be full in time
    error_w, saturated = spare_power_w(
        m, state.accept_ref_w, c, import_lag_ok=lag_ok, battery_share=share, heater_w=state.power_w
    )
    if error_w is None:
        new = replace(state, soc_ok=True, integral_w=0.0, power_w=0.0, error_w=0.0, last_sample_s=m.time_s)
        return new, HeatRequest(False, 0.0, "grid and battery power unknown")

    accept_ref = state.accept_ref_w
    if saturated and m.battery_w is not None and import_since is None:
        battery = max(0.0, m.battery_w)
        accept_ref = battery if accept_ref is None else accept_ref + _ACCEPT_SMOOTHING * (battery - accept_ref)
    last_surplus = now_s if error_w > 0 or saturated else state.last_surplus_s
    hidden = m.pv_curtailed and error_w >= 0
    hidden_since = (state.hidden_since_s if state.hidden_since_s is not None else now_s) if hidden else None
    if -c.deficit_tolerance_w < error_w < c.deadband_w:
        error_w = 0.0  # hold: spare PV below the deadband, or a deficit within tolerance

    dt_s = 0.0 if state.last_sample_s is None else min(max(m.time_s - state.last_sample_s, 0.0), _MAX_DT_S)
    limit_w, limit_s, hold_s = state.limit_w, state.limit_s, state.hold_s
    if error_w < 0 and state.error_w >= 0 and state.power_w > 0:
        # A deficit begins: the limit lies just below this power. Found again where it was
        # (steady sun): hold longer; somewhere else (clouds): probe again soon.
        steady = limit_w is not None and abs(state.power_w - limit_w) <= _STEADY_LIMIT_W
        hold_s = min(max(2.0 * hold_s, _MIN_HOLD_S), c.probe_hold_s) if steady else _MIN_HOLD_S
        limit_w, limit_s = state.power_w, now_s
    if limit_s is not None and now_s - limit_s > hold_s:
        limit_s = None
    if relay_on:
        integral = min(max(state.integral_w + c.ki_per_s * error_w * dt_s, 0.0), settings.max_power_w)
        power = min(max(integral + c.kp * error_w, 0.0), settings.max_power_w)
        ceiling = state.power_w + _raise_rate_w_per_s(c, hidden_since, now_s) * dt_s
        if hidden and limit_s is not None and limit_w is not None:
            # PV is hidden, but the limit was found a moment ago: stay below it for a while
            # rather than probing again at once (each probe takes a little from the battery);
            # the next probe starts slowly again.
            ceiling = min(ceiling, max(state.power_w, limit_w - c.deadband_w))
            hidden_since = now_s
        if power > ceiling:
            power = ceiling
            integral = min(integral, ceiling)  # anti-windup against the rise limit
    else:
        integral, power = 0.0, 0.0

    recent = last_surplus is not None and now_s - last_surplus <= c.idle_off_s
    want = recent or power > 0
    new = ControllerState(
        integral_w=integral,
        power_w=power,
        soc_ok=True,
        accept_ref_w=accept_ref,
        last_surplus_s=last_surplus,
        hidden_since_s=hidden_since,
        import_since_s=import_since,
        limit_w=limit_w,
        limit_s=limit_s,
        hold_s=hold_s,
        last_sample_s=m.time_s,
        error_w=error_w,
    )
    if not want:
        return new, HeatRequest(False, 0.0, "no surplus")
    return new, HeatRequest(True, power, _describe(error_w, m))


def _raise_rate_w_per_s(c: ControlConfig, hidden_since_s: float | None, now_s: float) -> float:
    """How fast the power may rise now.

    A measured surplus (export) may be followed at `raise_w_per_s`. Hidden PV
    is probed: the rise starts at `probe_start_w_per_s` -- after a back-off the
    limit is usually close, and a slow probe overshoots it by little -- and
    speeds up to `raise_w_per_s` over `probe_accel_s` while PV stays hidden.
    """
    if hidden_since_s is None:
        return c.raise_w_per_s
    ramp = min(1.0, (now_s - hidden_since_s) / c.probe_accel_s) if c.probe_accel_s > 0 else 1.0
    return c.probe_start_w_per_s + (c.raise_w_per_s - c.probe_start_w_per_s) * ramp


def _describe(error_w: float, m: Measurements) -> str:
    if error_w < 0:
        return f"backing off {-error_w:.0f} W"
    if m.pv_curtailed:
        return "PV held back by the MPPT: raising"
    if error_w > 0:
        return f"surplus {error_w:.0f} W"
    return "holding"
