"""The service layer: one control tick (read, controller, relay guard, heater) and its logging.

`ControlLoop.tick(now_s, local_time)` is the whole job the scheduler runs. It
reads the clocks nowhere itself: the caller passes monotonic seconds and the
wall-clock time of day (None when the clock is not trusted), so the same loop
runs in real time on a Pi and in simulated time on the bench. `utc_s`, the
trusted wall clock as UTC epoch seconds (None when untrusted), feeds the sun
rule and the forecast reserve; the forecast comes from a provider in memory.

Safety: a failed read (a GX error) is ridden through while the last good
snapshot is still younger than `stale_after_s`: that snapshot is used again --
a repeated sample, as when the GX has not published: the controller does not
raise on it, the guard confirms nothing twice, the relay stays as it is and the
knob holds (it goes to zero, as for any aging data, once the snapshot is older
than stale_after_s - zero_settle_s - poll.interval_s, so that an open at the
bound breaks no current). However many reads fail in a row, once the snapshot
is older than stale_after_s the error is a fault and the guard opens the relay
-- the tick at which an outage's aging data go stale, and the bound of the
independent fail-safe below. Any other error in
the loop opens the relay, returns the knob to zero and resets the guard. Each
error episode is logged once when it starts and once when it ends. A picture
whose fast-moving values stop changing (pvheater.control.freshness) counts as
a fault too. `failsafe(now_s)` may be called from another thread while a tick
hangs in a read: it opens the relay and parks the knob when the last fresh
snapshot is older than relay.stale_after_s (the pins are applied under a lock).
A GX episode is tracked by the kind of its error (the exception class), not
its text, which changes every second ("next attempt in N s"); while it lasts,
one short reminder line follows at growing intervals (REMINDER_FIRST_S
doubling up to REMINDER_MAX_S), so a GX away for ten minutes costs a handful
of lines.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from pvheater.calibration.curve import Calibration
from pvheater.config import Config
from pvheater.control import controller, freshness, guard, heater_response, limits
from pvheater.control.measurements import Measurements
from pvheater.control.messages import SAFE_OFF, HeaterOutput, HeatRequest
from pvheater.control.reserve import ForecastProvider, ReserveAdvice, ReserveSettings, ReserveState, reserve_step
from pvheater.control.timeofday import format_hms
from pvheater.errors import GxError
from pvheater.service.hot_water import HotWater, HotWaterTick

log = logging.getLogger("pvheater")

#: Longest wait of shutdown() for the pins lock (held only while a tick applies its output).
PINS_WAIT_S = 1.0
#: After the thermostat closed the power climbs back from the sense power at most this fast: an inverter with a
#: first-order lag follows a ramp that many watts behind per second of lag, taken from battery + grid (3 s of lag:
#: 120 W, plus a GX period's step) -- twice that overran the sense power + 200 W on a slow ESS with PV held back.
CLOSE_RAMP_W_PER_S = 40.0
#: The sense command is at most this many times the sense power (the learned curve says how much it takes).
SENSE_COMMAND_MAX = 4.0
#: A drop of consumption like the heater's power that the next changes have not judged within this long parks the
#: knob at the sense power (a load ending is judged sooner: the controller takes its power and the heater follows).
SUSPECT_CAP_S = 6.0
#: With `heater.tank_full_open_after_s` set, a tank parked full with the relay open is checked again after this long.
RECHECK_PARKED_S = 1800.0
#: A tank parked full with the relay closed is checked again after this long, while PV is held back (a climb then
#: takes no battery or grid power): the knob climbs from the sense power at CLOSE_RAMP_W_PER_S, up to
#: RECHECK_CLOSED_FRAC of the element, for RECHECK_CLOSED_WINDOW_S, and the observer judges whether consumption
#: follows. A thermostat that closed while the sense command gave too little to show it (a dead zone the curve has
#: not learned) is found; on a full tank the element draws nothing and the climb costs nothing.
RECHECK_CLOSED_S = 900.0
RECHECK_CLOSED_WINDOW_S = 30.0
RECHECK_CLOSED_FRAC = 0.4
#: A status line is logged when the heater power moves by at least this much.
STATUS_STEP_W = 100.0
#: While the GX stays away: the first reminder after this long, then at doubling intervals up to REMINDER_MAX_S.
REMINDER_FIRST_S = 30.0
REMINDER_MAX_S = 300.0


class MeasurementSource(Protocol):
    """Anything with read() -> Measurements (the GX reader; a simulation's feed)."""

    def read(self) -> Measurements:
        """The newest snapshot; raises GxError when there is none."""
        ...


class HeaterPort(Protocol):
    """The pins: one apply(output, now_s), housekeeping between applies, a safe off, and releasing them."""

    @property
    def relay_on(self) -> bool:
        """True while the relay is closed."""
        ...

    @property
    def servo_angle_deg(self) -> float | None:
        """The last commanded servo angle."""
        ...

    @property
    def input_value(self) -> float | None:
        """The actuator's last commanded input (angle, duty, fraction of cycles): what the calibration maps to watts."""
        ...

    @property
    def calibration(self) -> Calibration:
        """The watts-to-angle curve the heater uses."""
        ...

    def apply(self, output: HeaterOutput, now_s: float) -> None:
        """Set relay and knob."""
        ...

    def safe_off(self, now_s: float) -> None:
        """Relay open, knob to zero."""
        ...

    def tick(self, now_s: float) -> None:
        """Housekeeping between applies (the servo stops its pulses when its time has come)."""
        ...

    def close(self) -> None:
        """Relay open, then release the pins."""
        ...


@dataclass(frozen=True)
class TickReport:
    """What one tick saw and did."""

    now_s: float
    m: Measurements | None
    request: HeatRequest
    output: HeaterOutput
    fault: str | None
    #: True when the tick failed inside the loop (not a GX error): the heater was switched off.
    loop_error: bool = False
    #: What the heater draws by the GX's consumption (pvheater.control.heater_response); None: not known.
    measured_heater_w: float | None = None
    #: The heater response says the thermostat is open (the heater does not draw).
    tank_full: bool = False
    #: What the hot-water part did (mode, forced heating, boost, tank temperature, energy today); None: not run.
    hot_water: HotWaterTick | None = None
    #: The newest error text seen (GX or loop), kept after its episode ended; None: none yet.
    last_error: str | None = None
    #: The read error ridden through on this tick (the last good snapshot, still fresh, was used again); None: the
    #: read succeeded or the error was a fault.
    held_read: str | None = None

    @property
    def failsafe(self) -> bool:
        """True when the relay is held open because data are missing, stale or implausible, or the loop failed."""
        return self.loop_error or self.fault is not None or self.output.failsafe

    def status(self, angle_deg: float | None) -> str:
        """This tick's status line (status_line) with the servo at angle_deg: the heater asked and measured."""
        return status_line(self.m, self.output, angle_deg, self.measured_heater_w)


#: What the status line's fields mean (printed at start-up, in `pvheater run --help` and in README's legend).
STATUS_LEGEND = (
    "status line: battery + = charging, - = discharging; grid + = import, - = export; "
    "house ~ = AC consumption minus the heater's measured (else asked) power, an estimate; "
    "heater asked = the power commanded, "
    "measured = what the GX's consumption says the heater draws (0 with the tank full)"
)


def status_line(
    m: Measurements | None, output: HeaterOutput, angle_deg: float | None, measured_w: float | None = None
) -> str:
    """One human line: PV, battery, grid, house load (estimate), heater asked (and measured), servo, relay, reason."""

    def watts(value: float | None, signed: bool = False) -> str:
        if value is None:
            return "?"
        return f"{value:+.0f} W" if signed else f"{value:.0f} W"

    asked_w = output.power_w if output.relay_on else 0.0
    heater = f"heater asked {asked_w:.0f} W"
    if measured_w is not None:  # from the consumption's response (pvheater.control.heater_response)
        heater += f", measured {measured_w:.0f} W"
    angle = "-" if angle_deg is None else f"{angle_deg:.0f} deg"
    relay = "ON" if output.relay_on else "off"
    tail = f"{heater}, servo {angle} | relay {relay} | {_short_reason(output.reason)}"
    if m is None:
        return f"GX: no data (PV, battery, grid unknown) | {tail}"
    soc = "SoC ?" if m.soc_pct is None else f"{m.soc_pct:.0f} %"
    battery = "battery: no data" if m.battery_w is None else f"battery {watts(m.battery_w, True)} {soc}"
    consumption = m.consumption_w
    heater_w = asked_w if measured_w is None else measured_w
    house = "house ?" if consumption is None else f"house ~{max(0.0, consumption - heater_w):.0f} W"
    return f"PV {watts(m.pv_w)} | {battery} | grid {watts(m.grid_w, True)} | {house} | {tail}"


def _short_reason(reason: str) -> str:
    """A GX fault's reason up to its first ';' (the ERROR line at the episode's start has the whole hint)."""
    if reason.startswith("fault: "):
        return reason.split(";", 1)[0]
    return reason


class ControlLoop:
    """Reads, steps the controller and the guard, drives the heater; logs changes and error episodes."""

    def __init__(
        self,
        source: MeasurementSource,
        heater: HeaterPort,
        config: Config,
        logger: logging.Logger = log,
        on_report: Callable[[TickReport], None] | None = None,
        forecast: ForecastProvider | None = None,
        hot_water: HotWater | None = None,
    ) -> None:
        self.log = logger
        #: Modes, boost, the daily goal and legionella between controller and guard (pvheater/service/hot_water.py);
        #: a default one (no sensor, no state file) when none is given. None after construction: the old path.
        self.hot_water: HotWater | None = hot_water if hot_water is not None else HotWater(config, logger=logger)
        #: Where the newest PV forecast comes from (None: no forecast, the plain min_soc rule).
        self.forecast = forecast
        self.reserve_state = ReserveState()
        self._reserve_early = False
        self.source = source
        self.heater = heater
        #: Called with every TickReport (e.g. the history recorder); its errors are logged, never raised.
        self.on_report = on_report
        self._on_report_error: str | None = None
        self.apply_config(config)
        self.controller_state = controller.ControllerState()
        self.guard_state = guard.GuardState()
        self.freshness_state = freshness.FreshnessState()
        self.freshness_settings = freshness.FreshnessSettings()
        self.cap_state = limits.CapState()
        #: time_s of the newest snapshot that was fresh (read without fault, not frozen); None: none yet.
        self.fresh_s: float | None = None
        self._pins = threading.Lock()
        #: True only while the tick waits for the GX (a stop signal may abandon the tick then, and only then).
        self.reading = False
        self._tripped = False
        self._frozen: str | None = None
        self._failsafe_since_s: float | None = None
        self.last: TickReport | None = None
        #: The kind (exception class name) of the GX error episode in progress; None: the GX answers.
        self._fault: str | None = None
        self._fault_since_s: float | None = None
        self._reminder_at_s: float | None = None
        self._reminder_gap_s = REMINDER_FIRST_S
        self._loop_error: str | None = None
        self._absent: frozenset[str] = frozenset()
        self._status_key: tuple[bool, int, str | None] | None = None
        #: The last snapshot read successfully: failed reads reuse it while it is younger than stale_after_s.
        self._last_m: Measurements | None = None
        #: What the heater really draws, from the consumption's response to deliberate changes.
        self.response_state = heater_response.ResponseState()
        #: The heater's power by the GX (None before the first sample) and when the tank was found full.
        self.measured_heater_w: float | None = None
        self.tank_full_since_s: float | None = None
        #: When the thermostat closed again: the power climbs back from the sense power at CLOSE_RAMP_W_PER_S.
        self._closed_s: float | None = None
        #: The tank was full when the relay opened: nothing can be seen with it open, so when heating resumes it
        #: starts from the sense power and the observer judges the thermostat again.
        self._recheck = False
        self._recheck_closed = False
        #: The closed-relay re-check of a full tank: when the climb under way started, and when the last one ended.
        self._full_check_s: float | None = None
        self._full_checked_s: float | None = None
        #: The newest error text (GX fault or loop error), kept after the episode (the state's last_error).
        self.last_error: str | None = None

    def tick(self, now_s: float, local_time: datetime.time | None, utc_s: float | None = None) -> TickReport:
        """One control step: read, decide, guard, apply. Never raises for a GX or loop error."""
        try:
            report = self._step(now_s, local_time, utc_s)
        except Exception as exc:  # any error in the loop: heater off, log the episode once
            self._enter_loop_error(exc, now_s)
            self.last_error = f"loop error: {exc}"
            report = TickReport(now_s, None, HeatRequest(False, 0.0, "loop error"), SAFE_OFF, str(exc), True,
                                last_error=self.last_error)
        else:
            if self._loop_error is not None:
                self.log.info("control loop works again")
                self._loop_error = None
        self.last = report
        if self.on_report is not None:
            self._report(report)
        return report

    def apply_config(self, config: Config) -> None:
        """Take the controller and guard settings from config (at start and on a reload); state is kept."""
        # The heater cannot give more than its calibration's top point.
        max_power_w = min(config.heater.max_power_w, self.heater.calibration.max_power_w)
        self.controller_settings = controller.ControllerSettings.for_actuator(
            config.control, max_power_w, config.heater.actuator
        )
        self.guard_settings = guard.GuardSettings.from_config(config)
        self.reserve_settings = ReserveSettings.from_config(config)
        #: With the tank full the knob waits at this power; the relay opens after tank_full_open_after_s (0: never).
        self.sense_power_w = config.heater.sense_power_pct / 100.0 * max_power_w
        self.tank_full_open_after_s = config.heater.tank_full_open_after_s
        self._response_settings = {m: heater_response.settings_for(max_power_w, m) for m in (False, True)}
        if self.hot_water is not None:
            self.hot_water.apply_config(config)
        #: Off-grid: the inverter's rating caps heater + house (None: a grid takes what the inverter cannot).
        self.cap_settings = limits.CapSettings.from_config(config)

    @property
    def response_settings(self) -> heater_response.ResponseSettings:
        """The observer's settings: a measured calibration (more than two points) or the straight-line default."""
        return self._response_settings[len(self.heater.calibration.points) > 2]

    def shutdown(self, now_s: float) -> None:
        """Relay open and knob to zero, e.g. on SIGTERM."""
        # A stop signal raised into a tick may, in theory, leave the pins lock taken: never wait long for it.
        locked = self._pins.acquire(timeout=PINS_WAIT_S)
        try:
            self.heater.safe_off(now_s)
            self.guard_state = guard.force_off(self.guard_state, now_s)
        finally:
            if locked:
                self._pins.release()
        self.log.info("heater off: relay open, knob at zero")

    def failsafe(self, now_s: float) -> bool:
        """The independent fail-safe (any thread, never waits for a read): relay open, knob parked when no fresh
        snapshot arrived within stale_after_s. True when it switched something off."""
        limit_s = self.guard_settings.stale_after_s
        locked = self._pins.acquire(timeout=PINS_WAIT_S)  # not taken: an apply hangs, switch off regardless
        try:
            age_s = None if self.fresh_s is None else now_s - self.fresh_s
            if age_s is not None and age_s <= limit_s:
                return False
            zero = self.heater.calibration.zero_angle_deg
            value = self.heater.input_value
            if not self.heater.relay_on and (value is None or value == zero):
                return False
            self.heater.safe_off(now_s)
            self._tripped = True  # the next tick forces the guard off, so heating restarts only after confirmation
        finally:
            if locked:
                self._pins.release()
        if self._failsafe_since_s is None:
            self._failsafe_since_s = now_s
            seen = "none yet" if age_s is None else f"the last is {age_s:.1f} s old"
            self.log.error("no fresh GX data within %g s (%s): fail-safe opened the relay and parked the knob",
                           limit_s, seen)
        return True

    # --- internals ---------------------------------------------------------

    def _step(self, now_s: float, local_time: datetime.time | None, utc_s: float | None = None) -> TickReport:
        fault: str | None = None
        kind: str | None = None
        held_read: str | None = None
        m: Measurements | None
        try:
            self.reading = True
            try:
                m = self.source.read()
            finally:
                self.reading = False
        except GxError as exc:
            m, fault, kind = None, str(exc), type(exc).__name__
            held = self._last_m
            if held is not None and now_s - held.time_s <= self.guard_settings.stale_after_s:
                # a failed read while the last good snapshot is fresh: use it again (a repeated sample: hold)
                m, fault, kind, held_read = held, None, None, str(exc)
            else:
                self._last_m = None  # beyond the bound: a fault, and the snapshot is never used again
        else:
            self._last_m = m
        self._track_fault(kind, fault, now_s)
        frozen: str | None = None
        if m is not None:
            self._track_absent(m)
            self.freshness_state, frozen = freshness.step(self.freshness_state, m, self.freshness_settings)
        self._track_frozen(frozen, now_s)
        early = self._reserve(m, utc_s if local_time is not None else None)
        self._track_full_check(m, now_s)
        expected_w = self._expected_heater_w()  # the command the snapshot m saw (before this tick's apply)
        settings = self.controller_settings
        if self.cap_settings is not None:  # the controller works within the off-grid cap (no wind-up above it)
            cap_w, _ = limits.cap_w(self.cap_state, m, self.cap_settings)
            settings = replace(settings, max_power_w=min(settings.max_power_w, cap_w))
        self.controller_state, request = controller.step(
            self.controller_state, m, settings, now_s, self.heater.relay_on, early,
            cap_w=self._heater_cap_w(now_s),
        )
        request = self._tank_full_cap(request, now_s)
        forced = False
        if self.hot_water is not None:
            request, forced = self.hot_water.advise(
                request, m, now_s, local_time, utc_s, self.tank_full_since_s is not None and not self._recheck,
                self.forecast
            )
        if fault is not None or frozen is not None:
            self.last_error = fault if fault is not None else f"GX data frozen: {frozen}"
        with self._pins:
            if self._tripped:  # the fail-safe opened the relay while this tick read: start over from off
                self._tripped = False
                self.guard_state = guard.force_off(self.guard_state, now_s)
            self.guard_state, output = guard.step(
                self.guard_state, request, m, self.guard_settings, now_s, local_time,
                fault if fault is not None else frozen,
                min_soc_pct=None if early is None else early.min_soc_pct, utc_s=utc_s, forced=forced,
            )
            if self.cap_settings is not None:
                self.cap_state, output = limits.cap_step(self.cap_state, m, self.cap_settings, now_s, output)
            if held_read is not None and m is not None:
                age_s = now_s - m.time_s
                output = replace(output, reason=f"{output.reason} (read failed: {age_s:.1f} s old data held)")
            self.heater.apply(self._drive(output, now_s), now_s)
            self._track_recheck(output.relay_on, now_s)
            if m is not None and fault is None and frozen is None:
                self.fresh_s = m.time_s if self.fresh_s is None else max(self.fresh_s, m.time_s)
                if self._failsafe_since_s is not None:
                    self.log.info("fresh GX data again after the fail-safe (%.0f s)", now_s - self._failsafe_since_s)
                    self._failsafe_since_s = None
        usable = m is not None and fault is None and frozen is None and not output.failsafe
        self._observe_heater(m if usable else None, expected_w, now_s, local_time)
        self._log_status(m, output)
        hw_tick = None
        if self.hot_water is not None:
            heater_w = self.measured_heater_w if self.measured_heater_w is not None else self._expected_heater_w()
            self.hot_water.account(now_s, m if usable else None, heater_w, forced, local_time,
                                   utc_s if local_time is not None else None)
            hw_tick = self.hot_water.last
        return TickReport(now_s, m, request, output, fault, measured_heater_w=self.measured_heater_w,
                          tank_full=self.tank_full_since_s is not None, hot_water=hw_tick,
                          last_error=self.last_error, held_read=held_read)

    def _track_recheck(self, relay_on: bool, now_s: float) -> None:
        """A full tank's relay opened: nothing can be seen with it open, so when it closes again the knob waits at
        the sense power (a thermostat that closed meanwhile draws only that) until the observer judges the
        thermostat again: drawing -> the usual climb from the sense power; not drawing -> tank full again (and the
        relay parks open again after tank_full_open_after_s, counted from the re-check)."""
        if self.tank_full_since_s is None:
            self._recheck = self._recheck_closed = False
        elif not relay_on:
            if not self._recheck:
                self.log.info("tank full, relay open: the thermostat is checked again when heating resumes "
                              "(from the sense power)")
            self._recheck, self._recheck_closed = True, False
        elif self._recheck and not self._recheck_closed:
            self._recheck_closed = True
            self.tank_full_since_s = now_s

    def _track_full_check(self, m: Measurements | None, now_s: float) -> None:
        """The closed-relay re-check of a full tank (RECHECK_CLOSED_S): start it while PV is held back and the
        battery gives nothing, end it after RECHECK_CLOSED_WINDOW_S without a close (parked at the sense power
        again); a close found ends it through the observer's event."""
        full_since = self.tank_full_since_s
        if full_since is None or not self.heater.relay_on or m is None:
            self._full_check_s = None
            if full_since is None:
                self._full_checked_s = None
            return
        if self._full_check_s is not None:
            if now_s - self._full_check_s >= RECHECK_CLOSED_WINDOW_S:
                self._full_check_s, self._full_checked_s = None, now_s
                self.log.info("tank full: the heater still does not draw with the knob raised; knob back at %.0f W",
                              self.sense_power_w)
            return
        last_s = full_since if self._full_checked_s is None else max(full_since, self._full_checked_s)
        quiet = (m.battery_w or 0.0) >= -self.controller_settings.control.battery_discharge_allowance_w
        if (now_s - last_s >= RECHECK_CLOSED_S and m.pv_curtailed and quiet
                and not heater_response.close_check_pending(self.response_state)):
            self._full_check_s = now_s
            self.log.info("tank full for %s: the knob climbs from the sense power to check the thermostat",
                          format_hms(now_s - full_since))

    def _expected_heater_w(self) -> float:
        """The heater power the calibration gives for the relay and the actuator's input in force now (the servo's
        angle, the 0-10 V duty or the SSR's fraction of cycles)."""
        value = self.heater.input_value
        if not self.heater.relay_on or value is None:
            return 0.0
        return self.heater.calibration.power_at(value)

    def _observe_heater(
        self, m: Measurements | None, expected_w: float, now_s: float, local_time: datetime.time | None
    ) -> None:
        """Feed the heater-response observer (None: no usable snapshot, the samples start over); log "tank full"
        and the thermostat closing once each."""
        if m is None:
            self.response_state = dataclasses.replace(self.response_state, samples=(), suspect=False, next_s=None,
                                                      close_base=None)
        else:
            self.response_state, event = heater_response.step(
                self.response_state, m.time_s, m.consumption_w, expected_w, self.response_settings
            )
            if event is not None:
                self._recheck = self._recheck_closed = False  # the thermostat is judged again
                at = "clock not set" if local_time is None else local_time.strftime("%H:%M:%S")
                if event.status == heater_response.NOT_DRAWING:
                    self.tank_full_since_s = now_s
                    self.log.info("tank full at %s: %s; knob waits at %.0f W", at, event.reason, self.sense_power_w)
                elif self.tank_full_since_s is not None:
                    lasted = format_hms(now_s - self.tank_full_since_s)
                    self.tank_full_since_s = None
                    self._closed_s = now_s if self._full_check_s is None else self._full_check_s  # the climb goes on
                    self._full_check_s = None
                    self.log.info("thermostat closed at %s after %s tank full: %s", at, lasted, event.reason)
                else:
                    self.log.info("heater at %s: %s", at, event.reason)
        self.measured_heater_w = heater_response.measured_heater_w(
            self.response_state, expected_w, self.response_settings
        )

    def _heater_cap_w(self, now_s: float, sense_w: float | None = None) -> float | None:
        """The cap for controller.step (element watts): the sense power while the tank is full (or looks it), then
        a climb back at CLOSE_RAMP_W_PER_S after the thermostat closed (the inverter keeps up). With `sense_w` (the
        sense command) the same cap for the command: a curve learned wrong cannot make a big close surge."""
        start_w = self.sense_power_w if sense_w is None else sense_w
        if self.tank_full_since_s is not None and self._full_check_s is not None:  # the closed-relay re-check
            top_w = max(start_w, RECHECK_CLOSED_FRAC * self.controller_settings.max_power_w)
            return min(start_w + CLOSE_RAMP_W_PER_S * (now_s - self._full_check_s), top_w)
        if self.tank_full_since_s is not None or heater_response.suspect_for_s(self.response_state) >= SUSPECT_CAP_S:
            return start_w
        if self._closed_s is None:
            return None
        cap_w = start_w + CLOSE_RAMP_W_PER_S * (now_s - self._closed_s)
        if cap_w >= self.controller_settings.max_power_w:
            if sense_w is None:
                self._closed_s = None
            return None
        return cap_w

    def _drive(self, output: HeaterOutput, now_s: float) -> HeaterOutput:
        """The output for the actuator: the controller's watts (what the element should draw) as the command that
        gives them by the observer's learned curve, so a cut of the measured deficit takes that much off the element
        where the default straight line is far off (a dead zone, a phase-angle or log-taper curve). The straight
        line until the observer has learned; within the sense command's cap while the tank is (or looks) full."""
        if not output.relay_on or output.power_w <= 0.0:
            return output
        most_w = self.controller_settings.max_power_w
        command_w = heater_response.command_for(self.response_state, output.power_w, self.response_settings, most_w)
        if self._heater_cap_w(now_s) is not None:  # the tank's cap is in force: the command's own, from the sense's
            cap_w = self._heater_cap_w(now_s, self.sense_command_w())
            if cap_w is not None:
                command_w = min(command_w, cap_w)
        return replace(output, power_w=command_w)

    def sense_command_w(self) -> float:
        """The command that gives the sense power by the measured curve (above a straight-line default's dead zone),
        at most SENSE_COMMAND_MAX times the sense power (a curve learned wrong cannot make a big close surge)."""
        return heater_response.command_for(
            self.response_state, self.sense_power_w, self.response_settings,
            min(SENSE_COMMAND_MAX * self.sense_power_w, self.controller_settings.max_power_w),
        )

    def _tank_full_cap(self, request: HeatRequest, now_s: float) -> HeatRequest:
        """With the tank full (or a drop that looks like it) the power stays at the sense power; the relay opens
        after tank_full_open_after_s when configured."""
        full_since = self.tank_full_since_s
        if full_since is None and heater_response.suspect_for_s(self.response_state) < SUSPECT_CAP_S:
            return request
        cs = self.controller_state
        if cs.covered_w is not None:  # the load "covered" while the heater did not draw is not there to return to
            self.controller_state = dataclasses.replace(cs, covered_w=None)
        open_after_s = self.tank_full_open_after_s
        parked_s = None if full_since is None or open_after_s <= 0 else now_s - full_since - open_after_s
        # Parked open for RECHECK_PARKED_S: heat again from the sense power and let the observer judge.
        if parked_s is not None and parked_s >= 0 and (not self._recheck or parked_s < RECHECK_PARKED_S):
            return HeatRequest(False, 0.0, "tank full: relay open")
        if not request.want_heat:
            return request
        if heater_response.close_check_pending(self.response_state):
            # consumption rose: the thermostat closing, or a house load? With the knob cut the element's power
            # falls away, a house load's does not (relay kept closed; the observer decides within the GX's lag)
            return HeatRequest(True, 0.0, "tank full: consumption rose, knob cut to check the thermostat")
        if full_since is not None and self._full_check_s is not None:
            return HeatRequest(True, request.power_w, "tank full: knob climbing to check the thermostat")
        why = "tank full" if full_since is not None else "heater stopped drawing?"
        return HeatRequest(True, request.power_w, f"{why}: knob at the sense power")

    def _reserve(self, m: Measurements | None, utc_s: float | None) -> ReserveAdvice | None:
        """The forecast reserve's advice when it allows early heating, else None (the plain rule); logs changes."""
        if self.forecast is None:
            return None
        self.reserve_state, advice = reserve_step(
            self.reserve_state, m, self.forecast.latest(), utc_s, self.reserve_settings
        )
        early = advice is not None and advice.early
        if early != self._reserve_early:
            if early:
                assert advice is not None
                self.log.info("heating below %g %% SoC allowed: %s", self.reserve_settings.min_soc_pct, advice.reason)
            else:
                why = "no usable forecast" if advice is None else advice.reason
                self.log.info("early heating ended, plain min_soc rule: %s", why)
            self._reserve_early = early
        return advice if early else None

    def _report(self, report: TickReport) -> None:
        """Hand the report to on_report; its failure is logged once per episode and never stops control."""
        assert self.on_report is not None
        try:
            self.on_report(report)
        except Exception as exc:  # an observer (history) must never break control
            text = f"{type(exc).__name__}: {exc}"
            if self._on_report_error != text:
                self.log.error("tick observer failed (control goes on): %s", text, exc_info=True)
                self._on_report_error = text
        else:
            self._on_report_error = None

    def _enter_loop_error(self, exc: Exception, now_s: float) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if self._loop_error != text:
            self.log.error("control loop error, heater off: %s", text, exc_info=self._loop_error is None)
            self._loop_error = text
        try:
            self.shutdown(now_s)
        except Exception as off_exc:  # the pins themselves fail: nothing more we can do here
            self.log.critical("cannot switch the heater off: %s", off_exc)

    def _track_fault(self, kind: str | None, fault: str | None, now_s: float) -> None:
        """A GX error episode: ERROR at its start (or a new kind), short reminders at growing gaps, INFO at its end."""
        if kind is not None and kind != self._fault:
            if self._fault is None:
                self._fault_since_s = now_s
                self._reminder_gap_s = REMINDER_FIRST_S
                self._reminder_at_s = now_s + self._reminder_gap_s
            self.log.error("GX unavailable, heater off: %s", fault)
        elif kind is not None and self._reminder_at_s is not None and now_s >= self._reminder_at_s:
            since_s = now_s if self._fault_since_s is None else self._fault_since_s
            self.log.warning("GX still unavailable after %.0f s, heater off, retrying", now_s - since_s)
            self._reminder_gap_s = min(2 * self._reminder_gap_s, REMINDER_MAX_S)
            self._reminder_at_s = now_s + self._reminder_gap_s
        elif kind is None and self._fault is not None:
            lasted = 0.0 if self._fault_since_s is None else now_s - self._fault_since_s
            self.log.info("GX data again after %.0f s", lasted)
            self._reminder_at_s = None
        self._fault = kind

    def _track_frozen(self, frozen: str | None, now_s: float) -> None:
        if frozen is not None and self._frozen is None:
            self.log.error("GX data frozen, heater off: %s", frozen)
        elif frozen is None and self._frozen is not None:
            self.log.info("GX values move again")
        self._frozen = frozen

    def _track_absent(self, m: Measurements) -> None:
        if m.absent_roles != self._absent:
            if m.absent_roles:
                self.log.warning("devices the GX does not have: %s", ", ".join(sorted(m.absent_roles)))
            else:
                self.log.info("all configured devices answer")
            self._absent = m.absent_roles

    def _log_status(self, m: Measurements | None, output: HeaterOutput) -> None:
        key = (output.relay_on, round(output.power_w / STATUS_STEP_W), self._fault)
        if key != self._status_key:
            self._status_key = key
            self.log.info("%s", status_line(m, output, self.heater.servo_angle_deg, self.measured_heater_w))
