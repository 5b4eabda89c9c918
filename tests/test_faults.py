"""Fault tolerance, each fault injected over the real Modbus socket (GX simulator) or the process boundary.

Every test ends with the relay open while the data are missing, checked on the
relay pin (gpiozero mock pin) and in the simulated plant.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import re
import signal
import time
from dataclasses import replace

import pytest

from pvheater.config import Config
from pvheater.history import History, HistoryRecorder
from pvheater.service import runtime as run_cmd
from pvheater.service.loop import TickReport
from pvheater.service.runtime import Service, trusted_local_time
from pvheater.sim.live import SimulatedRig
from pvheater.sim.scenarios import constant_day

SUNNY = constant_day(3000, 300, seconds=4 * 3600, initial_soc_pct=100.0)


def fast_config() -> Config:
    cfg = Config()
    return replace(cfg, gx=replace(cfg.gx, timeout_s=0.5, reconnect_min_s=0.5, reconnect_max_s=2.0))


def relay_pin_closed(rig: SimulatedRig) -> bool:
    return rig.live.wiring.relay_closed


def heat_up(rig: SimulatedRig, seconds: int = 120) -> None:
    for _ in range(seconds):
        rig.step(1.0)
    assert rig.plant.relay_on and rig.plant.heater_w > 1000


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "pvheater"]


@pytest.fixture
def rig() -> SimulatedRig:
    with SimulatedRig(SUNNY, fast_config(), start_s=0.0) as rig:
        yield rig


def assert_off_while_missing(rig: SimulatedRig, steps: int) -> list[TickReport]:
    """Step while the data are missing: the relay opens once the data are stale and stays open.

    While the last good snapshot is still younger than stale_after_s the failed
    reads are ridden through: that snapshot is used again, the relay stays as it
    was and the power never rises. The first tick beyond the bound is the
    fail-safe (a fault, relay open), and every tick after it. Returns the reports
    from the fail-safe on.
    """
    stale_s = rig.config.relay.stale_after_s
    reports: list[TickReport] = []
    held_s: float | None = None
    relay_before = relay_pin_closed(rig)
    held_w = rig.loop.last.output.power_w if rig.loop.last is not None else 0.0
    for _ in range(steps):
        report = rig.step(1.0)
        if not reports and report.held_read is not None:
            assert report.fault is None and report.m is not None  # the last good snapshot again
            held_s = report.m.time_s
            assert report.now_s - held_s <= stale_s
            assert report.output.relay_on == relay_before and relay_pin_closed(rig) == relay_before
            assert report.output.power_w <= held_w + 1e-9  # held, never raised
            held_w = report.output.power_w
            continue
        if not reports and held_s is not None:
            assert report.now_s - held_s > stale_s  # open at the first tick beyond the bound, not later
            assert report.now_s - held_s <= stale_s + rig.config.poll.interval_s
        reports.append(report)
        assert report.failsafe, report.output.reason
        assert not report.output.relay_on and not relay_pin_closed(rig)
    rig.live.advance(10)
    assert rig.plant.heater_w == 0
    return reports


def resumes(rig: SimulatedRig, within_s: int = 400) -> None:
    """Data come back: the loop reconnects, waits min_off_s and heats again."""
    for k in range(within_s):
        report = rig.step(1.0)
        if k > 5:
            assert report.fault is None, report.fault
        if rig.plant.relay_on and rig.plant.heater_w > 1000:
            return
    pytest.fail("heating did not resume")


def test_gx_absent_at_start_keeps_trying_with_capped_backoff(rig: SimulatedRig,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pvheater")
    rig.gx.stop()
    reports = assert_off_while_missing(rig, 60)
    waits = [float(m.group(1)) for r in reports if r.fault and (m := re.search(r"next attempt in ([\d.]+) s", r.fault))]
    attempts = sum(1 for r in reports if r.fault and "next attempt" not in r.fault)
    cap_s = rig.config.gx.reconnect_max_s
    assert waits and max(waits) <= cap_s  # capped
    assert 60 / (cap_s + 1) <= attempts <= 40  # keeps trying, but not every tick
    assert all("cannot be reached" in r.fault for r in reports if r.fault)
    assert len(errors(caplog)) == 1 and errors(caplog)[0].startswith("GX unavailable, heater off")
    rig.gx.start()
    resumes(rig)
    assert any("GX data again" in r.getMessage() for r in caplog.records)


def test_connection_drop_holds_the_power_and_reconnects(rig: SimulatedRig) -> None:
    heat_up(rig)
    before_w = rig.step(1.0).output.power_w
    assert rig.gx.drop_connections() >= 1
    report = rig.step(1.0)  # the read fails, the last data are 1 s old: the power is held
    assert report.fault is None and report.output.relay_on and relay_pin_closed(rig)
    assert report.output.power_w == pytest.approx(before_w, rel=0.05)
    assert rig.step(1.0).fault is None  # reconnected after reconnect_min_s
    assert relay_pin_closed(rig)
    resumes(rig)


def _fail_reads(rig: SimulatedRig, how: str, ticks: int) -> list[TickReport]:
    """`ticks` ticks whose reads fail over the socket (an exception reply 0x0B, or the GX down), then it answers."""
    if how == "gx_down":
        rig.gx.stop()
    else:
        rig.gx.exception_override["system"] = 0x0B  # gateway target failed to respond: a busy GX
    reports = [rig.step(1.0) for _ in range(ticks)]
    if how == "gx_down":
        rig.gx.start()
    else:
        del rig.gx.exception_override["system"]
    return reports


@pytest.mark.parametrize(("how", "ticks"), [("exception", 1), ("exception", 2), ("gx_down", 2)])
def test_one_or_two_failed_reads_keep_heating_without_switching(
    rig: SimulatedRig, how: str, ticks: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed reads while the last good data are younger than stale_after_s: the relay stays, the power holds."""
    heat_up(rig)
    for _ in range(30):
        before = rig.step(1.0)  # settled
    edges, toggles = rig.loop.guard_state.switch_times_s, rig.plant.relay_toggles
    caplog.set_level(logging.INFO, logger="pvheater")
    for report in _fail_reads(rig, how, ticks):
        assert report.held_read is not None and report.fault is None and not report.failsafe
        assert report.m is not None and report.now_s - report.m.time_s <= rig.config.relay.stale_after_s
        assert report.output.relay_on and relay_pin_closed(rig)
        assert report.output.power_w <= before.output.power_w + 1e-9  # held, never raised on old data
        assert "read failed" in report.output.reason
        assert rig.plant.heater_w > 1000  # still heating
    for _ in range(20):
        report = rig.step(1.0)
        assert report.fault is None and report.output.relay_on and relay_pin_closed(rig)
    assert report.held_read is None and rig.plant.heater_w > 1000
    assert rig.loop.guard_state.switch_times_s == edges and rig.plant.relay_toggles == toggles  # no switching
    assert errors(caplog) == []  # not a GX episode: nothing at ERROR


@pytest.mark.parametrize("how", ["exception", "gx_down"])
def test_failed_reads_beyond_stale_after_s_open_the_relay_at_the_bound_at_zero_current(
    rig: SimulatedRig, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """However many reads fail in a row, the first tick with the last good data older than stale_after_s opens
    the relay (the knob parked before it, so no current is broken); one ERROR line for the episode."""
    heat_up(rig)
    last_good_s = rig.step(1.0).m.time_s
    caplog.set_level(logging.INFO, logger="pvheater")
    stale_s = rig.config.relay.stale_after_s
    reports = _fail_reads(rig, how, 12)
    for r in reports:
        if r.now_s - last_good_s <= stale_s:
            assert r.held_read is not None and r.output.relay_on  # ridden through up to the bound
        else:
            assert r.fault is not None and r.failsafe and not r.output.relay_on  # the fail-safe from the bound on
    opened = next(i for i, r in enumerate(reports) if not r.output.relay_on)
    assert reports[opened].now_s - last_good_s > stale_s >= reports[opened - 1].now_s - last_good_s
    assert reports[opened - 1].output.power_w == 0.0  # the knob was at zero before the relay opened
    assert not rig.loop.guard_state.opened_loaded  # an open at zero current: no min_off_s rest needed
    assert len(errors(caplog)) == 1 and errors(caplog)[0].startswith("GX unavailable, heater off")
    resumes(rig, within_s=60)  # back within confirm_samples and the reconnect, not after min_off_s


def test_gx_restart_mid_run_reconnects_and_resumes(rig: SimulatedRig) -> None:
    heat_up(rig)
    rig.gx.stop()
    assert_off_while_missing(rig, 20)
    rig.gx.start()  # the same port, as a rebooted GX
    resumes(rig)


def test_silent_gx_times_out_and_fails_safe_in_time(rig: SimulatedRig) -> None:
    heat_up(rig)
    cfg = rig.config
    rig.gx.silent = True  # accepts the connection, never answers
    started = time.perf_counter()
    report = rig.step(1.0)
    took_s = time.perf_counter() - started
    assert report.fault is None and relay_pin_closed(rig)  # one failed read with fresh data holds the power
    assert cfg.gx.timeout_s - 0.05 <= took_s <= cfg.gx.timeout_s + 0.5
    # the data age: the knob goes to zero, then the relay opens by the time they are stale_after_s old
    for _ in range(int(cfg.relay.stale_after_s)):
        report = rig.step(1.0)
        if not report.output.relay_on:
            break
    assert not relay_pin_closed(rig) and "did not answer within 0.5 s" in (report.fault or "")
    assert_off_while_missing(rig, 8)
    rig.gx.silent = False
    resumes(rig)


@pytest.mark.parametrize("code", [0x02, 0x0A, 0x0B])
def test_exception_replies_open_the_relay_and_log_once(rig: SimulatedRig, code: int,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    heat_up(rig)
    caplog.set_level(logging.INFO, logger="pvheater")
    rig.gx.exception_override["system"] = code
    reports = assert_off_while_missing(rig, 10)
    assert f"0x{code:02X}" in (reports[0].fault or "")
    assert len(errors(caplog)) == 1
    del rig.gx.exception_override["system"]
    resumes(rig)


def test_absent_mppt_is_logged_once_and_never_heats_from_the_battery(rig: SimulatedRig,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A device other than the system service missing: control goes on with what is left, backing off on draw."""
    heat_up(rig)
    caplog.set_level(logging.INFO, logger="pvheater")
    rig.gx.exception_override["mppt"] = 0x0B
    for _ in range(120):
        report = rig.step(1.0)
        assert report.fault is None and report.m is not None and "mppt" in report.m.absent_roles
        assert rig.plant.battery_w > -300  # never a lasting draw from the battery
    warnings = [r.getMessage() for r in caplog.records if "devices the GX does not have" in r.getMessage()]
    assert warnings == ["devices the GX does not have: mppt"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"battery_soc_pct": 250, "bms_soc_pct": 250},  # SoC 250 %
        {"battery_soc_pct": 0xFFFF, "bms_soc_pct": 0xFFFF / 10},  # 0xFFFF, as a RESERVED word reads
        "invalid",  # every system value 0: the GX's invalid D-Bus value
    ],
    ids=["soc_250", "soc_0xFFFF", "invalid_zero"],
)
def test_implausible_values_open_the_relay(rig: SimulatedRig, overrides: object) -> None:
    heat_up(rig)
    if overrides == "invalid":
        names = [r.name for r in rig.reader._map.devices["system"].registers] + ["bms_soc_pct"]
        overrides = dict.fromkeys(names, None)
    assert isinstance(overrides, dict)
    rig.live.overrides = overrides
    rig.live.publish()
    reports = assert_off_while_missing(rig, 10)
    assert all(r.fault is None and r.output.reason.startswith("implausible data") for r in reports)
    rig.live.overrides = {}
    rig.live.publish()
    resumes(rig)


# --- wall-clock jumps ----------------------------------------------------------------


def test_trusted_local_time_ignores_an_unset_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    class Clock(datetime.datetime):
        now_value = datetime.datetime(1970, 1, 1, 0, 5)

        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> datetime.datetime:  # type: ignore[override]
            return cls.now_value

    monkeypatch.setattr(run_cmd.datetime, "datetime", Clock)
    assert trusted_local_time() is None
    Clock.now_value = datetime.datetime(2025, 6, 2, 13, 30)
    assert trusted_local_time() == datetime.time(13, 30)


def test_time_window_with_an_unset_clock_means_no_heating_until_ntp() -> None:
    cfg = fast_config()
    cfg = replace(cfg, relay=replace(cfg.relay, window_start="09:00", window_end="18:00"))
    with SimulatedRig(SUNNY, cfg, start_s=12 * 3600.0) as rig:
        for _ in range(200):  # booted in 1970: local time untrusted
            rig.live.advance(10)
            report = rig.loop.tick(rig.clock(), None)
            assert not report.output.relay_on and "clock not trusted" in report.output.reason
        for _ in range(30):  # NTP set the clock: the monotonic timers just go on
            report = rig.step(1.0)
        assert rig.plant.relay_on


def test_the_tick_runs_on_the_monotonic_clock(rig: SimulatedRig, tmp_path: object) -> None:
    """Service.run ticks by time.monotonic; the wall clock only dates history (1970 here, like a Pi before NTP)."""
    rig.live.start()
    reports: list[TickReport] = []
    service = Service(rig.loop, 0.5, local_time=lambda: None, on_tick=reports.append, wall_clock=lambda: 42.0)
    before = time.monotonic()
    service.run(1.2)
    after = time.monotonic()
    assert 3 <= len(reports) <= 4
    stamps = [r.now_s for r in reports]
    assert before <= stamps[0] and stamps[-1] <= after
    assert all(0.4 <= b - a <= 0.75 for a, b in itertools.pairwise(stamps))
    service.housekeeping()  # no recorder: nothing to do, and never with a 1970 clock


def test_housekeeping_never_purges_with_an_unset_clock(tmp_path: object) -> None:
    from pathlib import Path

    class Probe(History):
        def __init__(self) -> None:
            super().__init__(Path(str(tmp_path)) / "h.db")
            self.purged: list[float] = []

        def purge(self, before_wall_s: float) -> None:
            self.purged.append(before_wall_s)

    history = Probe()
    recorder = HistoryRecorder(history, None, lambda: 0.0)  # type: ignore[arg-type]
    wall = [42.0]
    service = Service(None, 1.0, recorder=recorder, retention_days=90, wall_clock=lambda: wall[0])  # type: ignore[arg-type]
    service.housekeeping()
    assert history.purged == []
    wall[0] = datetime.datetime(2025, 6, 2).timestamp()
    service.housekeeping()
    assert history.purged == [pytest.approx(wall[0] - 90 * 86400)]
    history.close()


# --- SIGTERM during a servo move -------------------------------------------------------


def test_sigterm_during_a_servo_move_opens_the_relay_and_parks_the_knob(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pvheater")
    cfg = replace(fast_config(), poll=replace(Config().poll, interval_s=0.5))
    with SimulatedRig(SUNNY, cfg, start_s=0.0, clock=time.monotonic) as rig:
        rig.live.start()
        sent: list[TickReport] = []
        angles: list[float | None] = []

        def on_tick(report: TickReport) -> None:
            moving = rig.heater.servo.attached and rig.heater.servo.last_move_s == report.now_s
            angles.append(rig.heater.servo_angle_deg)
            if not sent and report.output.relay_on and moving and len(angles) > 4:
                sent.append(report)
                os.kill(os.getpid(), signal.SIGTERM)

        started = time.monotonic()
        Service(rig.loop, 0.5, local_time=rig.local_time, on_tick=on_tick).run(20.0)
        assert sent, "the servo never moved with the relay closed"
        assert time.monotonic() - started < 15
        assert sent[0].output.power_w > 0
        assert not relay_pin_closed(rig)
        assert rig.heater.servo_angle_deg == pytest.approx(rig.heater.calibration.zero_angle_deg)
        rig.live.stop()
        rig.live.advance(30)  # the plant: relay open, the servo slews back to zero
        assert rig.plant.heater_w == 0
        assert rig.plant.servo_deg == pytest.approx(rig.heater.calibration.zero_angle_deg)
    messages = [r.getMessage() for r in caplog.records]
    assert "SIGTERM received: stopping" in messages
    assert "heater off: relay open, knob at zero" in messages


def test_gx_away_for_ten_minutes_logs_at_most_ten_short_lines(caplog: pytest.LogCaptureFixture) -> None:
    """The default backoff (1 s doubling to 60 s), 10 simulated minutes away: one ERROR, a few reminders, one INFO."""
    with SimulatedRig(SUNNY, Config(), start_s=0.0) as rig:
        heat_up(rig)
        caplog.set_level(logging.DEBUG, logger="pvheater")
        caplog.clear()
        rig.gx.stop()
        assert_off_while_missing(rig, 600)
        # what the service's log gets: pvheater's records (configure_logging mutes pymodbus' own connect errors)
        away = [r for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("pvheater")]
        rig.gx.start()
        for _ in range(30):
            rig.step(1.0)
            if any("GX data again" in r.getMessage() for r in caplog.records):
                break
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name.startswith("pvheater")]
    assert len(lines) <= 10, "\n".join(lines)
    levels = [r.levelname for r in away]
    assert levels.count("ERROR") == 1
    # before it only the status line of the ridden-through reads (the knob parks before the data go stale)
    assert all("read failed" in r.getMessage() for r in away[:levels.index("ERROR")])
    reminders = [r.getMessage() for r in away if "still unavailable" in r.getMessage()]
    assert 3 <= len(reminders) <= 6  # one per backoff step, growing: not silent, not one a tick
    assert all(len(line) <= 120 for line in reminders)
    assert sum("GX data again" in line for line in lines) == 1
