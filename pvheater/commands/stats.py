"""Per-day numbers from the history: heater kWh, surplus captured, hours heating, switchings, fail-safe, GX errors.

`pvheater stats` reads the SQLite history that `pvheater run` writes
(`history.file`) and prints one line per day for the newest `--days` days in
it: heater energy (relay closed, power at the servo angle through the
calibration), estimated surplus captured (heater energy minus battery
discharge and grid import at the same time), hours heating,
relay switchings, minutes in the fail-safe (data missing, stale or
implausible), GX error episodes, service starts, and the hours the history
covers. `--json` prints the same as JSON; `--plot FILE.png` draws it
(needs matplotlib: pip install 'pvheater[plot]').
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pvheater.errors import PvHeaterError
from pvheater.plotting import require_matplotlib
from pvheater.stats import compute_stats, format_stats, plot_stats


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 day, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `pvheater stats`."""
    parser.add_argument("--db", metavar="PATH", help="history database (default: history.file of the config)")
    parser.add_argument("--days", type=_days, default=7, metavar="N", help="the newest N days (default: 7)")
    parser.add_argument("--all", action="store_true", help="every day in the history")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the days to a PNG (needs matplotlib)")


def run(args: argparse.Namespace) -> int:
    """Print the per-day stats of the history."""
    path = args.db or args.cfg.history.file
    if path is None:
        raise PvHeaterError("history.file is null in the config: there is no history (or pass --db PATH)")
    stats = compute_stats(Path(path), None if args.all else args.days)
    if args.plot:
            require_matplotlib()  # fail before printing anything
    if args.json:
        print(json.dumps({"file": str(path), **stats.as_json()}, indent=2))
    elif not stats.days:
        print(f"{path}: no rows yet")
    else:
        print(format_stats(stats))
    if args.plot:
        plot_stats(stats, args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0
