"""Attacks of a hostile GX (pvheater/sim/hostile_gx.py, raw sockets) on the real service, in real time.

The whole installation runs as in `pvheater run --simulate`: the plant behind
the GX simulator, the real reader (through the hostile proxy), ControlLoop and
Service (its tick and its independent fail-safe timer), the gpiozero heater on
mock pins. A monitor thread watches the relay pin. Each case heats, turns the
attack on, and checks: the relay pin opens within stale_after_s + one
interval of the last fresh data, no traceback anywhere, and heating comes back
when the GX behaves again. Frozen values are checked in simulated time (the
bound is 20 s).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace

import pytest

from pvheater.config import Config
from pvheater.control import freshness
from pvheater.reader import GxReader
from pvheater.registers import load_register_map
from pvheater.service.loop import TickReport
from pvheater.service.runtime import Service
from pvheater.sim.hostile_gx import HostileGx
from pvheater.sim.live import SimulatedRig
from pvheater.sim.scenarios import constant_day

STALE_S = 2.0
TIMEOUT_S = 1.5
INTERVAL_S = 0.5
#: The relay pin is sampled this often; the fail-safe timer checks every 0.2 s, within the interval.
SAMPLE_S = 0.02
SUNNY = constant_day(3000, 300, seconds=4 * 3600, initial_soc_pct=100.0)


def hostile_config() -> Config:
    cfg = Config()
    return replace(
        cfg,
        gx=replace(cfg.gx, timeout_s=TIMEOUT_S, reconnect_min_s=0.5, reconnect_max_s=1.0),
        # two confirming samples (the least the config allows): the attacks are about opening, not closing
        relay=replace(cfg.relay, stale_after_s=STALE_S, min_off_s=1.0, min_on_s=0.0, confirm_samples=2),
        poll=replace(cfg.poll, interval_s=INTERVAL_S),
    )


@dataclass
class Run:
    """What one attack run saw."""

    attack_at_s: float | None = None
    opened_at_s: float | None = None
    #: loop.fresh_s when the relay pin opened: the time of the last fresh data.
    fresh_at_open_s: float | None = None
    behaves_at_s: float | None = None
    closed_again_at_s: float | None = None
    reports: list[TickReport] = field(default_factory=list)


def run_attack(mode: str, *, delay_s: float = 1.0, soc_drop: bool = False, attack_s: float = STALE_S + 1.0) -> Run:
    """Heat, attack for attack_s, behave again; the relay pin's edges timed by a monitor thread."""
    run = Run()
    register_map = load_register_map()
    with SimulatedRig(SUNNY, hostile_config(), start_s=12 * 3600.0, clock=time.monotonic) as rig, \
            HostileGx(rig.gx.port, register_map, delay_s=delay_s, flood_s=attack_s) as gx:
        reader = GxReader(replace(rig.config.gx, port=gx.port), register_map)
        rig.loop.source = reader
        stop = threading.Event()

        def monitor() -> None:
            closed = False
            while not stop.wait(SAMPLE_S):
                now_s = time.monotonic()
                was, closed = closed, rig.live.wiring.relay_closed
                if run.attack_at_s is not None and was and not closed and run.opened_at_s is None:
                    run.opened_at_s, run.fresh_at_open_s = now_s, rig.loop.fresh_s
                if run.behaves_at_s is not None and closed and run.closed_again_at_s is None:
                    run.closed_again_at_s = now_s

        def on_tick(report: TickReport) -> None:
            run.reports.append(report)
            now_s = time.monotonic()
            if run.attack_at_s is None:
                on = sum(1 for r in run.reports[-3:] if r.output.relay_on)
                if on == 3 and rig.live.wiring.relay_closed:
                    if soc_drop:
                        rig.live.overrides = {"battery_soc_pct": 50, "bms_soc_pct": 50}
                        rig.live.publish()
                    gx.mode = mode
                    run.attack_at_s = now_s
            elif run.behaves_at_s is None:
                if now_s - run.attack_at_s >= attack_s:
                    gx.mode = "pass"
                    rig.live.overrides = {}
                    rig.live.publish()
                    run.behaves_at_s = now_s
            elif run.closed_again_at_s is not None or now_s - run.behaves_at_s > 15.0:
                service.stop()

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        rig.live.start()
        service = Service(rig.loop, INTERVAL_S, local_time=rig.local_time, on_tick=on_tick)
        try:
            service.run(45.0)
        finally:
            stop.set()
            watcher.join(2)
            reader.close()
    return run


def no_traceback(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert "Traceback" not in capfd.readouterr().err


def assert_safe_and_recovers(run: Run, *, promise_s: float = STALE_S + INTERVAL_S) -> None:
    assert run.attack_at_s is not None, "the relay never closed before the attack"
    assert run.opened_at_s is not None, "the relay never opened during the attack"
    assert run.fresh_at_open_s is not None
    late_s = run.opened_at_s - run.fresh_at_open_s
    assert late_s <= promise_s + SAMPLE_S * 2, f"relay opened {late_s:.2f} s after the last fresh data"
    assert run.closed_again_at_s is not None, "heating did not come back after the GX behaved again"


ATTACKS = ["slow_split", "wrong_fc_4", "wrong_fc_0x17", "wrong_tid", "wrong_unit", "wrong_byte_count",
           "pid_flood", "truncated", "oversized", "reset", "max32"]


@pytest.mark.parametrize("mode", ATTACKS)
def test_attack_opens_the_relay_in_time_and_heating_recovers(
    mode: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    # slow_split: each half just under half the timeout, so each reply is valid and just under the timeout
    run = run_attack(mode, delay_s=TIMEOUT_S / 2 - 0.05)
    assert_safe_and_recovers(run)
    attacked = [r for r in run.reports if run.attack_at_s is not None and r.now_s > run.attack_at_s + TIMEOUT_S
                and (run.behaves_at_s is None or r.now_s < run.behaves_at_s)]
    # a failed read is ridden through (the last good snapshot used again) only while that snapshot is fresh
    held = [r for r in attacked if r.held_read is not None]
    assert all(r.fault is None and r.m is not None and r.now_s - r.m.time_s <= STALE_S for r in held)
    during = [r for r in attacked if r.held_read is None]
    assert during and all(not r.output.relay_on and r.failsafe for r in during)
    if mode == "max32":
        assert not held and all(r.output.reason == "implausible data: grid power missing" for r in during)
    else:
        assert all(r.fault is not None for r in during)
    errors = [r.getMessage() for r in caplog.records if r.name == "pvheater" and r.levelno >= logging.ERROR]
    assert len(errors) == len(set(errors)) <= 2, errors  # one line per episode
    no_traceback(caplog, capfd)


def test_soc_drop_behind_slow_replies_opens_as_fast(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    run = run_attack("slow_split", delay_s=TIMEOUT_S / 2 - 0.05, soc_drop=True)
    assert_safe_and_recovers(run)
    no_traceback(caplog, capfd)


def test_soc_drop_behind_slow_replies_within_the_deadline_opens_at_once(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every reply slow (split, 2 x 0.06 s) but the whole read within the deadline: the data stay fresh."""
    run = run_attack("slow_split", delay_s=0.06, soc_drop=True)
    assert run.attack_at_s is not None and run.opened_at_s is not None
    assert run.opened_at_s - run.attack_at_s <= STALE_S + INTERVAL_S
    attack = [r for r in run.reports if run.attack_at_s < r.now_s < (run.behaves_at_s or float("inf"))]
    assert all(r.fault is None for r in attack)  # the reads succeeded: the SoC gate opened the relay
    assert any(r.output.reason.startswith("SoC 50") for r in attack)
    assert run.closed_again_at_s is not None
    no_traceback(caplog, capfd)


# --- frozen values (simulated time, over Modbus) ----------------------------------------


def heat_up(rig: SimulatedRig) -> None:
    for _ in range(180):
        rig.step(1.0)
    assert rig.plant.relay_on and rig.plant.heater_w > 1000


@pytest.mark.parametrize("where", ["simulator", "proxy"])
def test_frozen_gx_opens_the_relay_within_30_s_and_recovers(where: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pvheater")
    cfg = Config()
    cfg = replace(cfg, gx=replace(cfg.gx, timeout_s=0.5, reconnect_min_s=0.5, reconnect_max_s=2.0))
    register_map = load_register_map()
    with SimulatedRig(SUNNY, cfg, start_s=0.0) as rig, HostileGx(rig.gx.port, register_map) as gx:
        if where == "proxy":
            rig.loop.source = GxReader(replace(rig.config.gx, port=gx.port), register_map, clock=rig.clock)
        heat_up(rig)
        if where == "simulator":
            rig.gx.frozen = True
        else:
            gx.mode = "frozen"
        opened_after_s = None
        for k in range(1, 61):
            report = rig.step(1.0)
            assert report.fault is None  # the reads go on succeeding
            if not rig.live.wiring.relay_closed:
                opened_after_s = k
                break
        assert opened_after_s is not None and opened_after_s <= 30
        assert opened_after_s > freshness.FROZEN_AFTER_S
        assert report.output.reason.startswith("fault: values frozen")
        for _ in range(10):
            rig.step(1.0)
            assert not rig.live.wiring.relay_closed
        rig.gx.frozen = False
        gx.mode = "pass"
        for _ in range(300):
            rig.step(1.0)
            if rig.plant.relay_on:
                break
        assert rig.plant.relay_on
    frozen_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("GX data frozen")]
    assert len(frozen_lines) == 1 and frozen_lines[0].startswith("GX data frozen, heater off: values frozen")
    assert any(r.getMessage() == "GX values move again" for r in caplog.records)


# --- the read's deadline and the independent fail-safe ----------------------------------


@pytest.mark.parametrize("mode", ["slow_split", "truncated", "pid_flood"])
def test_one_read_fails_within_its_timeout(mode: str) -> None:
    """pymodbus checks its timeout only when bytes arrive; the reader bounds every wait by the time left."""
    from pvheater.config import GxConfig, UnitIds
    from pvheater.errors import GxUnavailable
    from pvheater.sim.gx_server import SAMPLE_VALUES, GxSimulator

    register_map = load_register_map()
    with GxSimulator(register_map, UnitIds()) as sim:
        sim.set_values(SAMPLE_VALUES)
        with HostileGx(sim.port, register_map, delay_s=TIMEOUT_S / 2 - 0.05, flood_s=5.0) as gx:
            gx.mode = mode
            cfg = replace(GxConfig(), host="127.0.0.1", port=gx.port, timeout_s=TIMEOUT_S)
            with GxReader(cfg, register_map) as reader:
                started = time.monotonic()
                with pytest.raises(GxUnavailable) as info:
                    reader.read()
                took_s = time.monotonic() - started
    assert took_s <= TIMEOUT_S + 0.2, f"{mode}: the read took {took_s:.2f} s"
    expected = "does not match the request (protocol ID 1" if mode == "pid_flood" else "did not answer within 1.5 s"
    assert expected in str(info.value)


class HangingSource:
    """The real reader, but read() blocks while `hang` is set (a read stuck in the kernel, a bug)."""

    def __init__(self, reader: GxReader) -> None:
        self.reader = reader
        self.hang = threading.Event()
        self.release = threading.Event()

    def read(self):  # type: ignore[no-untyped-def]
        if self.hang.is_set():
            self.release.wait(30)
        return self.reader.read()


def test_the_failsafe_timer_opens_the_relay_while_a_read_hangs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pvheater")
    run = Run()
    with SimulatedRig(SUNNY, hostile_config(), start_s=12 * 3600.0, clock=time.monotonic) as rig:
        source = HangingSource(rig.reader)
        rig.loop.source = source
        opened: list[tuple[float, float | None]] = []
        stop = threading.Event()

        def monitor() -> None:
            while not stop.wait(SAMPLE_S):
                if run.attack_at_s is not None and not opened and not rig.live.wiring.relay_closed:
                    opened.append((time.monotonic(), rig.loop.fresh_s))
                    source.release.set()  # the read comes back (late): its data must not close the relay again

        def on_tick(report: TickReport) -> None:
            run.reports.append(report)
            if run.attack_at_s is None and len(run.reports) >= 3 and all(r.output.relay_on for r in run.reports[-3:]):
                source.hang.set()
                run.attack_at_s = time.monotonic()
            elif opened and time.monotonic() - opened[0][0] > 3.0:
                service.stop()

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        rig.live.start()
        service = Service(rig.loop, INTERVAL_S, local_time=rig.local_time, on_tick=on_tick)
        service.run(30.0)
        stop.set()
        watcher.join(2)
        assert opened, "the relay stayed closed while the read hung"
        opened_at_s, fresh_s = opened[0]
        assert fresh_s is not None and opened_at_s - fresh_s <= STALE_S + INTERVAL_S
        assert rig.heater.servo_angle_deg == pytest.approx(rig.heater.calibration.zero_angle_deg)  # knob parked
        # the tick that hung, and the ones after, start again from off: confirmation first
        after = [r for r in run.reports if r.now_s > run.attack_at_s]
        assert after and not after[0].output.relay_on
    lines = [r.getMessage() for r in caplog.records if "fail-safe opened the relay" in r.getMessage()]
    assert len(lines) == 1


def test_a_tick_that_overruns_the_stale_limit_does_not_ping_the_watchdog() -> None:
    from pvheater.systemd import Notifier

    class Spy(Notifier):
        def __init__(self) -> None:
            super().__init__({})
            self.calls: list[str] = []

        def healthy(self, now_s: float, status: str = "") -> None:
            self.calls.append("healthy")

        def status(self, text: str) -> None:
            self.calls.append("status: " + text)

    with SimulatedRig(SUNNY, hostile_config(), start_s=12 * 3600.0, clock=time.monotonic) as rig:
        source = HangingSource(rig.reader)
        rig.loop.source = source
        spy = Spy()
        service = Service(rig.loop, INTERVAL_S, local_time=rig.local_time, notifier=spy)
        service.job()
        assert spy.calls == ["healthy"]
        source.hang.set()
        threading.Timer(STALE_S + 0.3, source.release.set).start()
        service.job()  # the read hangs longer than stale_after_s, then returns
        assert len(spy.calls) == 2 and spy.calls[1].startswith("status: tick took")
