"""Run the controller: read the GX, decide, drive relay and servo (--simulate: built-in GX and house).

`pvheater run` reads the Venus GX every `poll.interval_s` (a monotonic timer;
APScheduler runs the wall-clock jobs), steps the controller and the relay
guard, and drives the relay and the servo through gpiozero. SIGINT (Ctrl-C)
and SIGTERM open the relay, return the knob to zero and exit 0; SIGHUP
re-reads the config file (a bad one is rejected, the old config stays). It
keeps the SQLite history (`history.file`) through a writer thread, writes
`service.pid_file`, and speaks sd_notify when systemd started it
(pvheater/systemd.py: READY, watchdog pings after healthy ticks, STOPPING).

`pvheater run --simulate` runs the very same loop over real Modbus-TCP against
the built-in GX simulator on a loopback port, with a simulated house, battery,
inverter and heater behind it and gpiozero mock pins wired to the simulated
heater. It prints a status line per tick and a summary, and ends by itself
after --duration seconds.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import signal
import time
from pathlib import Path

from pvheater.commands import positive_float
from pvheater.config import Config, default_config_path
from pvheater.errors import PvHeaterError
from pvheater.service.channel import channel_for
from pvheater.service.loop import TickReport, status_line
from pvheater.service.runtime import ConfigReloader, Service, configure_logging, exit_on_signal, run_service

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
        type=positive_float,
        metavar="SECONDS",
        help=f"stop after this long (default: never; with --simulate {DEFAULT_SIM_DURATION_S:.0f} s)",
    )
    parser.add_argument("--scenario", default="house_steps", help="with --simulate: the simulated day")
    parser.add_argument(
        "--start", default="12:05", metavar="HH:MM", help="with --simulate: time of day the simulation starts"
    )


def run(args: argparse.Namespace) -> int:
    """Run the control loop until stopped (or for --duration)."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    previous_term = signal.signal(signal.SIGTERM, exit_on_signal)
    try:
        if args.simulate:
            return _run_simulated(args)
        cfg: Config = args.cfg
        configure_logging(cfg.log)
        return run_service(cfg, args.duration, config_path(args))
    finally:  # leave the process as it was (tests and callers run more after us)
        signal.signal(signal.SIGTERM, previous_term)
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)


def config_path(args: argparse.Namespace) -> Path:
    """The absolute path of the config file this command read (what a reload reads again)."""
    return (Path(args.config) if args.config else default_config_path()).resolve()


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
        reloader = ConfigReloader(config_path(args), args.cfg, active=cfg)
        Service(rig.loop, cfg.poll.interval_s, local_time=rig.local_time, on_tick=show, reloader=reloader,
                channel=channel_for(cfg.service.socket_file)).run(duration_s)
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
