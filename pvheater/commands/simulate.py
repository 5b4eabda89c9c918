"""Simulate whole days in simulated time: scenarios x strategies, a metrics table, optional plots."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pvheater.plotting import require_matplotlib
from pvheater.sim.day import default_jobs, run_matrix
from pvheater.sim.metrics import format_table
from pvheater.sim.scenarios import SCENARIOS, scenario_names
from pvheater.sim.strategy import DEFAULT_STRATEGY, strategy_names

EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater simulate`."""
    parser.add_argument(
        "--scenario", default="clear", metavar="NAME|all",
        help=f"scenario to run, comma-separated list, or all ({', '.join(scenario_names())}; default: clear)",
    )
    parser.add_argument(
        "--strategy", default=None, metavar="NAME|all",
        help=f"strategy, comma-separated list, or all (default: {DEFAULT_STRATEGY})",
    )
    parser.add_argument("--seed", type=int, default=None, help="another seed for the scenarios (default: theirs)")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the day (several runs: FILE-scenario-strategy.png)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N", help="worker processes (default: every CPU)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--list", action="store_true", help="list scenarios and strategies and exit")


def _pick(text: str, known: list[str], what: str) -> list[str]:
    """Names from 'all' or a comma-separated list; ValueError naming an unknown one."""
    if text == "all":
        return list(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in known:
            raise ValueError(f"unknown {what} {name!r} (expected one of: {', '.join(known)}, or all)")
    return names


def _plot_pattern(base: Path, runs: int) -> str:
    """FILE for one run, else FILE-{scenario}-{strategy}.png beside it."""
    if runs == 1:
        return str(base).replace("{", "{{").replace("}", "}}")
    suffix = base.suffix or ".png"
    stem = base.stem.replace("{", "{{").replace("}", "}}")
    return str(base.with_name(f"{stem}-{{scenario}}-{{strategy}}{suffix}"))


def run(args: argparse.Namespace) -> int:
    """Run the days, print the metrics table, draw plots when asked."""
    strategies_known = strategy_names()
    if args.list:
        print("scenarios:")
        for name, sc in SCENARIOS.items():
            print(f"  {name:<12} {sc.description}")
        print("strategies: " + ", ".join(strategies_known))
        return 0
    try:
        scenarios = _pick(args.scenario, scenario_names(), "scenario")
        strategies = _pick(args.strategy or DEFAULT_STRATEGY, strategies_known, "strategy")
    except ValueError as exc:
        print(f"pvheater: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.jobs is not None and args.jobs < 1:
        print(f"pvheater: --jobs must be at least 1 (got {args.jobs})", file=sys.stderr)
        return EXIT_USAGE
    if args.plot:
        require_matplotlib()  # fail before hours of simulation, saying how to get it

    jobs = args.jobs or default_jobs()
    t0 = time.perf_counter()
    pattern = _plot_pattern(Path(args.plot), len(scenarios) * len(strategies)) if args.plot else None
    cells = run_matrix(scenarios, strategies, seed=args.seed, jobs=jobs, plot_pattern=pattern)
    wall = time.perf_counter() - t0
    rows = [c[0] for c in cells]
    seed = "scenario seeds" if args.seed is None else f"seed {args.seed}"
    print(f"{len(rows)} simulated day(s) at 1 s steps, each against the same day with the heater off ({seed})")
    print(format_table(rows, markdown=args.markdown))
    for _metrics, path in cells:
        if path is not None:
            print(f"plot: {path}")
    print(f"done in {wall:.1f} s with {min(jobs, len(rows))} process(es)")
    return 0
