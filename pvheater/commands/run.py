"""Run the controller: read the GX, decide, drive relay and servo (--simulate: built-in GX and house).

`pvheater run` reads the Venus GX every `poll.interval_s` (a monotonic timer;
APScheduler runs the wall-clock jobs), steps the controller and the relay
guard, and drives the relay and the servo through gpiozero. SIGINT (Ctrl-C)
and SIGTERM open the relay, return the knob to zero and exit 0; SIGHUP
re-reads the config file (a bad one is rejected, the old config stays). It
keeps the SQLite history (`history.file`) through a writer thread, writes
`service.pid_file`, and speaks sd_notify when systemd started it
(pvheater/systemd.py: READY, watchdog pings after healthy ticks, STOPPING).

`pvheater run --dry-run` reads the GX and runs the controller and the guard
as above, but on the dry-run heater (pvheater/service/dryrun.py): no pin
library is opened and no pin driven; it logs what it would do, and keeps no
history (so no invented heater energy), PID file or local channel. Its
start-up line says DRY RUN.

`pvheater run --simulate` runs the very same loop over real Modbus-TCP against
the built-in GX simulator on a loopback port, with a simulated house, battery,
inverter and heater behind it and gpiozero mock pins wired to the simulated
heater. It prints a status line per tick and a summary, and ends by itself
after --duration seconds. MQTT stays off in a simulation (a demo must not
pose as the house in Home Assistant) unless `--mqtt HOST[:PORT]` turns it on:
then it publishes as its own device, node `<mqtt.node_id>_sim` on
`<mqtt.base_topic>_sim/...`, beside a real service on the same broker.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import logging.handlers
import signal
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pvheater.commands.common import add_scenario_arguments, positive_float, scenario_day
from pvheater.config import Config, default_config_path, parse_listen, valid_host
from pvheater.control.timeofday import format_hms, hhmm_seconds
from pvheater.errors import ConfigError
from pvheater.service.instance import Instance
from pvheater.service.loop import STATUS_LEGEND, TickReport
from pvheater.service.rig import Rig
from pvheater.service.runtime import configure_logging, exit_on_signal, frontends_for, run_service

if TYPE_CHECKING:
    from pvheater.service.hub import Frontend
    from pvheater.sim.scenarios import ScenarioDay

log = logging.getLogger("pvheater")

DEFAULT_SIM_DURATION_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater run`."""
    parser.epilog = STATUS_LEGEND
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="run against the built-in GX simulator and a simulated house, with mock pins",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read the GX and run controller and guard, log what it would do; no pin is touched (no pin library "
        "is opened), no history is written",
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        metavar="SECONDS",
        help=f"stop after this long (default: never; with --simulate {DEFAULT_SIM_DURATION_S:.0f} s)",
    )
    parser.add_argument(
        "--web",
        type=listen_address,
        metavar="ADDRESS:PORT",
        help="serve the status page there (overrides web.listen), e.g. 127.0.0.1:8080; with --simulate the page's "
        "history is a temporary file, removed at the end",
    )
    parser.add_argument(
        "--mqtt",
        type=mqtt_endpoint,
        metavar="HOST[:PORT]",
        help="with --simulate: publish the simulation to this MQTT broker (Home Assistant discovery included) as "
        "a separate device, <node_id>_sim; needs pip install 'pvheater[mqtt]'",
    )
    add_scenario_arguments(parser, scenario="house_steps", start="12:05", what="the simulated day")


def listen_address(text: str) -> str:
    """argparse type of --web: ADDRESS:PORT as web.listen takes it."""
    try:
        parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def mqtt_endpoint(text: str) -> tuple[str, int]:
    """(host, port) of a --mqtt HOST[:PORT] argument (port 1883 when left out)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or "]" in port_text or (host.count(":") and not host.startswith("[")):
        host, port_text = text, "1883"  # no port, or a bare IPv6 address
    host = host.strip("[]")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST[:PORT] with a port from 1 to 65535, got {text!r}")
    if not valid_host(host):
        raise argparse.ArgumentTypeError(f"expected HOST[:PORT] with an IP address or host name, got {text!r}")
    return host, int(port_text)


def simulation_config(cfg: Config, mqtt: tuple[str, int] | None) -> Config:
    """The config a simulation runs with: MQTT off, or on for --mqtt's broker under its own node and topics."""
    m = cfg.mqtt
    if mqtt is None:
        return dataclasses.replace(cfg, mqtt=dataclasses.replace(m, enabled=False))
    host, port = mqtt
    return dataclasses.replace(cfg, mqtt=dataclasses.replace(
        m, enabled=True, host=host, port=port, node_id=f"{m.node_id}_sim", base_topic=f"{m.base_topic}_sim",
    ))


def run(args: argparse.Namespace) -> int:
    """Run the control loop until stopped (or for --duration)."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    previous_term = signal.signal(signal.SIGTERM, exit_on_signal)
    # The console script's process ends when run returns: late stop signals stay ignored to the very end.
    to_exit = bool(getattr(args, "process_entry", False))
    file_cfg = args.cfg  # as read from the file: what a reload compares with
    cfg = file_cfg if args.web is None else replace(file_cfg, web=replace(file_cfg.web, listen=args.web))
    try:
        if args.mqtt is not None and not args.simulate:
            raise ConfigError("run: --mqtt only works with --simulate (for the service set mqtt.enabled in "
                              "config.yaml)")
        if args.simulate:
            return _run_simulated(args, cfg)
        configure_logging(cfg.log)
        if args.dry_run:  # no pins, no history, no PID file: no lock needed, it may run beside the service
            return run_service(Rig.dry_run_of(cfg), args.duration, config_path(args), file_cfg,
                               keep_signals_ignored=to_exit)
        # The single-instance lock comes before the pins: a second pvheater must not touch the relay.
        instance = Instance.acquire(cfg.service.pid_file, cfg.history.file)
        try:
            rig = Rig.real(cfg)
        except BaseException:
            instance.release()
            raise
        return run_service(rig, args.duration, config_path(args), file_cfg, instance=instance,
                           keep_signals_ignored=to_exit)
    finally:  # leave the process as it was (tests and callers run more after us)
        if not to_exit or signal.getsignal(signal.SIGTERM) is exit_on_signal:
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


def _run_simulated(args: argparse.Namespace, run_cfg: Config) -> int:
    """The service on the simulated rig, on the wall clock, printing a line per tick and a summary."""
    day = scenario_day(args.scenario)
    start_s = hhmm_seconds(args.start)
    duration_s = args.duration or DEFAULT_SIM_DURATION_S
    configure_logging(run_cfg.log, console_level="WARNING")
    sim_cfg = simulation_config(run_cfg, args.mqtt)
    with contextlib.ExitStack() as stack:
        history_file: str | None = None
        if run_cfg.web.listen is not None and not args.dry_run:
            # The page's energy, chart and events come from a history: a temporary one, never a real service's.
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pvheater-sim-")))
            history_file = str(tmp / "history.db")
            sim_cfg = replace(sim_cfg, history=replace(sim_cfg.history, file=history_file))
        # Built before anything starts or prints: a missing paho-mqtt or password is one line on its own.
        frontends = [] if args.dry_run else frontends_for(sim_cfg)
        rig = Rig.simulated(day, sim_cfg, start_s=start_s, realtime=True, dry_run=args.dry_run)
        if history_file is not None:
            rig.config = replace(rig.config, history=replace(rig.config.history, file=history_file))
        return _run_simulated_rig(args, rig, day, start_s, duration_s, frontends)


def _run_simulated_rig(args: argparse.Namespace, rig: Rig, day: ScenarioDay, start_s: float,
                       duration_s: float, frontends: list[Frontend]) -> int:
    sim = rig.simulation
    assert sim is not None
    cfg = rig.config
    pins = "DRY RUN, the loop drives no pin" if args.dry_run else "mock pins"
    print(
        f"pvheater run --simulate: scenario {day.name!r} from {args.start} for {duration_s:.0f} s; "
        f"GX simulator on 127.0.0.1:{sim.gx.port}, {pins} {cfg.relay.pin} (relay) / "
        f"{cfg.actuator_pin} ({cfg.heater.actuator})"
    )

    if cfg.web.listen is not None:
        host, port = parse_listen(cfg.web.listen)
        host = f"[{host}]" if ":" in host else host
        print(f"status page: http://{host}:{port}/ (history in a temporary file, removed at the end)")
    print(STATUS_LEGEND)
    first_tick_s: list[float] = []

    def show(report: TickReport) -> None:
        # The tick's own time, rounded: the plant's clock read here sits up to a step either side of a second,
        # so truncating it printed one second twice and skipped the next.
        first_tick_s[:] = first_tick_s or [report.now_s]
        clock = format_hms(start_s + round(report.now_s - first_tick_s[0]))
        print(f"{clock}  {report.status(rig.heater.servo_angle_deg)}", flush=True)

    sim.live.start()
    if args.mqtt is not None:
        m = cfg.mqtt
        print(f"MQTT: broker {m.host}:{m.port}, state on {m.base_topic}/state, Home Assistant device "
              f"node {m.node_id}" + ("" if m.discovery_prefix is not None else " (no discovery)"))
    code = run_service(rig, duration_s, config_path(args), args.cfg, on_tick=show,  # closes the rig
                       keep_signals_ignored=bool(getattr(args, "process_entry", False)), frontends=frontends)
    # A dry run's simulated heater never moved: its wear is the servo's nothing, as the metrics say.
    _print_summary(sim.live, {} if rig.dry_run else rig.heater.actuator.wear())
    return code


def wear_text(metrics: object, wear: dict[str, float]) -> str:
    """The actuator's own wear figures, as the summary prints them."""
    if "ssr_switch_ons" in wear:
        return (
            f"SSR switch-ons {wear['ssr_switch_ons']:.0f}, {wear['on_cycles']:.0f} of {wear['cycles']:.0f} cycles "
            f"fired, longest on-block {wear['longest_on_block']:.0f} and off-block {wear['longest_off_block']:.0f} "
            "cycles while bursting"
        )
    if "duty_changes" in wear:
        return f"PWM duty changes {wear['duty_changes']:.0f} (no moving part)"
    return (
        f"servo travel {metrics.servo_travel_deg:.0f} deg in "  # type: ignore[attr-defined]
        f"{metrics.servo_moves} moves"  # type: ignore[attr-defined]
    )


def _print_summary(live: object, wear: dict[str, float]) -> None:
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
        f"{wear_text(metrics, wear)}"
    )
    print("(the first seconds are the relay guard confirming the surplus and the heater ramping up; "
          "whole simulated days: pvheater simulate)")
