"""The relay guard: the last word before the pins. A pure step, no I/O, no clock, no logging.

It turns the controller's HeatRequest into the HeaterOutput the pins get.

Safety checks (each switches the relay off at once, whatever min_on_s says,
and is never blocked by the switch limit):

- `fault` given (GX unreachable, an error in the loop), no measurements;
- stale data: `now_s - m.time_s > stale_after_s` (a sample stamped more than
  stale_after_s in the *future* is refused too: the clocks disagree);
- implausible data: SoC missing or outside 0..100 %, grid power or battery
  power missing (both are always known on a working ESS);
- a non-finite power request (a controller bug);
- outside the time window (window_start..window_end local time, end exclusive;
  end before start spans midnight; only one of them set bounds that side of
  the day; start == end is an empty window). When a window is configured and
  the wall clock is not trusted (`local_time` None) the window cannot be
  checked, so it counts as outside: no heating;
- the sun below `min_sun_elevation_deg` at the site (when latitude and
  longitude are configured), computed from `utc_s` by pvheater.control.sun; with an
  untrusted clock (`local_time` or `utc_s` None) it cannot be checked: no
  heating;
- SoC below min_soc_pct; after such a stop heating resumes only at
  min_soc_pct + soc_hysteresis_pct (the gate starts closed, like the
  controller's). A forecast reserve may pass a lower limit for this tick
  (`min_soc_pct` argument of step()).

`forced=True` (a boost, a grid top-up or a legionella cycle of
pvheater.control.hotwater: the grid is allowed this tick) skips only the
policy gates -- the time window, the sun rule and min SoC -- never the data
checks, the invalid request, the switch limit or min on/off times.

Switching on needs `confirm_samples` consecutive *distinct* fresh samples
(distinct `m.time_s`, repeats of the same sample do not count) that all want
heat and pass every check, plus `min_off_s` since the last edge and room in
the switch limit.

Switch limit: every edge (on and off, safety offs included) is remembered for
an hour. The relay closes only when the edges of the last hour leave room for
this on *and* the off that must follow (count + 2 <= max_switches_per_hour),
so the off is always within the limit and never has to wait for it; in any
sliding hour there are at most max_switches_per_hour edges.

When the controller stops wanting heat before min_on_s has passed, the relay
stays closed with power 0, so a passing cloud does not cost a switch cycle.

Output power: relay off -> 0 W; relay on -> the requested power, at least 0 W.

The start state `GuardState()` is relay off with no history, so min_off_s
does not delay the first switch-on; `GuardState.start(now_s)` makes it count
from start-up (see there).

max_switches_per_hour must be at least 2 for the relay to ever close (one on
and its off); with 1 it stays open and says so.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, replace

from pvheater.config import Config, ControlConfig, RelayConfig, SiteConfig
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeaterOutput, HeatRequest
from pvheater.control.sun import sun_elevation_deg
from pvheater.control.timeofday import format_hhmm as _fmt
from pvheater.control.timeofday import in_window, parse_hhmm

#: The sliding window of the switch limit, seconds.
SWITCH_WINDOW_S = 3600.0


@dataclass(frozen=True)
class GuardSettings:
    """What the guard needs from the relay and control sections of the config."""

    stale_after_s: float = 5.0
    confirm_samples: int = 3
    min_on_s: float = 60.0
    min_off_s: float = 120.0
    max_switches_per_hour: int = 6
    window_start: datetime.time | None = None
    window_end: datetime.time | None = None
    min_soc_pct: float = 95.0
    soc_hysteresis_pct: float = 2.0
    #: The sun rule: no heating while the sun is below min_sun_elevation_deg (None: no rule).
    latitude_deg: float | None = None
    longitude_deg: float | None = None
    min_sun_elevation_deg: float = -0.833
    #: The knob must have been at zero this long before the relay opens at (almost) no current, s.
    zero_settle_s: float = 1.0
    #: Seconds between the loop's ticks (the knob goes to zero this much earlier before data go stale).
    poll_interval_s: float = 1.0

    @classmethod
    def from_sections(
        cls, relay: RelayConfig, control: ControlConfig, site: SiteConfig | None = None
    ) -> GuardSettings:
        """Build from the relay section, the SoC limits of the control section and the site (sun rule)."""
        site = site if site is not None else SiteConfig()
        return cls(
            latitude_deg=site.latitude_deg,
            longitude_deg=site.longitude_deg,
            min_sun_elevation_deg=site.min_sun_elevation_deg,
            stale_after_s=relay.stale_after_s,
            confirm_samples=relay.confirm_samples,
            min_on_s=relay.min_on_s,
            min_off_s=relay.min_off_s,
            max_switches_per_hour=relay.max_switches_per_hour,
            window_start=None if relay.window_start is None else parse_hhmm(relay.window_start),
            window_end=None if relay.window_end is None else parse_hhmm(relay.window_end),
            min_soc_pct=control.min_soc_pct,
            soc_hysteresis_pct=control.soc_hysteresis_pct,
            zero_settle_s=relay.zero_settle_s,
        )

    @classmethod
    def from_config(cls, config: Config) -> GuardSettings:
        """Build from the whole config."""
        return replace(cls.from_sections(config.relay, config.control, config.site),
                       poll_interval_s=config.poll.interval_s)

    @property
    def has_window(self) -> bool:
        """True when a time window is configured."""
        return self.window_start is not None or self.window_end is not None

    @property
    def has_sun_rule(self) -> bool:
        """True when the site is known, so the sun's elevation is checked."""
        return self.latitude_deg is not None and self.longitude_deg is not None


@dataclass(frozen=True)
class GuardState:
    """What the guard remembers between steps. The default is the start state: relay off."""

    relay_on: bool = False
    #: Time of the last relay edge (None: no edge yet, min_off_s does not apply).
    changed_s: float | None = None
    #: Times of the relay edges (on and off) within the last hour, oldest first.
    switch_times_s: tuple[float, ...] = ()
    #: Distinct fresh samples in a row that wanted heat and passed every check.
    confirmed: int = 0
    #: time_s of the newest sample counted in `confirmed`.
    last_sample_s: float | None = None
    #: SoC gate with hysteresis (starts closed: needs min + hysteresis first).
    soc_ok: bool = False
    #: Since when the output power has been 0 with the relay on (None: it is not).
    zero_since_s: float | None = None
    #: True when the last off edge broke current (or was the start-up): min_off_s applies after it.
    opened_loaded: bool = True

    @classmethod
    def start(cls, now_s: float | None = None) -> GuardState:
        """Relay off; with now_s, treat start-up as an off edge so min_off_s applies from now_s.

        Passing now_s is the cautious choice for a service that may be
        restarted in a loop: a restart cannot then bypass min_off_s. The edge
        is not counted against the switch limit.
        """
        return cls(changed_s=now_s)

    def at_zero(self, now_s: float, settle_s: float) -> bool:
        """True when the relay is on and the knob has been at zero for settle_s: opening breaks no current."""
        return self.zero_since_s is not None and now_s - self.zero_since_s >= settle_s


def force_off(state: GuardState, now_s: float) -> GuardState:
    """The state after the relay was opened outside step() (shutdown, loop error): an edge when it was on."""
    return _off(state, now_s, "forced off")[0]


def soc_gate(soc_pct: float, was_ok: bool, min_soc_pct: float, hysteresis_pct: float) -> bool:
    """SoC gate with hysteresis: open at >= min, after a stop only again at >= min + hysteresis."""
    return soc_pct >= (min_soc_pct if was_ok else min_soc_pct + hysteresis_pct)


def _data_problem(m: Measurements | None, settings: GuardSettings, now_s: float, fault: str | None) -> str | None:
    """Why the data cannot be used (missing, stale, from the future, implausible): the fail-safe; or None."""
    if fault is not None:
        return f"fault: {fault}"
    if m is None:
        return "no data"
    age_s = now_s - m.time_s
    if age_s > settings.stale_after_s:
        return f"stale data ({age_s:.1f} s old)"
    if age_s < -settings.stale_after_s:
        return f"data time {-age_s:.1f} s in the future"
    soc = m.soc_pct
    if soc is None or not math.isfinite(soc) or not 0.0 <= soc <= 100.0:
        return "implausible data: SoC " + ("missing" if soc is None else f"{soc}")
    # Heating needs the whole picture: every Victron ESS has a battery, and the system service always
    # reports the grid (0 W off-grid), so an unknown value here is an implausible or missing reading.
    if m.grid_w is None and m.battery_w is None:
        return "implausible data: grid and battery power missing"
    if m.grid_w is None:
        return "implausible data: grid power missing"
    if m.battery_w is None:
        return "implausible data: battery power missing"
    return None


def _safety_problem(
    request: HeatRequest,
    settings: GuardSettings,
    local_time: datetime.time | None,
    utc_s: float | None = None,
    forced: bool = False,
) -> str | None:
    """Why it is unsafe to heat with usable data regardless of the request (SoC aside), or None.

    forced: the policy gates (window, sun) are skipped; the invalid request is not.
    """
    if not math.isfinite(request.power_w):
        return f"invalid power request ({request.power_w})"
    if forced:
        return None
    if settings.has_window:
        if local_time is None:
            return "clock not trusted: time window cannot be checked"
        if not in_window(local_time, settings.window_start, settings.window_end):
            return f"outside time window {_fmt(settings.window_start)}-{_fmt(settings.window_end)}"
    if settings.has_sun_rule:
        if local_time is None or utc_s is None:
            return "clock not trusted: sun position cannot be checked"
        assert settings.latitude_deg is not None and settings.longitude_deg is not None
        elevation_deg = sun_elevation_deg(utc_s, settings.latitude_deg, settings.longitude_deg)
        if elevation_deg < settings.min_sun_elevation_deg:
            return f"sun below {settings.min_sun_elevation_deg:g} deg ({elevation_deg:.1f} deg)"
    return None


def recent_edges(state: GuardState, now_s: float) -> tuple[float, ...]:
    """The relay edges within the sliding hour ending at now_s (the switch limit's window)."""
    return tuple(t for t in state.switch_times_s if t > now_s - SWITCH_WINDOW_S)


def _edge(state: GuardState, relay_on: bool, now_s: float, loaded: bool = True) -> GuardState:
    """Record a relay edge at now_s (loaded: an off edge that broke current)."""
    return replace(
        state,
        relay_on=relay_on,
        changed_s=now_s,
        switch_times_s=(*recent_edges(state, now_s), now_s),
        confirmed=0,
        last_sample_s=None,
        zero_since_s=None,
        opened_loaded=loaded if not relay_on else state.opened_loaded,
    )


def _off(
    state: GuardState, now_s: float, reason: str, settle_s: float = math.inf, failsafe: bool = False
) -> tuple[GuardState, HeaterOutput]:
    """Relay off now (an edge when it was on; loaded unless the knob sat at zero settle_s) and forget the count."""
    if state.relay_on:
        new = _edge(state, False, now_s, loaded=not state.at_zero(now_s, settle_s))
    else:
        new = replace(state, confirmed=0, last_sample_s=None)
    return new, HeaterOutput(relay_on=False, power_w=0.0, reason=reason, failsafe=failsafe)


def _on_output(state: GuardState, power_w: float, reason: str, now_s: float) -> tuple[GuardState, HeaterOutput]:
    """Relay on at power_w (at least 0); remembers since when the knob is at zero."""
    power_w = max(0.0, power_w)
    if power_w > 0.0:
        state = replace(state, zero_since_s=None)
    elif state.zero_since_s is None:
        state = replace(state, zero_since_s=now_s)
    return state, HeaterOutput(relay_on=True, power_w=power_w, reason=reason)


def step(
    state: GuardState,
    request: HeatRequest,
    m: Measurements | None,
    settings: GuardSettings,
    now_s: float,
    local_time: datetime.time | None,
    fault: str | None = None,
    *,
    min_soc_pct: float | None = None,
    utc_s: float | None = None,
    forced: bool = False,
) -> tuple[GuardState, HeaterOutput]:
    """One guard step: the new state and what the relay and heater get.

    `min_soc_pct` replaces settings.min_soc_pct for this tick (a forecast
    reserve's lower limit); `utc_s` is the trusted wall clock for the sun rule;
    `forced` skips the policy gates (window, sun, min SoC), never a safety check.
    """
    problem = _data_problem(m, settings, now_s, fault)
    if problem is not None:
        return _off(state, now_s, problem, settings.zero_settle_s, failsafe=True)
    problem = _safety_problem(request, settings, local_time, utc_s, forced)
    if problem is not None:
        return _off(state, now_s, problem, settings.zero_settle_s)
    assert m is not None and m.soc_pct is not None  # checked above
    if forced:  # the grid is allowed: no SoC gate (the gate's memory stays as it was)
        if state.relay_on:
            return _while_on(state, request, m, settings, now_s)
        return _while_off(state, request, m, settings, now_s)

    was_ok = state.soc_ok
    limit_pct = settings.min_soc_pct if min_soc_pct is None else min_soc_pct
    soc_ok = soc_gate(m.soc_pct, was_ok, limit_pct, settings.soc_hysteresis_pct)
    state = replace(state, soc_ok=soc_ok)
    if not soc_ok:
        threshold = limit_pct if was_ok else limit_pct + settings.soc_hysteresis_pct
        return _off(state, now_s, f"SoC {m.soc_pct:g} % below {threshold:g} %", settings.zero_settle_s)
    if state.relay_on:
        return _while_on(state, request, m, settings, now_s)
    return _while_off(state, request, m, settings, now_s)


def _while_on(
    state: GuardState, request: HeatRequest, m: Measurements, settings: GuardSettings, now_s: float
) -> tuple[GuardState, HeaterOutput]:
    """Relay on: follow the request; knob to zero before data go stale; open only once the knob sat at zero."""
    since_edge_s = None if state.changed_s is None else now_s - state.changed_s
    if request.want_heat:
        age_s = now_s - m.time_s
        zero_at_s = settings.stale_after_s - settings.zero_settle_s - settings.poll_interval_s
        if age_s > max(zero_at_s, 0.5 * settings.stale_after_s):
            # the data will be stale soon: have the knob at zero when the relay must open
            return _on_output(state, 0.0, f"on: data {age_s:.1f} s old, knob to zero before the stale off", now_s)
        return _on_output(state, request.power_w, f"on: {request.reason or 'heating'}", now_s)
    if since_edge_s is not None and since_edge_s < settings.min_on_s:
        left_s = settings.min_on_s - since_edge_s
        return _on_output(state, 0.0, f"min on time: {left_s:.0f} s left", now_s)
    if not state.at_zero(now_s, settings.zero_settle_s):
        state, out = _on_output(state, 0.0, "knob to zero before the relay opens", now_s)
        if not state.at_zero(now_s, settings.zero_settle_s):
            return state, out
    return _off(state, now_s, f"off: {request.reason or 'no heat wanted'}", settings.zero_settle_s)


def _while_off(
    state: GuardState, request: HeatRequest, m: Measurements, settings: GuardSettings, now_s: float
) -> tuple[GuardState, HeaterOutput]:
    """Relay off: count distinct fresh samples that want heat; close within min_off_s and the switch limit."""
    if not request.want_heat:
        return _off(state, now_s, f"off: {request.reason or 'no heat wanted'}")
    if state.last_sample_s is None or m.time_s > state.last_sample_s:
        state = replace(state, confirmed=state.confirmed + 1, last_sample_s=m.time_s)
    if state.confirmed < settings.confirm_samples:
        reason = f"waiting {state.confirmed}/{settings.confirm_samples} samples"
        return state, HeaterOutput(relay_on=False, power_w=0.0, reason=reason)
    since_edge_s = None if state.changed_s is None else now_s - state.changed_s
    if state.opened_loaded and since_edge_s is not None and since_edge_s < settings.min_off_s:
        # min_off_s protects the contacts after an off that broke current; an off at zero current needs no rest
        left_s = settings.min_off_s - since_edge_s
        return state, HeaterOutput(relay_on=False, power_w=0.0, reason=f"min off time: {left_s:.0f} s left")
    blocked = _switch_limit_problem(state, settings, now_s)
    if blocked is not None:
        return state, HeaterOutput(relay_on=False, power_w=0.0, reason=blocked)
    new = _edge(state, True, now_s)
    return _on_output(new, request.power_w, f"on: {request.reason or 'heating'}", now_s)


def _switch_limit_problem(state: GuardState, settings: GuardSettings, now_s: float) -> str | None:
    """Why the switch limit leaves no room for an on and the off after it now, or None."""
    limit = settings.max_switches_per_hour
    if limit < 2:
        return f"switch limit {limit}/h leaves no room for an on and its off"
    recent = recent_edges(state, now_s)
    if len(recent) + 2 > limit:
        # Room is needed for this on and the off after it: wait for the oldest edges to leave the hour.
        free_in_s = recent[len(recent) + 2 - limit - 1] + SWITCH_WINDOW_S - now_s
        return f"switch limit {limit}/h reached (room again in {free_in_s:.0f} s)"
    return None
