"""History: rows on change and per minute with exact totals, events, a writer that never blocks control
(locked database, full disk, full queue), kill -9 during a write, and `pvheater stats` on the result."""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pvheater import history as history_module
from pvheater.calibration.curve import Calibration
from pvheater.cli import main
from pvheater.control.measurements import Measurements
from pvheater.control.messages import HeaterOutput, HeatRequest
from pvheater.control.timeofday import clock_is_set
from pvheater.history import RECOVER_AFTER_BATCHES, History, HistoryRecorder, TickRow, captured_w
from pvheater.service.loop import TickReport
from pvheater.stats import compute_stats

DAY0 = datetime.datetime(2025, 6, 2).timestamp()  # local midnight


class FakeHeater:
    """The heater port without pins: relay and servo angle, linear 0-180 deg = 0-1800 W."""

    def __init__(self) -> None:
        self.calibration = Calibration.linear(0.0, 180.0, 1800.0)
        self.relay_on = False
        self.servo_angle_deg: float | None = 0.0

    @property
    def input_value(self) -> float | None:
        return self.servo_angle_deg

    def apply(self, output: HeaterOutput, now_s: float) -> None:
        self.relay_on = output.relay_on
        self.servo_angle_deg = self.calibration.angle_for(output.power_w) if output.relay_on else 0.0

    def safe_off(self, now_s: float) -> None:
        self.apply(HeaterOutput(False, 0.0, "safe off"), now_s)


def report(now_s: float, heat_w: float, *, fault: str | None = None, grid_w: float = 0.0,
           battery_w: float = 0.0, reason: str | None = None, failsafe: bool = False) -> TickReport:
    m = None if fault else Measurements(now_s, {"grid_l1_w": grid_w, "battery_power_w": battery_w,
                                                "battery_soc_pct": 100})
    on = heat_w > 0 and fault is None
    output = HeaterOutput(on, heat_w if on else 0.0, reason or (f"fault: {fault}" if fault else
                                                                 "on: heating" if on else "off: no surplus"),
                          failsafe=failsafe or fault is not None)
    return TickReport(now_s, m, HeatRequest(on, heat_w), output, fault)


class Driver:
    """Feeds reports through the fake heater and the recorder, one tick per second."""

    def __init__(self, history: History, wall0_s: float = DAY0, mono0_s: float = 1000.0) -> None:
        self.heater = FakeHeater()
        self.wall0_s, self.mono0_s = wall0_s, mono0_s
        self.t_s = 0.0
        self.recorder = HistoryRecorder(history, self.heater, lambda: self.wall0_s + self.t_s, row_every_s=60.0)
        self.recorder.start(self.mono0_s)

    def tick(self, heat_w: float, **kw: object) -> None:
        r = report(self.mono0_s + self.t_s, heat_w, **kw)  # type: ignore[arg-type]
        self.heater.apply(r.output, r.now_s)
        self.recorder(r)
        self.t_s += 1.0

    def run(self, seconds: int, heat_w: float, **kw: object) -> Driver:
        for _ in range(seconds):
            self.tick(heat_w, **kw)
        return self

    def stop(self) -> None:
        """The service stops: heater off, the last span written."""
        self.heater.safe_off(self.mono0_s + self.t_s)
        self.recorder.stop(self.mono0_s + self.t_s)


def rows(db: Path) -> list[sqlite3.Row]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM ticks ORDER BY id").fetchall()
    finally:
        conn.close()


def events(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT kind, detail FROM events ORDER BY id").fetchall()
    finally:
        conn.close()


def test_rows_on_change_and_per_minute_integrate_exactly(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with History(db) as history:
        d = Driver(history)
        d.run(600, 0.0)  # 10 min off: a row a minute
        d.run(3600, 900.0)  # 1 h at 900 W
        d.run(1800, 0.0)
        d.recorder.stop(d.mono0_s + d.t_s)
    got = rows(db)
    assert [r["seq"] for r in got] == list(range(1, len(got) + 1))
    assert 6000 / 60 - 5 <= len(got) <= 6000 / 60 + 10  # per minute plus the changes, not per tick
    assert sum(r["heater_wh"] for r in got) == pytest.approx(900.0, rel=1e-9)
    assert sum(r["heating_s"] for r in got) == pytest.approx(3600.0)
    assert sum(r["switches"] for r in got) == 2
    assert sum(r["span_s"] for r in got) == pytest.approx(6000.0)
    assert got[-1]["reason"] == "stopped" and not got[-1]["relay_on"]
    stats = compute_stats(db)
    (day,) = stats.days
    assert day.day == "2025-06-02"
    assert day.heater_kwh == pytest.approx(0.9)
    assert day.captured_kwh == pytest.approx(0.9)
    assert day.heating_h == pytest.approx(1.0)
    assert day.switchings == 2 and day.starts == 1 and day.gx_errors == 0


def test_fault_episodes_are_events_and_failsafe_minutes(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with History(db) as history:
        d = Driver(history)
        d.run(100, 500.0)
        d.run(30, 0.0, fault="GX at x did not answer")
        d.run(100, 500.0)
        d.run(10, 500.0, reason="stale data (6.0 s old)", failsafe=True)
        d.stop()
    kinds = [k for k, _ in events(db)]
    assert kinds == ["start", "gx_error", "failsafe_enter", "gx_ok", "failsafe_leave", "failsafe_enter", "stop"]
    (day,) = compute_stats(db).days
    assert day.gx_errors == 1
    assert day.failsafe_min == pytest.approx((30 + 10) / 60)


def test_captured_is_heater_minus_simultaneous_draw() -> None:
    assert captured_w(1000.0, grid_w=-200.0, battery_w=50.0) == 1000.0
    assert captured_w(1000.0, grid_w=300.0, battery_w=-200.0) == 500.0
    assert captured_w(1000.0, grid_w=1500.0, battery_w=0.0) == 0.0
    assert captured_w(1000.0, None, None) == 0.0
    assert captured_w(0.0, 0.0, 0.0) == 0.0


def test_span_across_midnight_is_split(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with History(db) as history:
        d = Driver(history, wall0_s=DAY0 + 86400 - 1800)  # 23:30
        d.recorder.row_every_s = 7200.0  # one long span from 23:30 to 00:30
        d.run(3600, 600.0).stop()
    stats = compute_stats(db)
    assert [x.day for x in stats.days] == ["2025-06-02", "2025-06-03"]
    assert stats.days[0].heater_kwh == pytest.approx(0.3)
    assert stats.days[1].heater_kwh == pytest.approx(0.3)


def test_rows_before_ntp_are_dated_by_the_monotonic_clock(tmp_path: Path) -> None:
    """A Pi without RTC boots in 1970; NTP sets the clock later: rows before are dated through the run."""
    db = tmp_path / "h.db"
    set_at_s = 600.0
    with History(db) as history:
        d = Driver(history)
        d.recorder.wall_clock = lambda: (30.0 + d.t_s) if d.t_s < set_at_s else DAY0 + 12 * 3600 + d.t_s
        d.run(1200, 1000.0).stop()
        # a second run that never saw a set clock cannot be dated
        Driver(history, wall0_s=40.0).run(120, 1000.0).stop()
    stats = compute_stats(db)
    (day,) = stats.days
    assert day.day == "2025-06-02"
    assert day.heater_kwh == pytest.approx(1000.0 * 1200 / 3600 / 1000)
    assert stats.unset is not None and stats.unset.heater_kwh == pytest.approx(1000.0 * 120 / 3600 / 1000)
    assert any("clock was unset" in n for n in stats.notes)


def test_purge_keeps_recent_rows_and_runs(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with History(db) as history:
        Driver(history, wall0_s=DAY0).run(120, 100.0)
        Driver(history, wall0_s=50.0).run(120, 100.0)  # clock never set, its run is old by now
        Driver(history, wall0_s=DAY0 + 10 * 86400).run(120, 100.0)
        history.purge(DAY0 + 5 * 86400)
        history.flush()
    walls = [r["wall_s"] for r in rows(db)]
    assert walls and min(walls) >= DAY0 + 10 * 86400
    assert all(clock_is_set(w) for w in walls)


def test_locked_database_never_blocks_control_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "h.db"
    history = History(db, busy_timeout_s=0.05)
    d = Driver(history)
    d.run(5, 100.0)
    assert history.flush()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    caplog.set_level(logging.INFO, logger="pvheater")
    started = time.perf_counter()
    for _ in range(20):
        d.run(1, 100.0 + d.t_s)  # a change every tick: a row every tick
        history.flush(timeout_s=2.0)
    assert (time.perf_counter() - started) / 20 < 0.5  # the flushes wait; the ticks themselves do not
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "cannot write" in errors[0].getMessage()
    assert history.dropped >= 20
    locker.execute("ROLLBACK")
    locker.close()
    for k in range(RECOVER_AFTER_BATCHES):
        assert not any("writing to" in r.getMessage() for r in caplog.records)  # k good batches: not yet
        d.run(1, 50.0 - k)  # a row (a change) per batch
        assert history.flush()
    assert sum("writing to" in r.getMessage() and "again" in r.getMessage() for r in caplog.records) == 1
    history.close()
    assert rows(db)[-1]["heater_w"] == pytest.approx(50.0 - (RECOVER_AFTER_BATCHES - 1))


def test_tick_never_waits_for_a_locked_database(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    history = History(db, busy_timeout_s=1.0)
    d = Driver(history)
    d.run(3, 100.0)
    history.flush()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    worst = 0.0
    for k in range(200):
        started = time.perf_counter()
        d.tick(100.0 + k)
        worst = max(worst, time.perf_counter() - started)
    assert worst < 0.05
    locker.execute("ROLLBACK")
    locker.close()
    history.close()


def test_full_disk_logs_once_and_control_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "h.db"
    caplog.set_level(logging.INFO, logger="pvheater")
    # SQLite's page limit makes the file "full": the same error as a full disk (SQLITE_FULL).
    history = History(db, pragmas=("PRAGMA max_page_count = 8",))
    d = Driver(history)
    written: list[bool] = []
    for k in range(200):
        # One row per batch (the flush waits for it), long and short reasons in turn: once the file is full, a
        # short row still fits now and then between long ones that do not -- the nearly full disk, made repeatable.
        before = history.rows_written
        d.tick(100.0 + k, reason=f"on: {'x' * 1500 if k % 2 == 0 else 'y'}")
        assert history.flush()
        written.append(history.rows_written > before)
    history.close()
    first_failure = written.index(False)
    assert True in written[first_failure:]  # writes did work again in between: the alternation happened
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "full" in errors[0]
    assert not any("writing to" in r.getMessage() for r in caplog.records)  # never 3 good batches in a row
    assert history.dropped > 0
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_full_queue_drops_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "h.db"
    history = History(db, queue_size=5, busy_timeout_s=0.5)
    d = Driver(history)
    history.flush()
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    caplog.set_level(logging.ERROR, logger="pvheater")
    for k in range(100):
        d.tick(100.0 + k)
    assert history.dropped > 50
    assert sum("not keeping up" in r.getMessage() for r in caplog.records) == 1
    locker.execute("ROLLBACK")
    locker.close()
    history.close()


def test_a_newer_schema_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "h.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with History(db) as history:
        Driver(history).run(3, 10.0)
    assert any("newer than this pvheater" in r.getMessage() for r in caplog.records)
    code = main(["stats", "--db", str(db)])
    assert code == 1


WRITER = """
import sys, time
from pvheater.history import RECOVER_AFTER_BATCHES, History, TickRow
history = History(sys.argv[1])
seq = 0
while True:
    seq += 1
    history.add_row(TickRow("killed", seq, 1.75e9 + seq, seq, 1.0, 1, 1.0, 1.0, 1.0, 0.0, 0,
                            100.0, 0.0, 0.0, 100.0, 500.0, True, 1000.0, True, 1000.0, 90.0, False, "on", None))
    if seq % 20 == 0:
        time.sleep(0.001)
"""


def test_kill_9_during_writes_keeps_every_committed_row(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)])
    try:
        committed = 0
        deadline = time.monotonic() + 20
        while committed < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
            if db.exists():
                try:
                    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                    committed = reader.execute("SELECT COUNT(*) FROM ticks").fetchone()[0]
                    reader.close()
                except sqlite3.OperationalError:
                    committed = 0
        assert committed >= 2000, "the writer did not get going"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    count, max_seq = conn.execute("SELECT COUNT(*), MAX(seq) FROM ticks").fetchone()
    conn.close()
    assert count >= committed  # nothing committed before the kill is lost
    assert max_seq == count  # and no holes: every row up to the last commit
    with History(db) as history:  # the database takes new rows after the crash
        Driver(history).run(3, 1.0)
    assert len(rows(db)) > count


def test_stats_command_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "h.db"
    with History(db) as history:
        d = Driver(history)
        d.run(1800, 1200.0)
        d.run(10, 0.0, fault="GX gone")
        Driver(history, wall0_s=DAY0 + 86400).run(601, 600.0)
    assert main(["stats", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "heater kWh" in out and "2025-06-02" in out and "2025-06-03" in out and "total" in out
    assert main(["stats", "--db", str(db), "--json", "--days", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["day"] for d in data["days"]] == ["2025-06-03"]
    assert data["days"][0]["heater_kwh"] == pytest.approx(0.1, rel=1e-3)
    pytest.importorskip("matplotlib")
    png = tmp_path / "week.png"
    assert main(["stats", "--db", str(db), "--plot", str(png)]) == 0
    assert png.stat().st_size > 1000


def test_stats_without_a_database_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--db", str(tmp_path / "none.db")]) == 1
    err = capsys.readouterr().err
    assert "no history database" in err and err.count("\n") == 1


def test_a_failing_recorder_never_stops_control(caplog: pytest.LogCaptureFixture) -> None:
    from pvheater.config import Config
    from pvheater.service.loop import ControlLoop
    from pvheater.sim.controller_strategy import HandedSource

    def broken(_: TickReport) -> None:
        raise OSError(28, "No space left on device")

    heater = FakeHeater()
    loop = ControlLoop(HandedSource(), heater, Config(), on_report=broken)
    for k in range(5):
        r = loop.tick(float(k), None)
        assert not r.loop_error
    assert sum("tick observer failed" in rec.getMessage() for rec in caplog.records) == 1


def test_row_layout_matches_the_table(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    with History(db) as history:
        history.add_row(TickRow("run", 1, DAY0, 1.0, 0.0, 1, 0.0, 0.0, 0.0, 0.0, 0, None, None, None,
                                None, None, False, 0.0, False, 0.0, None, True, "no data", "x"))
    (row,) = rows(db)
    assert row["fault"] == "x" and row["failsafe"] == 1 and row["pv_w"] is None
    assert os.stat(db).st_size > 0


def test_measured_heater_power_and_tank_full_hours(tmp_path: Path) -> None:
    """Heater energy comes from the measured power when the loop has it; "tank full at" and its hours."""
    import dataclasses

    db = tmp_path / "h.db"
    with History(db) as history:
        d = Driver(history, wall0_s=DAY0 + 10 * 3600.0)  # 10:00
        for k in range(3 * 3600):
            full = 3600 <= k < 5400  # the thermostat is open 11:00-11:30
            r = report(d.mono0_s + d.t_s, 180.0 if full else 1800.0)
            r = dataclasses.replace(r, measured_heater_w=0.0 if full else 1500.0, tank_full=full)
            d.heater.apply(r.output, r.now_s)
            d.recorder(r)
            d.t_s += 1.0
        d.stop()
    stats = compute_stats(db)
    (day,) = stats.days
    assert day.heater_kwh == pytest.approx(1.5 * 2.5, rel=1e-3)  # 2.5 h drawing 1500 W, not 1800 W from the knob
    assert day.tank_full_at == "11:00"
    assert day.tank_full_h == pytest.approx(0.5, abs=1e-3)
    assert [k for k, _ in events(db) if k.startswith("tank")] == ["tank_full", "tank_closed"]


def test_writer_reuses_one_connection_with_a_bounded_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page cache is what grew the soak's RSS as the file grew: one connection, its cache bounded.
    real_connect = sqlite3.connect
    opened: list[sqlite3.Connection] = []

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, check_same_thread=False, **kwargs)  # read back from this thread below
        opened.append(conn)
        return conn

    monkeypatch.setattr(history_module.sqlite3, "connect", connect)
    with History(tmp_path / "h.db") as history:
        d = Driver(history)
        for _ in range(3):
            d.run(300, 500.0)
            assert history.flush()
        assert len(opened) == 1 and history._conn is opened[0]
        assert opened[0].execute("PRAGMA cache_size").fetchone()[0] == -history_module.WRITER_CACHE_KIB
