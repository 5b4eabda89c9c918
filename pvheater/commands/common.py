"""What the commands share: argparse types, exit codes, the --scenario/--start options of the simulated rig."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pvheater.control.timeofday import parse_hhmm
from pvheater.errors import PvHeaterError

if TYPE_CHECKING:
    from pvheater.sim.scenarios import ScenarioDay

#: Exit codes: 0 ok, 1 the GX or hardware failed (or a run was refused), 2 bad configuration or usage.
EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2
#: Ctrl-C (128 + SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130


def positive_float(text: str) -> float:
    """Parse a number > 0 for argparse (seconds, a speed factor ...)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def tcp_port(text: str) -> int:
    """Parse a TCP port 1-65535 for argparse."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1-65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1-65535, got {port}")
    return port


def hhmm(text: str) -> str:
    """Check a time of day 'HH:MM' for argparse (25:00 and 9:00 are refused); returns the text."""
    try:
        parse_hhmm(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def add_scenario_arguments(parser: argparse.ArgumentParser, *, scenario: str | None, start: str, what: str) -> None:
    """--scenario NAME and --start HH:MM of a simulated rig (run --simulate, calibrate-servo --simulate).

    Both default to None so that giving them without --simulate can be refused
    (simulate_options_problem); the defaults are filled in afterwards.
    """
    parser.add_argument("--scenario", metavar="NAME", help=f"with --simulate: {what}")
    parser.add_argument(
        "--start", type=hhmm, metavar="HH:MM",
        help=f"with --simulate: the time of day the simulation starts (default {start})",
    )
    parser.set_defaults(scenario_default=scenario, start_default=start)


def simulate_options_problem(args: argparse.Namespace) -> str | None:
    """The one-line refusal of --scenario/--start without --simulate, else None (and the defaults filled in)."""
    if not hasattr(args, "start_default"):
        return None
    given = [f"--{name}" for name in ("scenario", "start") if getattr(args, name) is not None]
    if given and not args.simulate:
        verb, it = ("only work", "them") if len(given) > 1 else ("only works", "it")
        return f"{args.command}: {' and '.join(given)} {verb} with --simulate (add --simulate, or leave {it} out)"
    if args.scenario is None:
        args.scenario = args.scenario_default
    elif args.simulate:
        from pvheater.sim.scenarios import scenario_names

        if args.scenario not in scenario_names():
            return f"unknown scenario {args.scenario!r} (expected one of: {', '.join(scenario_names())})"
    if args.start is None:
        args.start = args.start_default
    return None


def scenario_day(name: str) -> ScenarioDay:
    """The simulated day of a named scenario; PvHeaterError naming the known ones for an unknown name."""
    from pvheater.sim.scenarios import build_day, get_scenario, scenario_names

    if name not in scenario_names():
        raise PvHeaterError(f"unknown scenario {name!r} (expected one of: {', '.join(scenario_names())})")
    return build_day(get_scenario(name))

