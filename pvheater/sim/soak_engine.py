"""The soak engine: the real loop over Modbus-TCP against the GX simulator for simulated days, with faults injected.

Everything pvheater runs is the real thing: the GX reader over a loopback
socket, the controller and the relay guard, the gpiozero heater on mock pins
with a calibration measured off the simulated regulator (as `pvheater
calibrate-servo` would write it), the history writer thread on an SQLite file,
and `pvheater stats` reading that file. The plant behind the GX simulator runs
in simulated time, one 1 s step per control tick, so a week takes minutes.

Faults, at seeded random times (mostly in the sunny hours, when the heater
runs): GX restarts (server down 5-90 s), dropped connections, a GX that
accepts requests but never answers (10-120 s), exception replies 0x02 / 0x0A /
0x0B from the system service, an absent MPPT (0x0B), implausible values
(SoC 250, every system value 0 as from invalid D-Bus values, SoC 0xFFFF),
service restarts (loop, reader and history closed and opened again after
10 s, like systemd's RestartSec), one of them booting with the wall clock in
1970 until "NTP" sets it 10 minutes later.

What it measures against the plant's own truth: seconds the relay was closed
after a tick without fresh usable data (and beyond `relay.stale_after_s` plus
one interval: must be 0), rows handed to the history vs rows in the database
(and gaps in each run's sequence), and per day the heater energy, hours
heating and relay switchings from `pvheater stats` vs the plant's integrals.
"""

from __future__ import annotations

import datetime
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pvheater.calibration.curve import Calibration, save_calibration
from pvheater.config import Config
from pvheater.history import History, HistoryRecorder, connect_read_only
from pvheater.reader import GxReader
from pvheater.registers import load_register_map
from pvheater.service.loop import ControlLoop, TickReport
from pvheater.sim.live import SimulatedRig
from pvheater.sim.plant import HeaterPlantParams, heater_power_w
from pvheater.sim.scenarios import DAY_S, Scenario, ScenarioDay, build_day, get_scenario
from pvheater.stats import DayStats, compute_stats

#: The days of the soak week, cycled (all on the default single-phase plant without feed-in).
WEEK = ("clear", "clouds", "house_steps", "clouds", "clear", "house_steps", "clouds")
#: Wall clock of the soak's first midnight (local time).
EPOCH_LOCAL = datetime.datetime(2025, 6, 2)
#: How long a restarted service is down (systemd RestartSec).
RESTART_DOWN_S = 10
#: How long the wall clock stays unset after the 1970 boot.
CLOCK_UNSET_S = 600

FAULT_KINDS = (
    "gx_restart", "connection_drop", "gx_silent", "exception_0x02", "exception_0x0A", "exception_0x0B",
    "mppt_absent", "soc_250", "invalid_zero", "soc_0xFFFF", "service_restart", "boot_1970",
)


@dataclass(frozen=True)
class Fault:
    """One injected fault: what, when (simulated seconds since the start) and for how long."""

    kind: str
    start_s: int
    duration_s: int


@dataclass
class DayTruth:
    """The plant's own integrals over one simulated day."""

    heater_wh: float = 0.0
    covered_wh: float = 0.0
    heating_s: float = 0.0
    toggles: int = 0


@dataclass
class SoakResult:
    """What the soak saw; `ok` says whether the acceptance holds."""

    days: int
    ticks: int
    wall_s: float
    faults: Counter[str]
    fault_seconds: Counter[str]
    heating_stale_s: int
    heating_beyond_limit_s: int
    worst_heating_age_s: float
    limit_s: float
    rows_handed: int
    rows_in_db: int
    row_gaps: int
    rows_dropped: int
    restarts: int
    runs: int
    error_log_lines: int
    gx_error_events: int
    truth: list[DayTruth]
    stats: list[DayStats]
    unset_recorded_h: float
    notes: list[str] = field(default_factory=list)

    def day_errors_pct(self) -> list[tuple[float, float, float]]:
        """Per day: heater kWh, hours heating, surplus covered, each as % difference of stats vs the plant."""
        out = []
        for truth, st in zip(self.truth, self.stats, strict=False):
            out.append((
                _pct(st.heater_kwh * 1000, truth.heater_wh),
                _pct(st.heating_h * 3600, truth.heating_s),
                _pct(st.captured_kwh * 1000, truth.covered_wh),
            ))
        return out

    def week_errors_pct(self) -> tuple[float, float, float]:
        """The same over the whole run."""
        truth_heater = sum(t.heater_wh for t in self.truth)
        truth_heating = sum(t.heating_s for t in self.truth)
        truth_covered = sum(t.covered_wh for t in self.truth)
        return (
            _pct(sum(s.heater_kwh for s in self.stats) * 1000, truth_heater),
            _pct(sum(s.heating_h for s in self.stats) * 3600, truth_heating),
            _pct(sum(s.captured_kwh for s in self.stats) * 1000, truth_covered),
        )

    @property
    def ok(self) -> bool:
        """The acceptance: no heating beyond the stale limit, no row lost, stats within 2 % of the plant."""
        heater_pct, heating_pct, _ = self.week_errors_pct()
        days_ok = all(abs(h) <= 2.0 for h, _, _ in self.day_errors_pct() if h == h)
        return (
            self.heating_beyond_limit_s == 0
            and self.rows_in_db == self.rows_handed
            and self.row_gaps == 0
            and self.rows_dropped == 0
            and abs(heater_pct) <= 2.0
            and abs(heating_pct) <= 2.0
            and days_ok
        )


def _pct(measured: float, truth: float) -> float:
    if abs(truth) < 1e-9:
        return 0.0 if abs(measured) < 1e-9 else float("nan")
    return 100.0 * (measured - truth) / truth


def week_day(days: int, seed: int = 0) -> ScenarioDay:
    """`days` scenario days (WEEK, cycled, seeds varied) joined into one long day for the plant."""
    parts = [build_day(get_scenario(WEEK[k % len(WEEK)]), seed=get_scenario(WEEK[k % len(WEEK)]).seed + 100 * k
                       + seed) for k in range(days)]
    first = parts[0]
    scenario = Scenario("soak", f"{days} days: {', '.join(p.name for p in parts)}", seed=seed,
                        initial_soc_pct=first.scenario.initial_soc_pct)

    def join(name: str) -> tuple[float, ...]:
        out: list[float] = []
        for p in parts:
            out.extend(getattr(p, name))
        return tuple(out)

    return ScenarioDay(
        scenario=scenario, seed=seed, params=first.params, pv_avail_w=join("pv_avail_w"),
        house_l1_w=join("house_l1_w"), house_l2_w=join("house_l2_w"), house_l3_w=join("house_l3_w"),
        forecast_w=join("forecast_w"),
    )


def plant_calibration(params: HeaterPlantParams, step_deg: float = 2.0) -> Calibration:
    """The calibration `calibrate-servo` would measure on the simulated regulator: watts at each angle."""
    points = []
    angle = params.knob_zero_deg
    while angle < params.knob_full_deg:
        points.append((angle, heater_power_w(True, angle, params)))
        angle += step_deg
    points.append((params.knob_full_deg, heater_power_w(True, params.knob_full_deg, params)))
    return Calibration(tuple(points), {"source": "pvheater soak: the simulated regulator's curve"})


def fault_schedule(days: int, seed: int, window_s: tuple[float, float] | None = None) -> list[Fault]:
    """Seeded faults, none overlapping: per day a dozen in the sunny hours, a restart; one boot in 1970.

    With window_s (start, end), one of each kind (the 1970 boot included) spread over that window instead.
    """
    rng = random.Random(seed)
    faults: list[Fault] = []
    durations = {
        "gx_restart": (5, 90), "connection_drop": (1, 1), "gx_silent": (10, 120),
        "exception_0x02": (10, 60), "exception_0x0A": (10, 60), "exception_0x0B": (10, 60),
        "mppt_absent": (60, 600), "soc_250": (10, 120), "invalid_zero": (10, 120), "soc_0xFFFF": (10, 120),
        "service_restart": (RESTART_DOWN_S, RESTART_DOWN_S),
    }
    if window_s is not None:
        kinds = [k for k in durations if k != "service_restart"]
        rng.shuffle(kinds)
        kinds = ["boot_1970", *kinds, "service_restart"]  # the clock must be set again within the window
        slot_s = int(window_s[1] - window_s[0]) // (len(kinds) + 1)
        for k, kind in enumerate(kinds):
            lo, hi = durations.get(kind, (RESTART_DOWN_S, RESTART_DOWN_S))
            duration = min(rng.randint(lo, hi), slot_s // 3)
            faults.append(Fault(kind, int(window_s[0]) + (k + 1) * slot_s, duration))
        return faults
    for day in range(days):
        kinds = [k for k in durations if k != "service_restart"] + ["gx_restart", "gx_silent", "connection_drop"]
        rng.shuffle(kinds)
        kinds.append("service_restart")
        # Sunny hours 08:00-18:00, one slot per fault, each fault somewhere in its slot.
        slot_s = 10 * 3600 // len(kinds)
        for k, kind in enumerate(kinds):
            lo, hi = durations[kind]
            duration = rng.randint(lo, hi)
            start = day * DAY_S + 8 * 3600 + k * slot_s + rng.randint(0, max(0, slot_s - duration - 60))
            faults.append(Fault(kind, start, duration))
    if days >= 3:
        faults.append(Fault("boot_1970", 2 * DAY_S + 6 * 3600, RESTART_DOWN_S))
    return sorted(faults, key=lambda f: f.start_s)


@dataclass
class _Tally:
    """What a soak run counts as it goes: faults injected and active, service down, heating without fresh data."""

    pending: list[Fault]
    last_fresh_s: float
    #: Heating longer than this after the last fresh tick counts as beyond the limit (stale_after_s + interval).
    limit_s: float
    injected: Counter[str] = field(default_factory=Counter)
    fault_seconds: Counter[str] = field(default_factory=Counter)
    active: list[Fault] = field(default_factory=list)
    down: bool = False
    heating_stale: int = 0
    heating_beyond: int = 0
    worst_age: float = 0.0
    ticks: int = 0


class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1


class Soak:
    """The rig, the history and the fault injection for one soak run."""

    def __init__(
        self,
        days: int,
        db_path: Path,
        seed: int = 1,
        config: Config | None = None,
        window_s: tuple[float, float] | None = None,
    ) -> None:
        """`days` whole days; or with window_s (start, end seconds of the first day) only that part (tests)."""
        base = config or Config()
        self.config = replace(
            base,
            gx=replace(base.gx, timeout_s=0.5),  # a silent GX costs wall time per attempt; 0.5 s keeps it short
            log=replace(base.log, file=None),
        )
        self.days = days
        self.db_path = db_path
        self.day = week_day(days, seed)
        cal_path = db_path.with_suffix(".calibration.yaml")
        save_calibration(cal_path, plant_calibration(self.day.params.heater))
        self.window_s = window_s if window_s is not None else (0.0, days * float(DAY_S))
        self.rig = SimulatedRig(self.day, self.config, start_s=self.window_s[0], step_s=1.0,
                                calibration_file=str(cal_path), record=False)
        self.faults = fault_schedule(days, seed, window_s)
        self.epoch_s = EPOCH_LOCAL.timestamp()
        self._clock_unset_until_s: float | None = None
        self._boot_s = 0.0
        self.register_map = load_register_map()
        self.history: History | None = None
        self.recorder: HistoryRecorder | None = None
        self.rows_handed = 0
        self.runs = 0
        self.dropped = 0
        self._toggles_seen = 0

    # --- the service, as a process would run it ----------------------------------

    def wall_clock(self) -> float:
        """Wall-clock seconds of the simulated time; 1970 + uptime while the clock is unset."""
        sim_s = self.rig.live.sim_time_s
        if self._clock_unset_until_s is not None and sim_s < self._clock_unset_until_s:
            return 30.0 + (sim_s - self._boot_s)
        return self.epoch_s + sim_s

    def local_time(self) -> datetime.time | None:
        """Time of day for the guard; None while the clock is unset (as run.trusted_local_time)."""
        if self._clock_unset_until_s is not None and self.rig.live.sim_time_s < self._clock_unset_until_s:
            return None
        return self.rig.local_time()

    def start_service(self) -> None:
        """Open the history, a new reader and a new loop, as a fresh process does."""
        rig = self.rig
        self.history = History(self.db_path)
        self.recorder = HistoryRecorder(self.history, rig.heater, self.wall_clock, self.config.history.row_every_s)
        rig.reader = GxReader(rig.config.gx, self.register_map, clock=rig.clock)
        rig.loop = ControlLoop(rig.reader, rig.heater, rig.config, on_report=self.recorder)
        self.recorder.start(rig.clock(), "soak")
        self.runs += 1

    def stop_service(self) -> None:
        """SIGTERM: heater off, last row, history flushed and closed, reader closed."""
        rig = self.rig
        now_s = rig.clock()
        rig.loop.shutdown(now_s)
        assert self.recorder is not None and self.history is not None
        self.recorder.stop(now_s, "soak restart")
        self.rows_handed += self.recorder.rows
        self.history.close()
        self.dropped += self.history.dropped
        rig.reader.close()
        self.history = self.recorder = None

    # --- faults ---------------------------------------------------------------------

    def begin(self, fault: Fault) -> None:
        """Inject a fault."""
        gx, live = self.rig.gx, self.rig.live
        kind = fault.kind
        if kind == "gx_restart":
            gx.stop()
        elif kind == "connection_drop":
            gx.drop_connections()
        elif kind == "gx_silent":
            gx.silent = True
        elif kind.startswith("exception_"):
            gx.exception_override["system"] = int(kind.rsplit("_", 1)[1], 16)
        elif kind == "mppt_absent":
            gx.exception_override["mppt"] = 0x0B
        elif kind == "soc_250":
            live.overrides = {"battery_soc_pct": 250, "bms_soc_pct": 250}
            live.publish()
        elif kind == "invalid_zero":
            system = self.register_map.devices["system"].registers
            live.overrides = dict.fromkeys((r.name for r in system), None)
            live.overrides["bms_soc_pct"] = None
            live.publish()
        elif kind == "soc_0xFFFF":
            live.overrides = {"battery_soc_pct": 0xFFFF, "bms_soc_pct": 0xFFFF / 10}
            live.publish()
        elif kind in ("service_restart", "boot_1970"):
            self.stop_service()

    def end(self, fault: Fault) -> None:
        """Take a fault back."""
        gx, live = self.rig.gx, self.rig.live
        kind = fault.kind
        if kind == "gx_restart":
            gx.start()
        elif kind == "gx_silent":
            gx.silent = False
        elif kind.startswith("exception_"):
            gx.exception_override.pop("system", None)
        elif kind == "mppt_absent":
            gx.exception_override.pop("mppt", None)
        elif kind in ("soc_250", "invalid_zero", "soc_0xFFFF"):
            live.overrides = {}
            live.publish()
        elif kind in ("service_restart", "boot_1970"):
            if kind == "boot_1970":
                self._boot_s = self.rig.live.sim_time_s
                self._clock_unset_until_s = self._boot_s + CLOCK_UNSET_S
            self.start_service()

    # --- the run ----------------------------------------------------------------------

    def run(self, progress: Callable[[str], None] | None = None) -> SoakResult:
        """Run the whole soak and compare `pvheater stats` with the plant."""
        rig = self.rig
        interval_s = rig.config.poll.interval_s
        counting = _CountingHandler()
        pv_log = logging.getLogger("pvheater")
        pv_log.addHandler(counting)
        truth = [DayTruth() for _ in range(self.days)]
        first_s, end_s = self.window_s
        tally = _Tally(pending=list(self.faults), last_fresh_s=first_s,
                       limit_s=rig.config.relay.stale_after_s + interval_s)
        # The live plant settles one step before the first tick, so the last tick falls one step before end_s.
        total_ticks = int((end_s - first_s) / interval_s) - 1
        started = time.perf_counter()
        try:
            self.start_service()
            for k in range(total_ticks):
                t_s = first_s + k * interval_s
                self._step_faults(t_s, tally)
                rig.live.advance(round(interval_s / rig.live.step_s))
                report = None
                if not tally.down:  # while the service is down the plant goes on, relay open
                    report = rig.loop.tick(rig.clock(), self.local_time())
                    tally.ticks += 1
                self._account(truth[min(int(rig.live.sim_time_s // DAY_S), self.days - 1)], rig)
                self._watch_heating(report, tally)
                if k % 3600 == 0:
                    rig.gx.clear_requests()  # the simulator records every request: a week would fill memory
                if progress is not None and k % (DAY_S // 4) == 0 and k:
                    progress(f"{t_s / DAY_S:.2f} days, {tally.ticks} ticks, {time.perf_counter() - started:.0f} s")
            if not tally.down:
                self.stop_service()
            rig.live.advance(1)  # the plant sees the relay the stop opened
            self._account(truth[-1], rig)
        finally:
            pv_log.removeHandler(counting)
            rig.close()
        return self._result(tally, truth, time.perf_counter() - started, counting)

    def _step_faults(self, t_s: float, tally: _Tally) -> None:
        """Begin the faults due at t_s and end those that are over."""
        while tally.pending and tally.pending[0].start_s <= t_s:
            fault = tally.pending.pop(0)
            self.begin(fault)
            tally.injected[fault.kind] += 1
            tally.fault_seconds[fault.kind] += fault.duration_s
            tally.active.append(fault)
            tally.down = tally.down or fault.kind in ("service_restart", "boot_1970")
        for fault in [f for f in tally.active if f.start_s + f.duration_s <= t_s]:
            self.end(fault)
            tally.active.remove(fault)
            if fault.kind in ("service_restart", "boot_1970"):
                tally.down = False

    def _watch_heating(self, report: TickReport | None, tally: _Tally) -> None:
        """Count the seconds the relay is closed without fresh usable data (no tick, or a fail-safe tick)."""
        rig = self.rig
        if report is not None and not report.failsafe:
            tally.last_fresh_s = report.now_s
        if rig.live.wiring.relay_closed:
            age = rig.clock() - tally.last_fresh_s
            if report is None or report.failsafe:
                tally.heating_stale += 1
                tally.worst_age = max(tally.worst_age, age)
            if age > tally.limit_s:
                tally.heating_beyond += 1

    def _result(self, tally: _Tally, truth: list[DayTruth], wall_s: float, counting: _CountingHandler) -> SoakResult:
        """The soak's result: the tally, the plant's truth and `pvheater stats` of the database."""
        rows_in_db, gaps, gx_errors = _count_rows(self.db_path)
        stats = compute_stats(self.db_path, None)
        by_day = {d.day: d for d in stats.days}
        day_stats = []
        for k in range(self.days):
            name = (EPOCH_LOCAL.date() + datetime.timedelta(days=k)).isoformat()
            day_stats.append(by_day.get(name, DayStats(name)))
        return SoakResult(
            days=self.days, ticks=tally.ticks, wall_s=wall_s, faults=tally.injected,
            fault_seconds=tally.fault_seconds, heating_stale_s=tally.heating_stale,
            heating_beyond_limit_s=tally.heating_beyond, worst_heating_age_s=tally.worst_age,
            limit_s=tally.limit_s, rows_handed=self.rows_handed, rows_in_db=rows_in_db, row_gaps=gaps,
            rows_dropped=self.dropped, restarts=self.runs - 1, runs=self.runs,
            error_log_lines=counting.counts["ERROR"] + counting.counts["CRITICAL"], gx_error_events=gx_errors,
            truth=truth, stats=day_stats, unset_recorded_h=0.0 if stats.unset is None else stats.unset.recorded_h,
            notes=stats.notes,
        )

    def _account(self, day: DayTruth, rig: SimulatedRig) -> None:
        """Add the plant step just taken to the day's truth."""
        p = rig.plant
        dt_s = rig.live.step_s
        day.heater_wh += p.heater_w * dt_s / 3600.0
        day.covered_wh += min(p.heater_w, p.surplus_w) * dt_s / 3600.0
        if p.relay_on:
            day.heating_s += dt_s
        day.toggles += p.relay_toggles - self._toggles_seen
        self._toggles_seen = p.relay_toggles


def _count_rows(db_path: Path) -> tuple[int, int, int]:
    """Rows in the database, gaps in the runs' sequence numbers, GX error events."""
    conn = connect_read_only(db_path)
    try:
        rows = conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0]
        gaps = conn.execute(
            "SELECT COALESCE(SUM(max_seq - n), 0) FROM "
            "(SELECT run_id, MAX(seq) AS max_seq, COUNT(*) AS n FROM ticks GROUP BY run_id)"
        ).fetchone()[0]
        gx_errors = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'gx_error'").fetchone()[0]
    finally:
        conn.close()
    return rows, gaps, gx_errors


def format_result(r: SoakResult) -> str:
    """The soak's report as Markdown (the section bench/soak.py writes into BENCHMARKS.md)."""
    faults = ", ".join(f"{kind} {r.faults[kind]}" for kind in FAULT_KINDS if r.faults[kind])
    lines = [
        f"Simulated {r.days} days ({r.ticks} control ticks over Modbus-TCP) in {r.wall_s:.0f} s of wall time "
        f"({r.ticks / max(r.wall_s, 1e-9):.0f} ticks/s).",
        "",
        f"- faults injected: {sum(r.faults.values())} ({faults})",
        f"- seconds heating after a tick without fresh usable data: {r.heating_stale_s} "
        f"(worst data age while heating {r.worst_heating_age_s:.0f} s); beyond stale_after_s + one interval "
        f"({r.limit_s:g} s): **{r.heating_beyond_limit_s}**",
        f"- history rows handed to the writer {r.rows_handed}, in the database {r.rows_in_db}, gaps in sequence "
        f"{r.row_gaps}, dropped {r.rows_dropped}: rows lost **{r.rows_handed - r.rows_in_db + r.row_gaps}**",
        f"- service restarts: {r.restarts} ({r.runs} runs in the history), one booting with the clock in 1970 "
        f"({r.unset_recorded_h:.2f} h of rows could not be dated)",
        f"- ERROR log lines: {r.error_log_lines} for {r.gx_error_events} GX error episodes (each episode logs once)",
        "",
        "`pvheater stats` on the soak's database against the plant's own integrals "
        "(heater energy; hours with the relay closed; surplus captured vs the heater energy the plant's "
        "surplus covered):",
        "",
        "| day | heater kWh stats / plant | diff % | heating h stats / plant | diff % | switchings stats / plant "
        "| captured kWh stats / covered | diff % | fail-safe min | GX errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for st, truth, (dh, dt, dc) in zip(r.stats, r.truth, r.day_errors_pct(), strict=False):
        lines.append(
            f"| {st.day} | {st.heater_kwh:.3f} / {truth.heater_wh / 1000:.3f} | {dh:+.2f} | "
            f"{st.heating_h:.2f} / {truth.heating_s / 3600:.2f} | {dt:+.2f} | {st.switchings} / {truth.toggles} | "
            f"{st.captured_kwh:.3f} / {truth.covered_wh / 1000:.3f} | {dc:+.1f} | {st.failsafe_min:.1f} | "
            f"{st.gx_errors} |"
        )
    wh, wt, wc = r.week_errors_pct()
    lines += [
        "",
        f"Whole run: heater energy {wh:+.2f} %, hours heating {wt:+.2f} %, surplus captured {wc:+.1f} % "
        f"(acceptance: heater energy and hours within 2 %). Result: **{'pass' if r.ok else 'FAIL'}**.",
    ]
    return "\n".join(lines)
