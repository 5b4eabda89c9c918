#!/usr/bin/env python3
"""Soak test: the real loop over Modbus-TCP against the simulator for a simulated week with injected faults.

Usage (from the checkout, with pvheater installed):

    python bench/soak.py --days 1           # one simulated day with faults, prints the report
    python bench/soak.py --write            # 7 simulated days, and writes the soak section of BENCHMARKS.md
    python bench/soak.py --episode invalid_power_zero:1   # only that episode of the week (minutes, prints only)

A simulated day costs about 4.5 minutes of one core (measured: 272 s CPU,
248 user + 24 system, for `--days 1`), so the week takes ~32 minutes on an idle
2-core machine and longer on a busy one (12 min wall for the day at load 7; ~16 min a day at load
18-20 with the hostile kinds and the tank, measured on 2026-12-02: `--max-wall-s 3700` ran 4 days in 3036 s).

It runs the soak engine pvheater.sim.soak_engine (see there for what is injected and measured), then
`pvheater stats` on the week's database and prints the report. Only with
--write does it replace the part of BENCHMARKS.md between the `<!-- soak -->`
and `<!-- /soak -->` markers (bench/run_bench.py keeps that part when it
regenerates the file).
Exit status 1 when the acceptance fails.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from report import write_section

from pvheater.sim.soak_engine import SOAK_TANK, Soak, SoakResult, format_result

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- soak -->", "<!-- /soak -->"
#: Relay switchings per day of the previous controller on the old soak (no hostile kinds, no tank, seed 1),
#: as BENCHMARKS.md recorded them at 38168fa (issue 6; before the knob-first relay of issue 11).
OLD_SOAK_SWITCHINGS = (26, 20, 18, 16, 20, 22, 18)


def main(argv: list[str] | None = None, make_soak: Callable[[int, Path, int], Soak] | None = None) -> int:
    """Run the soak and print its report; with --write, also replace its section of BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7, help="simulated days (default: 7)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and the days")
    parser.add_argument("--db", help="keep the history database here (default: a temporary file)")
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="report to update (default: BENCHMARKS.md)")
    parser.add_argument("--write", action="store_true", help="also write the report into --out (default: only print)")
    parser.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)  # the old flag: now the default
    parser.add_argument("--no-hostile", action="store_true", help="without the hostile GX's kinds (the old soak)")
    parser.add_argument("--no-tank", action="store_true", help="without the hot-water tank (the old soak)")
    parser.add_argument("--max-wall-s", type=float, help="stop at the last simulated midnight that fits this budget")
    parser.add_argument("--save", help="also pickle the result and the stats table here (to --render it later)")
    parser.add_argument("--episode", metavar="KIND:N",
                        help="a targeted rerun: only the N-th (from 0) episode of that fault kind of the --days week "
                             "(same start, length and register), alone, from --lead-s before it; prints only")
    parser.add_argument("--lead-s", type=float, default=1800.0, help="with --episode: seconds run before it")
    parser.add_argument("--render", help="do not run: report the result a --save wrote")
    parser.add_argument("--baseline", help="with --render: a --save of `--no-hostile --no-tank` to compare switchings")
    args = parser.parse_args(argv)
    if args.render:
        with open(args.render, "rb") as f:
            result, table = pickle.load(f)
        return _report(result, table, args)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("pvheater").propagate = False  # the soak counts the ERROR lines itself
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # as `pvheater run` does: we report GX errors
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "soak.db"
        for old in db.parent.glob(db.name + "*"):
            old.unlink()
        if args.episode:
            if args.write:
                parser.error("--episode is a targeted rerun: it prints and never writes BENCHMARKS.md")
            kind, _, index = args.episode.partition(":")
            soak = Soak.episode(kind, int(index or 0), db, days=args.days, seed=args.seed, lead_s=args.lead_s,
                                tank=None if args.no_tank else SOAK_TANK, hostile=not args.no_hostile)
        elif make_soak:
            soak = make_soak(args.days, db, args.seed)
        else:
            soak = Soak(args.days, db, seed=args.seed, tank=None if args.no_tank else SOAK_TANK,
                        hostile=not args.no_hostile)
        result = soak.run(progress=lambda text: print(text, file=sys.stderr), max_wall_s=args.max_wall_s)
        if args.episode:
            print(f"targeted rerun of {args.episode} ({soak.faults[0]}, register {soak.invalid_name}): window "
                  f"{soak.window_s[0]:.0f}-{soak.window_s[1]:.0f} s", file=sys.stderr)
        stats_cmd = [sys.executable, "-m", "pvheater.cli", "stats", "--db", str(db), "--days", str(result.days)]
        table = subprocess.run(stats_cmd, capture_output=True, text=True, check=False).stdout
    if args.save:
        with open(args.save, "wb") as f:
            pickle.dump((result, table), f)
    return _report(result, table, args)


def _report(result: SoakResult, table: str, args: argparse.Namespace) -> int:
    """Print the report; with --write also put it into --out. 0 when the acceptance holds."""
    report = format_result(result)
    notes = []
    if result.days < args.days:
        notes += ["", f"**Only {result.days} of the {args.days} simulated days ran**: the week did not fit the wall "
                  f"budget on the shared machine (`--max-wall-s`, {result.wall_s:.0f} s of wall time for "
                  f"{result.days} days). The whole week: `nice -n 10 python bench/soak.py --write`."]
    if args.baseline:
        with open(args.baseline, "rb") as f:
            base = pickle.load(f)[0]
        total = sum(t.toggles for t in base.truth)
        loaded = sum(t.under_load for t in base.truth)
        loaded_fault = sum(t.under_load_in_fault for t in base.truth)
        old = sum(OLD_SOAK_SWITCHINGS[: base.days])
        notes += ["", f"Switchings against the previous controller (issue 11): on the old soak (`--no-hostile "
                  f"--no-tank`, the same days and fault schedule, seed 1; {base.days} days) this controller switches "
                  f"the relay **{total}** times, {loaded} under load ({loaded_fault} of them fail-safe opens and "
                  f"stops during a fault, {loaded - loaded_fault} otherwise); the previous controller switched "
                  f"{old} times on those days ({', '.join(map(str, OLD_SOAK_SWITCHINGS[: base.days]))}; recorded "
                  "at 38168fa, switchings under load were not counted then): "
                  f"{100.0 * (old - total) / max(old, 1):.0f} % fewer."]
    body = "\n".join([
        "## Soak: a simulated week with faults",
        "",
        "`python bench/soak.py` runs the real control loop -- GX reader over Modbus-TCP, controller, relay guard,",
        "gpiozero heater on mock pins with a calibration measured off the simulated regulator, history writer",
        "thread on SQLite -- against the GX simulator and the plant for a simulated week of the scenario days",
        "clear, clouds, house_steps (cycled), one 1 s tick per simulated second, with seeded faults: GX restarts,",
        "dropped connections, a GX that never answers, exception replies 0x02/0x0A/0x0B, an absent MPPT,",
        "implausible values (SoC 250, all system values 0 as from invalid D-Bus values, SoC 0xFFFF), service",
        "restarts, and one boot with the wall clock in 1970 set by \"NTP\" 10 minutes later; and the hostile GX",
        "of pvheater/sim/hostile_gx.py (the loop reads through it during its episodes): replies split in two",
        "halves each just under `gx.timeout_s`, replies with function code 4 or 0x17, every 32-bit register",
        "0x7FFFFFFF, a frozen GX; from the GX itself an invalid 0 on one power register and a wrapped battery",
        "power (-40 kW reads +25536 W). The plant has an 80 l tank whose thermostat cycles (showers and taps also",
        "in the sunny hours). `gx.timeout_s` is 0.5 s so that a silent GX costs little wall time. See",
        "pvheater/sim/soak_engine.py.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}.",
        "",
        report,
        *notes,
        "",
        f"`pvheater stats --days {result.days}` on the soak's database:",
        "",
        "```",
        table.rstrip(),
        "```",
    ])
    print(body)
    if args.write and not args.no_write:
        out = Path(args.out)
        write_section(out, f"{BEGIN}\n{body.rstrip()}\n{END}", BEGIN, END)
        print(f"wrote the soak section of {out}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
