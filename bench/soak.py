#!/usr/bin/env python3
"""Soak test: the real loop over Modbus-TCP against the simulator for a simulated week with injected faults.

Usage (from the checkout, with pvheater installed):

    python bench/soak.py --days 1           # one simulated day with faults, prints the report
    python bench/soak.py --write            # 7 simulated days, and writes the soak section of BENCHMARKS.md

A simulated day costs about 4.5 minutes of one core (measured: 272 s CPU,
248 user + 24 system, for `--days 1`), so the week takes ~32 minutes on an idle
2-core machine and longer on a busy one (12 min wall for the day at load 7).

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
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from report import write_section

from pvheater.sim.soak_engine import Soak, format_result

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- soak -->", "<!-- /soak -->"


def main(argv: list[str] | None = None, make_soak: Callable[[int, Path, int], Soak] | None = None) -> int:
    """Run the soak and print its report; with --write, also replace its section of BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7, help="simulated days (default: 7)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and the days")
    parser.add_argument("--db", help="keep the history database here (default: a temporary file)")
    parser.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="report to update (default: BENCHMARKS.md)")
    parser.add_argument("--write", action="store_true", help="also write the report into --out (default: only print)")
    parser.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)  # the old flag: now the default
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("pvheater").propagate = False  # the soak counts the ERROR lines itself
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # as `pvheater run` does: we report GX errors
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "soak.db"
        for old in db.parent.glob(db.name + "*"):
            old.unlink()
        soak = make_soak(args.days, db, args.seed) if make_soak else Soak(args.days, db, seed=args.seed)
        result = soak.run(progress=lambda text: print(text, file=sys.stderr))
        stats_cmd = [sys.executable, "-m", "pvheater.cli", "stats", "--db", str(db), "--days", str(args.days)]
        table = subprocess.run(stats_cmd, capture_output=True, text=True, check=False).stdout
    report = format_result(result)
    body = "\n".join([
        "## Soak: a simulated week with faults",
        "",
        "`python bench/soak.py` runs the real control loop -- GX reader over Modbus-TCP, controller, relay guard,",
        "gpiozero heater on mock pins with a calibration measured off the simulated regulator, history writer",
        "thread on SQLite -- against the GX simulator and the plant for a simulated week of the scenario days",
        "clear, clouds, house_steps (cycled), one 1 s tick per simulated second, with seeded faults: GX restarts,",
        "dropped connections, a GX that never answers, exception replies 0x02/0x0A/0x0B, an absent MPPT,",
        "implausible values (SoC 250, all system values 0 as from invalid D-Bus values, SoC 0xFFFF), service",
        "restarts, and one boot with the wall clock in 1970 set by \"NTP\" 10 minutes later. `gx.timeout_s` is",
        "0.5 s so that a silent GX costs little wall time. See pvheater/sim/soak_engine.py.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}.",
        "",
        report,
        "",
        f"`pvheater stats --days {args.days}` on the soak's database:",
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
