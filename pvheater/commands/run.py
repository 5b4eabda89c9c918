"""Run the controller: read the GX, decide, drive relay and servo (--simulate: built-in GX and house).

`pvheater run` reads the Venus GX every `poll.interval_s` with an APScheduler
interval job, steps the controller and the relay guard, and drives the relay
and the servo through gpiozero. SIGINT (Ctrl-C) and SIGTERM open the relay,
return the knob to zero and exit 0.

`pvheater run --simulate` runs the very same loop over real Modbus-TCP against
the built-in GX simulator on a loopback port, with a simulated house, battery,
inverter and heater behind it and gpiozero mock pins wired to the simulated
heater. It prints a status line per tick and a summary, and ends by itself
after --duration seconds.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import logging.handlers
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from apscheduler.schedulers.blocking import BlockingScheduler

from pvheater.config import Config, LogConfig
from pvheater.errors import PvHeaterError
from pvheater.service import ControlLoop, TickReport, status_line

log = logging.getLogger("pvheater")

#: Before this year the Pi's clock has not been set (no RTC, no NTP yet): time windows cannot be trusted.
_CLOCK_TRUSTED_FROM_YEAR = 2024
#: Longest wait at shutdown for the servo to reach zero before its pins are released.
_PARK_WAIT_S = 1.0
DEFAULT_SIM_DURATION_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater run`."""
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="run against the built-in GX simulator and a simulated house, with mock pins",
    )
    parser.add_argument(
        "--duration",
        type=_positive_seconds,
        metavar="SECONDS",
        help=f"stop after this long (default: never; with --simulate {DEFAULT_SIM_DURATION_S:.0f} s)",
    )
    parser.add_argument("--scenario", default="house_steps", help="with --simulate: the simulated day")
    parser.add_argument(
        "--start", default="12:05", metavar="HH:MM", help="with --simulate: time of day the simulation starts"
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
    return value


def trusted_local_time() -> datetime.time | None:
    """The wall-clock time of day, or None while the clock is clearly unset (a Pi booting in 1970)."""
    now = datetime.datetime.now()
    return now.time() if now.year >= _CLOCK_TRUSTED_FROM_YEAR else None


def configure_logging(cfg: LogConfig, console_level: str | None = None) -> None:
    """Console handler, plus a rotating file when configured; pymodbus' own connect errors muted."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    console.setLevel(console_level or cfg.level)
    root.addHandler(console)
    if cfg.file:
        try:
            file_handler = logging.handlers.RotatingFileHandler(
                cfg.file, maxBytes=cfg.max_bytes, backupCount=cfg.backups, encoding="utf-8"
            )
        except OSError as exc:
            raise PvHeaterError(f"log.file: cannot open {cfg.file!r} ({exc.strerror})") from None
        file_handler.setFormatter(fmt)
        file_handler.setLevel(cfg.level)
        root.addHandler(file_handler)
    root.setLevel(min(logging.getLevelName(cfg.level), logging.getLevelName(console_level or cfg.level)))
    # The reader reports GX failures once per episode; pymodbus would log every reconnect attempt.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


class Service:
    """The APScheduler side: an interval job running the loop, signals, a clean stop."""

    def __init__(
        self,
        loop: ControlLoop,
        interval_s: float,
        local_time: Callable[[], datetime.time | None] = trusted_local_time,
        on_tick: Callable[[TickReport], None] | None = None,
    ) -> None:
        self.loop = loop
        self.interval_s = interval_s
        self.local_time = local_time
        self.on_tick = on_tick
        self.scheduler = BlockingScheduler()
        self._tick_lock = threading.Lock()
        self._stopping = False
        self._deadline_s: float | None = None

    def job(self) -> TickReport | None:
        """The poll+control job: one tick of the loop (a plain function tests call directly)."""
        with self._tick_lock:
            if self._stopping:
                return None
            now_s = time.monotonic()
            report = self.loop.tick(now_s, self.local_time())
        if self._deadline_s is not None and now_s >= self._deadline_s:
            self.stop()
        if self.on_tick is not None:
            self.on_tick(report)
        return report

    def run(self, duration_s: float | None = None) -> None:
        """Run the job every interval until SIGINT/SIGTERM or duration_s; the heater is off afterwards."""
        now = datetime.datetime.now()
        self.scheduler.add_job(
            self.job, "interval", seconds=self.interval_s, max_instances=1, coalesce=True,
            next_run_time=now, id="poll_control",
        )
        self._deadline_s = None if duration_s is None else time.monotonic() + duration_s
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.scheduler.start()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            with self._tick_lock:  # let a tick in flight finish; none starts after this
                self._stopping = True
                self.loop.shutdown(time.monotonic())

    def stop(self) -> None:
        """Stop the scheduler (from a job, a signal or another thread)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        self.stop()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    """Before the scheduler runs: leave through the finally blocks (they switch the heater off)."""
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    """Run the control loop until stopped (or for --duration)."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    if args.simulate:
        return _run_simulated(args)
    cfg: Config = args.cfg
    configure_logging(cfg.log)
    return _run_real(cfg, args.duration)


def _run_real(cfg: Config, duration_s: float | None) -> int:
    from pvheater.actuators import Heater
    from pvheater.reader import GxReader
    from pvheater.registers import load_register_map

    register_map = load_register_map()
    heater = Heater.from_config(cfg)  # relay open from the first instant
    try:
        with GxReader(cfg.gx, register_map) as reader:
            loop = ControlLoop(reader, heater, cfg)
            log.info(
                "pvheater running: GX %s, every %.1f s, relay %s, servo %s",
                reader.endpoint, cfg.poll.interval_s, cfg.relay.pin, cfg.servo.pin,
            )
            Service(loop, cfg.poll.interval_s).run(duration_s)
            _park(heater, cfg)
    finally:
        heater.close()
    log.info("pvheater stopped: relay open, knob at zero")
    return 0


def _park(heater: object, cfg: Config) -> None:
    """Give the servo a moment to reach zero before its pins are released (the relay is already open)."""
    tick = getattr(heater, "tick", None)
    deadline = time.monotonic() + min(cfg.servo.detach_after_s, _PARK_WAIT_S)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        if tick is not None:
            tick(time.monotonic())


def _run_simulated(args: argparse.Namespace) -> int:
    from pvheater.sim.live import SimulatedRig
    from pvheater.sim.scenarios import build_day, get_scenario, hhmm, scenario_names

    if args.scenario not in scenario_names():
        raise PvHeaterError(f"unknown scenario {args.scenario!r} (expected one of: {', '.join(scenario_names())})")
    try:
        start_s = hhmm(args.start)
    except ValueError:
        raise PvHeaterError(f"--start: expected a time HH:MM, got {args.start!r}") from None
    duration_s = args.duration or DEFAULT_SIM_DURATION_S
    configure_logging(args.cfg.log, console_level="WARNING")
    day = build_day(get_scenario(args.scenario))
    with SimulatedRig(day, args.cfg, start_s=start_s, clock=time.monotonic) as rig:
        cfg = rig.config
        print(
            f"pvheater run --simulate: scenario {day.name!r} from {args.start} for {duration_s:.0f} s; "
            f"GX simulator on 127.0.0.1:{rig.gx.port}, mock pins {cfg.relay.pin} (relay) / {cfg.servo.pin} (servo)"
        )

        def show(report: TickReport) -> None:
            clock = _hms(rig.live.sim_time_s)
            print(f"{clock}  {status_line(report.m, report.output, rig.heater.servo_angle_deg)}", flush=True)

        rig.live.start()
        Service(rig.loop, cfg.poll.interval_s, local_time=rig.local_time, on_tick=show).run(duration_s)
        rig.live.stop()
        _print_summary(rig.live)
    return 0


def _hms(seconds: float) -> str:
    s = int(seconds) % 86400
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _print_summary(live: object) -> None:
    metrics = live.metrics()  # type: ignore[attr-defined]
    if metrics is None:
        print("summary: the simulation did not run long enough to measure anything")
        return
    capture = "-" if metrics.capture is None else f"{100 * metrics.capture:.0f} %"
    print(
        f"summary: heated {metrics.heater_kwh * 1000:.1f} Wh; surplus a perfect heater could have taken "
        f"{metrics.oracle_surplus_kwh * 1000:.1f} Wh (capture {capture}); heater-caused draw "
        f"{metrics.draw_kwh * 1000:.1f} Wh (battery {metrics.draw_battery_kwh * 1000:.1f}, "
        f"grid {metrics.draw_grid_kwh * 1000:.1f}); relay switchings {metrics.relay_toggles}; "
        f"servo travel {metrics.servo_travel_deg:.0f} deg in {metrics.servo_moves} moves"
    )
    print("(the first seconds are the relay guard confirming the surplus and the heater ramping up; "
          "whole simulated days: pvheater simulate)")
