"""Calibrate the actuator: measure the heater's watts at each input step and write the calibration file.

`pvheater calibrate` sweeps the input of the actuator heater.actuator names
(servo angle, pwm_0_10v duty, ssr_burst fraction of cycles; `--actuator`
overrides it); `pvheater calibrate-servo` is its name for the servo. For the
servo it closes the relay and turns the SCR regulator's knob
in steps from `servo.knob_zero_deg` to `servo.knob_full_deg`, reads the
heater's power from the GX at each angle (the rise in AC consumption over a
heater-off baseline), and writes a monotonic angle -> watts table that
`pvheater run` interpolates (`heater.calibration_file`). The sweep is in
pvheater/calibration/sweep.py, the fit in pvheater/calibration/fit.py.

- `--manual`: the same steps, but a person types the watts a meter shows.
- `--limits`: no heating. On a terminal: the jog of `pvheater setup`
  (pvheater/setup_wizard.py: + / - or the arrows move the servo live, z / f
  mark the knob's zero and full, Enter ends), then it offers to write
  servo.knob_zero_deg / knob_full_deg into the config file. Without a
  terminal: the servo moves slowly to the knob's two ends and back, printing
  the pulse widths, so they can be checked without straining the pot.
- `--simulate`: against the built-in GX simulator and simulated heater, in
  simulated time (`--speed` times faster than real time).

It refuses to start when the GX does not answer or the battery is below
`control.min_soc_pct`. Ctrl-C, SIGTERM or any error open the relay and return
the knob to zero; nothing is written then. Exit codes: 0 written, 1 refused,
discarded or aborted, 2 bad configuration, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pvheater.calibration.curve import Calibration, save_calibration
from pvheater.calibration.fit import ANGLE_DECIMALS, FRACTION_DECIMALS, Fit, calibration_metadata, fit_sweep
from pvheater.calibration.sweep import (
    Bench,
    CalibrationAborted,
    CalibrationDiscarded,
    CalibrationRefused,
    Sweep,
    SweepSettings,
    preflight,
    run_limits,
    run_manual,
    run_sweep,
)
from pvheater.commands.common import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUNTIME,
    add_scenario_arguments,
    positive_float,
    scenario_day,
)
from pvheater.config import ACTUATORS, Config, ServoConfig
from pvheater.control.measurements import Measurements
from pvheater.control.timeofday import hhmm_seconds
from pvheater.service.dryrun import DryRunHeater
from pvheater.service.rig import Rig, simulated_wait

if TYPE_CHECKING:
    from pvheater.sim.live import SimulatedRig

DEFAULT_OUT = "calibration.yaml"
DEFAULT_SIM_OUT = "calibration-simulated.yaml"
DEFAULT_SPEED = 10.0
#: After the run: how long the knob gets to reach zero before the pins are released (the relay is open).
PARK_S = 1.0
#: --simulate: a steady sunny noon with a full battery (PV W, house W).
SIM_PV_W = 3000.0
SIM_HOUSE_W = 350.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater calibrate` (and `calibrate-servo`)."""
    parser.add_argument(
        "--actuator", choices=ACTUATORS,
        help="the actuator to calibrate (default: heater.actuator of the config; calibrate-servo: servo)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--manual", action="store_true", help="type the watts a meter shows at each angle")
    mode.add_argument(
        "--limits", action="store_true",
        help="no heating: move slowly to the knob's ends and back, to set the pulse widths",
    )
    parser.add_argument(
        "--out", metavar="PATH",
        help=f"calibration file to write (default: {DEFAULT_OUT}; with --simulate {DEFAULT_SIM_OUT})",
    )
    parser.add_argument(
        "--simulate", action="store_true",
        help="against the built-in GX simulator and a simulated heater, with mock pins, in simulated time",
    )
    parser.add_argument(
        "--speed", type=positive_float, default=DEFAULT_SPEED, metavar="X",
        help=f"with --simulate: simulated seconds per real second (default {DEFAULT_SPEED:g})",
    )
    add_scenario_arguments(
        parser, scenario=None, start="12:00", what="a named simulated day instead of a steady sunny noon"
    )


def pulse_width_ms(servo: ServoConfig, angle_deg: float) -> float:
    """The pulse width gpiozero sends for a servo angle."""
    frac = (angle_deg - servo.min_angle_deg) / (servo.max_angle_deg - servo.min_angle_deg)
    return servo.min_pulse_width_ms + frac * (servo.max_pulse_width_ms - servo.min_pulse_width_ms)


def _say(text: str) -> None:
    print(text, flush=True)


def _fail(text: str) -> None:
    print(f"pvheater: {text}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Written:
    """What a successful calibration wrote."""

    path: Path
    sweep: Sweep
    fit: Fit


def execute(
    bench: Bench,
    cfg: Config,
    *,
    mode: str = "sweep",
    out_path: Path | None = None,
    ask: Callable[[str], str] = input,
    report: Callable[[str], None] = _say,
    date: str | None = None,
    simulated: bool = False,
) -> tuple[int, Written | None]:
    """Run one calibration mode ("sweep", "manual" or "limits") on a bench; (exit code, what was written).

    Prints progress with `report` and a one-line reason on stderr when it
    refuses, discards or aborts; the relay is open and the knob at zero
    whenever it returns. `simulated`: the bench is the simulator's (the file's
    metadata says so: `from_simulator: true`).
    """
    settings = SweepSettings.from_config(cfg)
    if mode == "limits":
        return _limits(bench, cfg, settings, report), None
    out = Path(out_path or DEFAULT_OUT)
    first: Measurements | None = None
    try:
        try:
            first = preflight(bench, settings, manual=mode == "manual")
            report(_announce(mode, settings))
            if mode == "sweep":
                sweep = run_sweep(bench, settings, report, first)
            else:
                sweep = run_manual(bench, settings, ask, report, first)
            fit = fit_sweep(
                sweep, noise_w=settings.settle_tolerance_w / 2, drop_tolerance_w=settings.house_tolerance_w,
                curve="linear" if settings.actuator == "ssr_burst" else "phase_angle",
                decimals=ANGLE_DECIMALS if settings.actuator == "servo" else FRACTION_DECIMALS,
            )
        finally:
            if first is not None:  # the pins were driven: the relay is open, give the knob time to reach zero
                bench.pause(PARK_S)
    except KeyboardInterrupt:
        _fail("calibration aborted (interrupted): relay off, knob at zero; nothing written")
        return EXIT_INTERRUPTED, None
    except CalibrationRefused as exc:
        name = "calibrate-servo" if settings.actuator == "servo" else "calibrate"
        _fail(f"{name} refused to start: {exc}; the relay stayed open")
        return EXIT_RUNTIME, None
    except CalibrationDiscarded as exc:
        _fail(f"calibration discarded: {exc}; nothing written")
        return EXIT_RUNTIME, None
    except CalibrationAborted as exc:
        _fail(f"calibration aborted: {exc}; relay off, knob at zero, nothing written")
        return EXIT_RUNTIME, None
    stamp = date or datetime.datetime.now().isoformat(timespec="seconds")
    meta = {**calibration_metadata(sweep, fit, stamp), "from_simulator": simulated}
    if settings.actuator != "servo":  # a servo file stays as it was; the others say what they are for
        meta = {"actuator": settings.actuator, "input": settings.unit, **meta}
    save_calibration(out, fit.calibration, meta)
    _report_fit(fit, cfg, out, report)
    return EXIT_OK, Written(out, sweep, fit)


def _announce(mode: str, settings: SweepSettings) -> str:
    """What the sweep or the manual calibration is about to do, and how to stop it."""
    angles = settings.angles()
    if settings.actuator != "servo":
        what = f"{settings.actuator}'s input from {settings.zero_deg:g} to {settings.full_deg:g} {settings.unit}"
        how = "type the watts your meter shows at each" if mode == "manual" else "keep the house load steady"
        return (
            f"{'manual calibration: ' if mode == 'manual' else ''}stepping the {what} in {len(angles)} steps "
            f"with the relay closed; {how}. Ctrl-C stops it: relay off, input to zero, nothing written"
        )
    if mode == "sweep":
        per_angle_s = settings.settle_samples * settings.interval_s
        return (
            f"sweeping the knob from {settings.zero_deg:g} to {settings.full_deg:g} deg in {len(angles)} "
            f"steps of {settings.step_deg:g} deg with the relay closed (about "
            f"{(len(angles) + 2) * per_angle_s:.0f} s, at most {settings.max_duration_s:g} s); keep the "
            "house load steady. Ctrl-C stops it: relay off, knob to zero, nothing written"
        )
    return (
        f"manual calibration: the relay closes and the knob steps from {settings.zero_deg:g} to "
        f"{settings.full_deg:g} deg in {len(angles)} steps; type the watts your meter shows at each. "
        "Ctrl-C stops it: relay off, knob to zero, nothing written"
    )


def _report_fit(fit: Fit, cfg: Config, out: Path, report: Callable[[str], None]) -> None:
    unit = SweepSettings.from_config(cfg).unit
    full = "not reached: the sweep stopped at calibration.max_test_power_w" if fit.full_power_deg is None else (
        f"{fit.max_power_w:.0f} W from {fit.full_power_deg:g} {unit}"
    )
    report(f"dead zone: no power up to {fit.dead_zone_deg:g} {unit}; full power: {full}")
    report(fit.fit_note)
    if fit.full_power_deg is not None and abs(fit.max_power_w - cfg.heater.max_power_w) > 0.05 * cfg.heater.max_power_w:
        report(
            f"note: the heater took {fit.max_power_w:.0f} W at full, heater.max_power_w is "
            f"{cfg.heater.max_power_w:g} W; set heater.max_power_w: {fit.max_power_w:.0f}"
        )
    report(f"wrote {out}")
    report(f"to use it, set in config.yaml: heater.calibration_file: {out.resolve()}")


def _limits(bench: Bench, cfg: Config, settings: SweepSettings, report: Callable[[str], None]) -> int:
    report(
        f"relay stays open; the servo moves to knob zero ({settings.zero_deg:g} deg), slowly "
        f"({settings.limits_speed_deg_s:g} deg/s) to knob full ({settings.full_deg:g} deg) and back. "
        "Watch the knob: it should just reach its end stops"
    )
    try:
        run_limits(bench, settings, lambda a: pulse_width_ms(cfg.servo, a), report)
    except KeyboardInterrupt:
        _fail("limits check interrupted: relay off, knob to zero")
        return EXIT_INTERRUPTED
    report("(on a terminal, --limits lets you move the servo with the keys and mark the knob's ends)")
    report(
        "if the knob hits an end stop before the servo stops, move servo.knob_zero_deg / knob_full_deg inwards; "
        "if the servo's own travel is off, adjust servo.min_pulse_width_ms / max_pulse_width_ms"
    )
    return EXIT_OK


# --- the command ------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM during a calibration: leave like Ctrl-C (relay off, knob to zero, nothing written)."""
    raise KeyboardInterrupt


def _select_actuator(args: argparse.Namespace) -> str | None:
    """Put the actuator to calibrate into args.cfg; a one-line refusal when the command and the actuator disagree."""
    servo_command = getattr(args, "command", None) == "calibrate-servo"
    actuator = args.actuator or ("servo" if servo_command else args.cfg.heater.actuator)
    if servo_command and actuator != "servo":
        return f"calibrate-servo calibrates the servo; for {actuator} use `pvheater calibrate --actuator {actuator}`"
    if args.limits and actuator != "servo":
        return f"--limits moves the servo to the knob's ends; {actuator} has no knob (heater.actuator)"
    if actuator != args.cfg.heater.actuator:
        args.cfg = replace(args.cfg, heater=replace(args.cfg.heater, actuator=actuator, calibration_file=None))
    return None


def run(args: argparse.Namespace) -> int:
    """Calibrate on the real pins and GX, or with --simulate on the simulated rig."""
    mode = "limits" if args.limits else "manual" if args.manual else "sweep"
    refused = _select_actuator(args)
    if refused is not None:
        _fail(refused)
        return EXIT_CONFIG
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        SweepSettings.from_config(args.cfg)  # a config error before any pin is touched
        with _rig(args) as rig:
            return _calibrate(rig, mode, args)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rig(args: argparse.Namespace) -> Rig:
    """The real GX and pins, or with --simulate a steady sunny noon with a full battery (or --scenario)."""
    if not args.simulate:
        # The sweep drives relay and servo directly; an existing calibration file is not needed (nor trusted).
        return Rig.real(args.cfg, calibrated=False)
    from pvheater.sim.scenarios import constant_day

    if args.scenario is None:
        day = constant_day(SIM_PV_W, SIM_HOUSE_W, seconds=4 * 3600, initial_soc_pct=100.0, name="steady noon")
        start_s = 0.0
    else:
        day = scenario_day(args.scenario)
        start_s = hhmm_seconds(args.start)
    return Rig.simulated(day, args.cfg, start_s=start_s, speed=args.speed)


def _jog_limits(rig: Rig, args: argparse.Namespace) -> int:
    """--limits on a terminal: setup's live jog (relay open), then offer to write the knob angles into the config."""
    from pvheater.config_writer import set_values, write_config
    from pvheater.errors import ConfigError
    from pvheater.setup_wizard import RawKeys, SetupAborted, Terminal, jog, park

    heater = rig.heater
    assert not isinstance(heater, DryRunHeater)
    term = Terminal(sys.stdin, sys.stdout)
    term.say("relay stays open. + / - or the arrow keys move the servo (s: step 1 or 5 deg); turn the knob to where "
             "the heater just gets nothing and press z, to full power and press f; Enter when done, Ctrl-C aborts.")
    keys = RawKeys(sys.stdin.fileno())
    try:
        zero, full = jog(heater, rig.config, keys, sys.stdout)
    except SetupAborted:
        _fail("limits jog aborted: relay open, knob to zero; nothing written")
        return EXIT_INTERRUPTED
    finally:
        keys.close()
        park(heater, rig.config.servo.knob_zero_deg, min(rig.config.servo.detach_after_s, PARK_S))
    values = {"servo.knob_zero_deg": zero, "servo.knob_full_deg": full}
    term.say(f"knob zero at {zero:g} deg, full at {full:g} deg")
    path = Path(args.config) if args.config else Path("config.yaml")
    if not path.is_file():
        term.say(f"set in config.yaml: servo.knob_zero_deg: {zero:g} and servo.knob_full_deg: {full:g}")
        return EXIT_OK
    try:
        text = set_values(path.read_text(encoding="utf-8"), values)
    except (OSError, ValueError):
        term.say(f"set in {path}: servo.knob_zero_deg: {zero:g} and servo.knob_full_deg: {full:g} "
                 "(the file has no such lines to replace)")
        return EXIT_OK
    if not term.yes(f"Write them into {path}", True):
        term.say(f"nothing written; set in {path}: servo.knob_zero_deg: {zero:g}, servo.knob_full_deg: {full:g}")
        return EXIT_OK
    try:
        write_config(path, text, values, overwrite=True)
    except (OSError, ConfigError) as exc:
        _fail(f"{path}: not written ({exc})")
        return EXIT_RUNTIME
    term.say(f"wrote servo.knob_zero_deg: {zero:g} and servo.knob_full_deg: {full:g} into {path} "
             "(a running service needs a restart for them)")
    return EXIT_OK


def _calibrate(rig: Rig, mode: str, args: argparse.Namespace) -> int:
    """One calibration on a rig; on a simulated one, say what is simulated and check the result against it."""
    if mode == "limits" and sys.stdin.isatty() and sys.stdout.isatty():
        return _jog_limits(rig, args)
    sim = rig.simulation
    out = Path(args.out or (DEFAULT_OUT if sim is None else DEFAULT_SIM_OUT))
    ask: Callable[[str], str] = input
    if sim is not None:
        hp = sim.plant.params.heater
        actuator = rig.config.heater.actuator
        what = {
            "servo": f"the simulated linkage puts the knob at {hp.knob_zero_deg:g}..{hp.knob_full_deg:g} deg",
            "pwm_0_10v": "a simulated regulator with a 0-10 V input behind the PWM module",
            "ssr_burst": f"a simulated zero-cross SSR on {rig.config.burst.mains_hz} Hz mains",
        }[actuator]
        name = "calibrate-servo" if actuator == "servo" else "calibrate"
        _say(
            f"pvheater {name} --simulate: {sim.live.day.name!r}, simulated time at {args.speed:g}x real "
            f"time; GX simulator on 127.0.0.1:{sim.gx.port}, mock pins; {what}, a {hp.max_power_w:.0f} W heater"
        )

        def ask(prompt: str) -> str:
            return input(f"[the simulated meter shows {sim.plant.heater_w:.0f} W] {prompt}")

    assert not isinstance(rig.heater, DryRunHeater)
    bench = Bench(rig.heater.relay, rig.heater.actuator, rig.reader.read, rig.clock, rig.wait)
    code, written = execute(bench, rig.config, mode=mode, out_path=out, ask=ask, simulated=sim is not None)
    if sim is not None and written is not None:
        for line in simulator_check(sim, written.fit.calibration, bench):
            _say(line)
    return code


def rig_bench(rig: SimulatedRig, speed: float | None = None) -> Bench:
    """A bench on a simulated rig in simulated time; with speed, paced at speed x real time."""
    return Bench(rig.heater.relay, rig.heater.actuator, rig.reader.read, rig.clock, simulated_wait(rig, speed))


def true_edges_deg(rig: SimulatedRig) -> tuple[float, float]:
    """The simulated regulator's true dead-zone edge and full-power angle."""
    hp = rig.plant.params.heater
    return hp.knob_zero_deg + hp.dead_zone_frac * (hp.knob_full_deg - hp.knob_zero_deg), hp.knob_full_deg


def true_power_w(rig: SimulatedRig, value: float) -> float:
    """The simulated heater's true power at an input of the rig's actuator (angle, duty, fraction of cycles)."""
    from pvheater.sim.plant import heater_power_w
    from pvheater.sim.regulators import zero_ten_power_fraction

    hp = rig.plant.params.heater
    actuator = rig.config.heater.actuator
    if actuator == "pwm_0_10v":
        return hp.max_power_w * zero_ten_power_fraction(value, hp.regulator.zero_ten)
    if actuator == "ssr_burst":
        return hp.max_power_w * min(max(value, 0.0), 1.0)
    return heater_power_w(True, value, hp)


def simulator_check(rig: SimulatedRig, calibration: Calibration, bench: Bench) -> list[str]:
    """Compare a calibration with the simulated heater, and command 1000 W with it once."""
    from pvheater.actuators import Heater
    from pvheater.control.messages import HeaterOutput

    hp = rig.plant.params.heater
    actuator = rig.config.heater.actuator
    if actuator == "servo":
        lo, hi = sorted((hp.servo_min_deg, hp.servo_max_deg))
        first = (
            f"its dead zone ends at {true_edges_deg(rig)[0]:g} deg, full power from {true_edges_deg(rig)[1]:g} deg"
        )
    else:
        lo, hi = 0.0, 1.0
        first = f"over the whole input range 0..1 {SweepSettings.from_config(rig.config).unit}"
    grid = [lo + (hi - lo) * k / 360 for k in range(361)]
    err_w = max(abs(calibration.power_at(a) - true_power_w(rig, a)) for a in grid)
    target_w = min(1000.0, 0.5 * calibration.max_power_w)
    heater = Heater(rig.heater.relay, rig.heater.actuator, calibration)
    moves = heater.moves
    heater.apply(HeaterOutput(relay_on=True, power_w=target_w), bench.clock())
    start_s = bench.clock()
    bench.pause(3.0)
    energy = rig.plant.energy().heater_wh
    bench.pause(2.0)  # the mean over 2 s: a burst heater's power is whole cycles
    got_w = (rig.plant.energy().heater_wh - energy) * 3600.0 / (bench.clock() - start_s - 3.0)
    moves = heater.moves - moves
    heater.safe_off(bench.clock())
    bench.pause(PARK_S)
    how = f"took {moves} servo move(s), " if actuator == "servo" else ""
    return [
        f"simulator check: the table is within {err_w:.0f} W ({100 * err_w / hp.max_power_w:.1f} % of full) of the "
        f"simulated heater; {first}",
        f"simulator check: commanding {target_w:.0f} W with the new table {how}"
        f"the simulated heater then takes {got_w:.0f} W ({100 * (got_w - target_w) / target_w:+.1f} %)",
    ]
