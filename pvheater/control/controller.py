"""The surplus controller: a pure step from (state, measurements, settings, now) to a heat request.

The error signal is the *spare power* in watts, positive when PV is going to
waste, negative when the heater takes power it should not:

- grid import above `grid_import_allowance_w` or battery discharge above
  `battery_discharge_allowance_w`: the negative excess (back off at once),
  with `battery_first` plus the charge the battery accepted while PV was
  wasted (a discharge leaves the battery without its share too); a discharge
  while the grid takes an export of what the heater shed, or a house load
  freed, within two inverter lags is the inverter still giving the old load:
  the picture is judged as it settles, with that export back in the battery
  (so a cut is not repeated for the part the inverter is still shedding);
- PV hidden by the MPPT (MppOperationMode 1 with the charger in absorption or
  float, battery not discharging): `probe_w`, an assumed surplus, so the power
  rises at a bounded rate until the MPPT tracks again or the battery/grid gives;
- otherwise export beyond `export_margin_w` (DC feed-in) counts as spare, and
  the battery: with `battery_first` a charge below what the battery took while
  PV was being wasted (its acceptance) is negative spare -- the heater is taking
  the battery's share; with `heater_first` any charge power is spare.

A PI acts on that error (a deadband for spare power, a smaller tolerance for
deficits -- wider within `inverter_lag_s` of a cut, while the inverter
settles to it -- anti-windup by clamping the integral to the
heater's range, rises limited to `raise_w_per_s`). No I/O, no clock: `now_s`
comes in as an argument.

What the controller knows is used as well (each decision says why in its reason):

- *its own commands*: a short history of the power it asked for, so a sample
  is compared with the heater power *at the time of that sample* (the GX and
  the poll make data 0.5-3 s old); a deficit is cut at once to that power minus
  the deficit, and grid import that the inverter's lag behind its own recent
  rises explains (a first-order lag of `inverter_lag_s`) does not stop a probe;
- *the house load* (AC consumption minus the heater's power then): a change of
  at least `feed_forward_min_w` goes to (or comes from) the heater at once --
  when a kettle ends, the power it took is available again, less what battery
  and grid gave it (the last sample's deficit);
- *the load PV covered while it was still held back* (heater + house, within
  `memory_s`): when PV is hidden again after a cloud or a load, the heater
  returns at once to that level (less `restore_margin_w`) and probes only the
  rest; a probe that finds the limit below it lowers it;
- the probe of hidden PV grows exponentially from `probe_start_w_per_s` to
  `raise_w_per_s` over `probe_accel_s`, so a small gap is crossed gently and
  a large one fast; what it overshoots is found within one or two samples.

With a forecast (`reserve`, see pvheater/forecast.py) the SoC gate uses the
reserve's lower limit, and below `min_soc_pct` the battery's charge counts as
spare beyond the share of (battery + heater) the battery must keep to be full
in time. Without one (None) the plain rule applies, unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import TYPE_CHECKING

from pvheater.config import Config, ControlConfig
from pvheater.control.guard import soc_gate
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeatRequest

if TYPE_CHECKING:
    from pvheater.control.reserve import ReserveAdvice

#: Weight of a new sample in the battery-acceptance estimate.
_ACCEPT_SMOOTHING = 0.3
#: The acceptance learned at a SoC this much higher than now no longer holds (a battery near full accepts more
#: the emptier it is), %-points.
_ACCEPT_STALE_SOC_PCT = 1.0
#: Longest gap between two samples the integral trusts, seconds.
_MAX_DT_S = 5.0
#: Limits of hidden PV found this close together count as the same (steady sun).
_STEADY_LIMIT_W = 150.0
#: Shortest stay below a limit just found.
_MIN_HOLD_S = 5.0
#: Longest stay below a limit found while PV is well below the remembered level (the sun may come back).
_SHADED_HOLD_S = 40.0
#: Commands kept for comparing samples with the heater power of their time.
_COMMANDS_KEPT = 12
#: The heater reaches a commanded power about this long after the command (servo travel), s.
_SERVO_DELAY_S = 0.2
#: A deficit found within this long of a rise is the probe's limit (not a cloud), s.
_RISE_RECENT_S = 6.0
#: After a load ended, the ESS catches up within inverter_lag_s plus this (GX and poll delays), s.
_CATCH_UP_EXTRA_S = 2.0
#: A return to the remembered load that meets no deficit for this long was right, s.
_RESTORE_OK_S = 8.0
#: A fall of the house load between these multiples of the heater's power may be the tank's thermostat opening.
_LIKE_HEATER = (0.4, 1.6)
#: Within inverter_lag_s of a cut a deficit below this is the inverter still settling to it, not a reason to cut
#: again (each such cut is a servo move, and the probe back another), W.
_SETTLING_TOLERANCE_W = 60.0


#: Actuators that give the commanded power at once and to the watt (`heater.actuator`): the 0-10 V input. The
#: servo's small-move rule rounds its moves (a rise comes out bigger than its integral part, a cut deeper than
#: asked), and the controller's rules for an exact actuator make up for what that rounding gave by accident
#: (see ControllerSettings.exact_actuator). ssr_burst's whole cycles are a step of their own: with these rules its
#: days came out the same within a tenth (BENCHMARKS.md, "Actuators"), so it keeps the plain ones.
EXACT_ACTUATORS = frozenset({"pwm_0_10v"})
#: An exact actuator holds a deficit only up to this share of `control.deficit_tolerance_w` (15 W of the default
#: 20 W): the tolerance is there so the servo does not hunt over a degree or two, which a 0-10 V input cannot.
EXACT_TOLERANCE_SHARE = 0.75


@dataclass(frozen=True)
class ControllerSettings:
    """What the controller needs from the config."""

    control: ControlConfig
    max_power_w: float
    #: The actuator gives the commanded power exactly and at once (EXACT_ACTUATORS). Then a rise on a new sample
    #: keeps its proportional part (the next sample's error falls into the deadband and would hand it back, so
    #: each crossing of the deadband would gain only the integral's few watts), and a cut lands at no deficit:
    #: the allowances decide whether to cut, not where to land (landing at the allowance leaves the battery
    #: discharging just inside the deficit tolerance, held there). `for_actuator` also narrows the tolerance.
    exact_actuator: bool = False

    @classmethod
    def for_actuator(cls, control: ControlConfig, max_power_w: float, actuator: str) -> ControllerSettings:
        """The settings for a heater driven by `actuator` (heater.actuator): an exact one gets its rules and
        EXACT_TOLERANCE_SHARE of the deficit tolerance."""
        if actuator not in EXACT_ACTUATORS:
            return cls(control, max_power_w)
        narrow = replace(control, deficit_tolerance_w=EXACT_TOLERANCE_SHARE * control.deficit_tolerance_w)
        return cls(narrow, max_power_w, exact_actuator=True)

    @classmethod
    def from_config(cls, config: Config) -> ControllerSettings:
        """Take the control section, the heater's maximum power and its actuator."""
        return cls.for_actuator(config.control, config.heater.max_power_w, config.heater.actuator)


@dataclass(frozen=True)
class ControllerState:
    """What the controller remembers between steps."""

    integral_w: float = 0.0
    power_w: float = 0.0
    soc_ok: bool = False
    accept_ref_w: float | None = None
    #: The SoC at which the acceptance was last learned.
    accept_soc_pct: float | None = None
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
    #: Recent commands: (time_s, power_w, lag_import_w) -- the power asked for, and the grid import its
    #: rises should cause while the inverter catches up (first-order lag of inverter_lag_s).
    commands: tuple[tuple[float, float, float], ...] = ()
    #: Inverter output the lag model expects now (follows the commanded power), W.
    lagged_w: float = 0.0
    #: The house load (consumption minus heater) of the last new sample, W.
    house_w: float | None = None
    #: Heater + house that PV covered while still held back (the known-good load), and when.
    covered_w: float | None = None
    covered_s: float | None = None
    #: PV the MPPT gave at that time (a deficit with PV well below it is a cloud, not the probe's limit).
    covered_pv_w: float | None = None
    #: When the house load last rose by feed_forward_min_w or more (a load that ends soon after is pulsing).
    house_rise_s: float | None = None
    #: When the heater last returned to the remembered load, and no return before restore_block_s.
    restore_s: float | None = None
    restore_block_s: float | None = None
    #: Wait after a return that met a deficit (PV had not come back): doubles on each such miss.
    restore_wait_s: float = 0.0
    #: PV of the last new sample, W.
    pv_w: float | None = None
    #: When the house load last fell by feed_forward_min_w or more (sample time).
    house_fall_s: float | None = None
    #: How much it fell then, W.
    house_fall_w: float = 0.0


def spare_power_w(
    m: Measurements,
    accept_ref_w: float | None,
    settings: ControlConfig,
    import_lag_ok: bool = False,
    battery_share: float | None = None,
    heater_w: float = 0.0,
    shed_w: float = 0.0,
) -> tuple[float | None, bool]:
    """The error signal (W, + = PV going to waste) and whether the battery is saturated.

    With `import_lag_ok`, grid import while PV is still held back counts as the
    inverter catching up with the last rise: hold (error 0) instead of backing
    off. With `battery_share` (early heating on a forecast) the battery's charge
    beyond that share of (battery + heater_w) is spare, whatever the policy.
    `shed_w` is what the heater gave up, and a house load that ended, within
    two inverter lags before the sample: an export up to that much while the
    battery discharges is counted back into the battery (the inverter lags
    behind the cut or the load's end); an export nothing shed (a battery
    feeding the grid on purpose) is not.
    Returns (None, False) when grid and battery power are both unknown.
    """
    grid_w = m.grid_w
    battery_w = m.battery_w
    if grid_w is None and battery_w is None:
        return None, False
    grid = grid_w or 0.0
    battery = battery_w or 0.0
    lag_export_w = min(max(0.0, -grid), shed_w)
    if lag_export_w > 0 and battery < -settings.battery_discharge_allowance_w:
        # Discharging while exporting what the heater just shed: the inverter still gives the old load (it
        # lags behind a cut). Judge the picture it settles to, with that export back in the battery.
        grid += lag_export_w
        battery += lag_export_w
    hidden = m.pv_curtailed and battery >= -settings.battery_discharge_allowance_w
    import_w = max(0.0, grid - settings.grid_import_allowance_w)
    discharge_w = max(0.0, -battery - settings.battery_discharge_allowance_w)
    if discharge_w > 0 or (import_w > 0 and not (hidden and import_lag_ok)):
        shortfall_w = 0.0
        if discharge_w > 0 and battery_share is None and settings.policy == "battery_first" and accept_ref_w:
            shortfall_w = max(0.0, accept_ref_w)  # nor does the battery get the charge it accepted: its share
        return -(import_w + discharge_w + shortfall_w), False
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
    *,
    cap_w: float | None = None,
) -> tuple[ControllerState, HeatRequest]:
    """One control step: the new state and the heat request for the relay guard (reserve: early heating advice).

    `cap_w` caps this tick's power: the request, and the power and integral the
    controller keeps (so it does not wind up while capped); None = no cap.
    """
    c = settings.control
    capped = cap_w is not None and cap_w < settings.max_power_w
    if cap_w is not None and capped:
        settings = replace(settings, max_power_w=max(0.0, cap_w))
    if m is None:
        return _stopped(state, None, "no data"), HeatRequest(False, 0.0, "no data")
    min_soc_pct = c.min_soc_pct if reserve is None else reserve.min_soc_pct
    soc_ok = m.soc_pct is not None and soc_gate(m.soc_pct, state.soc_ok, min_soc_pct, c.soc_hysteresis_pct)
    if not soc_ok:
        reason = "SoC unknown" if m.soc_pct is None else f"charging battery first (SoC {m.soc_pct:.0f} %)"
        return _stopped(replace(state, soc_ok=False), m, reason), HeatRequest(False, 0.0, reason)

    obs = _observe(state, m, c, now_s, relay_on)
    share = None
    if reserve is not None and m.soc_pct is not None and m.soc_pct < c.min_soc_pct:
        share = reserve.battery_share  # early heating: the battery keeps what it needs to be full in time
    stale = _acceptance_stale(state, m, c, share)
    load_ended = obs.house_step_w <= -c.feed_forward_min_w
    fall_w = -obs.house_step_w if load_ended else state.house_fall_w  # what the inverter sheds, whoever gets it
    if stale and obs.house_step_w < 0:
        obs = replace(obs, house_step_w=0.0)  # a load that ends frees power for the battery first, not the heater
    error_w, saturated = spare_power_w(
        m, state.accept_ref_w, c, import_lag_ok=obs.lag_ok, battery_share=share, heater_w=state.power_w,
        shed_w=obs.shed_w,
    )
    if error_w is None:
        reason = "grid and battery power unknown"
        return _stopped(replace(state, soc_ok=True), m, reason), HeatRequest(False, 0.0, reason)
    if obs.explained_import and m.pv_curtailed and (m.battery_w or 0.0) >= -c.battery_discharge_allowance_w:
        error_w, saturated = c.probe_w, True  # the import is the inverter catching up with the last rise

    accept_ref, accept_soc = state.accept_ref_w, state.accept_soc_pct
    stale_why = ""
    if stale and not saturated and accept_ref is not None and m.battery_w is not None:
        # The estimate was learned at a higher SoC: a battery charging beyond it (PV not held back, no
        # export) may take more still. Yield that much (it doubles each sample while the battery takes it)
        # until PV is held back again: then the battery takes no more and its acceptance is learned anew.
        excess_w = m.battery_w - accept_ref
        if excess_w > c.deadband_w and -excess_w < error_w:
            error_w = -excess_w
            stale_why = (
                f"battery takes {m.battery_w:.0f} W, more than the {accept_ref:.0f} W it accepted at "
                f"SoC {accept_soc:.0f} %: heater yields"
            )
    # Export within a moment of a load's end (inverter_lag_s and the GX's delay) is the ESS catching up, stale
    # estimate or not: the battery's charge is still climbing back, it is not full. Learned from, such moments
    # put the estimate far below what the battery takes, and the heater then holds the battery's share. While
    # the estimate is stale, so is export just after the heater moved. Neither is learned from.
    fall_s = m.time_s if load_ended else state.house_fall_s
    catching_up = fall_s is not None and m.time_s - fall_s <= c.inverter_lag_s + _CATCH_UP_EXTRA_S
    shedding = not m.pv_curtailed and (catching_up or (stale and not obs.settled))
    if saturated and m.battery_w is not None and obs.import_since_s is None and not shedding:
        battery = max(0.0, m.battery_w)
        if accept_ref is None or stale:
            accept_ref, accept_soc = battery, m.soc_pct  # learned anew
        else:
            accept_ref, accept_soc = accept_ref + _ACCEPT_SMOOTHING * (battery - accept_ref), m.soc_pct
    last_surplus = now_s if error_w > 0 or saturated else state.last_surplus_s
    hidden = m.pv_curtailed and error_w >= 0
    hidden_since = (state.hidden_since_s if state.hidden_since_s is not None else now_s) if hidden else None
    if -c.deficit_tolerance_w < error_w < c.deadband_w:
        error_w = 0.0  # hold: spare PV below the deadband, or a deficit within tolerance
    if -_SETTLING_TOLERANCE_W < error_w < 0.0 and _cut_within(obs.commands, now_s, c.inverter_lag_s):
        error_w = 0.0  # hold: a small deficit just after a cut is the inverter still settling to it
    if settings.exact_actuator and error_w < 0.0:
        error_w -= _allowances_used_w(m, c)  # an exact actuator's cut lands at no deficit, not at the allowance

    # PV fell since the last sample: a deficit now is a cloud coming, not the limit of hidden PV
    cloud = m.pv_w is not None and state.pv_w is not None and m.pv_w < state.pv_w - c.restore_margin_w
    shaded = m.pv_w is not None and state.covered_pv_w is not None and m.pv_w < state.covered_pv_w - c.restore_margin_w
    limit = _track_limit(state, c, error_w, obs, now_s, cloud, shaded)
    restoring = state.restore_s is not None and now_s - state.restore_s <= _RESTORE_OK_S
    covered_w, covered_s, covered_pv = _track_covered(state, c, obs, hidden, error_w, m, cloud, restoring)
    restore_s, block_s, wait_s = _track_restore(state, error_w, obs, now_s)
    if relay_on:
        blocked = block_s is not None and now_s < block_s
        integral, power, hidden_since, why = _next_power(
            state, settings, error_w, hidden, hidden_since, limit, obs,
            None if blocked else covered_w, covered_s, now_s,
        )
        if why.startswith("PV held back again"):
            restore_s = now_s
            limit = (limit[0], None, limit[2])  # the limit found in the cloud no longer holds the probe
    else:
        integral, power, why = 0.0, 0.0, ""

    recent = last_surplus is not None and now_s - last_surplus <= c.idle_off_s
    want = recent or power > 0
    new = ControllerState(
        integral_w=integral,
        power_w=power,
        soc_ok=True,
        accept_ref_w=accept_ref,
        accept_soc_pct=accept_soc,
        last_surplus_s=last_surplus,
        hidden_since_s=hidden_since,
        import_since_s=obs.import_since_s,
        limit_w=limit[0],
        limit_s=limit[1],
        hold_s=limit[2],
        last_sample_s=m.time_s,
        error_w=error_w,
        commands=obs.commands_with(now_s, power),
        lagged_w=obs.lagged_w,
        house_w=obs.house_w if obs.house_w is not None else state.house_w,
        covered_w=covered_w,
        covered_s=covered_s,
        covered_pv_w=covered_pv,
        house_rise_s=m.time_s if obs.house_step_w >= c.feed_forward_min_w else state.house_rise_s,
        restore_s=restore_s,
        restore_block_s=block_s,
        restore_wait_s=wait_s,
        pv_w=m.pv_w if obs.new_sample else state.pv_w,
        house_fall_s=fall_s,
        house_fall_w=fall_w,
    )
    if not want:
        return new, HeatRequest(False, 0.0, "no surplus")
    why = stale_why or why or _describe(error_w, m, relay_on and power >= settings.max_power_w - 1e-9)
    if capped and relay_on and power >= settings.max_power_w - 1e-9:
        why = f"{why} (capped at {settings.max_power_w:.0f} W)"
    return new, HeatRequest(True, power, why)


def _acceptance_stale(state: ControllerState, m: Measurements, c: ControlConfig, share: float | None) -> bool:
    """True when battery_first's acceptance estimate was learned at a SoC well above today's (it takes more now)."""
    if c.policy != "battery_first" or share is not None or state.accept_ref_w is None:
        return False
    learned, soc = state.accept_soc_pct, m.soc_pct
    return learned is not None and soc is not None and soc <= learned - _ACCEPT_STALE_SOC_PCT


def _stopped(state: ControllerState, m: Measurements | None, reason: str) -> ControllerState:
    """The state when no heat is asked for (no data, SoC, unknown power): power, integral, history cleared."""
    last = state.last_sample_s if m is None else m.time_s
    return replace(state, integral_w=0.0, power_w=0.0, error_w=0.0, last_sample_s=last, commands=(), lagged_w=0.0)


@dataclass(frozen=True)
class _Observation:
    """What a sample says once compared with the controller's own recent commands."""

    #: True when this sample was not seen before (time_s newer than the last one).
    new_sample: bool
    #: The heater power asked for at the sample's time (servo delay included), W.
    heater_then_w: float
    #: The house load of this sample (consumption - heater then), None when consumption is unknown.
    house_w: float | None
    #: House change since the last new sample, W (0 when unknown or not a new sample).
    house_step_w: float
    #: The power asked for did not move in the 2.5 s before the sample (no step of the inverter's own making).
    settled: bool
    #: Grid import at this sample, and since when import lasts.
    import_w: float
    import_since_s: float | None
    #: Import within the lag model's expectation for the last rises (the inverter is catching up).
    explained_import: bool
    #: Import lasting less than inverter_lag_s: held, not backed off (the old rule).
    lag_ok: bool
    #: Power asked for within _RISE_RECENT_S before the sample rose (a probe was going on).
    rising: bool
    #: What the heater gave up, and a house load that ended, within two inverter lags before the sample (the
    #: inverter may still give it), W.
    shed_w: float
    lagged_w: float
    commands: tuple[tuple[float, float, float], ...]

    def commands_with(self, now_s: float, power_w: float) -> tuple[tuple[float, float, float], ...]:
        """The command history with this tick's command appended (and the oldest dropped)."""
        entry = (now_s, power_w, max(0.0, power_w - self.lagged_w))
        return (*self.commands[-(_COMMANDS_KEPT - 1):], entry)


def _command_at(
    commands: tuple[tuple[float, float, float], ...], time_s: float, default_w: float
) -> tuple[float, float]:
    """(power asked for, lag import expected) in force at time_s; default when the history does not reach back."""
    found = None
    for entry in commands:
        if entry[0] <= time_s:
            found = entry
        else:
            break
    if found is None:
        return (commands[0][1], commands[0][2]) if commands else (default_w, 0.0)
    return found[1], found[2]


def _cut_within(commands: tuple[tuple[float, float, float], ...], now_s: float, span_s: float) -> bool:
    """True when the power asked for fell within the span_s before now_s (a cut, or a back-off)."""
    asked = _asked_within(commands, now_s, span_s)
    return any(b < a - 1.0 for a, b in pairwise(asked))


def _asked_within(commands: tuple[tuple[float, float, float], ...], time_s: float, span_s: float) -> list[float]:
    """The powers asked for in the span_s before time_s (oldest first)."""
    return [p for t, p, _ in commands if time_s - span_s <= t <= time_s]


def _observe(state: ControllerState, m: Measurements, c: ControlConfig, now_s: float, relay_on: bool) -> _Observation:
    """Compare the sample with the controller's own commands: heater then, house load, import explained by lag."""
    new_sample = state.last_sample_s is None or m.time_s > state.last_sample_s
    dt_s = 0.0 if not state.commands else max(0.0, now_s - state.commands[-1][0])
    tau_s = max(c.inverter_lag_s, 0.1)
    # the inverter's output as the lag model expects it: up with inverter_lag_s (the slowest lag
    # expected), down at once -- so the import it predicts for a rise is an upper bound
    lagged = min(state.lagged_w + (state.power_w - state.lagged_w) * (1.0 - math.exp(-dt_s / tau_s)), state.power_w)
    commands = state.commands if relay_on else ()
    heater_then, lag_import = _command_at(commands, m.time_s - _SERVO_DELAY_S, state.power_w if relay_on else 0.0)
    consumption = m.consumption_w
    house = None if consumption is None else max(0.0, consumption - heater_then)
    step_w = 0.0
    moved = _asked_within(commands, m.time_s, 2.5)
    unsure_w = max(moved) - min(moved) if moved else 0.0
    if new_sample and house is not None and state.house_w is not None:
        step_w = house - state.house_w if unsure_w < 0.5 * c.feed_forward_min_w else 0.0
    grid = m.grid_w or 0.0
    import_w = max(0.0, grid - c.grid_import_allowance_w)
    importing = m.grid_w is not None and m.grid_w > c.grid_import_allowance_w
    since = (state.import_since_s if state.import_since_s is not None else now_s) if importing else None
    rises = _asked_within(commands, m.time_s, _RISE_RECENT_S)
    rising = len(rises) >= 2 and rises[-1] > min(rises) + c.deadband_w
    recent = _asked_within(commands, m.time_s, 2.0 * tau_s)
    shed_w = max(0.0, max(recent) - heater_then) if recent else 0.0
    # a house load that ended frees its power the same way: the inverter still gives it for a moment
    if step_w <= -c.feed_forward_min_w:
        shed_w += -step_w
    elif state.house_fall_s is not None and m.time_s - state.house_fall_s <= 2.0 * tau_s:
        shed_w += state.house_fall_w
    return _Observation(
        new_sample=new_sample,
        heater_then_w=heater_then,
        house_w=house if new_sample else None,
        house_step_w=step_w,
        settled=unsure_w < 0.5 * c.feed_forward_min_w,
        import_w=import_w,
        import_since_s=since,
        explained_import=importing and import_w <= lag_import + c.grid_import_allowance_w,
        lag_ok=since is not None and now_s - since < c.inverter_lag_s,
        rising=rising,
        shed_w=shed_w,
        lagged_w=lagged,
        commands=commands,
    )


def _track_limit(
    state: ControllerState,
    c: ControlConfig,
    error_w: float,
    obs: _Observation,
    now_s: float,
    cloud: bool,
    shaded: bool,
) -> tuple[float | None, float | None, float]:
    """The limit of hidden PV: (power where the last deficit began, when, how long to stay below it).

    A deficit that begins while PV is well below what it gave at the remembered
    load is a cloud (or a load), not the limit of hidden PV: no limit then.
    While PV stays well below what it gave at the remembered load (`shaded`)
    the hold stays short: the sun may come back any moment.
    """
    limit_w, limit_s, hold_s = state.limit_w, state.limit_s, state.hold_s
    ended = obs.house_step_w <= -c.feed_forward_min_w
    if limit_w is not None and ended and not _pulsing_end(state, obs, c, now_s) and not _like_the_heater(obs):
        # the limit is what PV covers beside the house: a load that ends leaves the heater that much more room
        limit_w = max(0.0, limit_w - obs.house_step_w)
    if error_w < 0 and state.error_w >= 0 and state.power_w > 0 and not cloud:
        # A deficit begins: the limit lies just below this power. Found again where it was
        # (steady sun): hold longer; somewhere else (clouds): probe again soon.
        steady = limit_w is not None and abs(state.power_w - limit_w) <= _STEADY_LIMIT_W
        hold_s = min(max(2.0 * hold_s, _MIN_HOLD_S), c.probe_hold_s) if steady else _MIN_HOLD_S
        if shaded:
            hold_s = min(hold_s, _SHADED_HOLD_S)
        limit_w, limit_s = state.power_w, now_s
    if limit_s is not None and now_s - limit_s > hold_s:
        limit_s = None
    return limit_w, limit_s, hold_s


def _pulsing_end(state: ControllerState, obs: _Observation, c: ControlConfig, now_s: float) -> bool:
    """True when a house load ends within pulse_s of the last rise: a pulsing load (a hob), not given back."""
    return (
        state.house_rise_s is not None
        and obs.house_step_w <= -c.feed_forward_min_w
        and now_s - state.house_rise_s < c.pulse_s
    )


def _like_the_heater(obs: _Observation) -> bool:
    """True when a fall of the house load is about the heater's own power: the tank's thermostat may have opened
    (the element stops, and the consumption falls as if a house load had ended)."""
    drop_w = -obs.house_step_w
    low, high = _LIKE_HEATER
    return drop_w > 0 and low * obs.heater_then_w <= drop_w <= high * obs.heater_then_w


def _track_covered(
    state: ControllerState,
    c: ControlConfig,
    obs: _Observation,
    hidden: bool,
    error_w: float,
    m: Measurements,
    cloud: bool,
    restoring: bool,
) -> tuple[float | None, float | None, float | None]:
    """(load, when, PV then): heater + house that PV covered while held back; raised by hidden samples.

    A deficit while a probe was rising (PV did not just fall, and it is not a
    return to the remembered load that missed) is the limit: it lowers the load
    remembered. A deficit as PV falls is a cloud: the memory stays, to return
    there after it.
    """
    covered, since, pv_then = state.covered_w, state.covered_s, state.covered_pv_w
    if covered is not None and since is not None and m.time_s - since > c.memory_s:
        covered = since = pv_then = None  # too old: the sun has moved on
    if not obs.new_sample or obs.house_w is None:
        return covered, since, pv_then
    load = obs.heater_then_w + obs.house_w
    if hidden and not (obs.import_w > 0 and not obs.explained_import):
        if covered is None or load >= covered:
            covered, pv_then = load, m.pv_w
        since = m.time_s
    elif error_w < 0 and covered is not None and not cloud and not restoring:
        below = m.pv_w is not None and pv_then is not None and m.pv_w < pv_then - c.restore_margin_w
        if not below:  # PV as high as when the load was covered: this is the limit, not a cloud
            covered = min(covered, load + error_w - c.restore_margin_w)
    return covered, since, pv_then


def _track_restore(
    state: ControllerState, error_w: float, obs: _Observation, now_s: float
) -> tuple[float | None, float | None, float]:
    """(last return, no return before, wait): a return to the remembered load that meets a deficit was a miss.

    After a miss (the cloud had not passed, PV was hidden only because the
    heater was low) the next return waits 5 s, then 10, 20 ... (up to the
    memory's age); a return that holds for _RESTORE_OK_S resets the wait.
    """
    restore_s, block_s, wait_s = state.restore_s, state.restore_block_s, state.restore_wait_s
    if restore_s is None:
        return None, block_s, wait_s
    age_s = now_s - restore_s
    if error_w < 0 and obs.new_sample and age_s <= _RESTORE_OK_S:
        wait_s = min(max(2.0 * wait_s, _MIN_HOLD_S), 600.0)
        return None, now_s + wait_s, wait_s
    if age_s > _RESTORE_OK_S:
        return None, block_s, 0.0
    return restore_s, block_s, wait_s


def _next_power(
    state: ControllerState,
    settings: ControllerSettings,
    error_w: float,
    hidden: bool,
    hidden_since: float | None,
    limit: tuple[float | None, float | None, float],
    obs: _Observation,
    covered_w: float | None,
    covered_s: float | None,
    now_s: float,
) -> tuple[float, float, float | None, str]:
    """(integral, power, hidden_since, reason) with the relay on: PI, feed-forward, cut, restore, probe limits."""
    c = settings.control
    top = settings.max_power_w
    last_s = state.last_sample_s
    dt_s = 0.0 if last_s is None or not obs.new_sample else min(max(now_s - last_s, 0.0), _MAX_DT_S)
    base, why = state.power_w, ""
    if _pulsing_end(state, obs, c, now_s):
        why = f"house load {-obs.house_step_w:.0f} W off again within {c.pulse_s:g} s (pulsing): not given back"
    elif abs(obs.house_step_w) >= c.feed_forward_min_w:
        freed_w = -obs.house_step_w
        if freed_w > 0:
            # a load that ends frees first what battery and grid gave it (the deficit of the last sample)
            freed_w = max(0.0, freed_w - max(0.0, -state.error_w))
        base = min(max(base + freed_w, 0.0), top)
        verb = "ended" if obs.house_step_w < 0 else "started"
        why = f"house load {abs(obs.house_step_w):.0f} W {verb}: heater {base - state.power_w:+.0f} W at once"
    integral = min(max(state.integral_w + (base - state.power_w) + c.ki_per_s * error_w * dt_s, 0.0), top)
    power = min(max(integral + c.kp * error_w, 0.0), top)
    if error_w < 0 and obs.new_sample:
        cut = max(0.0, obs.heater_then_w + error_w)
        if cut < power:
            power = integral = cut
            why = f"backing off {-error_w:.0f} W: heater {obs.heater_then_w:.0f} W then, {cut:.0f} W now"
    restore = None
    steady = state.house_rise_s is None or now_s - state.house_rise_s >= c.pulse_s
    if hidden and steady and covered_w is not None and obs.house_w is not None:
        restore = min(covered_w - obs.house_w - c.restore_margin_w, top)
    if restore is not None and restore > max(base, state.power_w) + c.deadband_w:
        power = integral = restore
        ago = now_s - covered_s if covered_s is not None else 0.0
        why = f"PV held back again: back to {restore:.0f} W (PV covered that {ago:.0f} s ago)"
        return integral, power, now_s, why
    ceiling = max(base, state.power_w) + _raise_rate_w_per_s(c, hidden_since, now_s) * dt_s
    limit_w, limit_s, hold_s = limit
    held = ""
    if hidden and limit_s is not None and limit_w is not None:
        # PV is hidden, but the limit was found a moment ago: stay below it for a while
        # rather than probing again at once (each probe takes a little from the battery);
        # the next probe starts slowly again.
        below = max(state.power_w, limit_w - c.deadband_w)
        if below < ceiling:
            ceiling = below
            held = (
                f"PV held back by the MPPT: staying below the limit found at {limit_w:.0f} W "
                f"{now_s - limit_s:.0f} s ago, probing again in {max(0.0, limit_s + hold_s - now_s):.0f} s"
            )
        hidden_since = now_s
    if hidden and error_w >= c.probe_w and obs.new_sample:
        power = integral = min(max(power, ceiling), top)  # the probe follows its (exponential) rate, not the PI
    if power > ceiling:
        power = ceiling
        integral = min(integral, ceiling)  # anti-windup against the rise limit
    if held and not why and power <= state.power_w + 1e-9:
        why = held  # the probe waits below the limit: say so, not "raising"
    if settings.exact_actuator and error_w > 0.0 and obs.new_sample and power > integral:
        integral = power  # the rise keeps its proportional part when the next error falls into the deadband
    return integral, power, hidden_since, why


def _allowances_used_w(m: Measurements, c: ControlConfig) -> float:
    """The battery-discharge and grid-import allowances that a sample's discharge and import go beyond, W."""
    used = 0.0
    if m.battery_w is not None and -m.battery_w > c.battery_discharge_allowance_w:
        used += c.battery_discharge_allowance_w
    if m.grid_w is not None and m.grid_w > c.grid_import_allowance_w:
        used += c.grid_import_allowance_w
    return used


def _raise_rate_w_per_s(c: ControlConfig, hidden_since_s: float | None, now_s: float) -> float:
    """How fast the power may rise now.

    A measured surplus (export) may be followed at `raise_w_per_s`. Hidden PV
    is probed: the rise starts at `probe_start_w_per_s` -- after a back-off the
    limit is usually close, and a slow probe overshoots it by little -- and
    grows exponentially to `raise_w_per_s` over `probe_accel_s` while PV stays
    hidden, so a large gap is crossed in a few seconds.
    """
    if hidden_since_s is None:
        return c.raise_w_per_s
    start, full = c.probe_start_w_per_s, max(c.raise_w_per_s, c.probe_start_w_per_s)
    ramp = min(1.0, (now_s - hidden_since_s) / c.probe_accel_s) if c.probe_accel_s > 0 else 1.0
    return start * (full / start) ** ramp


def _describe(error_w: float, m: Measurements, at_top: bool = False) -> str:
    if error_w < 0:
        return f"backing off {-error_w:.0f} W"
    if m.pv_curtailed:
        return "PV held back by the MPPT: heater at full power" if at_top else "PV held back by the MPPT: raising"
    if error_w > 0:
        return f"surplus {error_w:.0f} W"
    return "holding"
