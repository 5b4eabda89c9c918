"""The control loop's error handling: heater off on any error, one log line per episode."""

from __future__ import annotations

import logging

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from pvheater.actuators import Heater
from pvheater.config import Config
from pvheater.control.measurements import Measurements
from pvheater.errors import GxUnavailable
from pvheater.service.loop import ControlLoop


class ScriptedSource:
    """Returns hidden-surplus snapshots, or raises what the test puts in `error`."""

    def __init__(self) -> None:
        self.t = 0.0
        self.error: Exception | None = None

    def read(self) -> Measurements:
        self.t += 1.0
        if self.error is not None:
            raise self.error
        return Measurements(
            time_s=self.t,
            values={"battery_soc_pct": 100, "grid_l1_w": 0, "battery_power_w": 0,
                    "mppt_operation_mode": 1, "mppt_state": 5},
        )


@pytest.fixture
def rig():
    factory = MockFactory(pin_class=MockPWMPin)
    heater = Heater.from_config(Config(), pin_factory=factory)
    source = ScriptedSource()
    loop = ControlLoop(source, heater, Config())
    yield source, loop, factory.pin("GPIO17")
    heater.close()
    factory.close()


def run(loop: ControlLoop, source: ScriptedSource, n: int) -> None:
    for _ in range(n):
        loop.tick(source.t + 1.0, None)


@pytest.mark.parametrize(
    ("error", "expected"),
    [(GxUnavailable("GX at x:502 did not answer"), "GX unavailable"), (RuntimeError("boom"), "control loop error")],
)
def test_error_episode_switches_off_and_logs_once(rig, caplog, error: Exception, expected: str) -> None:
    source, loop, relay_pin = rig
    run(loop, source, 10)
    assert relay_pin.state == 1  # heating
    caplog.set_level(logging.INFO, logger="pvheater")
    source.error = error
    if isinstance(error, GxUnavailable):
        # failed reads are ridden through while the last good snapshot is no older than stale_after_s (5 s) ...
        run(loop, source, 5)
        assert relay_pin.state == 1 and not any(r.levelno >= logging.ERROR for r in caplog.records)
        run(loop, source, 1)  # ... and the first tick beyond it opens the relay
    else:
        run(loop, source, 1)  # any other error opens it at once
    assert relay_pin.state == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and expected in errors[0].getMessage()
    source.error = None
    caplog.clear()
    run(loop, source, 3)
    assert any("again" in r.getMessage() for r in caplog.records)


def test_status_line_logged_on_change_only(rig, caplog) -> None:
    source, loop, _ = rig
    caplog.set_level(logging.INFO, logger="pvheater")
    run(loop, source, 2)  # waiting for confirm samples: relay off, power 0 -> one line
    assert len(caplog.records) == 1
    run(loop, source, 1)  # relay closes: a change -> a second line
    assert len(caplog.records) == 2
    assert "relay ON" in caplog.records[1].getMessage()


def _snapshot(time_s: float, soc_pct: float | None = 98.0) -> Measurements:
    return Measurements(time_s=time_s, values={"battery_soc_pct": soc_pct, "grid_l1_w": 0, "battery_power_w": 0})


@pytest.mark.parametrize(
    ("m", "fault", "window", "reason", "failsafe"),
    [
        (None, "GX at x did not answer", None, "fault: GX at x did not answer", True),
        (None, None, None, "no data", True),
        (_snapshot(0.0), None, None, "stale data", True),
        (_snapshot(100.0), None, None, "data time", True),
        (_snapshot(10.0, soc_pct=None), None, None, "implausible data", True),
        (_snapshot(10.0, soc_pct=50.0), None, None, "SoC 50 % below", False),
        (_snapshot(10.0), None, "13:00", "outside time window", False),
    ],
)
def test_the_guard_marks_the_failsafe_in_its_output_and_the_report_follows_it(
    m: Measurements | None, fault: str | None, window: str | None, reason: str, failsafe: bool
) -> None:
    import dataclasses
    import datetime

    from pvheater.control import guard
    from pvheater.control.messages import HeatRequest
    from pvheater.service.loop import TickReport

    cfg = Config()
    cfg = dataclasses.replace(cfg, relay=dataclasses.replace(cfg.relay, window_start=window))
    request = HeatRequest(True, 800.0, "surplus")
    _, out = guard.step(guard.GuardState(), request, m, guard.GuardSettings.from_config(cfg), 10.0,
                        datetime.time(12, 0), fault)
    assert not out.relay_on and out.reason.startswith(reason)
    assert out.failsafe is failsafe
    assert TickReport(10.0, m, request, out, None).failsafe is failsafe
