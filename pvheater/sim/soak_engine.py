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
1970 until "NTP" sets it 10 minutes later. Mixed in, the hostile GX
(pvheater.sim.hostile_gx, the proxy tests/test_hostile_gx.py attacks with; the
loop reads through it during its episodes): replies split in two halves, each
just under `gx.timeout_s`; replies with function code 4 or 0x17; every 32-bit
register 0x7FFFFFFF; a frozen GX (the first replies replayed); and from the
GX itself an invalid 0 on one power register and a wrapped battery power
(-40 kW on the int16 register reads +25536 W). The plant has a tank (80 l,
showers and taps also in the sunny hours) whose thermostat cycles.

What it measures against the plant's own truth: seconds the relay was closed
after a tick without fresh usable data (and beyond `relay.stale_after_s` plus
one interval: must be 0), per fault kind the time until the relay opened and
the seconds beyond its promise (a frozen GX: 30 s after the freeze), seconds
heating on a lie the reader let through (the PV, grid, battery or consumption
power more than 100 W off the truth), frozen trips outside a freeze, rows
handed to the history vs rows in the database (and gaps in each run's
sequence), the process RSS every simulated hour, the peak taken from battery +
grid in the 15 s after each thermostat close (beyond the heater-off twin),
relay switchings and those under load, and per day the heater energy, hours
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
from pvheater.control.measurements import Measurements
from pvheater.history import History, HistoryRecorder, connect_read_only
from pvheater.reader import GxReader
from pvheater.registers import load_register_map
from pvheater.service.loop import ControlLoop, TickReport
from pvheater.sim.hostile_gx import HostileGx
from pvheater.sim.live import SimulatedRig
from pvheater.sim.plant import HeaterPlantParams, heater_power_w
from pvheater.sim.scenarios import DAY_S, Scenario, ScenarioDay, build_day, get_scenario
from pvheater.sim.tank import FAMILY_DRAWS, TankParams, shower, tap
from pvheater.stats import DayStats, compute_stats

#: The days of the soak week, cycled (all on the default single-phase plant without feed-in).
WEEK = ("clear", "clouds", "house_steps", "clouds", "clear", "house_steps", "clouds")
#: Wall clock of the soak's first midnight (local time).
EPOCH_LOCAL = datetime.datetime(2025, 6, 2)
#: How long a restarted service is down (systemd RestartSec).
RESTART_DOWN_S = 10
#: How long the wall clock stays unset after the 1970 boot.
CLOCK_UNSET_S = 600

#: Attacks of the hostile GX proxy (pvheater.sim.hostile_gx) and lies of the GX itself, mixed into the soak.
HOSTILE_KINDS = (
    "slow_split", "wrong_fc_4", "wrong_fc_0x17", "max32", "frozen", "invalid_power_zero", "wrap",
)
FAULT_KINDS = (
    "gx_restart", "connection_drop", "gx_silent", "exception_0x02", "exception_0x0A", "exception_0x0B",
    "mppt_absent", "soc_250", "invalid_zero", "soc_0xFFFF", "service_restart", "boot_1970", *HOSTILE_KINDS,
)
#: Proxy modes of the hostile kinds that the proxy itself plays (the others are values the GX serves).
PROXY_KINDS = ("slow_split", "wrong_fc_4", "wrong_fc_0x17", "max32", "frozen")
#: A frozen GX must have the relay open this long after the freeze began (issue 18), s.
FROZEN_PROMISE_S = 30.0
#: Power registers an invalid D-Bus value (read as 0) may hit, one per episode.
INVALID_ZERO_POWERS = ("pv_dc_w", "mppt_yield_w", "ac_consumption_l1_w", "battery_power_w", "grid_l1_w")
#: The quantity of the control each of those registers feeds.
DECIDES = {"pv_dc_w": "pv_w", "mppt_yield_w": "pv_w", "ac_consumption_l1_w": "consumption_w",
           "battery_power_w": "battery_w", "grid_l1_w": "grid_w"}
#: A lie counts as believed when the truth is at least this far from what was read, W.
LIE_MARGIN_W = 100.0
#: The wrap episode: battery power -40 kW on the int16 register, which reads +25536 W (in range, wrong sign).
WRAP_BATTERY_W = -40000.0
#: A relay edge at more current than this is a switching under load, W (as the plant-family bench).
UNDER_LOAD_W = 50.0
#: The surge window after each thermostat close, s (issue 12), and its margin above the sense power, W.
SURGE_WINDOW_S = 15
SURGE_MARGIN_W = 200.0
#: The soak's tank: 80 l, showers and taps through the sunny hours too, so the thermostat cycles while heating.
SOAK_TANK = TankParams(
    volume_l=80.0, start_c=50.0,
    draws=(*FAMILY_DRAWS, shower("10:30", 5.0), shower("14:00", 6.0), shower("16:00", 6.0), tap("11:45", 3.0)),
)
#: RSS samples before this much simulated time count as warm-up, s.
WARMUP_S = 6 * 3600


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
    #: Relay edges at more than UNDER_LOAD_W of real current (the element's draw at the knob's angle).
    under_load: int = 0
    #: Of those, the edges while a fault was active or the service down (fail-safe offs and restarts).
    under_load_in_fault: int = 0
    #: Relay edges while a fault was active or the service down.
    toggles_in_fault: int = 0


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
    #: Per fault kind: seconds the relay stayed closed beyond that kind's promise (must all be 0).
    beyond_by_kind: Counter[str] = field(default_factory=Counter)
    #: Per fault kind: episodes that began with the relay closed, and the longest time to open it then, s.
    heating_at_start: Counter[str] = field(default_factory=Counter)
    worst_open_s: dict[str, float] = field(default_factory=dict)
    #: Per fault kind: episodes through which the relay stayed closed (allowed where the promise is kept).
    kept_heating: Counter[str] = field(default_factory=Counter)
    #: Seconds heating on a lie (invalid 0, wrapped value) the reader let through, by kind (must be 0).
    lies_believed_s: Counter[str] = field(default_factory=Counter)
    #: Frozen-data trips outside the frozen episodes (false trips; must be 0), and all of them.
    false_frozen_trips: int = 0
    frozen_trips: int = 0
    #: Process RSS, KiB: at the start, after the warm-up, lowest and highest after it, at the end.
    rss_kib: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    #: Thermostat closes: (time_s, relay closed then, peak battery + grid W, the same beyond the heater-off twin).
    closes: list[tuple[float, bool, float, float]] = field(default_factory=list)
    sense_w: float = 0.0
    with_tank: bool = False

    @property
    def rss_drift_kib(self) -> int:
        """Spread of the RSS after the warm-up (highest minus lowest), KiB."""
        return self.rss_kib[3] - self.rss_kib[2]

    @property
    def worst_surge_w(self) -> float | None:
        """The highest draw beyond the heater-off twin in the window after a close with the relay closed."""
        peaks = [net for _, closed, _, net in self.closes if closed]
        return max(peaks) if peaks else None

    @property
    def surge_limit_w(self) -> float:
        """Sense power + SURGE_MARGIN_W."""
        return self.sense_w + SURGE_MARGIN_W

    @property
    def rows_lost(self) -> int:
        """Rows handed to the writer but not in the database, plus gaps in the runs' sequences."""
        return self.rows_handed - self.rows_in_db + self.row_gaps + self.rows_dropped

    @property
    def safe(self) -> bool:
        """Issue 18 and 12's soak points: no heating beyond any promise, no lie believed, no row lost, RSS stable
        within 5 MB, no surge above the sense power + 200 W."""
        surge = self.worst_surge_w
        return (
            self.heating_beyond_limit_s == 0
            and sum(self.beyond_by_kind.values()) == 0
            and sum(self.lies_believed_s.values()) == 0
            and self.false_frozen_trips == 0
            and self.rows_lost == 0
            and self.rss_drift_kib <= 5 * 1024
            and (surge is None or surge <= self.surge_limit_w)
        )

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
        """The acceptance: `safe`, and `stats_ok`."""
        return self.safe and self.stats_ok

    @property
    def stats_ok(self) -> bool:
        """`pvheater stats` within 2 % of the plant: heater energy each day and in all, hours heating in all."""
        heater_pct, heating_pct, _ = self.week_errors_pct()
        days_ok = all(abs(h) <= 2.0 for h, _, _ in self.day_errors_pct() if h == h)
        return (
            abs(heater_pct) <= 2.0
            and abs(heating_pct) <= 2.0
            and days_ok
        )


def _pct(measured: float, truth: float) -> float:
    if abs(truth) < 1e-9:
        return 0.0 if abs(measured) < 1e-9 else float("nan")
    return 100.0 * (measured - truth) / truth


def week_day(days: int, seed: int = 0, tank: TankParams | None = None) -> ScenarioDay:
    """`days` scenario days (WEEK, cycled, seeds varied) joined into one long day for the plant (with tank)."""
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
        scenario=scenario, seed=seed, params=first.params if tank is None else replace(first.params, tank=tank),
        pv_avail_w=join("pv_avail_w"),
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


def fault_schedule(
    days: int, seed: int, window_s: tuple[float, float] | None = None, hostile: bool = True
) -> list[Fault]:
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
        # the hostile GX: each slow reply costs the soak its timeout in wall time, so those stay short
        "slow_split": (8, 20), "wrong_fc_4": (10, 60), "wrong_fc_0x17": (10, 60), "max32": (10, 120),
        "frozen": (40, 110), "invalid_power_zero": (60, 600), "wrap": (60, 600),
    }
    if not hostile:  # the soak as it was before the hostile kinds (the same schedule for the same seed)
        durations = {kind: span for kind, span in durations.items() if kind not in HOSTILE_KINDS}
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
    beyond_by_kind: Counter[str] = field(default_factory=Counter)
    heating_at_start: Counter[str] = field(default_factory=Counter)
    worst_open_s: dict[str, float] = field(default_factory=dict)
    #: Episodes begun with the relay closed and not yet seen open: fault -> start time.
    waiting_open: dict[Fault, float] = field(default_factory=dict)
    kept_heating: Counter[str] = field(default_factory=Counter)
    lies_believed_s: Counter[str] = field(default_factory=Counter)
    false_frozen_trips: int = 0
    frozen_trips: int = 0
    frozen_tripped: bool = False
    rss_kib: list[int] = field(default_factory=list)
    rss_warm_kib: list[int] = field(default_factory=list)
    closes: list[tuple[float, bool, float, float]] = field(default_factory=list)
    #: Thermostat closes still collecting their window: [close time, relay closed, peak raw, peak net, until].
    surges: list[list[float]] = field(default_factory=list)
    tank_events_seen: int = 0


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
        tank: TankParams | None = SOAK_TANK,
        hostile: bool = True,
    ) -> None:
        """`days` whole days; or with window_s (start, end seconds of the first day) only that part (tests).

        tank: the hot-water tank behind the element (None: none); hostile: mix in the hostile GX's kinds.
        """
        base = config or Config()
        self.tank = tank
        self.config = replace(
            base,
            gx=replace(base.gx, timeout_s=0.5),  # a silent GX costs wall time per attempt; 0.5 s keeps it short
            log=replace(base.log, file=None),
        )
        self.days = days
        self.db_path = db_path
        self.day = week_day(days, seed, tank)
        cal_path = db_path.with_suffix(".calibration.yaml")
        save_calibration(cal_path, plant_calibration(self.day.params.heater))
        self.window_s = window_s if window_s is not None else (0.0, days * float(DAY_S))
        self.rig = SimulatedRig(self.day, self.config, start_s=self.window_s[0], step_s=1.0,
                                calibration_file=str(cal_path), record=False)
        self.faults = fault_schedule(days, seed, window_s, hostile)
        self.epoch_s = EPOCH_LOCAL.timestamp()
        self._clock_unset_until_s: float | None = None
        self._boot_s = 0.0
        self.register_map = load_register_map()
        # The hostile proxy in front of the simulator: the loop reads through it during its attacks only (a
        # pass-through proxy costs three times the wall time per tick, too much for a week on a shared machine).
        self.proxy = HostileGx(self.rig.gx.port, self.register_map, delay_s=self.config.gx.timeout_s / 2 - 0.02)
        self._proxy_reader: GxReader | None = None
        self._invalid_name = INVALID_ZERO_POWERS[0]
        self._rng = random.Random(seed)
        #: Set by `episode`: the register its invalid_power_zero episode hits (the week's draw for it).
        self._invalid_fixed: str | None = None
        self.history: History | None = None
        self.recorder: HistoryRecorder | None = None
        self.rows_handed = 0
        self.runs = 0
        self.dropped = 0
        self._toggles_seen = 0

    @classmethod
    def episode(
        cls, kind: str, index: int, db_path: Path, days: int = 7, seed: int = 1, lead_s: float = 1800.0,
        tail_s: float = 120.0, tank: TankParams | None = SOAK_TANK, hostile: bool = True,
    ) -> Soak:
        """A targeted rerun of one episode of the week: the index-th fault of that kind in the week's schedule
        (the same start, length and, for invalid_power_zero, register), alone, from lead_s before it to tail_s
        after it. The plant starts fresh at the window's start (its SoC and tank are the day's initial ones, not
        the week's at that time)."""
        schedule = fault_schedule(days, seed, None, hostile)
        rng = random.Random(seed)  # the week draws the register of each invalid_power_zero episode in turn
        found: list[tuple[Fault, str | None]] = []
        for fault in schedule:
            name = rng.choice(INVALID_ZERO_POWERS) if fault.kind == "invalid_power_zero" else None
            if fault.kind == kind:
                found.append((fault, name))
        if not 0 <= index < len(found):
            raise ValueError(f"the {days}-day week (seed {seed}) has {len(found)} {kind} episodes, not #{index}")
        fault, name = found[index]
        start_s = max(0.0, fault.start_s - lead_s)
        soak = cls(days, db_path, seed=seed, window_s=(start_s, fault.start_s + fault.duration_s + tail_s),
                   tank=tank, hostile=hostile)
        soak.faults = [fault]
        soak._invalid_fixed = name
        return soak

    @property
    def invalid_name(self) -> str:
        """The register the last invalid_power_zero episode hit."""
        return self._invalid_name

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
        elif kind in PROXY_KINDS:
            self.proxy.clear_frozen()
            self.proxy.mode = kind
            self._proxy_reader = GxReader(replace(self.rig.config.gx, port=self.proxy.port), self.register_map,
                                          clock=self.rig.clock)
            self.rig.loop.source = self._proxy_reader
        elif kind == "invalid_power_zero":
            self._invalid_name = self._invalid_fixed or self._rng.choice(INVALID_ZERO_POWERS)
            live.overrides = {self._invalid_name: None}
            live.publish()
        elif kind == "wrap":
            gx.wrap = True
            live.overrides = {"battery_power_w": WRAP_BATTERY_W}
            live.publish()

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
        elif kind in ("soc_250", "invalid_zero", "soc_0xFFFF", "invalid_power_zero", "wrap"):
            gx.wrap = False
            live.overrides = {}
            live.publish()
        elif kind in PROXY_KINDS:
            self.proxy.mode = "pass"
            self.rig.loop.source = self.rig.reader
            if self._proxy_reader is not None:
                self._proxy_reader.close()
                self._proxy_reader = None
        elif kind in ("service_restart", "boot_1970"):
            if kind == "boot_1970":
                self._boot_s = self.rig.live.sim_time_s
                self._clock_unset_until_s = self._boot_s + CLOCK_UNSET_S
            self.start_service()

    # --- the run ----------------------------------------------------------------------

    def run(self, progress: Callable[[str], None] | None = None, max_wall_s: float | None = None) -> SoakResult:
        """Run the whole soak and compare `pvheater stats` with the plant.

        max_wall_s: at each simulated midnight, stop there when one more day at the pace so far would pass this
        much wall time (the result then covers the whole days done; `days` says how many).
        """
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
                done_days = round((t_s - first_s) / DAY_S) if k and (t_s - first_s) % DAY_S == 0 else 0
                if max_wall_s is not None and done_days:
                    per_day_s = (time.perf_counter() - started) / done_days
                    if time.perf_counter() - started + per_day_s > max_wall_s:
                        self.days = done_days
                        truth = truth[:done_days]
                        break
                self._step_faults(t_s, tally)
                if self._active(tally, "wrap"):  # the true battery power moves; the wrapped lie follows it
                    rig.live.overrides = {"battery_power_w": WRAP_BATTERY_W + rig.plant.battery_w}
                angle_deg = rig.plant.servo_deg  # the knob's angle when the relay's edge (if any) happens
                rig.live.advance(round(interval_s / rig.live.step_s))
                report = None
                if not tally.down:  # while the service is down the plant goes on, relay open
                    report = rig.loop.tick(rig.clock(), self.local_time())
                    tally.ticks += 1
                self._account(truth[min(int(rig.live.sim_time_s // DAY_S), self.days - 1)], rig, angle_deg,
                              bool(tally.active) or tally.down)
                self._watch_heating(report, tally)
                self._watch_hostile(report, tally)
                self._watch_tank(tally)
                if k % 3600 == 0:
                    rig.gx.clear_requests()  # the simulator records every request: a week would fill memory
                    rss = _rss_kib()
                    tally.rss_kib.append(rss)
                    if t_s - first_s >= min(WARMUP_S, (end_s - first_s) / 4):
                        tally.rss_warm_kib.append(rss)
                if progress is not None and k % (DAY_S // 4) == 0 and k:
                    progress(f"{t_s / DAY_S:.2f} days, {tally.ticks} ticks, {time.perf_counter() - started:.0f} s")
            if not tally.down:
                self.stop_service()
            angle_deg = rig.plant.servo_deg
            rig.live.advance(1)  # the plant sees the relay the stop opened
            self._account(truth[-1], rig, angle_deg, True)  # the stop opens at once: a shutdown
            tally.rss_kib.append(_rss_kib())
            tally.rss_warm_kib.append(tally.rss_kib[-1])
        finally:
            pv_log.removeHandler(counting)
            self.proxy.stop()
            rig.close()
        return self._result(tally, truth, time.perf_counter() - started, counting)

    def _step_faults(self, t_s: float, tally: _Tally) -> None:
        """Begin the faults due at t_s and end those that are over."""
        while tally.pending and tally.pending[0].start_s <= t_s:
            fault = tally.pending.pop(0)
            if self.rig.live.wiring.relay_closed:
                tally.heating_at_start[fault.kind] += 1
                tally.waiting_open[fault] = t_s
            self.begin(fault)
            tally.injected[fault.kind] += 1
            tally.fault_seconds[fault.kind] += fault.duration_s
            tally.active.append(fault)
            tally.down = tally.down or fault.kind in ("service_restart", "boot_1970")
        for fault in [f for f in tally.active if f.start_s + f.duration_s <= t_s]:
            self.end(fault)
            tally.active.remove(fault)
            if tally.waiting_open.pop(fault, None) is not None:
                tally.kept_heating[fault.kind] += 1  # the relay stayed closed all through (a held read, a lie
                # the reader refused: the rest of the picture still allowed heating)
            if fault.kind in ("service_restart", "boot_1970"):
                tally.down = False

    @staticmethod
    def _active(tally: _Tally, kind: str) -> Fault | None:
        """The active fault of that kind, if any."""
        return next((f for f in tally.active if f.kind == kind), None)

    def _watch_hostile(self, report: TickReport | None, tally: _Tally) -> None:
        """Per episode: time until the relay opens, heating beyond a frozen GX's promise, lies believed while
        heating, frozen trips outside a freeze."""
        rig = self.rig
        now_s = rig.live.sim_time_s
        closed = rig.live.wiring.relay_closed
        for fault, start_s in list(tally.waiting_open.items()):
            if not closed:
                tally.worst_open_s[fault.kind] = max(tally.worst_open_s.get(fault.kind, 0.0), now_s - start_s)
                del tally.waiting_open[fault]
        frozen = self._active(tally, "frozen")
        if frozen is not None and closed and now_s - frozen.start_s > FROZEN_PROMISE_S:
            tally.beyond_by_kind["frozen"] += 1
        tripped = report is not None and report.output.reason.startswith("fault: values frozen")
        if tripped and not tally.frozen_tripped:
            tally.frozen_trips += 1
            tally.false_frozen_trips += frozen is None
        tally.frozen_tripped = tripped
        if report is None or report.m is None or not closed:
            return
        for kind in ("invalid_power_zero", "wrap"):
            if self._active(tally, kind) is None:
                continue
            # the quantity the guard and controller go by, from what was read and from the plant's truth
            name = self._invalid_name if kind == "invalid_power_zero" else "battery_power_w"
            quantity = DECIDES[name]
            read = getattr(report.m, quantity)
            true = getattr(Measurements(report.m.time_s, rig.plant.gx_values()), quantity)
            if read is not None and true is not None and abs(read - true) >= LIE_MARGIN_W:
                tally.lies_believed_s[kind] += 1

    def _watch_tank(self, tally: _Tally) -> None:
        """After each thermostat close: the peak taken from battery + grid over SURGE_WINDOW_S, raw and beyond
        the heater-off twin."""
        plant = self.rig.plant
        if plant.tank is None:
            return
        events = plant.tank.events
        for t_s, closed in events[tally.tank_events_seen:]:
            if closed:
                tally.surges.append([t_s, float(plant.relay_on), 0.0, 0.0, t_s + SURGE_WINDOW_S])
        tally.tank_events_seen = len(events)
        if not tally.surges:
            return
        twin = self.rig.live.baseline
        draw_w = max(0.0, -plant.battery_w) + max(0.0, plant.grid_w)
        twin_w = max(0.0, -twin.battery_w) + max(0.0, twin.grid_w)
        for surge in list(tally.surges):
            surge[2] = max(surge[2], draw_w)
            surge[3] = max(surge[3], draw_w - twin_w)
            if plant.time_s >= surge[4]:
                tally.closes.append((surge[0], bool(surge[1]), surge[2], surge[3]))
                tally.surges.remove(surge)

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
                for fault in tally.active:
                    tally.beyond_by_kind[fault.kind] += 1

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
            notes=stats.notes, beyond_by_kind=tally.beyond_by_kind, heating_at_start=tally.heating_at_start,
            worst_open_s=tally.worst_open_s, kept_heating=tally.kept_heating, lies_believed_s=tally.lies_believed_s,
            false_frozen_trips=tally.false_frozen_trips, frozen_trips=tally.frozen_trips,
            rss_kib=(tally.rss_kib[0], tally.rss_warm_kib[0], min(tally.rss_warm_kib), max(tally.rss_warm_kib),
                     tally.rss_kib[-1]),
            closes=tally.closes, sense_w=self.rig.loop.sense_power_w, with_tank=self.tank is not None,
        )

    def _account(self, day: DayTruth, rig: SimulatedRig, angle_deg: float, faulted: bool = False) -> None:
        """Add the plant step just taken to the day's truth (angle_deg: the knob's angle at its start; faulted:
        a fault is active or the service down)."""
        p = rig.plant
        dt_s = rig.live.step_s
        day.heater_wh += p.heater_w * dt_s / 3600.0
        day.covered_wh += min(p.heater_w, p.surplus_w) * dt_s / 3600.0
        if p.relay_on:
            day.heating_s += dt_s
        edges = p.relay_toggles - self._toggles_seen
        day.toggles += edges
        self._toggles_seen = p.relay_toggles
        if edges:  # the current the contacts make or break: the element's draw at the knob's angle
            day.toggles_in_fault += edges if faulted else 0
            accepts = p.tank is None or p.tank.thermostat_closed
            if accepts and heater_power_w(True, angle_deg, self.day.params.heater) > UNDER_LOAD_W:
                day.under_load += edges
                day.under_load_in_fault += edges if faulted else 0


def _rss_kib() -> int:
    """This process's resident set size (VmRSS), KiB; 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


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
        f"- ERROR log lines: {r.error_log_lines} for {r.gx_error_events} GX error episodes and {r.frozen_trips} "
        "frozen-data episodes (each episode logs once)",
        f"- process RSS: {r.rss_kib[0] / 1024:.1f} MiB at the start, {r.rss_kib[1] / 1024:.1f} MiB after the warm-up, "
        f"{r.rss_kib[2] / 1024:.1f}-{r.rss_kib[3] / 1024:.1f} MiB from then on (sampled every simulated hour), "
        f"{r.rss_kib[4] / 1024:.1f} MiB at the end: drift after the warm-up **{r.rss_drift_kib / 1024:.1f} MiB** "
        "(limit 5)",
        f"- frozen-data trips outside a frozen episode (false trips): **{r.false_frozen_trips}**",
        "",
        "Per fault kind: episodes; those that began with the relay closed; the longest time from the episode's "
        "start until the relay was open (of those it opened in); episodes the relay stayed closed all through "
        "(allowed: a held read, a lie refused with the rest of the picture still fine); seconds heating beyond "
        f"the promise (stale_after_s + one interval after the last fresh data; for a frozen GX {FROZEN_PROMISE_S:g} s "
        "after the freeze); seconds heating on a lie the reader let through (the quantity the register feeds -- "
        f"PV, grid, battery or consumption power -- more than {LIE_MARGIN_W:g} W off the plant's truth):",
        "",
        "| fault | episodes | heating at start | longest to open (s) | kept heating | beyond promise (s) "
        "| on a lie (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in FAULT_KINDS:
        if not r.faults[kind]:
            continue
        worst = r.worst_open_s.get(kind)
        lie = str(r.lies_believed_s[kind]) if kind in ("invalid_power_zero", "wrap") else "-"
        lines.append(
            f"| {kind} | {r.faults[kind]} | {r.heating_at_start[kind]} | {'-' if worst is None else f'{worst:.0f}'} | "
            f"{r.kept_heating[kind]} | {r.beyond_by_kind[kind]} | {lie} |"
        )
    lines += [""]
    if r.with_tank:
        under_load = [c for c in r.closes if c[1]]
        surge = r.worst_surge_w
        lines += [
            f"Tank (80 l, thermostat 60 degC / 7 K, showers and taps also in the sunny hours): {len(r.closes)} "
            f"thermostat closes, {len(under_load)} with the relay closed (knob at the sense power "
            f"{r.sense_w:.0f} W). Peak taken from battery + grid in the {SURGE_WINDOW_S} s after each close with "
            "the relay closed, beyond the heater-off twin of the plant: worst "
            f"**{'-' if surge is None else f'{surge:.0f} W'}** (limit sense power + {SURGE_MARGIN_W:g} W = "
            f"{r.surge_limit_w:.0f} W); raw (house included) worst "
            f"{max((c[2] for c in under_load), default=0.0):.0f} W.",
            "",
        ]
    lines += [
        f"Safety acceptance (0 s beyond any promise, no lie believed, 0 rows lost, RSS within 5 MiB, no surge): "
        f"**{'holds' if r.safe else 'FAILS'}**.",
        "",
        "`pvheater stats` on the soak's database against the plant's own integrals "
        "(heater energy; hours with the relay closed; surplus captured vs the heater energy the plant's "
        "surplus covered):",
        "",
        "| day | heater kWh stats / plant | diff % | heating h stats / plant | diff % | switchings stats / plant "
        "| captured kWh stats / covered | diff % | fail-safe min | GX errors | plant switchings under load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for st, truth, (dh, dt, dc) in zip(r.stats, r.truth, r.day_errors_pct(), strict=False):
        lines.append(
            f"| {st.day} | {st.heater_kwh:.3f} / {truth.heater_wh / 1000:.3f} | {dh:+.2f} | "
            f"{st.heating_h:.2f} / {truth.heating_s / 3600:.2f} | {dt:+.2f} | {st.switchings} / {truth.toggles} | "
            f"{st.captured_kwh:.3f} / {truth.covered_wh / 1000:.3f} | {dc:+.1f} | {st.failsafe_min:.1f} | "
            f"{st.gx_errors} | {truth.under_load} |"
        )
    wh, wt, wc = r.week_errors_pct()
    lines += [
        "",
        f"Relay switchings (the plant's relay): {sum(t.toggles for t in r.truth)} in total "
        f"({sum(t.toggles for t in r.truth) / max(r.days, 1):.1f} a day), "
        f"{sum(t.under_load for t in r.truth)} under load (an edge with more than {UNDER_LOAD_W:g} W of element "
        "current at the knob's angle); of these, while a fault was active or the service down: "
        f"{sum(t.toggles_in_fault for t in r.truth)} switchings, {sum(t.under_load_in_fault for t in r.truth)} "
        "under load (the fail-safe opens at once, whatever the current).",
        "",
        f"Whole run: heater energy {wh:+.2f} %, hours heating {wt:+.2f} %, surplus captured {wc:+.1f} % "
        f"(acceptance: heater energy each day and in all, and hours, within 2 %): "
        f"**{'pass' if r.stats_ok else 'FAIL'}**.",
    ]
    return "\n".join(lines)
