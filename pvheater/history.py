"""History in SQLite: what the control loop saw and did, and what happened to it.

Two tables (schema version in `PRAGMA user_version`):

- `ticks`: one row per control tick that changed something -- the relay, the
  heater power (the servo angle), whether heat is wanted, the fail-safe or
  fault state, the kind of reason -- and at least one every `row_every_s`.
  A row holds the state set at its tick (measurements, command, relay, servo,
  reason) and the totals of the span since the previous row of the same run:
  heater energy, estimated surplus captured, seconds heating, seconds in the
  fail-safe, relay switchings. Totals are integrated every tick, so rows on
  change plus one a minute lose nothing: `pvheater stats` only sums them.
- `events`: start, stop, fail-safe entered/left, GX error/GX ok, loop
  error/ok, config reload/rejected, history write errors recovered; and the
  hot-water part's (pvheater/service/hot_water.py): `hot_water` (each line it
  logs: a goal met or missed, a top-up decided with its reason and kWh, a
  boost or a forced cycle started or ended), `forced` at the end of each
  forced episode (boost, top-up, legionella: "KIND: X kWh from the grid of
  Y kWh heater"), `hot_60c` when the tank reached the legionella
  temperature (detail: the local date).

Heater power is the loop's measured heater power (TickReport.measured_heater_w,
pvheater.control.heater_response): 0 while the heater does not draw (its
thermostat open), else the command through the curve corrected online from
the consumption's response to the knob's moves -- integrated every tick, so a
fast-moving knob between rows loses nothing. Without one (a tick that failed
in the loop) it is what the relay and the actuator give through
the calibration. The GX cannot measure the heater alone: AC consumption is
house plus heater.

Estimated surplus captured: heater power minus whatever the battery
discharged and the grid imported during the same tick -- the heater energy
that came straight from PV. It charges a simultaneous draw of the house to
the heater, and it cannot see a heater that only slows the battery's charging
(the battery still charges): over the soak week it agrees with the simulated
plant's "heater energy covered by surplus" within 1.5 % per day.

Writing never blocks control: rows and events go into a bounded queue, one
writer thread owns the connection and commits each batch it finds (WAL
journal, so a reader or a `kill -9` never sees half a batch). A locked
database, a full disk or an unwritable file is logged once, the batch is
dropped and counted, and the next batch tries again; the episode ends (one
line) after RECOVER_AFTER_BATCHES batches in a row were written, or when the
writer stops after a good one. A full queue drops and counts too. Times
come in as arguments: monotonic seconds of the run from the loop, wall-clock
seconds from the caller's clock (possibly unset, 1970, on a Pi without RTC
before NTP: `pvheater stats` maps such rows through the run's monotonic clock
once a later row of the run has a set clock).
"""

from __future__ import annotations

import logging
import math
import queue
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from pvheater.control.timeofday import CLOCK_TRUSTED_FROM_UTC_S
from pvheater.errors import PvHeaterError
from pvheater.service.loop import HeaterPort, TickReport

log = logging.getLogger("pvheater")

SCHEMA_VERSION = 1
#: Rows and events waiting for the writer; beyond this they are dropped (counted, logged once).
QUEUE_SIZE = 20_000
#: A write-error episode ends after this many batches in a row were written (or when the writer stops after a
#: good one): a nearly full disk takes a small batch now and then between failures, and the log would
#: otherwise alternate ERROR / "writing again".
RECOVER_AFTER_BATCHES = 3
#: Bound of the writer connection's SQLite page cache, KiB (PRAGMA cache_size; SQLite's default is 2000 KiB).
WRITER_CACHE_KIB = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ticks (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    wall_s REAL NOT NULL,
    mono_s REAL NOT NULL,
    span_s REAL NOT NULL,
    ticks INTEGER NOT NULL,
    heater_wh REAL NOT NULL,
    captured_wh REAL NOT NULL,
    heating_s REAL NOT NULL,
    failsafe_s REAL NOT NULL,
    switches INTEGER NOT NULL,
    pv_w REAL,
    battery_w REAL,
    grid_w REAL,
    soc_pct REAL,
    consumption_w REAL,
    want_heat INTEGER NOT NULL,
    command_w REAL NOT NULL,
    relay_on INTEGER NOT NULL,
    heater_w REAL NOT NULL,
    servo_deg REAL,
    failsafe INTEGER NOT NULL,
    reason TEXT NOT NULL,
    fault TEXT,
    UNIQUE (run_id, seq)
);
CREATE INDEX IF NOT EXISTS ticks_wall ON ticks (wall_s);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    wall_s REAL NOT NULL,
    mono_s REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_wall ON events (wall_s);
"""


class HistoryError(PvHeaterError):
    """The history database cannot be used (e.g. written by a newer pvheater)."""


@dataclass(frozen=True)
class TickRow:
    """One row of the ticks table (column order = field order)."""

    run_id: str
    seq: int
    wall_s: float
    mono_s: float
    #: Seconds since the previous row of the run; the totals below cover that span.
    span_s: float
    ticks: int
    heater_wh: float
    captured_wh: float
    heating_s: float
    failsafe_s: float
    switches: int
    pv_w: float | None
    battery_w: float | None
    grid_w: float | None
    soc_pct: float | None
    consumption_w: float | None
    want_heat: bool
    command_w: float
    relay_on: bool
    heater_w: float
    servo_deg: float | None
    failsafe: bool
    reason: str
    fault: str | None


_ROW_COLUMNS = [f.name for f in fields(TickRow)]
_INSERT_ROW = f"INSERT INTO ticks ({', '.join(_ROW_COLUMNS)}) VALUES ({', '.join('?' * len(_ROW_COLUMNS))})"
_INSERT_EVENT = "INSERT INTO events (run_id, wall_s, mono_s, kind, detail) VALUES (?, ?, ?, ?, ?)"


def connect_read_only(path: Path | str) -> sqlite3.Connection:
    """Open a history database for reading; HistoryError when it is missing, not one, or too new."""
    file = Path(path)
    if not file.is_file():
        raise HistoryError(f"{file}: no history database (history.file of the running service?)")
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("SELECT 1 FROM ticks LIMIT 1")
    except sqlite3.Error as exc:
        raise HistoryError(f"{file}: not a pvheater history database ({exc})") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise HistoryError(f"{file}: history schema {version} is newer than this pvheater's ({SCHEMA_VERSION})")
    return conn


class History:
    """The writer: a bounded queue and one thread owning the SQLite connection. Never blocks the caller.

    `pragmas` are extra statements run on every new connection (tests use
    `PRAGMA max_page_count` to simulate a full disk).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        queue_size: int = QUEUE_SIZE,
        busy_timeout_s: float = 5.0,
        pragmas: Sequence[str] = (),
        logger: logging.Logger = log,
    ) -> None:
        self.path = Path(path)
        self.log = logger
        self._busy_timeout_s = busy_timeout_s
        self._pragmas = tuple(pragmas)
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        #: Rows and events committed, and dropped (queue full or a failed write).
        self.rows_written = 0
        self.events_written = 0
        self.dropped = 0
        self._queue_full = False
        self._write_error: str | None = None
        self._dropped_in_episode = 0
        self._good_in_episode = 0
        self._thread = threading.Thread(target=self._work, name="pvheater-history", daemon=True)
        self._thread.start()

    # --- the caller's side (any thread, never blocks) --------------------------

    def add_row(self, row: TickRow) -> None:
        """Queue a row."""
        self._put(("row", astuple(row)))

    def add_event(self, run_id: str, wall_s: float, mono_s: float, kind: str, detail: str = "") -> None:
        """Queue an event of a run."""
        self._put(("event", (run_id, wall_s, mono_s, kind, detail)))

    def purge(self, before_wall_s: float) -> None:
        """Queue the deletion of rows and events older than before_wall_s (runs with an unset clock by their end)."""
        self._put(("purge", before_wall_s))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far was handled; False on timeout."""
        done = threading.Event()
        try:
            self._queue.put(("flush", done), timeout=timeout_s)
        except queue.Full:
            return False
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer and close the database."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._queue.put(("stop", None), timeout=timeout_s)
        except queue.Full:
            self.log.error("history: writer stuck, %d queued rows/events not written", self._queue.qsize())
            return
        self._thread.join(timeout_s)

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, item: tuple[str, Any]) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                first = not self._queue_full
                self._queue_full = True
            if first:
                self.log.error("history: %s is not keeping up, rows are dropped until it does (control goes on)",
                               self.path)

    # --- the writer thread -------------------------------------------------------

    def _work(self) -> None:
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = self._write(batch)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write(self, batch: list[tuple[str, Any]]) -> bool:
        """Write one batch in one transaction; True when a stop was in it."""
        rows = [payload for kind, payload in batch if kind == "row"]
        events = [payload for kind, payload in batch if kind == "event"]
        purges = [payload for kind, payload in batch if kind == "purge"]
        stop = any(kind == "stop" for kind, _ in batch)
        if rows or events or purges:
            try:
                conn = self._connection()
                with conn:
                    conn.executemany(_INSERT_ROW, rows)
                    conn.executemany(_INSERT_EVENT, events)
                    for before_wall_s in purges:
                        self._purge(conn, before_wall_s)
            except (sqlite3.Error, OSError, HistoryError) as exc:
                self._failed(exc, len(rows) + len(events))
            else:
                self.rows_written += len(rows)
                self.events_written += len(events)
                if self._write_error is not None:
                    self._good_in_episode += 1
                if self._queue_full and self._queue.empty():  # the episode ends when a write worked and all is in
                    with self._lock:
                        self._queue_full = False
                    self.log.info("history: the writer caught up (%d rows/events dropped so far)", self.dropped)
        good = self._good_in_episode
        if self._write_error is not None and good > 0 and (good >= RECOVER_AFTER_BATCHES or stop):
            self._recovered()
        for kind, payload in batch:
            if kind == "flush":
                payload.set()
        return stop

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + FULL: every committed batch survives a killed process and a power cut (one sync per batch,
            # in this thread; batches come at most about once a second). The file itself is never left broken.
            conn.execute("PRAGMA synchronous=FULL")
            # SQLite's default page cache (2000 KiB per connection) fills as the file grows over the days and stays
            # resident: a week of rows (a 5 MB file) raised the writer's RSS by 1.4 MiB, 12 KiB with this bound.
            # The writer appends, so a small cache costs no reads that matter.
            conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            for pragma in self._pragmas:
                conn.execute(pragma)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"history schema {version} is newer than this pvheater's ({SCHEMA_VERSION}); use another file"
                )
            if version < SCHEMA_VERSION:
                conn.executescript(_SCHEMA)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.commit()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    @staticmethod
    def _purge(conn: sqlite3.Connection, before_wall_s: float) -> None:
        for table in ("ticks", "events"):
            conn.execute(
                f"DELETE FROM {table} WHERE wall_s >= ? AND wall_s < ?", (CLOCK_TRUSTED_FROM_UTC_S, before_wall_s)
            )
            # Rows written before the clock was set: gone when their run has nothing newer left.
            conn.execute(
                f"DELETE FROM {table} WHERE wall_s < ? AND run_id NOT IN "
                f"(SELECT DISTINCT run_id FROM {table} WHERE wall_s >= ?)",
                (CLOCK_TRUSTED_FROM_UTC_S, CLOCK_TRUSTED_FROM_UTC_S),
            )

    def _failed(self, exc: BaseException, lost: int) -> None:
        """Drop the batch, close the connection (the next batch reopens it), log once per episode."""
        with self._lock:
            self.dropped += lost
        self._dropped_in_episode += lost
        self._good_in_episode = 0
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        text = f"{type(exc).__name__}: {exc}"
        if self._write_error is None:
            self.log.error("history: cannot write %s (%s); rows are dropped until it works again, control goes on",
                           self.path, text)
        self._write_error = text

    def _recovered(self) -> None:
        self.log.info("history: writing to %s again (%d rows/events were dropped)", self.path, self._dropped_in_episode)
        self._write_error = None
        self._dropped_in_episode = 0
        self._good_in_episode = 0


# --- from ticks to rows and events -----------------------------------------------


def _reason_kind(reason: str) -> str:
    """A reason without its numbers ('min on time: 42 s left' -> 'min on time: # s left')."""
    return re.sub(r"\d+(\.\d+)?", "#", reason)


def captured_w(heater_w: float, grid_w: float | None, battery_w: float | None) -> float:
    """Heater power not matched by grid import or battery discharge at the same time (0 without data)."""
    if heater_w <= 0 or (grid_w is None and battery_w is None):
        return 0.0
    draw_w = max(0.0, grid_w or 0.0) + max(0.0, -(battery_w or 0.0))
    return max(0.0, heater_w - draw_w)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class HistoryRecorder:
    """Turns the loop's TickReports into history rows and events (use as ControlLoop.on_report).

    Each tick integrates the state set by the previous tick over the time
    since it (the relay and the knob held that state), then writes a row when
    something changed or row_every_s passed. `wall_clock` gives wall-clock
    seconds; the reports give monotonic ones. One recorder is one run (one
    process start): its rows are numbered from 1 under its run_id.
    """

    def __init__(
        self,
        history: History,
        heater: HeaterPort,
        wall_clock: Callable[[], float],
        row_every_s: float = 60.0,
    ) -> None:
        self.history = history
        self.heater = heater
        self.wall_clock = wall_clock
        self.row_every_s = row_every_s
        self.run_id = uuid.uuid4().hex[:12]
        #: Rows handed to the history (the soak compares this with the rows in the database).
        self.rows = 0
        self._prev_s: float | None = None
        self._heater_w = 0.0
        self._relay_on = False
        self._failsafe = False
        self._fault: str | None = None
        self._loop_error = False
        self._fault_since_s = 0.0
        self._failsafe_since_s = 0.0
        self._last_row_s: float | None = None
        self._last_key: tuple[Any, ...] | None = None
        self._span_start_s: float | None = None
        self._tank_full = False
        #: The forced heating of the last tick ("boost", "topup", "legionella"; None: none), what the grid gave
        #: the heater in it (W, held like the heater power) and the episode's energy so far (Wh).
        self._forced: str | None = None
        self._grid_w = 0.0
        self._forced_grid_wh = 0.0
        self._forced_heater_wh = 0.0
        self._last_60c: object = None
        self._reset_totals(None)

    def start(self, now_s: float, detail: str = "") -> None:
        """Record the start of a run."""
        self.history.add_event(self.run_id, self.wall_clock(), now_s, "start", detail)

    def event(self, now_s: float, kind: str, detail: str = "") -> None:
        """Record an event of the service (config reload ...)."""
        self.history.add_event(self.run_id, self.wall_clock(), now_s, kind, detail)

    def stop(self, now_s: float, detail: str = "") -> None:
        """Close the last span at now_s (after the heater was switched off) with a row, and record the stop."""
        wall_s = self.wall_clock()
        if self._prev_s is not None:
            self._integrate(now_s, None)
            if self._forced is not None:
                self._end_forced(wall_s, now_s)
            if self.heater.relay_on != self._relay_on:
                self._switches += 1
            self._emit_row(wall_s, now_s, None, self.heater.relay_on, self._heater_now(), "stopped", None, False)
            self._prev_s = None
        self.history.add_event(self.run_id, wall_s, now_s, "stop", detail)

    def __call__(self, report: TickReport) -> None:
        """Account for one tick: totals, events, and a row when due."""
        now_s = report.now_s
        wall_s = self.wall_clock()
        self._events(report, wall_s)
        if self._prev_s is not None:
            self._integrate(now_s, report)
        forced = None if report.hot_water is None else report.hot_water.forced
        if forced != self._forced:
            if self._forced is not None:
                self._end_forced(wall_s, now_s)
            self._forced = forced
        self._ticks += 1
        relay_on = self.heater.relay_on
        if relay_on != self._relay_on:
            self._switches += 1
        # what the GX saw the heater draw (pvheater.control.heater_response), else the knob through the curve
        heater_w = report.measured_heater_w if report.measured_heater_w is not None else self._heater_now()
        key = (
            relay_on,
            round(heater_w),
            report.request.want_heat,
            report.failsafe,
            report.fault is None,
            _reason_kind(report.output.reason),
        )
        due = self._last_row_s is None or now_s - self._last_row_s >= self.row_every_s
        if key != self._last_key or due:
            self._emit_row(wall_s, now_s, report, relay_on, heater_w, report.output.reason, report.fault,
                           report.failsafe)
            self._last_key = key
        self._prev_s = now_s
        self._heater_w = heater_w
        self._relay_on = relay_on
        self._failsafe = report.failsafe
        hw = report.hot_water
        self._grid_w = 0.0 if hw is None else hw.grid_w

    # --- internals ---------------------------------------------------------------

    def _heater_now(self) -> float:
        """Heater power the relay and the actuator's input give now, by the calibration (no measurement yet)."""
        value = self.heater.input_value
        if not self.heater.relay_on or value is None:
            return 0.0
        return self.heater.calibration.power_at(value)

    def _reset_totals(self, span_start_s: float | None) -> None:
        self._span_start_s = span_start_s
        self._ticks = 0
        self._heater_wh = 0.0
        self._captured_wh = 0.0
        self._heating_s = 0.0
        self._failsafe_s = 0.0
        self._switches = 0

    def _integrate(self, now_s: float, report: TickReport | None) -> None:
        """Add the span since the previous tick, in which the previous tick's state held."""
        assert self._prev_s is not None
        dt_s = max(0.0, now_s - self._prev_s)
        m = None if report is None else report.m
        grid_w = None if m is None else _finite(m.grid_w)
        battery_w = None if m is None else _finite(m.battery_w)
        self._heater_wh += self._heater_w * dt_s / 3600.0
        if self._forced is not None:
            self._forced_heater_wh += self._heater_w * dt_s / 3600.0
            self._forced_grid_wh += self._grid_w * dt_s / 3600.0
        self._captured_wh += captured_w(self._heater_w, grid_w, battery_w) * dt_s / 3600.0
        if self._relay_on:
            self._heating_s += dt_s
        if self._failsafe:
            self._failsafe_s += dt_s

    def _emit_row(
        self, wall_s: float, now_s: float, report: TickReport | None, relay_on: bool, heater_w: float,
        reason: str, fault: str | None, failsafe: bool,
    ) -> None:
        m = None if report is None else report.m
        span_start_s = self._span_start_s if self._span_start_s is not None else now_s
        angle = self.heater.servo_angle_deg
        self.history.add_row(TickRow(
            run_id=self.run_id,
            seq=self.rows + 1,
            wall_s=wall_s,
            mono_s=now_s,
            span_s=max(0.0, now_s - span_start_s),
            ticks=self._ticks,
            heater_wh=self._heater_wh,
            captured_wh=self._captured_wh,
            heating_s=self._heating_s,
            failsafe_s=self._failsafe_s,
            switches=self._switches,
            pv_w=None if m is None else _finite(m.pv_w),
            battery_w=None if m is None else _finite(m.battery_w),
            grid_w=None if m is None else _finite(m.grid_w),
            soc_pct=None if m is None else _finite(m.soc_pct),
            consumption_w=None if m is None else _finite(m.consumption_w),
            want_heat=False if report is None else report.request.want_heat,
            command_w=0.0 if report is None or not math.isfinite(report.request.power_w) else report.request.power_w,
            relay_on=relay_on,
            heater_w=heater_w,
            servo_deg=angle,
            failsafe=failsafe,
            reason=reason,
            fault=fault,
        ))
        self.rows += 1
        self._last_row_s = now_s
        self._reset_totals(now_s)

    def _end_forced(self, wall_s: float, now_s: float) -> None:
        """The forced episode ended: one `forced` event with its grid and heater energy."""
        self.history.add_event(self.run_id, wall_s, now_s, "forced",
                               f"{self._forced}: {self._forced_grid_wh / 1000.0:.3f} kWh from the grid of "
                               f"{self._forced_heater_wh / 1000.0:.3f} kWh heater")
        self._forced = None
        self._forced_grid_wh = self._forced_heater_wh = 0.0

    def _hot_water_events(self, report: TickReport, wall_s: float) -> None:
        """The hot-water part's lines, the end of a forced episode (after integrating it), a legionella hot day."""
        hw = report.hot_water
        if hw is None:
            return
        now_s = report.now_s
        for line in hw.advice.events:
            self.history.add_event(self.run_id, wall_s, now_s, "hot_water", line)
        if hw.last_60c is not None and hw.last_60c != self._last_60c:
            if self._last_60c is not None or self._prev_s is not None:  # not the date loaded at the start
                self.history.add_event(self.run_id, wall_s, now_s, "hot_60c", hw.last_60c.isoformat())
            self._last_60c = hw.last_60c

    def _events(self, report: TickReport, wall_s: float) -> None:
        now_s = report.now_s
        self._hot_water_events(report, wall_s)
        if (report.fault is None) != (self._fault is None):  # an episode starts or ends (not a new text)
            if report.fault is not None:
                self._loop_error = report.loop_error
                self._fault_since_s = now_s
                kind = "loop_error" if report.loop_error else "gx_error"
                self.history.add_event(self.run_id, wall_s, now_s, kind, report.fault)
            else:
                kind = "loop_ok" if self._loop_error else "gx_ok"
                self.history.add_event(self.run_id, wall_s, now_s, kind, f"after {now_s - self._fault_since_s:.0f} s")
        self._fault = report.fault
        if report.tank_full != self._tank_full:  # the thermostat opened ("tank full") or closed again
            self.history.add_event(self.run_id, wall_s, now_s, "tank_full" if report.tank_full else "tank_closed")
            self._tank_full = report.tank_full
        if report.failsafe != self._failsafe:
            if report.failsafe:
                self._failsafe_since_s = now_s
                self.history.add_event(self.run_id, wall_s, now_s, "failsafe_enter", report.output.reason)
            else:
                self.history.add_event(self.run_id, wall_s, now_s, "failsafe_leave",
                                       f"after {now_s - self._failsafe_since_s:.0f} s")
